"""Probe events as the real kernels fire them, and the capture they make.

Function names per flavour follow /work/notes/kernel-swap-functions.md (Parts A-C): 6.1.192 and 7.3.4. Roles come
from swaprace's catalog (:func:`swaprace.kernel.symbols.role_of_symbol`); functions the catalog does not know
yet get the role the event model names for them (``events.LIFECYCLE_ROLES`` comments).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from swaprace.events import Capture, CaptureMeta, normalize
from swaprace.kernel.symbols import role_of_symbol

#: Roles for functions swaprace's catalog may not know yet (the event model's LIFECYCLE_ROLES comments).
FALLBACK_ROLES: dict[str, str] = {
    "swap_readpage": "swap_read",
    "swap_read_folio": "swap_read",
    "free_swap_and_cache": "zap_put",
    "swap_put_entries_direct": "zap_put",
    "swap_duplicate": "swap_dup",
    "folio_dup_swap": "swap_dup",
    "swap_dup_entry_direct": "swap_dup",
    "swapcache_clear": "prepare_clear",
    "__swap_cache_do_add_folio": "cache_add",
    "__swap_cluster_free_entries": "slot_free",
}

#: What each flavour probes: role -> the one symbol recorded in CaptureMeta.symbols (as a recorder would).
PROBED: dict[str, dict[str, str]] = {
    "6.1": {
        "fault": "do_swap_page", "lookup": "swap_cache_get_folio", "ksm_copy": "ksm_might_need_to_copy",
        "free_cache": "folio_free_swap", "slot_alloc": "folio_alloc_swap", "slot_free": "free_swap_slot",
        "swap_put": "swap_free", "zap_put": "free_swap_and_cache", "swap_dup": "swap_duplicate",
        "cache_add": "add_to_swap_cache", "cache_delete": "__delete_from_swap_cache", "swap_read": "swap_readpage",
        "prepare": "swapcache_prepare", "prepare_clear": "swapcache_clear", "swap_write": "swap_writepage",
    },
    "7.x": {
        "fault": "do_swap_page", "lookup": "swap_cache_get_folio", "ksm_copy": "ksm_might_need_to_copy",
        "free_cache": "folio_free_swap", "slot_alloc": "__swap_cache_add_folio", "slot_free": "__swap_cluster_free_entries",
        "swap_put": "folio_put_swap", "zap_put": "swap_put_entries_direct", "swap_dup": "folio_dup_swap",
        "cache_add": "__swap_cache_do_add_folio", "cache_delete": "__swap_cache_del_folio",
        "swap_read": "swap_read_folio", "swap_write": "swap_writeout",
    },
}

#: ts step: ftrace and perf print microseconds, so every simulated event falls on a whole microsecond.
TS_STEP_NS = 1000
TS_START_NS = 500_000_000_000


def role_for(func: str) -> str:
    """The role of a kernel function: swaprace's catalog first, else :data:`FALLBACK_ROLES`."""
    role = role_of_symbol(func) or FALLBACK_ROLES.get(func)
    if role is None:
        raise KeyError(f"simkernel emits {func} but knows no role for it")
    return role


def u64(value: int) -> int:
    """A signed C value as the raw 64-bit register (``-17`` -> ``0xffffffffffffffef``)."""
    return value & (2**64 - 1)


@dataclass
class Event:
    """One probe hit (a row of the event table)."""

    ts_ns: int
    cpu: int
    pid: int
    tid: int
    comm: str
    func: str
    role: str
    phase: str
    entry: int | None = None
    folio: int | None = None
    retval: int | None = None
    nr: int | None = None


@dataclass
class Tracer:
    """Collects probe events with strictly increasing timestamps."""

    flavour: str
    events: list[Event] = field(default_factory=list)
    ts: int = TS_START_NS

    def emit(self, thread, func: str, phase: str, entry: int | None = None, folio: int | None = None,
             retval: int | None = None, nr: int | None = None) -> Event:
        """Record one event of ``thread`` (anything with tid/pid/comm/cpu) and return it."""
        self.ts += TS_STEP_NS
        ev = Event(self.ts, thread.cpu, thread.pid, thread.tid, thread.comm, func, role_for(func), phase,
                   entry, folio, None if retval is None else u64(retval), nr if nr and nr > 1 else None)
        self.events.append(ev)
        return ev

    def frame(self) -> pd.DataFrame:
        """The events as an (un-normalized) DataFrame with the event model's input columns."""
        cols = ["ts_ns", "cpu", "pid", "tid", "comm", "func", "role", "phase", "entry", "folio", "retval", "nr"]
        rows = {c: [getattr(e, c) for e in self.events] for c in cols}
        frame = pd.DataFrame({c: rows[c] for c in cols[:8]})
        for c in ("entry", "folio", "retval"):
            frame[c] = pd.array(rows[c], dtype="UInt64")
        frame["nr"] = pd.array(rows["nr"], dtype="UInt32")
        return frame

    def capture(self, kernel_release: str | None = None) -> Capture:
        """The simulated run as a swaprace capture (no losses: ``lost_known`` and nothing lost)."""
        meta = CaptureMeta(backend="simkernel", lost_known=True, symbols=dict(PROBED[self.flavour]),
                           kernel_release=kernel_release or ("6.1.0-sim" if self.flavour == "6.1" else "7.3.4-sim"))
        return Capture(events=normalize(self.frame()), meta=meta, source_format="simkernel")

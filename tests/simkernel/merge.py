"""Several independent simulated runs in one capture, so one ``analyze()`` call checks them all.

Run ``i`` gets swap device type ``i`` (its entries are ``swp_entry(i, offset)``), tids and pids ``+ 1000*i``, folio
pointers ``+ i << 36``, and timestamps after those of run ``i-1``: nothing of two runs can meet, exactly as two
swap devices and two sets of processes on one machine. CPU time goes to pandas, not to the simulator, so
batching is what lets CI check thousands of interleavings.
"""

from __future__ import annotations

from swaprace.events import SWP_TYPE_SHIFT, Capture

from .state import Install, Kernel
from .trace import PROBED, TS_START_NS, Event, Tracer

TID_STRIDE = 1000
FOLIO_SHIFT = 36
_FOLIO_RETURNS = ("swap_cache_get_folio", "ksm_might_need_to_copy")

Key = tuple[int, int, int]  # (tid, entry, install_ns)


def _shift(ev: Event, i: int, dt: int) -> Event:
    def entry(v):
        return None if v is None else (v | (i << SWP_TYPE_SHIFT) if v else v)

    def folio(v):
        return None if v is None else (v + (i << FOLIO_SHIFT) if v else v)

    retval = ev.retval
    if ev.phase == "return" and ev.func in _FOLIO_RETURNS:
        retval = folio(retval)
    elif ev.phase == "return" and ev.func == "folio_alloc_swap" and ev.retval and ev.retval < 2**63:
        retval = entry(retval)
    return Event(ev.ts_ns + dt, ev.cpu, ev.pid + TID_STRIDE * i, ev.tid + TID_STRIDE * i, ev.comm, ev.func, ev.role,
                 ev.phase, entry(ev.entry), folio(ev.folio), retval, ev.nr)


def key_of(inst: Install, i: int, dt: int) -> Key:
    """An install's (tid, entry, install_ns) as it appears in the merged capture, for run ``i``."""
    return (inst.tid + TID_STRIDE * i, inst.entry | (i << SWP_TYPE_SHIFT), inst.install_ns + dt)


def merge(kernels: list[Kernel], omit: tuple[str, ...] = ()) -> tuple[Capture, set[Key], list[tuple[Install, Key]]]:
    """One capture of all runs; the union of their stale installs; every install with its merged key.
    ``omit`` names functions left unprobed (their events and their ``symbols`` entries are dropped)."""
    assert kernels and len({k.cfg.flavour for k in kernels}) == 1
    assert len(kernels) < 30, "swap types are 5 bits"
    out = Tracer(kernels[0].cfg.flavour)
    installs: list[tuple[Install, Key]] = []
    for i, k in enumerate(kernels):
        dt = (out.events[-1].ts_ns - TS_START_NS) if out.events else 0  # run i starts after run i-1 ends
        out.events.extend(_shift(ev, i, dt) for ev in k.tracer.events if ev.func not in omit)
        installs.extend((inst, key_of(inst, i, dt)) for inst in k.truth)
    capture = out.capture()
    capture.meta.symbols = {r: f for r, f in PROBED[out.flavour].items() if f not in omit}
    return capture, {key for inst, key in installs if inst.stale}, installs

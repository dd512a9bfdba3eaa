"""The offline analysis: fault windows, swap-entry generations, and entry reuse inside a fault's race window.

Definitions (the same ones the reference model in tests/test_model_based.py implements event by event):

* **Order.** Events are ordered by ``ts_ns``; events with equal timestamps keep their input order. The row
  number of the (stably sorted) event table is that order, so every comparison below uses row numbers.
* **Pairing.** A return event is paired with the most recent unmatched call of the same function on the same
  thread (a per-thread, per-function stack).
* **Fault window** W: a paired ``fault`` call/return (do_swap_page) of thread T. Its entry E is the entry of T's
  first ``lookup`` call inside W; that lookup is "T's lookup".
* **Bindings.** A ``lookup`` return with a non-zero, non-error folio binds (entry of its call) -> folio; a
  ``cache_add`` call that carries an entry binds entry -> folio.
* **Releases.** A ``slot_free`` call releases its entry. A ``free_cache`` return that is true (low byte of the
  bool/int return non-zero) releases, and a ``cache_delete`` call releases, the entry their folio is bound to:
  the entry of that folio's latest binding, provided the entry's own latest binding is still that folio. A
  ``free_cache``/``cache_delete`` call that also carries an entry (read from ``folio->swap`` by the live
  tracer) releases that entry directly.
* **Generations.** Per entry, bindings and releases alternate states: a binding while unbound starts a
  generation, a release while bound ends it; repeated bindings/releases are no-ops. An entry first seen being
  released had a generation that began before the capture (``bind_ns`` null). A binding after a release is a
  **reuse**.
* **Race** in W: after T's lookup and before T's own ``swap_put`` of E (its install; a fault that installed
  is done with E), E's current generation ends (a release), and the next one starts (a rebind) before W ends.
  Class ``stale-install`` when T then (after the rebind, before W ends) drops E's count
  itself -- its ``swap_put`` of E, the install of the stale pte; ``recovered`` otherwise.

Everything is column-wise (numpy ``searchsorted`` over composite sort keys); there is no per-event Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import numpy as np
import pandas as pd

from swaprace.events import Capture

#: Values at or above this are ERR_PTR(-errno) (IS_ERR_VALUE: the top 4095 values of the address space).
ERR_PTR_MIN = np.uint64(2**64 - 4095)

# vm_fault_t bits (include/linux/mm_types.h) that decide a window's outcome.
VM_FAULT_OOM = 0x1
VM_FAULT_SIGBUS = 0x2
VM_FAULT_MAJOR = 0x4
VM_FAULT_HWPOISON = 0x10
VM_FAULT_HWPOISON_LARGE = 0x20
VM_FAULT_SIGSEGV = 0x40
VM_FAULT_RETRY = 0x400
VM_FAULT_ERROR_BITS = VM_FAULT_OOM | VM_FAULT_SIGBUS | VM_FAULT_HWPOISON | VM_FAULT_HWPOISON_LARGE | VM_FAULT_SIGSEGV
OUTCOMES = ("minor", "major", "retry", "error")
RACE_CLASSES = ("recovered", "stale-install")
BIND_KINDS = ("lookup", "cache_add")
RELEASE_KINDS = ("free_cache", "cache_delete", "slot_free")
#: Row numbers are int32 (captures up to 2**31 events): half the memory of int64 on the hot arrays.
_ROW = np.int32

@dataclass
class Analysis:
    """Everything :func:`analyze` found in one capture (DataFrame shapes are the contract for reports)."""

    capture: Capture
    windows: pd.DataFrame  # tid pid comm cpu start_ns end_ns duration_ns entry retval outcome race_class
    generations: pd.DataFrame  # entry generation bind_ns folio bind_kind release_ns release_kind
    races: pd.DataFrame  # entry tid window_start_ns window_end_ns release_ns rebind_ns class install_ns
    summary: Dict[str, Any]  # exactly the `swaprace analyze --json` object


# --- small column helpers ----------------------------------------------------------------------------------


class _Events:
    """The event table as numpy arrays (views where pandas allows, no copy of the frame itself)."""

    def __init__(self, df: pd.DataFrame):
        self.df = df
        self.n = len(df)
        self.ts = df["ts_ns"].to_numpy(dtype=np.int64)
        self.tid = df["tid"].to_numpy()  # int32 view of the column: 10M events cost no copy here
        self.tid_code, self.n_tids = _dense_small_ints(self.tid)
        role = df["role"].cat
        self.role_names = list(role.categories)
        self.role_codes = role_codes = role.codes.to_numpy()
        phase = df["phase"].cat
        self.is_call = phase.codes.to_numpy() == _code(phase.categories, "call")
        func = df["func"].cat
        self.func_codes = func.codes.to_numpy()  # int8/int16 view
        self.func_names = [str(f) for f in func.categories]
        self.n_funcs = max(len(func.categories), 1)
        # Rows grouped by role (one O(n) radix pass), time order kept inside each role.
        by_role = np.argsort(role_codes.astype(np.int16), kind="stable").astype(_ROW)  # rows fit int32
        bounds = np.searchsorted(role_codes[by_role], np.arange(len(self.role_names) + 1))
        self._role_rows = {name: by_role[bounds[i]:bounds[i + 1]] for i, name in enumerate(self.role_names)}

    def rows(self, role: str, phase: Optional[str] = None) -> np.ndarray:
        """Row numbers of events of ``role`` (and ``phase``), in order."""
        rows = self._role_rows.get(role)
        if rows is None:
            return np.empty(0, dtype=np.int64)
        if phase == "call":
            return rows[self.is_call[rows]]
        if phase == "return":
            return rows[~self.is_call[rows]]
        return rows

    def u64(self, column: str, rows: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(values as uint64 with 0 for null, valid mask) of a nullable column at ``rows``."""
        col = self.df[column].array  # pandas masked UInt64 array
        data = np.asarray(col._data)[rows]  # noqa: SLF001 -- the values buffer, without a copy of the column
        valid = ~np.asarray(col._mask)[rows]  # noqa: SLF001
        data[~valid] = 0
        return data.astype(np.uint64, copy=False), valid


def _code(categories: pd.Index, name: str) -> int:
    return int(categories.get_loc(name)) if name in categories else -2


def _dense_small_ints(values: np.ndarray) -> Tuple[np.ndarray, int]:
    """Dense codes 0..k-1 of non-negative ints (thread ids: below pid_max, so a lookup table is cheap)."""
    if len(values) == 0:
        return np.zeros(0, np.int64), 0
    lo = int(values.min())
    if lo < 0 or int(values.max()) > (1 << 24):
        codes, uniq = pd.factorize(values, sort=True)
        return codes.astype(np.int64), len(uniq)
    present = np.zeros(int(values.max()) + 1, np.int32)
    present[values] = 1
    code_of = (np.cumsum(present) - 1).astype(np.int32)
    return code_of[values], int(present.sum())


def stable_order(codes: np.ndarray, n_codes: int) -> np.ndarray:
    """Stable argsort of non-negative integer codes below ``n_codes``.

    numpy sorts 16-bit integers stably with a radix sort (O(n)); wider codes are sorted 16 bits at a time
    (least significant digit first), which keeps it O(n) instead of a comparison sort.
    """
    if n_codes <= 1 << 16:
        return np.argsort(codes.astype(np.uint16), kind="stable").astype(_ROW)
    if n_codes <= 1 << 32:
        c = codes.astype(np.uint32)
        order = np.argsort((c & np.uint32(0xFFFF)).astype(np.uint16), kind="stable").astype(_ROW)
        high = (c[order] >> np.uint32(16)).astype(np.uint16)
        return order[np.argsort(high, kind="stable")]
    return np.argsort(codes, kind="stable")


def pair_returns(ev: _Events, roles: Tuple[str, ...]) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """For each role, (call rows, return rows) of matched call/return pairs, in return order.

    Per (thread, function), calls push and returns pop: a return matches the most recent unmatched call.
    Column-wise: a running depth per (tid, func) gives every event a nesting level; within one
    (tid, func, level) the events alternate call/return, so a return's partner is its predecessor there.
    """
    out: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}
    parts = [ev.rows(role) for role in roles]
    rows = np.sort(np.concatenate(parts)) if parts else np.empty(0, np.int64)
    if len(rows):
        group = ev.tid_code[rows].astype(np.int64) * ev.n_funcs + ev.func_codes[rows]
        if ev.n_tids * ev.n_funcs < 2**31:
            group = group.astype(np.int32)
        order = stable_order(group, ev.n_tids * ev.n_funcs)  # by (tid, func), time order inside
        g = group[order]
        del group
        r = rows[order]
        del order, rows
        c = ev.is_call[r]
        depth = _group_cumsum(np.where(c, 1, -1).astype(np.int32), g)
        level = depth + (~c).astype(np.int32)  # a return sits at the level of the call it closes
        del depth
        lo = int(level.min())
        span = int(level.max()) - lo + 1
        if span > 1:  # nested or unbalanced: regroup by (tid, func, level), time order inside
            order2 = stable_order(g * span + (level - lo), ev.n_tids * ev.n_funcs * span)
            g, r, c, level = g[order2], r[order2], c[order2], level[order2]
        same = np.zeros(len(r), dtype=bool)
        same[1:] = (g[1:] == g[:-1]) & (level[1:] == level[:-1]) & c[:-1] & ~c[1:]
        ret_idx = np.flatnonzero(same)
        calls, rets = r[ret_idx - 1], r[ret_idx]
    else:
        calls = rets = np.empty(0, np.int64)
    ret_roles = ev.role_codes[rets]
    for role in roles:
        sel = ret_roles == (ev.role_names.index(role) if role in ev.role_names else -2)
        cr, rr = calls[sel], rets[sel]
        o = np.argsort(rr, kind="stable")
        out[role] = (cr[o], rr[o])
    return out


def _group_cumsum(values: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    """Cumulative sum of ``values`` restarting at every change of ``sorted_keys``."""
    total = np.cumsum(values, dtype=values.dtype)
    starts = np.ones(len(values), dtype=bool)
    starts[1:] = sorted_keys[1:] != sorted_keys[:-1]
    first = np.arange(len(values), dtype=_ROW)
    first[~starts] = 0
    np.maximum.accumulate(first, out=first)  # index of each row's group start
    return total - (total[first] - values[first])


def _asof(sorted_keys: np.ndarray, query_keys: np.ndarray) -> np.ndarray:
    """Index of the last sorted key <= each query key (-1 when none)."""
    return np.searchsorted(sorted_keys, query_keys, side="right") - 1


# --- the analysis ------------------------------------------------------------------------------------------


def analyze(
    capture: Capture,
    since_ns: Optional[int] = None,
    until_ns: Optional[int] = None,
    entry: Optional[int] = None,
    tid: Optional[int] = None,
) -> Analysis:
    """Fault windows, generations and races of ``capture``.

    ``since_ns``/``until_ns`` keep only events in [since, until] before anything is computed. ``entry``/``tid``
    select which windows, generations and races are reported (the event counts stay whole-capture), because a
    generation or race depends on events of every thread.
    """
    df = capture.events
    if since_ns is not None or until_ns is not None:
        ts = df["ts_ns"].to_numpy()
        keep = np.ones(len(df), dtype=bool)
        if since_ns is not None:
            keep &= ts >= since_ns
        if until_ns is not None:
            keep &= ts <= until_ns
        df = df[keep].reset_index(drop=True)
    ev = _Events(df)
    pairs = pair_returns(ev, ("fault", "lookup", "free_cache", "ksm_copy"))

    windows = _windows(ev, pairs["fault"])
    _assign_window_entries(ev, windows, ev.rows("lookup", "call"))
    binds = _bindings(ev, pairs["lookup"])
    counts = {"lookup_hits": int((binds.kind == 0).sum()), "ksm_copies": _ksm_copies(ev, pairs["ksm_copy"])}
    releases = _releases(ev, pairs["free_cache"], binds)
    del pairs  # intermediates go as soon as they are used: peak memory is a goal (<= 2x the table)
    lifecycle = _lifecycle(ev, binds, releases)
    del binds, releases
    generations = lifecycle.generations_frame()
    races = _races(ev, windows, lifecycle)
    del lifecycle

    window_frame = _window_frame(ev, windows, races)
    race_frame = _race_frame(ev, windows, races)
    if entry is not None:
        window_frame = window_frame[window_frame["entry"] == entry]
        generations = generations[generations["entry"] == entry]
        race_frame = race_frame[race_frame["entry"] == entry]
    if tid is not None:
        window_frame = window_frame[window_frame["tid"] == tid]
        race_frame = race_frame[race_frame["tid"] == tid]
    window_frame = window_frame.reset_index(drop=True)
    generations = generations.reset_index(drop=True)
    race_frame = race_frame.reset_index(drop=True)

    summary = _summary(capture, ev, counts, window_frame, generations, race_frame,
                       filters={"since_ns": since_ns, "until_ns": until_ns, "entry": entry, "tid": tid})
    return Analysis(capture=capture, windows=window_frame, generations=generations, races=race_frame,
                    summary=summary)


# --- windows -------------------------------------------------------------------------------------------------


@dataclass
class _Windows:
    call: np.ndarray  # row of the do_swap_page call
    ret: np.ndarray  # row of its return
    tid: np.ndarray
    lookup: np.ndarray  # row of T's first lookup inside the window, -1 when none
    entry: np.ndarray  # uint64 entry of that lookup (0 when none)
    has_entry: np.ndarray


def _windows(ev: _Events, fault_pairs: Tuple[np.ndarray, np.ndarray]) -> _Windows:
    calls, rets = fault_pairs
    order = np.argsort(calls, kind="stable")  # time order of window starts
    calls, rets = calls[order], rets[order]
    n = len(calls)
    return _Windows(calls, rets, ev.tid[calls], np.full(n, -1, np.int64), np.zeros(n, np.uint64),
                    np.zeros(n, bool))


def _assign_window_entries(ev: _Events, w: _Windows, lookup_calls: np.ndarray) -> None:
    """Give each window the entry of its thread's first lookup inside it.

    Window starts and lookups are grouped by thread (radix pass, time order kept); in that sequence the
    window a lookup falls in is the latest window start before it (a running maximum), if it has not ended.
    """
    if len(w.call) == 0 or len(lookup_calls) == 0:
        return
    entries, valid = ev.u64("entry", lookup_calls)
    lookup_calls, entries = lookup_calls[valid], entries[valid]
    rows = np.concatenate([w.call, lookup_calls])
    win_index = np.concatenate([np.arange(len(w.call)), np.full(len(lookup_calls), -1)])
    by_time = np.argsort(rows, kind="stable")  # two sorted runs: a merge
    rows, win_index = rows[by_time], win_index[by_time]
    by_thread = stable_order(ev.tid_code[rows], ev.n_tids)
    rows, win_index = rows[by_thread], win_index[by_thread]
    tcode = ev.tid_code[rows]
    pos = np.arange(len(rows))
    last_start = np.maximum.accumulate(np.where(win_index >= 0, pos, -1))
    is_lookup = win_index < 0
    owner = np.where(last_start >= 0, win_index[np.maximum(last_start, 0)], -1)
    ok = is_lookup & (last_start >= 0)
    ok &= tcode[np.maximum(last_start, 0)] == tcode
    ok &= rows < w.ret[np.maximum(owner, 0)]
    sel = np.flatnonzero(ok)
    owner, lrows = owner[sel], rows[sel]
    first = np.ones(len(sel), bool)
    first[1:] = owner[1:] != owner[:-1]  # lookups of one window are consecutive here: keep the earliest
    owner, lrows = owner[first], lrows[first]
    w.lookup[owner] = lrows
    w.entry[owner] = ev.u64("entry", lrows)[0]
    w.has_entry[owner] = True


# --- bindings, releases, generations -----------------------------------------------------------------------


@dataclass
class _Binds:
    row: np.ndarray
    entry: np.ndarray
    folio: np.ndarray
    kind: np.ndarray  # index into BIND_KINDS


def _bindings(ev: _Events, lookup_pairs: Tuple[np.ndarray, np.ndarray]) -> _Binds:
    calls, rets = lookup_pairs
    entry, e_ok = ev.u64("entry", calls)
    folio, f_ok = ev.u64("retval", rets)
    hit = e_ok & f_ok & (folio != 0) & (folio < ERR_PTR_MIN)
    add_rows = ev.rows("cache_add", "call")
    add_entry, ae_ok = ev.u64("entry", add_rows)
    add_folio, af_ok = ev.u64("folio", add_rows)
    add_ok = ae_ok & af_ok
    row = np.concatenate([rets[hit], add_rows[add_ok]])
    order = np.argsort(row, kind="stable")
    return _Binds(
        row=row[order],
        entry=np.concatenate([entry[hit], add_entry[add_ok]])[order],
        folio=np.concatenate([folio[hit], add_folio[add_ok]])[order],
        kind=np.concatenate([np.zeros(int(hit.sum()), np.int8), np.ones(int(add_ok.sum()), np.int8)])[order],
    )


@dataclass
class _Releases:
    row: np.ndarray
    entry: np.ndarray
    kind: np.ndarray  # index into RELEASE_KINDS
    unresolved: int  # folio releases whose folio had no current binding


def _releases(ev: _Events, free_pairs: Tuple[np.ndarray, np.ndarray], binds: _Binds) -> _Releases:
    # free_cache returns true: its folio (from the paired call) leaves the swap cache and frees its entry.
    # bool/int return: only the low byte is meaningful in the register.
    fc_calls, fc_rets = free_pairs
    fc_ret, fc_ret_ok = ev.u64("retval", fc_rets)
    fc_folio, fc_folio_ok = ev.u64("folio", fc_calls)
    freed = fc_ret_ok & fc_folio_ok & ((fc_ret & np.uint64(0xFF)) != 0)
    # A call that also carries the entry (the live tracer reads folio->swap.val) names it directly.
    fc_entry, fc_entry_ok = ev.u64("entry", fc_calls)
    fc_direct = freed & fc_entry_ok
    freed &= ~fc_entry_ok
    del_rows = ev.rows("cache_delete", "call")
    del_folio, del_folio_ok = ev.u64("folio", del_rows)
    del_entry, del_entry_ok = ev.u64("entry", del_rows)
    by_folio_rows = np.concatenate([fc_rets[freed], del_rows[~del_entry_ok & del_folio_ok]])
    by_folio = np.concatenate([fc_folio[freed], del_folio[~del_entry_ok & del_folio_ok]])
    by_folio_kind = np.concatenate([np.zeros(int(freed.sum()), np.int8),
                                    np.ones(int((~del_entry_ok & del_folio_ok).sum()), np.int8)])
    mapped_entry, mapped_ok = _entry_of_folio(ev.n, binds, by_folio_rows, by_folio)

    slot_rows = ev.rows("slot_free", "call")
    slot_entry, slot_ok = ev.u64("entry", slot_rows)
    row = np.concatenate([by_folio_rows[mapped_ok], fc_rets[fc_direct], del_rows[del_entry_ok],
                          slot_rows[slot_ok]])
    entry = np.concatenate([mapped_entry[mapped_ok], fc_entry[fc_direct], del_entry[del_entry_ok],
                            slot_entry[slot_ok]])
    kind = np.concatenate([by_folio_kind[mapped_ok], np.zeros(int(fc_direct.sum()), np.int8),
                           np.ones(int(del_entry_ok.sum()), np.int8), np.full(int(slot_ok.sum()), 2, np.int8)])
    order = np.argsort(row, kind="stable")
    return _Releases(row[order], entry[order], kind[order], int((~mapped_ok).sum()))


def _entry_of_folio(n_rows: int, binds: _Binds, rows: np.ndarray, folios: np.ndarray):
    """The entry each (row, folio) is bound to: the folio's latest binding before ``row``, if that binding is
    also its entry's latest binding (the entry was not bound to another folio since)."""
    out = np.zeros(len(rows), np.uint64)
    ok = np.zeros(len(rows), bool)
    if len(rows) == 0 or len(binds.row) == 0:
        return out, ok
    span = np.int64(n_rows + 1)
    codes, uniq = pd.factorize(np.concatenate([binds.folio, folios]))
    b_code, q_code = codes[: len(binds.row)].astype(np.int64), codes[len(binds.row):].astype(np.int64)
    b_key = b_code * span + binds.row
    by_folio = stable_order(b_code, len(uniq))  # binds are in row order: a stable sort by folio suffices
    idx = _asof(b_key[by_folio], q_code * span + rows)
    idx_c = np.where(idx >= 0, idx, 0)
    hit = (idx >= 0) & (b_code[by_folio][idx_c] == q_code)
    bind = by_folio[idx_c]  # index into binds
    # Next binding row of the same entry, for every binding.
    e_codes, e_uniq = pd.factorize(binds.entry)
    by_entry = stable_order(e_codes, len(e_uniq))
    next_row = np.full(len(binds.row), np.iinfo(np.int64).max, np.int64)
    se = e_codes[by_entry]
    same = se[1:] == se[:-1]
    next_row[by_entry[:-1][same]] = binds.row[by_entry[1:][same]]
    hit &= next_row[bind] > rows
    out[hit] = binds.entry[bind[hit]]
    ok[:] = hit
    return out, ok


@dataclass
class _Lifecycle:
    """Per-entry bind/release events in (entry, row) order, with generation boundaries."""

    ev: _Events
    entry: np.ndarray
    row: np.ndarray
    is_bind: np.ndarray
    kind: np.ndarray  # bind: index into BIND_KINDS; release: index into RELEASE_KINDS
    folio: np.ndarray
    code: np.ndarray  # dense entry code (sorted groups)
    starts: np.ndarray  # event starts a generation
    ends: np.ndarray  # event ends a generation
    gen_global: np.ndarray  # global generation id of each event (cumsum of starts - 1)
    gen_first_global: np.ndarray  # per entry code: global id of its generation 0

    def generations_frame(self) -> pd.DataFrame:
        s = np.flatnonzero(self.starts)
        gid = self.gen_global[s]
        n = len(s)
        release_row = np.full(n, -1, np.int64)
        release_kind = np.full(n, -1, np.int8)
        e = np.flatnonzero(self.ends)
        release_row[self.gen_global[e]] = self.row[e]
        release_kind[self.gen_global[e]] = self.kind[e]
        bound = self.is_bind[s]
        ts = self.ev.ts
        frame = pd.DataFrame({
            "entry": pd.array(self.entry[s], dtype="UInt64"),
            "generation": (gid - self.gen_first_global[self.code[s]]).astype(np.int64),
            "bind_ns": pd.array(np.where(bound, ts[self.row[s]], 0), dtype="Int64"),
            "folio": pd.array(np.where(bound, self.folio[s], 0), dtype="UInt64"),
            "bind_kind": pd.Categorical.from_codes(np.where(bound, self.kind[s], -1), categories=BIND_KINDS),
            "release_ns": pd.array(np.where(release_row >= 0, ts[np.maximum(release_row, 0)], 0),
                                   dtype="Int64"),
            "release_kind": pd.Categorical.from_codes(release_kind, categories=RELEASE_KINDS),
        })
        frame.loc[~bound, ["bind_ns", "folio"]] = pd.NA
        frame.loc[release_row < 0, "release_ns"] = pd.NA
        return frame

    @property
    def reuses(self) -> int:
        """Generations started by a binding after a release."""
        return int((self.starts & self.is_bind & (self.gen_global > self.gen_first_global[self.code])).sum())


def _lifecycle(ev: _Events, binds: _Binds, rel: _Releases) -> _Lifecycle:
    entry = np.concatenate([binds.entry, rel.entry])
    row = np.concatenate([binds.row, rel.row])
    is_bind = np.concatenate([np.ones(len(binds.row), bool), np.zeros(len(rel.row), bool)])
    kind = np.concatenate([binds.kind, rel.kind])
    folio = np.concatenate([binds.folio, np.zeros(len(rel.row), np.uint64)])
    by_row = np.argsort(row, kind="stable")  # sorted runs (binds, releases): timsort merges them
    entry, row, is_bind, kind, folio = (a[by_row] for a in (entry, row, is_bind, kind, folio))
    codes, uniq = pd.factorize(entry)
    order = stable_order(codes, len(uniq))  # by entry, row order inside (radix passes)
    entry, row, is_bind, kind, folio, codes = (a[order] for a in (entry, row, is_bind, kind, folio, codes))
    # Re-number entry codes densely in sorted order so generations of one entry have consecutive ids.
    first = np.ones(len(row), bool)
    first[1:] = codes[1:] != codes[:-1]
    code = np.cumsum(first) - 1
    prev_bind = np.zeros(len(row), bool)
    prev_bind[1:] = is_bind[:-1]
    starts = np.where(first, True, is_bind & ~prev_bind)  # first event always opens (maybe implicit) gen
    ends = ~is_bind & (first | prev_bind)
    gen_global = np.cumsum(starts) - 1
    gen_first_global = gen_global[first]
    return _Lifecycle(ev, entry, row, is_bind, kind, folio, code, starts, ends, gen_global, gen_first_global)


# --- races -----------------------------------------------------------------------------------------------------


@dataclass
class _Races:
    window: np.ndarray  # index into windows
    release_row: np.ndarray
    rebind_row: np.ndarray
    install_row: np.ndarray  # -1 when none
    stale: np.ndarray


def _races(ev: _Events, w: _Windows, lc: _Lifecycle) -> _Races:
    empty = _Races(*(np.empty(0, np.int64) for _ in range(4)), np.empty(0, bool))
    cand = np.flatnonzero(w.has_entry)
    if len(cand) == 0 or len(lc.row) == 0:
        return empty
    # Entry code of each candidate window (entries never bound/released cannot race).
    starts_idx = np.flatnonzero(lc.starts & np.r_[True, lc.code[1:] != lc.code[:-1]])  # first event per code
    code_entries = lc.entry[starts_idx]
    sorter = np.argsort(code_entries)
    pos = np.searchsorted(code_entries[sorter], w.entry[cand])
    pos_c = np.minimum(pos, len(sorter) - 1)
    known = code_entries[sorter][pos_c] == w.entry[cand]
    cand = cand[known]
    wcode = sorter[pos_c[known]].astype(np.int64)
    span = np.int64(ev.n + 1)
    end_idx = np.flatnonzero(lc.ends)  # already in (code, row) order
    end_keys = lc.code[end_idx] * span + lc.row[end_idx]
    nxt = np.searchsorted(end_keys, wcode * span + w.lookup[cand], side="right")  # first release after lookup
    nxt_c = np.minimum(nxt, max(len(end_idx) - 1, 0))
    if len(end_idx) == 0:
        return empty
    rel = end_idx[nxt_c]
    ok = (nxt < len(end_idx)) & (lc.code[rel] == wcode) & (lc.row[rel] < w.ret[cand])
    # The generation after the released one must start (a rebind) before the window ends.
    gen_next = lc.gen_global[rel] + 1
    start_idx = np.flatnonzero(lc.starts)
    gen_next_c = np.minimum(gen_next, len(start_idx) - 1)
    reb = start_idx[gen_next_c]
    ok &= (gen_next < len(start_idx)) & (lc.code[reb] == wcode) & (lc.row[reb] < w.ret[cand])
    cand, rel, reb = cand[ok], rel[ok], reb[ok]
    # A fault that already installed E (its swap_put) before the release is done with E: what happens to E
    # afterwards -- do_swap_page's own folio_free_swap under vm_swap_full(), then a reuse -- is not a race.
    done = _first_install(ev, w, cand, w.lookup[cand])
    before = (done < 0) | (done > lc.row[rel])
    cand, rel, reb = cand[before], rel[before], reb[before]
    install = _first_install(ev, w, cand, lc.row[reb])
    return _Races(cand, lc.row[rel], lc.row[reb], install, install >= 0)


def _first_install(ev: _Events, w: _Windows, cand: np.ndarray, after_rows: np.ndarray) -> np.ndarray:
    """Row of the window thread's first swap_put of the window's entry after ``after_rows`` (-1: none)."""
    out = np.full(len(cand), -1, np.int64)
    puts = ev.rows("swap_put", "call")
    if len(cand) == 0 or len(puts) == 0:
        return out
    put_entry, ok = ev.u64("entry", puts)
    puts, put_entry = puts[ok], put_entry[ok]
    keep = np.isin(ev.tid[puts], w.tid[cand]) & np.isin(put_entry, w.entry[cand])
    puts, put_entry = puts[keep], put_entry[keep]
    for i, (win, after) in enumerate(zip(cand, after_rows)):  # races are rare: a loop over races, not events
        hit = puts[(ev.tid[puts] == w.tid[win]) & (put_entry == w.entry[win]) & (puts > after) & (puts < w.ret[win])]
        if len(hit):
            out[i] = hit[0]
    return out


# --- frames and summary -------------------------------------------------------------------------------------


def outcome_codes(retval: np.ndarray) -> np.ndarray:
    """Index into OUTCOMES for each do_swap_page vm_fault_t."""
    r = retval.astype(np.uint64)
    out = np.zeros(len(r), np.int8)
    out[(r & np.uint64(VM_FAULT_MAJOR)) != 0] = 1
    out[(r & np.uint64(VM_FAULT_ERROR_BITS)) != 0] = 3
    out[(r & np.uint64(VM_FAULT_RETRY)) != 0] = 2  # a retried fault says nothing else yet
    return out


def _window_frame(ev: _Events, w: _Windows, races: _Races) -> pd.DataFrame:
    df = ev.df
    calls = w.call
    retval, _ = ev.u64("retval", w.ret)
    race_code = np.full(len(calls), -1, np.int8)
    race_code[races.window] = races.stale.astype(np.int8)
    frame = pd.DataFrame({
        "tid": df["tid"].to_numpy()[calls],
        "pid": df["pid"].to_numpy()[calls],
        "comm": df["comm"].iloc[calls].reset_index(drop=True),
        "cpu": df["cpu"].to_numpy()[calls],
        "start_ns": ev.ts[calls],
        "end_ns": ev.ts[w.ret],
        "duration_ns": ev.ts[w.ret] - ev.ts[calls],
        "entry": pd.arrays.IntegerArray(w.entry.copy(), ~w.has_entry),
        "retval": pd.array(retval, dtype="UInt64"),
        "outcome": pd.Categorical.from_codes(outcome_codes(retval), categories=OUTCOMES),
        "race_class": pd.Categorical.from_codes(race_code, categories=RACE_CLASSES),
    })
    order = np.argsort(calls, kind="stable")  # report windows in time order
    return frame.iloc[order].reset_index(drop=True)


RACE_COLUMNS = ("entry", "tid", "window_start_ns", "window_end_ns", "release_ns", "rebind_ns", "class",
                "install_ns")


def _race_frame(ev: _Events, w: _Windows, races: _Races) -> pd.DataFrame:
    win = races.window
    order = np.argsort(w.call[win], kind="stable")
    win = win[order]
    install = races.install_row[order]
    frame = pd.DataFrame({
        "entry": pd.array(w.entry[win], dtype="UInt64"),
        "tid": ev.df["tid"].to_numpy()[w.call[win]],
        "window_start_ns": ev.ts[w.call[win]],
        "window_end_ns": ev.ts[w.ret[win]],
        "release_ns": ev.ts[races.release_row[order]],
        "rebind_ns": ev.ts[races.rebind_row[order]],
        "class": pd.Categorical.from_codes(races.stale[order].astype(np.int8), categories=RACE_CLASSES),
        "install_ns": pd.array(np.where(install >= 0, ev.ts[np.maximum(install, 0)], 0), dtype="Int64"),
    })
    frame.loc[install < 0, "install_ns"] = pd.NA
    return frame


def _ksm_copies(ev: _Events, ksm_pairs: Tuple[np.ndarray, np.ndarray]) -> int:
    """ksm_might_need_to_copy returns that differ from their argument and are neither NULL nor ERR_PTR."""
    ksm_calls, ksm_rets = ksm_pairs
    ksm_in, in_ok = ev.u64("folio", ksm_calls)
    ksm_out, out_ok = ev.u64("retval", ksm_rets)
    return int((in_ok & out_ok & (ksm_out != ksm_in) & (ksm_out != 0) & (ksm_out < ERR_PTR_MIN)).sum())


def _summary(capture: Capture, ev: _Events, counts: Dict[str, int], windows: pd.DataFrame,
             generations: pd.DataFrame, races: pd.DataFrame, filters: Dict[str, Any]) -> Dict[str, Any]:
    df = ev.df
    by_function: Dict[str, Dict[str, int]] = {}
    if ev.n:
        per_func = np.bincount(ev.func_codes.astype(np.int64) * 2 + (~ev.is_call), minlength=2 * ev.n_funcs)
        for name, (n_call, n_ret) in zip(ev.func_names, per_func.reshape(-1, 2)):
            if n_call or n_ret:
                by_function[name] = {"call": int(n_call), "return": int(n_ret)}
    entry_col = df["entry"].array  # masked UInt64: count distinct non-null values without a copy of it all
    entries = len(pd.unique(np.asarray(entry_col._data)[~np.asarray(entry_col._mask)]))  # noqa: SLF001
    race_list = [_race_record(rec) for rec in races.to_dict("records")]
    meta = capture.meta
    return {
        "events": int(ev.n),
        "skipped_lines": int(capture.skipped_lines),
        "by_function": by_function,
        "windows": int(len(windows)),
        "windows_with_entry": int(windows["entry"].notna().sum()),
        "lookup_hits": counts["lookup_hits"],
        "entries": int(entries),
        "ksm_copies": counts["ksm_copies"],
        "reuses": int((generations["generation"] > 0).sum()),
        "races": race_list,
        "race_classes": {c: int((races["class"] == c).sum()) for c in RACE_CLASSES},
        "outcomes": {o: int((windows["outcome"] == o).sum()) for o in OUTCOMES},
        "lost_events": meta.lost_events,
        "lost": dict(meta.lost),
        "kernel_release": meta.kernel_release,
        "backend": meta.backend,
        "symbols": dict(meta.symbols),
        "source_format": capture.source_format,
        "filters": {k: v for k, v in filters.items() if v is not None},
        "time_range_ns": [int(ev.ts[0]), int(ev.ts[-1])] if ev.n else None,
    }


def _race_record(rec: Dict[str, Any]) -> Dict[str, Any]:
    """One races-table row as plain JSON values."""
    out: Dict[str, Any] = {}
    for key, value in rec.items():
        if key == "class":
            out[key] = str(value)
        elif value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
            out[key] = None
        else:
            out[key] = int(value)
    return out

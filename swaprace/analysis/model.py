"""The offline analysis: a swap entry's life is its slot's life.

This docstring is the specification. The offline model (this module), the in-kernel detector
(``swaprace/probes/swaprace.bpf.c``) and the simulated kernel of the tests all use it. The simulated kernel is
the oracle, and it knows nothing of these rules. Where the kernel decides, the function and commit are named.

The race (4969c1192d15 "mm: fix swapin race condition", 31c4a3d3a0f8, and 13ddaf26be32 "mm/swap: fix race when
skipping swapcache") goes like this. ``do_swap_page()`` reads a pte holding swap entry E, gets a page for E,
locks it, and checks ``pte_same(orig_pte)`` under the page-table lock. Meanwhile E's *slot* can be freed (its
swap count reached zero, so no pte holds E any more) and allocated again for other data, which a pte can then
hold again. When that happens, the check passes on data that is no longer E's. A swap-cache eviction or
re-read of E is not that: the slot and its data stay.

* **Order.** Events are ordered by ``ts_ns``. Events with equal timestamps keep their input order, so the row
  number of the sorted table is the order. A return pairs with the latest unmatched call of the same
  function on the same thread.
* **Ranges.** An event with ``nr`` > 1 (a large folio: ``swap_free_nr``, ``free_swap_and_cache_nr``,
  ``__swap_cluster_free_entries``, a cache op on a large folio) applies to each of ``entry .. entry+nr-1``.
* **Generation of E = the life of its slot.**
  * It begins when the slot is allocated: ``slot_alloc`` carrying E. That is ``folio_alloc_swap``'s returned
    entry on 6.1, or ``__swap_cache_add_folio``'s entry on 7.x, whose only caller is the allocator. Where no
    allocator is probed at all, the first ``cache_add`` of E while E is free begins it instead.
  * It ends when the count reaches zero: ``slot_free`` (6.1 ``free_swap_slot``, called by
    ``__swap_entry_free``, ``put_swap_folio`` and ``swapcache_clear`` when the usage hits 0; 7.x
    ``__swap_cluster_free_entries``).
  * A ``free_cache`` (``folio_free_swap``/``try_to_free_swap``) that returns true also ends it. It succeeds
    only when no pte holds E, and its cache delete drops the last reference. If the slot free inside it was
    seen already, it confirms that free.
  * An entry whose first event is a free had a generation that began before the capture.
  * A **reuse** is a generation that begins after a free of the same entry: a slot reallocation.
  * A **gap** is an allocation of a live slot, or a second ``slot_free`` of a free slot. It means the history
    of that entry lost events.
* **Cache residency** is a separate, inner lifecycle: folio ↔ entry bindings inside a generation.
  * A binding begins with ``cache_add`` (folio, E) or a ``lookup`` that returned a folio for E.
  * It ends with ``cache_delete`` or ``free_cache`` true.
  * An **eviction** is a residency end after which the slot stays allocated. The next event on E is not a
    slot free by the same thread. In reclaim, ``__remove_mapping`` → ``__delete_from_swap_cache`` →
    ``put_swap_folio`` keeps a slot that a pte still holds.
  * A **re-read** is a ``cache_add`` of E inside a generation that already had a residency.
  * Evictions and re-reads are counted. They are never reuses.
* **Fault window** W: a paired ``fault`` call/return of thread T. Its entry E is that of T's first
  ``lookup`` call in W (``swap_cache_get_folio(entry)`` is do_swap_page's first look at E).
  T **obtained its page** for E at the first of these, in W:
  * the return of that lookup with a folio (a hit);
  * after a miss, T's own ``cache_add`` of E (``__read_swap_cache_async`` → ``add_to_swap_cache``;
    7.x ``__swap_cache_do_add_folio``);
  * after a miss, T's ``swap_read`` of E. On the SWP_SYNCHRONOUS_IO skip-swapcache path, 6.1's
    ``swap_readpage`` reads E into a private folio that never enters the cache.

  T **installs** E at its first ``swap_put`` covering E in W after it obtained the page. On 6.1 that is
  ``swap_free(entry)`` right before ``set_pte_at``; on 7.x it is ``folio_put_swap(folio, page)``.
* **Race** in W: after T obtained its page and before T installs (or before W ends when T never installs), E's
  slot is freed and then allocated again (a reuse of E). On the skip-swapcache path the window opens at the
  fault's start instead: T's ``orig_pte`` was read before ``do_swap_page``, and its read of the slot does not
  go through SWAP_HAS_CACHE (no swapcache_prepare without 13ddaf26be32), so it reads whichever generation's
  data the slot then holds -- nothing at all yet, when the slot was allocated again between T's pte read and
  its lookup and the new data is still on its way to the device (found by the simulated kernel). Classes:
  * ``stale-install``: T installs E with data that is not E's current data. That data came from a private
    read (skip-swapcache path) made before the reallocation, from a KSM copy (``ksm_might_need_to_copy``
    returning a new folio) made before the reallocation, or from a folio not bound to E in the new
    generation when T installed or copied it.
  * ``benign``: T installs the folio bound to E in its new generation (live data). This is the case where the
    fixed kernel's ``folio_test_swapcache && page_private == entry`` check passes. On the skip-swapcache path,
    a private read made after the reallocation is live data only if the new generation's data had been
    written to the slot (``swap_write`` of E returned 0) before T's read; otherwise T read a slot whose new data
    still sat in the swap cache. A capture without the ``swap_write`` role cannot tell: such a race is classed
    stale-install and marked uncertain.
  * ``recovered``: T never installs E in W. Its ``pte_same`` check, the 4969c1192d15 swap-cache check, or
    the 13ddaf26be32 ``swapcache_prepare`` failure made it back out.
* **uncertain**: a race is marked ``uncertain`` when its window overlaps a lost-event interval, or the capture
  lost events it cannot place, or its entry's history has a gap. It is never silently classed.
* **prepare** (``swapcache_prepare``, 13ddaf26be32):
  * A failure (``-EEXIST``) means the thread must back out. An install of E in the same window after a failed
    prepare of E is counted as ``installs_after_failed_prepare``.
  * A successful prepare takes SWAP_HAS_CACHE. The flag is held until ``prepare_clear``
    (``swapcache_clear``), a ``cache_delete`` of E, or a free of E's slot.
  * Two successful prepares of E while the flag is held mean the 2024 guard is not working. They are
    counted as ``prepare_conflicts``.

Per-event work is column-wise: numpy ``searchsorted`` over composite sort keys. A Python loop runs only over
races, which are rare.

**The in-kernel detector** (``swaprace/probes/swaprace.bpf.c``) follows these rules event by event, with these
deviations; each is counted where it can happen, and the file's header says why:
* An event covering more than 64 entries updates only the first 64 (``nr_truncated``; a larger bound made the
  6.1 verifier refuse the program).
* It needs a probed allocator: no first-cache-add fallback.
* It does not count evictions.
* It keeps four free/allocation steps per entry; a window that saw more is marked uncertain.
* A returning fault drops the stale windows below it on the thread's stack (lost returns, counted).
* What the LRU maps forgot is reported as a lower bound.
* For a skip-path read after a reallocation it keeps only the generation's first completed ``swap_write`` of
  the slot (offline: any write between the reallocation and the read).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pandas as pd

from swaprace.events import Capture
from swaprace.kernel.catalog import returns_entry

RACE_CLASSES = ("recovered", "benign", "stale-install")
OBTAIN_KINDS = ("lookup", "cache_add", "read")
ALLOC_KINDS = ("slot_alloc", "cache_add")  # what began a generation (null: before the capture)
FREE_KINDS = ("slot_free", "free_cache")
BIND_KINDS = ("lookup", "cache_add")
UNBIND_KINDS = ("cache_delete", "free_cache")
#: swapcache_prepare's -EEXIST as the low 32 bits of its return register (int return).
_EEXIST = np.uint64((1 << 32) - 17)
#: Row numbers are int32 (captures up to 2**31 events): half the memory of int64 on the hot arrays.
_ROW = np.int32
_NONE = -1


@dataclass
class Analysis:
    """Everything :func:`analyze` found in one capture (DataFrame shapes are the contract for reports)."""

    capture: Capture
    windows: pd.DataFrame  # tid pid comm cpu start_ns end_ns duration_ns entry retval outcome obtain_ns
    #                        obtain_kind install_ns race_class
    generations: pd.DataFrame  # entry generation alloc_ns alloc_kind alloc_tid free_ns free_kind free_tid
    residency: pd.DataFrame  # entry folio bind_ns bind_kind unbind_ns unbind_kind eviction reread
    races: pd.DataFrame  # see RACE_COLUMNS
    summary: Dict[str, Any]  # exactly the `swaprace analyze --json` object


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
        self._u64: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}

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
        cached = self._u64.get(column)
        if cached is None:
            if column in self.df.columns:
                col = self.df[column]
                cached = (col.to_numpy(dtype="uint64", na_value=0), ~col.isna().to_numpy())
            else:  # an older capture without the column: all null
                cached = (np.zeros(self.n, np.uint64), np.zeros(self.n, bool))
            self._u64[column] = cached
        data, valid = cached
        return data[rows], valid[rows]

    def nr(self, rows: np.ndarray) -> np.ndarray:
        """How many entries each event covers (``nr``; 1 where the function has none)."""
        values, valid = self.u64("nr", rows)
        return np.where(valid & (values > 1), values, 1).astype(np.int64)


def _role_probed(capture: Capture, ev: _Events, role: str) -> bool:
    """Whether the recorder probed ``role``: named in the capture's symbols, or seen in its events (a capture
    without metadata)."""
    return role in capture.meta.symbols or len(ev.rows(role)) > 0


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
    """Fault windows, slot generations, cache residency and races of ``capture``.

    ``since_ns``/``until_ns`` keep only events in [since, until] before anything is computed. ``entry``/``tid``
    select which windows, generations, residencies and races are reported (the counts stay whole-capture),
    because an entry's life depends on events of every thread.
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
    pairs = pair_returns(ev, ("fault", "lookup", "free_cache", "ksm_copy", "slot_alloc", "prepare", "swap_write"))

    windows = _windows(ev, pairs["fault"])
    _assign_window_entries(ev, windows, ev.rows("lookup", "call"))
    binds = _binds(ev, pairs["lookup"])
    unbinds = _unbinds(ev, pairs["free_cache"], binds)
    allocator_probed = _role_probed(capture, ev, "slot_alloc")
    life = _generations(ev, pairs["slot_alloc"], pairs["free_cache"], binds, unbinds, allocator_probed)
    res = _residency(ev, binds, unbinds, life)
    _obtain_and_install(ev, windows, pairs["lookup"], pairs["ksm_copy"])
    races = _races(ev, windows, life)
    lost = _LossMap(capture, ev)
    _classify(ev, windows, races, res, life, lost,
              _Writes(ev, pairs["swap_write"], _role_probed(capture, ev, "swap_write")))
    prepare = _prepare_stats(ev, windows, pairs["prepare"], unbinds, life)

    window_frame = _window_frame(ev, windows, races)
    race_frame = _race_frame(ev, windows, races)
    generations = life.frame(ev)
    residency = res.frame(ev)
    if entry is not None:
        window_frame = window_frame[window_frame["entry"] == entry]
        generations = generations[generations["entry"] == entry]
        residency = residency[residency["entry"] == entry]
        race_frame = race_frame[race_frame["entry"] == entry]
    if tid is not None:
        window_frame = window_frame[window_frame["tid"] == tid]
        race_frame = race_frame[race_frame["tid"] == tid]
    frames = [f.reset_index(drop=True) for f in (window_frame, generations, residency, race_frame)]
    window_frame, generations, residency, race_frame = frames

    counts = {
        "lookup_hits": int(binds.from_lookup.sum()),
        "ksm_copies": _ksm_copies(ev, pairs["ksm_copy"]),
        "reuses": life.reuses,
        "gaps": int(len(life.gap_entries)),
        "allocator_probed": bool(allocator_probed),
        "evictions": res.evictions,
        "rereads": res.rereads,
        "cache_adds": int((binds.kind == 1).sum()),
        "cache_deletes": int((unbinds.kind == 0).sum()),
        "unresolved_unbinds": unbinds.unresolved,
        "prepare": prepare,
    }
    summary = _summary(capture, ev, counts, window_frame, generations, race_frame, lost,
                       filters={"since_ns": since_ns, "until_ns": until_ns, "entry": entry, "tid": tid})
    return Analysis(capture=capture, windows=window_frame, generations=generations, residency=residency,
                    races=race_frame, summary=summary)


# --- entry-keyed event streams ---------------------------------------------------------------------------


def _expand(rows: np.ndarray, entries: np.ndarray, nr: np.ndarray, *others: np.ndarray):
    """One item per covered entry: an event over ``nr`` entries becomes ``entry .. entry+nr-1``."""
    if len(nr) == 0 or int(nr.max(initial=1)) <= 1:
        return (rows, entries) + others
    rep = np.maximum(nr, 1)
    first = np.repeat(np.cumsum(rep) - rep, rep)
    offset = (np.arange(int(rep.sum())) - first).astype(np.uint64)
    return (np.repeat(rows, rep), np.repeat(entries, rep) + offset) + tuple(np.repeat(o, rep) for o in others)


def _entry_calls(ev: _Events, role: str) -> Tuple[np.ndarray, np.ndarray]:
    """(rows, entries) of ``role``'s call events that carry an entry, expanded over ``nr``."""
    rows = ev.rows(role, "call")
    entries, ok = ev.u64("entry", rows)
    rows, entries = rows[ok], entries[ok]
    return _expand(rows.astype(np.int64), entries, ev.nr(rows))


def _is_folio(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    return valid & (values != 0) & (values < ERR_PTR_MIN)


def _entry_codes(*entry_arrays: np.ndarray) -> Tuple[List[np.ndarray], np.ndarray]:
    """Dense codes of uint64 entries shared across arrays (sorted by entry value), and the unique entries."""
    allv = np.concatenate(entry_arrays) if entry_arrays else np.empty(0, np.uint64)
    uniq = np.unique(allv)
    out, start = [], 0
    codes = np.searchsorted(uniq, allv).astype(np.int64)
    for arr in entry_arrays:
        out.append(codes[start:start + len(arr)])
        start += len(arr)
    return out, uniq


def _first_after(key_sorted: np.ndarray, order: np.ndarray, span: int, q_code: np.ndarray, after: np.ndarray,
                 before: np.ndarray) -> np.ndarray:
    """Index (into the unsorted stream) of the first item of group ``q_code`` with after < row < before."""
    out = np.full(len(q_code), _NONE, np.int64)
    if len(key_sorted) == 0 or len(q_code) == 0:
        return out
    pos = np.searchsorted(key_sorted, q_code * span + after, side="right")
    pos_c = np.minimum(pos, len(key_sorted) - 1)
    hit_key = key_sorted[pos_c]
    ok = (pos < len(key_sorted)) & (hit_key // span == q_code) & (hit_key % span < before)
    out[ok] = order[pos_c[ok]]
    return out


class _Keyed:
    """Events grouped by (thread, entry) for "the first of T's events on E after row a, before row b"."""

    def __init__(self, rows: np.ndarray, tids: np.ndarray, entries: np.ndarray, span: int):
        self.rows, self.span = rows.astype(np.int64), span
        self.tids, self.entries = tids.astype(np.int64), entries.astype(np.uint64)

    def first(self, q_tid: np.ndarray, q_entry: np.ndarray, after: np.ndarray, before: np.ndarray) -> np.ndarray:
        """Stream index of the first event with the query's (tid, entry) in (after, before), or -1."""
        out = np.full(len(q_tid), _NONE, np.int64)
        if len(self.rows) == 0 or len(q_tid) == 0:
            return out
        (e_stream, e_query), _ = _entry_codes(self.entries, q_entry.astype(np.uint64))
        t_all = np.concatenate([self.tids, q_tid.astype(np.int64)])
        t_codes, _ = pd.factorize(t_all)
        n_e = int(max(e_stream.max(initial=0), e_query.max(initial=0))) + 1
        pair = t_codes.astype(np.int64) * n_e + np.concatenate([e_stream, e_query])
        codes, _ = pd.factorize(pair)
        s_code, q_code = codes[: len(self.rows)].astype(np.int64), codes[len(self.rows):].astype(np.int64)
        keys = s_code * self.span + self.rows
        order = np.argsort(keys, kind="stable")
        return _first_after(keys[order], order, self.span, q_code, after.astype(np.int64),
                            before.astype(np.int64))


# --- cache residency events ----------------------------------------------------------------------------------


@dataclass
class _BindEvents:
    row: np.ndarray
    entry: np.ndarray
    folio: np.ndarray
    tid: np.ndarray
    kind: np.ndarray  # index into BIND_KINDS

    @property
    def from_lookup(self) -> np.ndarray:
        return self.kind == 0


def _binds(ev: _Events, lookup_pairs: Tuple[np.ndarray, np.ndarray]) -> _BindEvents:
    """Folio <-> entry bindings: lookup returns with a folio, cache_add calls (over their nr entries)."""
    calls, rets = lookup_pairs
    entry, e_ok = ev.u64("entry", calls)
    folio, f_ok = ev.u64("retval", rets)
    hit = e_ok & _is_folio(folio, f_ok)
    add_rows = ev.rows("cache_add", "call")
    add_entry, ae_ok = ev.u64("entry", add_rows)
    add_folio, af_ok = ev.u64("folio", add_rows)
    add_ok = ae_ok & af_ok
    a_rows, a_entry, a_folio = _expand(add_rows[add_ok].astype(np.int64), add_entry[add_ok],
                                       ev.nr(add_rows[add_ok]), add_folio[add_ok])
    row = np.concatenate([rets[hit].astype(np.int64), a_rows])
    order = np.argsort(row, kind="stable")
    row = row[order]
    return _BindEvents(row=row, entry=np.concatenate([entry[hit], a_entry])[order],
                       folio=np.concatenate([folio[hit], a_folio])[order], tid=ev.tid[row],
                       kind=np.concatenate([np.zeros(int(hit.sum()), np.int8),
                                            np.ones(len(a_rows), np.int8)])[order])


@dataclass
class _UnbindEvents:
    row: np.ndarray
    entry: np.ndarray
    kind: np.ndarray  # index into UNBIND_KINDS
    unresolved: int  # folio-only unbinds whose folio had no current binding


def _free_cache_true(ev: _Events, free_pairs: Tuple[np.ndarray, np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
    """(call rows, return rows) of free_cache calls that returned true (bool/int: the low byte)."""
    calls, rets = free_pairs
    ret, ok = ev.u64("retval", rets)
    freed = ok & ((ret & np.uint64(0xFF)) != 0)
    return calls[freed].astype(np.int64), rets[freed].astype(np.int64)


def _unbinds(ev: _Events, free_pairs: Tuple[np.ndarray, np.ndarray], binds: _BindEvents) -> _UnbindEvents:
    """Residency ends: cache_delete calls, and free_cache returns that are true (at the return: that is when
    the kernel has deleted the folio). An event without an entry is resolved through its folio's binding."""
    del_rows = ev.rows("cache_delete", "call").astype(np.int64)
    fc_calls, fc_rets = _free_cache_true(ev, free_pairs)
    rows = np.concatenate([del_rows, fc_rets])
    src = np.concatenate([del_rows, fc_calls])  # the event that carries entry/folio
    kind = np.concatenate([np.zeros(len(del_rows), np.int8), np.ones(len(fc_rets), np.int8)])
    entry, e_ok = ev.u64("entry", src)
    folio, f_ok = ev.u64("folio", src)
    need = ~e_ok & f_ok
    mapped, mapped_ok = _entry_of_folio(ev.n, binds, rows[need], folio[need])
    entry = entry.copy()
    entry[np.flatnonzero(need)[mapped_ok]] = mapped[mapped_ok]
    e_ok = e_ok.copy()
    e_ok[np.flatnonzero(need)[mapped_ok]] = True
    unresolved = int(need.sum() - mapped_ok.sum())
    nr = np.where(kind == 0, ev.nr(src), 1)
    rows, entry, kind = _expand(rows[e_ok], entry[e_ok], nr[e_ok], kind[e_ok])
    order = np.argsort(rows, kind="stable")
    return _UnbindEvents(rows[order], entry[order], kind[order], unresolved)


def _entry_of_folio(n_rows: int, binds: _BindEvents, rows: np.ndarray, folios: np.ndarray):
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


def _nullable(values: np.ndarray, valid: np.ndarray, dtype: str) -> pd.arrays.IntegerArray:
    """A nullable integer column: ``values`` where ``valid``, NA elsewhere."""
    np_dtype = {"UInt64": np.uint64, "Int64": np.int64}[dtype]
    return pd.arrays.IntegerArray(np.where(valid, values, 0).astype(np_dtype), ~np.asarray(valid, bool))


# --- alternation: generations and residencies ------------------------------------------------------------


@dataclass
class _Alternation:
    """Open/close events of one lifecycle per entry, in (entry, row) order, with interval boundaries.

    An open while open, or a close while closed, changes nothing. The first event of an entry always begins
    an interval; when that first event is a close, the interval began before the capture.
    """

    entry: np.ndarray
    code: np.ndarray  # dense entry code, sorted
    row: np.ndarray
    is_open: np.ndarray
    kind: np.ndarray
    first: np.ndarray  # first event of its entry
    prev_open: np.ndarray  # the previous event of the same entry was an open
    begins: np.ndarray  # event begins an interval (maybe implicit: a close first)
    ends: np.ndarray  # event ends the interval
    interval: np.ndarray  # global interval id of each event
    order: np.ndarray  # the sort that took the input to (entry, row) order: to carry other per-event arrays

    @classmethod
    def build(cls, entry, row, is_open, kind) -> "_Alternation":
        order = np.lexsort((row, entry))  # by entry, then row
        entry, row, is_open, kind = entry[order], row[order], is_open[order], kind[order]
        first = np.ones(len(row), bool)
        first[1:] = entry[1:] != entry[:-1]
        code = np.cumsum(first) - 1
        prev_open = np.zeros(len(row), bool)
        prev_open[1:] = is_open[:-1]
        prev_open &= ~first
        begins = first | (is_open & ~prev_open)
        ends = ~is_open & (first | prev_open)
        interval = np.cumsum(begins) - 1
        return cls(entry, code, row, is_open, kind, first, prev_open, begins, ends, interval, order)

    def intervals(self) -> Dict[str, np.ndarray]:
        """Per interval: entry, index within the entry, open row (-1: before the capture), close row (-1: open),
        the opening and closing event indices."""
        b = np.flatnonzero(self.begins)
        n = len(b)
        close_idx = np.full(n, _NONE, np.int64)
        e = np.flatnonzero(self.ends)
        close_idx[self.interval[e]] = e
        first_of_code = np.flatnonzero(self.first)
        opened = self.is_open[b]
        return {
            "entry": self.entry[b],
            "index": self.interval[b] - self.interval[first_of_code][self.code[b]],
            "open_idx": np.where(opened, b, _NONE),
            "close_idx": close_idx,
            "open_row": np.where(opened, self.row[b], _NONE),
            "close_row": np.where(close_idx >= 0, self.row[np.maximum(close_idx, 0)], _NONE),
        }


@dataclass
class _Life:
    """Slot generations: allocations open, frees close."""

    alt: _Alternation
    tid: np.ndarray  # thread of each event
    gap_entries: np.ndarray  # entries whose history has a gap
    reuses: int

    def starts(self) -> Tuple[np.ndarray, np.ndarray]:
        """(entry code, row) of every real generation start (an allocation), sorted."""
        sel = self.alt.begins & self.alt.is_open
        return self.alt.code[sel], self.alt.row[sel]

    def frees(self) -> Tuple[np.ndarray, np.ndarray]:
        """(entry code, row) of every free event, sorted: also a second free of a free slot (a gap), so a
        history that lost an allocation still shows the reuse that follows."""
        sel = ~self.alt.is_open
        return self.alt.code[sel], self.alt.row[sel]

    def code_of(self, entries: np.ndarray) -> np.ndarray:
        """Dense code of each entry (-1 for an entry with no slot events)."""
        firsts = self.alt.entry[self.alt.first]
        pos = np.searchsorted(firsts, entries)
        pos_c = np.minimum(pos, max(len(firsts) - 1, 0))
        ok = (len(firsts) > 0) & (pos < len(firsts))
        if len(firsts):
            ok &= firsts[pos_c] == entries
        return np.where(ok, pos_c, _NONE)

    def frame(self, ev: _Events) -> pd.DataFrame:
        iv = self.alt.intervals()
        opened, closed = iv["open_idx"] >= 0, iv["close_idx"] >= 0
        oi, ci = np.maximum(iv["open_idx"], 0), np.maximum(iv["close_idx"], 0)
        ts = ev.ts
        return pd.DataFrame({
            "entry": pd.array(iv["entry"], dtype="UInt64"),
            "generation": iv["index"].astype(np.int64),
            "alloc_ns": _nullable(ts[self.alt.row[oi]], opened, "Int64"),
            "alloc_kind": pd.Categorical.from_codes(np.where(opened, self.alt.kind[oi], -1), categories=ALLOC_KINDS),
            "alloc_tid": _nullable(self.tid[oi], opened, "Int64"),
            "free_ns": _nullable(ts[self.alt.row[ci]], closed, "Int64"),
            "free_kind": pd.Categorical.from_codes(np.where(closed, self.alt.kind[ci], -1), categories=FREE_KINDS),
            "free_tid": _nullable(self.tid[ci], closed, "Int64"),
        })


def _slot_allocs(ev: _Events, alloc_pairs: Tuple[np.ndarray, np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
    """(rows, entries) of slot allocations: calls that carry the entry (7.x ``__swap_cache_add_folio``),
    returns that carry it (the live tracer read ``folio->swap``), or whose function returns the entry by value
    (6.1 ``folio_alloc_swap`` returns ``swp_entry_t``; 0 is a failure)."""
    call_rows, call_entries = _entry_calls(ev, "slot_alloc")
    rets = ev.rows("slot_alloc", "return").astype(np.int64)
    entry, e_ok = ev.u64("entry", rets)
    retval, r_ok = ev.u64("retval", rets)
    by_value = np.array([returns_entry(f) for f in ev.func_names] + [False], bool)[ev.func_codes[rets]]
    entry = np.where(e_ok, entry, retval)
    ok = (e_ok | (by_value & r_ok)) & (entry != 0) & (entry < ERR_PTR_MIN)
    # A return probe cannot read the folio's size: nr comes from the paired call when the return has none.
    nr_raw, nr_ok = ev.u64("nr", rets)
    nr = np.where(nr_ok, nr_raw, 0).astype(np.int64)
    calls, paired_rets = (a.astype(np.int64) for a in alloc_pairs)
    pos = np.searchsorted(paired_rets, rets)
    pos_c = np.minimum(pos, max(len(paired_rets) - 1, 0))
    if len(paired_rets):
        has_call = (pos < len(paired_rets)) & (paired_rets[pos_c] == rets) & ~nr_ok
        nr[has_call] = ev.nr(calls[pos_c[has_call]])
    nr = np.maximum(nr, 1)
    r_rows, r_entries = _expand(rets[ok], entry[ok], nr[ok])
    return np.concatenate([call_rows, r_rows]), np.concatenate([call_entries, r_entries])


def _generations(ev: _Events, alloc_pairs, free_pairs, binds: _BindEvents, unbinds: _UnbindEvents,
                 allocator_probed: bool) -> _Life:
    a_rows, a_entries = _slot_allocs(ev, alloc_pairs)
    a_kind = np.zeros(len(a_rows), np.int8)
    if not allocator_probed:  # the first cache add of E while E is free begins its generation
        add = binds.kind == 1
        a_rows = np.concatenate([a_rows, binds.row[add]])
        a_entries = np.concatenate([a_entries, binds.entry[add]])
        a_kind = np.concatenate([a_kind, np.ones(int(add.sum()), np.int8)])
    f_rows, f_entries = _entry_calls(ev, "slot_free")
    fc = unbinds.kind == 1  # free_cache true: its delete dropped the last reference
    rows = np.concatenate([a_rows, f_rows, unbinds.row[fc]])
    entries = np.concatenate([a_entries, f_entries, unbinds.entry[fc]])
    is_open = np.concatenate([np.ones(len(a_rows), bool), np.zeros(len(f_rows) + int(fc.sum()), bool)])
    kind = np.concatenate([a_kind, np.zeros(len(f_rows), np.int8), np.ones(int(fc.sum()), np.int8)])
    alt = _Alternation.build(entries.astype(np.uint64), rows.astype(np.int64), is_open, kind)
    # Gaps: an allocation of a live slot (allocator mode), or a slot_free of a free slot.
    prev_kind = np.full(len(alt.row), -1, np.int8)
    prev_kind[1:] = alt.kind[:-1]
    gap = ~alt.first & (
        (alt.is_open & alt.prev_open & (alt.kind == 0) & (prev_kind == 0))
        | (~alt.is_open & ~alt.prev_open & (alt.kind == 0) & (prev_kind == 0))
    )
    reuses = int((alt.begins & alt.is_open & ~alt.first).sum())
    return _Life(alt, ev.tid[alt.row] if len(alt.row) else np.empty(0, np.int32), np.unique(alt.entry[gap]),
                 reuses)


@dataclass
class _Residency:
    alt: _Alternation
    folio: np.ndarray  # per event (0 for unbinds)
    eviction: np.ndarray  # per interval
    reread: np.ndarray  # per interval
    iv: Dict[str, np.ndarray]

    @property
    def evictions(self) -> int:
        return int(self.eviction.sum())

    @property
    def rereads(self) -> int:
        return int(self.reread.sum())

    def bound_at(self, entry: int, folio: int, row: int, since_row: int) -> bool:
        """Is ``folio`` bound to ``entry`` at ``row`` by a binding made at or after ``since_row``?"""
        # uint64 bounds: a Python int list would make numpy compare through float64 and lose the low bits
        lo, hi = np.searchsorted(self.iv["entry"], np.array([entry, min(entry + 1, 2**64 - 1)], np.uint64))
        for k in range(lo, hi):
            o, c = int(self.iv["open_row"][k]), int(self.iv["close_row"][k])
            if o < 0 or o < since_row or o > row or (0 <= c <= row):
                continue
            if int(self.folio[self.iv["open_idx"][k]]) == folio:
                return True
        return False

    def frame(self, ev: _Events) -> pd.DataFrame:
        iv = self.iv
        opened, closed = iv["open_idx"] >= 0, iv["close_idx"] >= 0
        oi, ci = np.maximum(iv["open_idx"], 0), np.maximum(iv["close_idx"], 0)
        ts = ev.ts
        return pd.DataFrame({
            "entry": pd.array(iv["entry"], dtype="UInt64"),
            "folio": _nullable(self.folio[oi], opened, "UInt64"),
            "bind_ns": _nullable(ts[self.alt.row[oi]], opened, "Int64"),
            "bind_kind": pd.Categorical.from_codes(np.where(opened, self.alt.kind[oi], -1), categories=BIND_KINDS),
            "unbind_ns": _nullable(ts[self.alt.row[ci]], closed, "Int64"),
            "unbind_kind": pd.Categorical.from_codes(np.where(closed, self.alt.kind[ci], -1),
                                                     categories=UNBIND_KINDS),
            "eviction": self.eviction,
            "reread": self.reread,
        })


def _residency(ev: _Events, binds: _BindEvents, unbinds: _UnbindEvents, life: _Life) -> _Residency:
    rows = np.concatenate([binds.row, unbinds.row])
    entries = np.concatenate([binds.entry, unbinds.entry]).astype(np.uint64)
    is_open = np.concatenate([np.ones(len(binds.row), bool), np.zeros(len(unbinds.row), bool)])
    kind = np.concatenate([binds.kind, unbinds.kind])
    folio = np.concatenate([binds.folio, np.zeros(len(unbinds.row), np.uint64)])
    alt = _Alternation.build(entries, rows, is_open, kind)
    folio = folio[alt.order]
    iv = alt.intervals()
    n = len(iv["entry"])
    # Eviction: a residency end after which the slot stays: the next event on E (slot or cache) is not a free
    # of the slot by the same thread (folio_free_swap / 7.x __swap_cache_del_folio free it right after their
    # delete; reclaim's __remove_mapping keeps a slot that a pte still holds).
    closed = iv["close_idx"] >= 0
    eviction = closed.copy()
    if closed.any() and len(life.alt.row):
        (e_all, e_close), _ = _entry_codes(np.concatenate([life.alt.entry, alt.entry]), iv["entry"][closed])
        rows_all = np.concatenate([life.alt.row, alt.row])
        is_free = np.concatenate([~life.alt.is_open, np.zeros(len(alt.row), bool)])
        span = np.int64(ev.n + 1)
        key = e_all * span + rows_all
        order = np.argsort(key, kind="stable")
        key, rows_all, is_free = key[order], rows_all[order], is_free[order]
        c_rows = iv["close_row"][closed]
        nxt = np.searchsorted(key, e_close * span + c_rows, side="right")  # the first event after the close
        nxt_c = np.minimum(nxt, len(key) - 1)
        has_next = (nxt < len(key)) & (key[nxt_c] // span == e_close)
        freed_with_it = has_next & is_free[nxt_c] & (ev.tid[rows_all[nxt_c]] == ev.tid[c_rows])
        eviction[np.flatnonzero(closed)] = ~freed_with_it
    # Re-read: a cache_add that begins a residency in a generation that already had one.
    gen = _generation_at(life, iv["entry"], np.where(iv["open_row"] >= 0, iv["open_row"], 0))
    prev_same_entry = np.zeros(n, bool)
    prev_same_entry[1:] = iv["entry"][1:] == iv["entry"][:-1]
    prev_gen = np.full(n, -2, np.int64)
    prev_gen[1:] = gen[:-1]
    by_add = (iv["open_idx"] >= 0) & (alt.kind[np.maximum(iv["open_idx"], 0)] == 1)
    reread = by_add & prev_same_entry & (gen == prev_gen)
    return _Residency(alt, folio, eviction, reread, iv)


def _generation_at(life: _Life, entries: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Global generation id live at ``rows`` for ``entries`` (-1: none of its slot events yet)."""
    lcode = life.code_of(entries)
    span = np.int64(max(int(life.alt.row.max(initial=0)), int(rows.max(initial=0))) + 2)
    lkey = life.alt.code.astype(np.int64) * span + life.alt.row
    idx = np.searchsorted(lkey, np.maximum(lcode, 0) * span + rows, side="right") - 1
    ok = (lcode >= 0) & (idx >= 0)
    idx_c = np.maximum(idx, 0)
    if len(lkey):
        ok &= life.alt.code[idx_c] == lcode
    # Per-entry "no slot event yet" stays distinct from every real generation.
    return np.where(ok, life.alt.interval[idx_c] if len(lkey) else 0, -1 - np.maximum(lcode, 0))
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



# --- windows: the page T obtained, and its install ----------------------------------------------------------


@dataclass
class _Windows:
    call: np.ndarray  # row of the do_swap_page call
    ret: np.ndarray  # row of its return
    tid: np.ndarray
    lookup: np.ndarray  # row of T's first lookup inside the window, -1 when none
    entry: np.ndarray  # uint64 entry of that lookup (0 when none)
    has_entry: np.ndarray
    obtain: np.ndarray = None  # type: ignore[assignment]  # row T obtained its page (-1: never)
    obtain_kind: np.ndarray = None  # type: ignore[assignment]  # index into OBTAIN_KINDS
    folio: np.ndarray = None  # type: ignore[assignment]  # the folio T obtained (0: unknown)
    install: np.ndarray = None  # type: ignore[assignment]  # row of T's swap_put of E (-1: none)
    copy_row: np.ndarray = None  # type: ignore[assignment]  # row of a KSM copy T installs instead (-1: none)
    copy_folio: np.ndarray = None  # type: ignore[assignment]
    opens: np.ndarray = None  # type: ignore[assignment]  # where the race window opens (obtain; lookup miss: read)


def _windows(ev: _Events, fault_pairs: Tuple[np.ndarray, np.ndarray]) -> _Windows:
    calls, rets = fault_pairs
    order = np.argsort(calls, kind="stable")  # time order of window starts
    calls, rets = calls[order].astype(np.int64), rets[order].astype(np.int64)
    n = len(calls)
    return _Windows(calls, rets, ev.tid[calls], np.full(n, _NONE, np.int64), np.zeros(n, np.uint64),
                    np.zeros(n, bool))


def _obtain_and_install(ev: _Events, w: _Windows, lookup_pairs, ksm_pairs) -> None:
    """Where T obtained its page for E, which folio, and T's install of E (see the module docstring)."""
    n = len(w.call)
    w.obtain, w.obtain_kind = np.full(n, _NONE, np.int64), np.full(n, -1, np.int8)
    w.folio, w.install = np.zeros(n, np.uint64), np.full(n, _NONE, np.int64)
    w.copy_row, w.copy_folio = np.full(n, _NONE, np.int64), np.zeros(n, np.uint64)
    w.opens = np.full(n, _NONE, np.int64)
    cand = np.flatnonzero(w.has_entry)
    if len(cand) == 0:
        return
    span = ev.n + 1
    # The return of T's first lookup: a folio there is a hit.
    l_calls, l_rets = (a.astype(np.int64) for a in lookup_pairs)
    by_call = np.argsort(l_calls, kind="stable")
    pos = np.searchsorted(l_calls[by_call], w.lookup[cand])
    pos_c = np.minimum(pos, max(len(by_call) - 1, 0))
    paired = (pos < len(by_call)) & (l_calls[by_call][pos_c] == w.lookup[cand]) if len(by_call) else \
        np.zeros(len(cand), bool)
    l_ret = np.where(paired, l_rets[by_call][pos_c] if len(by_call) else 0, _NONE)
    ret_folio, ret_ok = ev.u64("retval", np.maximum(l_ret, 0))
    hit = paired & _is_folio(ret_folio, ret_ok)
    w.obtain[cand[hit]], w.obtain_kind[cand[hit]], w.folio[cand[hit]] = l_ret[hit], 0, ret_folio[hit]
    # A miss: T's own cache_add of E, T's read of E (the skip-swapcache path), or a later lookup of E by T that
    # hits (7.x swapin_sync looks the entry up again before it allocates), whichever comes first.
    miss = cand[paired & ~hit]
    after = np.where(paired, l_ret, 0)[paired & ~hit]
    l_entry, l_entry_ok = ev.u64("entry", l_calls)
    l_folio, l_folio_ok = ev.u64("retval", l_rets)
    relookup = l_entry_ok & _is_folio(l_folio, l_folio_ok)
    sources = [(0, l_rets[relookup], l_entry[relookup], l_folio[relookup])]
    for kind, role in ((1, "cache_add"), (2, "swap_read")):
        rows = ev.rows(role, "call").astype(np.int64)
        entries, ok = ev.u64("entry", rows)
        folios, _ = ev.u64("folio", rows)
        sources.append((kind, *_expand(rows[ok], entries[ok], ev.nr(rows[ok]), folios[ok])))
    for kind, rows, entries, folios in sources:
        found = _Keyed(rows, ev.tid[rows], entries, span).first(w.tid[miss], w.entry[miss], after, w.ret[miss])
        got = found >= 0
        if not got.any():
            continue
        earlier = got & ((w.obtain[miss] < 0) | (rows[np.maximum(found, 0)] < w.obtain[miss]))
        sel = miss[earlier]
        w.obtain[sel], w.obtain_kind[sel] = rows[found[earlier]], kind
        w.folio[sel] = folios[found[earlier]]
    # The race window opens where T got its page; on the skip-swapcache path at the fault's start (see above).
    w.opens[cand] = w.obtain[cand]
    read = cand[(w.obtain_kind[cand] == 2)]
    w.opens[read] = w.call[read]
    # T's install: its first swap_put covering E after it obtained the page -- or naming the folio it obtained:
    # 7.x drops the count with folio_put_swap(swapcache, ...), whose entry is read from folio->swap, and a
    # race can have bound that folio to another entry by then.
    has = cand[w.obtain[cand] >= 0]
    p_rows, p_entries = _entry_calls(ev, "swap_put")
    found = _Keyed(p_rows, ev.tid[p_rows], p_entries, span).first(w.tid[has], w.entry[has], w.obtain[has],
                                                                   w.ret[has])
    install = np.where(found >= 0, p_rows[np.maximum(found, 0)] if len(p_rows) else 0, _NONE)
    f_rows = ev.rows("swap_put", "call").astype(np.int64)
    f_folio, f_ok = ev.u64("folio", f_rows)
    f_rows, f_folio = f_rows[f_ok], f_folio[f_ok]
    by_folio = _Keyed(f_rows, ev.tid[f_rows], f_folio, span).first(w.tid[has], w.folio[has], w.obtain[has],
                                                                   w.ret[has])
    hit = (by_folio >= 0) & (w.folio[has] != 0)
    folio_row = np.where(hit, f_rows[np.maximum(by_folio, 0)] if len(f_rows) else 0, _NONE)
    install = np.where((install < 0) | ((folio_row >= 0) & (folio_row < install)), folio_row, install)
    w.install[has] = install
    # A KSM copy: T's first ksm_might_need_to_copy after it obtained the page, if it returned another folio.
    k_calls, k_rets = (a.astype(np.int64) for a in ksm_pairs)
    if len(k_calls) and len(has):
        stop = np.where(w.install[has] >= 0, w.install[has], w.ret[has])
        found = _Keyed(k_calls, ev.tid[k_calls], np.zeros(len(k_calls), np.uint64), span).first(
            w.tid[has], np.zeros(len(has), np.uint64), w.obtain[has], stop)
        got = found >= 0
        k_in, in_ok = ev.u64("folio", k_calls[found[got]])
        k_out, out_ok = ev.u64("retval", k_rets[found[got]])
        copied = in_ok & _is_folio(k_out, out_ok) & (k_out != k_in)
        sel = has[got][copied]
        w.copy_row[sel], w.copy_folio[sel] = k_rets[found[got]][copied], k_out[copied]


# --- races ---------------------------------------------------------------------------------------------------


@dataclass
class _Races:
    window: np.ndarray  # index into windows
    release_row: np.ndarray
    realloc_row: np.ndarray
    cls: np.ndarray = None  # type: ignore[assignment]  # index into RACE_CLASSES
    uncertain: np.ndarray = None  # type: ignore[assignment]
    reason: List[str] = None  # type: ignore[assignment]


def _races(ev: _Events, w: _Windows, life: _Life) -> _Races:
    """Windows whose entry's slot was freed and allocated again after T obtained its page, before its install."""
    cand = np.flatnonzero((w.obtain >= 0) & (w.opens >= 0))
    code = life.code_of(w.entry[cand])
    cand, code = cand[code >= 0], code[code >= 0]
    empty = _Races(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64))
    if len(cand) == 0:
        return empty
    span = np.int64(ev.n + 1)
    stop = np.where(w.install[cand] >= 0, w.install[cand], w.ret[cand])
    f_code, f_row = life.frees()
    s_code, s_row = life.starts()
    f_key, s_key = f_code * span + f_row, s_code * span + s_row  # (code, row) order already
    f_idx = _first_after(f_key, np.arange(len(f_key)), int(span), code, w.opens[cand], stop)
    ok = f_idx >= 0
    cand, code, stop, f_idx = cand[ok], code[ok], stop[ok], f_idx[ok]
    release = f_row[f_idx]
    s_idx = _first_after(s_key, np.arange(len(s_key)), int(span), code, release, stop)
    ok = s_idx >= 0
    return _Races(cand[ok], release[ok], s_row[s_idx[ok]])


class _LossMap:
    """Where the capture lost events: intervals on the event clock, and whether some losses have no place."""

    def __init__(self, capture: Capture, ev: _Events):
        meta = capture.meta
        self.intervals = np.array([[int(a), int(b)] for a, b, *_ in meta.lost_intervals], np.int64).reshape(-1, 2)
        placed = sum(int(c[2]) if len(c) > 2 else 0 for c in meta.lost_intervals)
        total = meta.lost_events or 0
        self.unplaced = total > placed

    def overlaps(self, start_ns: int, end_ns: int) -> bool:
        if self.unplaced:
            return True
        if len(self.intervals) == 0:
            return False
        return bool(((self.intervals[:, 0] <= end_ns) & (self.intervals[:, 1] >= start_ns)).any())


class _Writes:
    """Completed writes of a slot's data (``swap_write`` returning 0), per entry range. On a SWP_SYNCHRONOUS_IO
    device (the only kind the skip-swapcache path reads) the data is on the device when the call returns."""

    def __init__(self, ev: _Events, write_pairs: Tuple[np.ndarray, np.ndarray], probed: bool):
        calls, rets = (a.astype(np.int64) for a in write_pairs)
        entry, ok = ev.u64("entry", calls)
        value, v_ok = ev.u64("retval", rets)
        ok &= v_ok & (value == 0)
        self.calls, self.rets, self.entry = calls[ok], rets[ok], entry[ok]
        self.nr = ev.nr(self.calls).astype(np.uint64)  # pageout writes the whole folio
        self.probed = probed

    def written(self, entry: int, after_row: int, before_row: int) -> bool:
        """A write covering ``entry`` started after ``after_row`` and returned before ``before_row``."""
        e = np.uint64(entry)
        sel = (self.entry <= e) & (e < self.entry + self.nr) & (self.calls > after_row) & (self.rets < before_row)
        return bool(sel.any())


def _classify(ev: _Events, w: _Windows, races: _Races, res: _Residency, life: _Life, lost: _LossMap,
              writes: _Writes) -> None:
    """Each race's class (see the module docstring), uncertainty and the reason in words. A loop: races are rare."""
    n = len(races.window)
    races.cls, races.uncertain, races.reason = np.zeros(n, np.int8), np.zeros(n, bool), [""] * n
    gaps = set(int(e) for e in life.gap_entries)
    for i in range(n):
        k = int(races.window[i])
        realloc, install = int(races.realloc_row[i]), int(w.install[k])
        entry = int(w.entry[k])
        if install < 0:
            races.cls[i], races.reason[i] = 0, "no install of the entry in the window: the fault backed out"
        elif w.obtain_kind[k] == 2 and w.obtain[k] < realloc:
            races.cls[i], races.reason[i] = 2, "installed a private read made before the slot was reallocated"
        elif w.obtain_kind[k] == 2:
            if writes.written(entry, realloc, int(w.obtain[k])):
                races.cls[i], races.reason[i] = 1, "read the new generation's data after it was written to the slot"
            elif not writes.probed:
                races.cls[i], races.uncertain[i] = 2, True
                races.reason[i] = ("read the reallocated slot, and swap writes were not probed: whether it held "
                                   "the new generation's data is unknown")
            else:
                races.cls[i], races.reason[i] = 2, ("installed a private read of the reallocated slot made before "
                                                    "its new data was written there")
        elif 0 <= w.copy_row[k] < realloc:
            races.cls[i], races.reason[i] = 2, "installed a KSM copy made before the slot was reallocated"
        else:
            judge = int(w.copy_row[k]) if w.copy_row[k] >= 0 else install
            if res.bound_at(entry, int(w.folio[k]), judge, realloc):
                races.cls[i], races.reason[i] = 1, "installed the folio bound to the entry in its new generation"
            else:
                races.cls[i], races.reason[i] = 2, "installed a folio not bound to the entry's new generation"
        window_ns = (int(ev.ts[w.call[k]]), int(ev.ts[w.ret[k]]))
        if lost.overlaps(*window_ns):
            races.uncertain[i] = True
            races.reason[i] += "; events were lost in or near the window"
        if entry in gaps:
            races.uncertain[i] = True
            races.reason[i] += "; the entry's history has a gap"


# --- prepare (13ddaf26be32) ----------------------------------------------------------------------------------


def _prepare_stats(ev: _Events, w: _Windows, prepare_pairs, unbinds: _UnbindEvents, life: _Life) -> Dict[str, int]:
    calls, rets = (a.astype(np.int64) for a in prepare_pairs)
    entry, e_ok = ev.u64("entry", calls)
    value, v_ok = ev.u64("retval", rets)
    low = value & np.uint64(0xFFFFFFFF)
    success = e_ok & v_ok & (low == 0)
    failed = e_ok & v_ok & (low == _EEXIST)
    out = {"calls": int(len(calls)), "backoffs": int(failed.sum()), "conflicts": 0,
           "installs_after_failed_prepare": 0}
    # SWAP_HAS_CACHE taken: a successful prepare or an allocation; dropped: swapcache_clear, a cache delete, a
    # free of the slot. Two takes in a row are a conflict: the guard let two threads through.
    s_rows, s_entries = _expand(rets[success], entry[success], ev.nr(calls[success]))
    c_rows, c_entries = _entry_calls(ev, "prepare_clear")
    d = unbinds.kind == 0
    a_code, a_row = life.starts()
    f_code, f_row = life.frees()
    firsts = life.alt.entry[life.alt.first]
    rows = np.concatenate([s_rows, a_row, c_rows, unbinds.row[d], f_row])
    entries = np.concatenate([s_entries, firsts[a_code], c_entries, unbinds.entry[d], firsts[f_code]])
    take = np.concatenate([np.ones(len(s_rows) + len(a_row), bool),
                           np.zeros(len(c_rows) + int(d.sum()) + len(f_row), bool)])
    is_prepare = np.concatenate([np.ones(len(s_rows), bool), np.zeros(len(rows) - len(s_rows), bool)])
    if len(rows):
        order = np.lexsort((rows, entries))
        entries, take, is_prepare = entries[order], take[order], is_prepare[order]
        same = np.zeros(len(rows), bool)
        same[1:] = entries[1:] == entries[:-1]
        prev_take = np.zeros(len(rows), bool)
        prev_take[1:] = take[:-1]
        out["conflicts"] = int((is_prepare & same & prev_take).sum())
    # A thread whose prepare of E failed must back out: an install of E after it in the same window is a bug.
    f_rows, f_entries = _expand(rets[failed], entry[failed], ev.nr(calls[failed]))
    has = np.flatnonzero(w.install >= 0)
    if len(f_rows) and len(has):
        found = _Keyed(f_rows, ev.tid[f_rows], f_entries, ev.n + 1).first(w.tid[has], w.entry[has], w.call[has],
                                                                           w.install[has])
        out["installs_after_failed_prepare"] = int((found >= 0).sum())
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
    race_code[races.window] = races.cls
    obtained, installed = w.obtain >= 0, w.install >= 0
    return pd.DataFrame({
        "tid": df["tid"].to_numpy()[calls],
        "pid": df["pid"].to_numpy()[calls],
        "comm": df["comm"].iloc[calls].reset_index(drop=True),
        "cpu": df["cpu"].to_numpy()[calls],
        "start_ns": ev.ts[calls],
        "end_ns": ev.ts[w.ret],
        "duration_ns": ev.ts[w.ret] - ev.ts[calls],
        "entry": _nullable(w.entry, w.has_entry, "UInt64"),
        "retval": pd.array(retval, dtype="UInt64"),
        "outcome": pd.Categorical.from_codes(outcome_codes(retval), categories=OUTCOMES),
        "obtain_ns": _nullable(ev.ts[np.maximum(w.obtain, 0)], obtained, "Int64"),
        "obtain_kind": pd.Categorical.from_codes(np.where(obtained, w.obtain_kind, -1), categories=OBTAIN_KINDS),
        "install_ns": _nullable(ev.ts[np.maximum(w.install, 0)], installed, "Int64"),
        "race_class": pd.Categorical.from_codes(race_code, categories=RACE_CLASSES),
    })


RACE_COLUMNS = ("entry", "tid", "pid", "comm", "window_start_ns", "window_end_ns", "obtain_ns", "obtain_kind",
                "release_ns", "release_tid", "realloc_ns", "realloc_tid", "install_ns", "folio",
                "installed_folio", "ksm_copy_ns", "class", "uncertain", "reason")


def _race_frame(ev: _Events, w: _Windows, races: _Races) -> pd.DataFrame:
    order = np.argsort(w.call[races.window], kind="stable")
    win = races.window[order]
    install, copy = w.install[win], w.copy_row[win]
    copied = copy >= 0
    folio_known = w.folio[win] != 0
    installed_folio = np.where(copied, w.copy_folio[win], w.folio[win])
    frame = pd.DataFrame({
        "entry": pd.array(w.entry[win], dtype="UInt64"),
        "tid": ev.df["tid"].to_numpy()[w.call[win]],
        "pid": ev.df["pid"].to_numpy()[w.call[win]],
        "comm": ev.df["comm"].iloc[w.call[win]].astype(str).to_numpy(),
        "window_start_ns": ev.ts[w.call[win]],
        "window_end_ns": ev.ts[w.ret[win]],
        "obtain_ns": ev.ts[w.obtain[win]],
        "obtain_kind": pd.Categorical.from_codes(w.obtain_kind[win], categories=OBTAIN_KINDS),
        "release_ns": ev.ts[races.release_row[order]],
        "release_tid": ev.tid[races.release_row[order]].astype(np.int64),
        "realloc_ns": ev.ts[races.realloc_row[order]],
        "realloc_tid": ev.tid[races.realloc_row[order]].astype(np.int64),
        "install_ns": _nullable(ev.ts[np.maximum(install, 0)], install >= 0, "Int64"),
        "folio": _nullable(w.folio[win], folio_known, "UInt64"),
        "installed_folio": _nullable(installed_folio, (install >= 0) & (copied | folio_known), "UInt64"),
        "ksm_copy_ns": _nullable(ev.ts[np.maximum(copy, 0)], copied, "Int64"),
        "class": pd.Categorical.from_codes(races.cls[order], categories=RACE_CLASSES),
        "uncertain": races.uncertain[order],
        "reason": [races.reason[i] for i in order],
    })
    return frame[list(RACE_COLUMNS)]


def _ksm_copies(ev: _Events, ksm_pairs: Tuple[np.ndarray, np.ndarray]) -> int:
    """ksm_might_need_to_copy returns that differ from their argument and are neither NULL nor ERR_PTR."""
    ksm_calls, ksm_rets = ksm_pairs
    ksm_in, in_ok = ev.u64("folio", ksm_calls)
    ksm_out, out_ok = ev.u64("retval", ksm_rets)
    return int((in_ok & _is_folio(ksm_out, out_ok) & (ksm_out != ksm_in)).sum())


def _summary(capture: Capture, ev: _Events, counts: Dict[str, Any], windows: pd.DataFrame,
             generations: pd.DataFrame, races: pd.DataFrame, lost: _LossMap,
             filters: Dict[str, Any]) -> Dict[str, Any]:
    by_function: Dict[str, Dict[str, int]] = {}
    if ev.n:
        per_func = np.bincount(ev.func_codes.astype(np.int64) * 2 + (~ev.is_call), minlength=2 * ev.n_funcs)
        for name, (n_call, n_ret) in zip(ev.func_names, per_func.reshape(-1, 2)):
            if n_call or n_ret:
                by_function[name] = {"call": int(n_call), "return": int(n_ret)}
    entries, entries_ok = ev.u64("entry", np.arange(ev.n))
    meta = capture.meta
    return {
        "events": int(ev.n),
        "skipped_lines": int(capture.skipped_lines),
        "by_function": by_function,
        "unknown_functions": dict(sorted(capture.unknown_functions.items())),
        "windows": int(len(windows)),
        "windows_with_entry": int(windows["entry"].notna().sum()),
        "windows_with_page": int(windows["obtain_ns"].notna().sum()),
        "lookup_hits": counts["lookup_hits"],
        "entries": int(len(np.unique(entries[entries_ok]))),
        "ksm_copies": counts["ksm_copies"],
        "generations": int(len(generations)),
        "reuses": counts["reuses"],
        "slot_allocator_probed": counts["allocator_probed"],
        "history_gaps": counts["gaps"],
        "residency": {
            "cache_adds": counts["cache_adds"],
            "cache_deletes": counts["cache_deletes"],
            "evictions": counts["evictions"],
            "rereads": counts["rereads"],
            "unresolved_deletes": counts["unresolved_unbinds"],
        },
        "prepare": counts["prepare"],
        "races": [_race_record(rec) for rec in races.to_dict("records")],
        "race_classes": {c: int((races["class"] == c).sum()) for c in RACE_CLASSES},
        "uncertain_races": int(races["uncertain"].sum()) if len(races) else 0,
        "outcomes": {o: int((windows["outcome"] == o).sum()) for o in OUTCOMES},
        "lost_events": meta.lost_events,
        "lost": dict(meta.lost),
        "lost_uncounted": [str(k) for k in meta.extra.get("lost_uncounted", [])],
        "lost_unplaced": bool(lost.unplaced),
        "kernel_release": meta.kernel_release,
        "backend": meta.backend,
        "symbols": dict(meta.symbols),
        "source_format": capture.source_format,
        "filters": {k: v for k, v in filters.items() if v is not None},
        # recorded with --pid/--comm/--cgroup: other threads' windows are absent on purpose
        "thread_filter": meta.extra.get("thread_filter") or (
            {"pid": meta.extra["pid_filter"]} if meta.extra.get("pid_filter") is not None else None),
        "time_range_ns": [int(ev.ts[0]), int(ev.ts[-1])] if ev.n else None,
    }


def _race_record(rec: Dict[str, Any]) -> Dict[str, Any]:
    """One races-table row as plain JSON values."""
    out: Dict[str, Any] = {}
    for key, value in rec.items():
        if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
            out[key] = None
        elif key in ("class", "obtain_kind", "reason", "comm"):
            out[key] = str(value)
        elif key == "uncertain":
            out[key] = bool(value)
        else:
            out[key] = int(value)
    return out

"""The columns of every table :func:`swaprace.analysis.analyze` returns: name, dtype, unit and meaning, in one place.

Times are nanoseconds on the capture's event clock (CLOCK_MONOTONIC for both live backends; the ftrace
timestamp for text captures). ``Int64``/``UInt64`` columns are nullable (``pd.NA``: not known or not
applicable). Swap entries are ``swp_entry_t.val`` (swap type in the top bits, slot offset below), folios are
kernel ``struct folio *`` values. A test checks these against what ``analyze`` returns.
"""

from __future__ import annotations

from typing import Dict, Tuple

Column = Tuple[str, str]  # (dtype, meaning)

WINDOWS: Dict[str, Column] = {
    "tid": ("int32", "faulting thread"),
    "pid": ("int32", "its process (thread-group id)"),
    "comm": ("category", "its task name"),
    "cpu": ("int32", "CPU of the do_swap_page call"),
    "start_ns": ("int64", "do_swap_page call"),
    "end_ns": ("int64", "do_swap_page return"),
    "duration_ns": ("int64", "end_ns - start_ns"),
    "entry": ("UInt64", "the entry of the thread's first lookup in the window (NA: none)"),
    "retval": ("UInt64", "do_swap_page's vm_fault_t"),
    "outcome": ("category", "minor | major | retry | error, from retval's VM_FAULT bits"),
    "obtain_ns": ("Int64", "when the thread got its page for the entry (NA: never)"),
    "obtain_kind": ("category", "lookup (a hit) | cache_add (its own add after a miss) | read (skip-swapcache)"),
    "install_ns": ("Int64", "its count drop of the entry after it got the page: the install (NA: none)"),
    "race_class": ("category", "recovered | benign | stale-install when the window raced (NA: no race)"),
}
GENERATIONS: Dict[str, Column] = {
    "entry": ("UInt64", "swap entry"),
    "generation": ("int64", "0, 1, ... per entry in the capture"),
    "alloc_ns": ("Int64", "slot allocated (NA: before the capture)"),
    "alloc_kind": ("category", "slot_alloc | cache_add (no allocator probed)"),
    "alloc_tid": ("Int64", "allocating thread"),
    "free_ns": ("Int64", "swap count reached zero (NA: still allocated at the end)"),
    "free_kind": ("category", "slot_free | free_cache (folio_free_swap returned true)"),
    "free_tid": ("Int64", "freeing thread"),
}
RESIDENCY: Dict[str, Column] = {
    "entry": ("UInt64", "swap entry"),
    "folio": ("UInt64", "the folio in the swap cache under it (NA: bound before the capture)"),
    "bind_ns": ("Int64", "cache add or lookup hit that showed it (NA: before the capture)"),
    "bind_kind": ("category", "lookup | cache_add"),
    "unbind_ns": ("Int64", "cache delete (NA: still cached at the end)"),
    "unbind_kind": ("category", "cache_delete | free_cache"),
    "eviction": ("bool", "the delete left the slot allocated (reclaim)"),
    "reread": ("bool", "a cache add in a generation that was cached before: the data read back"),
}
RACES: Dict[str, Column] = {
    "entry": ("UInt64", "swap entry"),
    "tid": ("int32", "faulting thread"),
    "pid": ("int32", "its process"),
    "comm": ("str", "its task name"),
    "window_start_ns": ("int64", "do_swap_page call"),
    "window_end_ns": ("int64", "do_swap_page return"),
    "obtain_ns": ("int64", "the thread got its page"),
    "obtain_kind": ("category", "lookup | cache_add | read"),
    "release_ns": ("int64", "the slot was freed"),
    "release_tid": ("int64", "by this thread"),
    "realloc_ns": ("int64", "the slot was allocated again"),
    "realloc_tid": ("int64", "by this thread"),
    "install_ns": ("Int64", "the faulting thread's install (NA: it backed out)"),
    "folio": ("UInt64", "the folio it obtained (NA: unknown)"),
    "installed_folio": ("UInt64", "the folio it installed: a KSM copy or the one it obtained"),
    "ksm_copy_ns": ("Int64", "ksm_might_need_to_copy returned a copy (NA: no copy)"),
    "class": ("category", "recovered | benign | stale-install"),
    "uncertain": ("bool", "events were lost in or near the window, or the entry's history has a gap"),
    "reason": ("str", "why this class, in words"),
}
TABLES: Dict[str, Dict[str, Column]] = {"windows": WINDOWS, "generations": GENERATIONS, "residency": RESIDENCY,
                                        "races": RACES}

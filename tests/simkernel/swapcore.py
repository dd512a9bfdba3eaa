"""Slot and swap-cache primitives, per kernel flavour, each emitting the events its kernel functions fire.

6.1.192 (notes Part A): ``swap_map`` count + SWAP_HAS_CACHE; a slot is free when both are gone, through
``free_swap_slot()`` (``__swap_entry_free`` when the usage hits 0, ``put_swap_folio`` per entry, ``swapcache_clear``).
7.3.4 (notes Part B): no SWAP_HAS_CACHE; the swap table's folio pins the slot; ``__swap_cluster_free_entries()``
is the only free, called when the count is 0 and no folio is cached (``swap_put_entries_direct``, cache delete).
"""

from __future__ import annotations

from .sched import Step, Thread, Wait
from .state import EEXIST, ENOENT, Folio, Kernel, entry_of

# --- locks --------------------------------------------------------------------------------------------------


def lock_folio(k: Kernel, t: Thread, folio: Folio) -> Step:
    """``folio_lock()``: sleep until the lock is free, then take it (this step ends with the lock held)."""
    while folio.locked_by is not None and folio.locked_by != t.tid:
        yield Wait(lambda: folio.locked_by is None)
    folio.locked_by = t.tid


def trylock(folio: Folio, t: Thread) -> bool:
    if folio.locked_by is None:
        folio.locked_by = t.tid
        return True
    return False


def unlock(folio: Folio, t: Thread) -> None:
    assert folio.locked_by == t.tid, (folio.fid, folio.locked_by, t.tid)
    folio.locked_by = None


# --- swap cache binding (no events: the callers emit theirs) ---------------------------------------------------


def bind(k: Kernel, folio: Folio, off: int) -> None:
    assert off % folio.nr == 0 or folio.nr == 1
    for i in range(folio.nr):
        assert off + i not in k.cache, (off + i, "already cached")
        k.cache[off + i] = folio
    folio.swapcache, folio.swap = True, off


def unbind(k: Kernel, folio: Folio) -> int:
    off = folio.swap
    for i in range(folio.nr):
        assert k.cache.get(off + i) is folio
        del k.cache[off + i]
    folio.swapcache, folio.swap = False, 0
    return off


def _release(k: Kernel, off: int, nr: int = 1) -> None:
    for i in range(nr):
        s = k.slots[off + i]
        assert s.count == 0 and s.allocated, (off + i, s)
        s.has_cache, s.allocated = False, False
        if k.cfg.sync_io:
            s.data = None  # zram frees the slot's memory on swap_slot_free_notify; a block device keeps it


# --- allocation ------------------------------------------------------------------------------------------------


def folio_alloc_swap(k: Kernel, t: Thread, folio: Folio) -> int | None:
    """Allocate ``folio.nr`` slots for reclaim. 6.1 returns the entry (the folio is added by
    ``add_to_swap_cache`` next); 7.x adds the folio to the swap cache inside (``__swap_cache_add_folio``, whose
    only caller is the allocator, calling ``__swap_cache_do_add_folio``) and returns 0."""
    tr = k.tracer
    tr.emit(t, "folio_alloc_swap", "call", folio=folio.fid, nr=folio.nr)
    off = k.lowest_free(folio.nr)
    if off is not None:
        for i in range(folio.nr):
            s = k.slots[off + i]
            s.allocated, s.count, s.has_cache = True, 0, k.v61
            s.gen += 1
    if k.v61:
        tr.emit(t, "folio_alloc_swap", "return", retval=entry_of(off) if off else 0, nr=folio.nr)
        return off
    if off is not None:
        tr.emit(t, "__swap_cache_add_folio", "call", folio=folio.fid, entry=entry_of(off), nr=folio.nr)
        tr.emit(t, "__swap_cache_do_add_folio", "call", folio=folio.fid, entry=entry_of(off), nr=folio.nr)
        bind(k, folio, off)
    tr.emit(t, "folio_alloc_swap", "return", retval=0 if off else -12)
    return off


def add_to_swap_cache(k: Kernel, t: Thread, folio: Folio, off: int) -> None:
    """6.1 ``add_to_swap_cache(folio, entry)``: the cache pin (SWAP_HAS_CACHE) was taken before."""
    assert k.v61 and all(k.slots[off + i].has_cache for i in range(folio.nr))
    k.tracer.emit(t, "add_to_swap_cache", "call", folio=folio.fid, entry=entry_of(off), nr=folio.nr)
    bind(k, folio, off)
    k.tracer.emit(t, "add_to_swap_cache", "return", retval=0)


def swapin_add(k: Kernel, t: Thread, folio: Folio, off: int) -> None:
    """A swap-in folio enters the cache: 6.1 ``add_to_swap_cache``, 7.x ``__swap_cache_do_add_folio``."""
    if k.v61:
        add_to_swap_cache(k, t, folio, off)
    else:
        k.tracer.emit(t, "__swap_cache_do_add_folio", "call", folio=folio.fid, entry=entry_of(off), nr=folio.nr)
        bind(k, folio, off)


# --- frees --------------------------------------------------------------------------------------------------------


def free_swap_slot(k: Kernel, t: Thread, off: int) -> None:
    """6.1: count and cache pin are both gone (slot cache inactive: reusable at once)."""
    k.tracer.emit(t, "free_swap_slot", "call", entry=entry_of(off))
    _release(k, off)


def cluster_free(k: Kernel, t: Thread, off: int, nr: int = 1) -> None:
    """7.x ``__swap_cluster_free_entries(si, ci, ci_off, nr)``."""
    k.tracer.emit(t, "__swap_cluster_free_entries", "call", entry=entry_of(off), nr=nr)
    _release(k, off, nr)


def swap_free(k: Kernel, t: Thread, off: int) -> int:
    """6.1 ``swap_free(entry)`` -> ``__swap_entry_free``: drop one count; usage 0 -> ``free_swap_slot``.
    Returns the event's timestamp."""
    ts = k.tracer.emit(t, "swap_free", "call", entry=entry_of(off)).ts_ns
    s = k.slots[off]
    assert s.count > 0, (off, s)
    s.count -= 1
    if s.count == 0 and not s.has_cache:
        free_swap_slot(k, t, off)
    return ts


def put_swap_folio(k: Kernel, t: Thread, off: int, nr: int) -> None:
    """6.1 ``put_swap_folio(folio, entry)`` (not probed): drop the cache pin of each entry, free count-0 slots."""
    for i in range(nr):
        s = k.slots[off + i]
        s.has_cache = False
        if s.count == 0:
            free_swap_slot(k, t, off + i)


def cache_delete(k: Kernel, t: Thread, folio: Folio) -> None:
    """Remove ``folio`` from the swap cache. 6.1: ``__delete_from_swap_cache`` + ``put_swap_folio``; 7.x:
    ``__swap_cache_del_folio`` -> ``__swap_cache_do_del_folio``, which frees the count-0 slots."""
    off = folio.swap
    nr = folio.nr
    if k.v61:
        k.tracer.emit(t, "__delete_from_swap_cache", "call", folio=folio.fid, entry=entry_of(off), nr=nr)
        unbind(k, folio)
        put_swap_folio(k, t, off, nr)
        return
    k.tracer.emit(t, "__swap_cache_del_folio", "call", folio=folio.fid, entry=entry_of(off), nr=nr)
    unbind(k, folio)
    if all(k.slots[off + i].count == 0 for i in range(nr)):
        cluster_free(k, t, off, nr)
    else:
        for i in range(nr):
            if k.slots[off + i].count == 0:
                cluster_free(k, t, off + i, 1)


def folio_free_swap(k: Kernel, t: Thread, folio: Folio) -> bool:
    """``folio_free_swap(folio)`` (folio locked): true when it left the cache and its slots were freed."""
    assert folio.locked_by == t.tid
    k.tracer.emit(t, "folio_free_swap", "call", folio=folio.fid,
                  entry=entry_of(folio.swap) if folio.swapcache else 0)
    ok = folio.swapcache and all(k.slots[folio.swap + i].count == 0 for i in range(folio.nr))
    if ok:
        cache_delete(k, t, folio)
    k.tracer.emit(t, "folio_free_swap", "return", retval=int(ok))
    return ok


def try_to_reclaim_swap(k: Kernel, t: Thread, off: int) -> None:
    """``__try_to_reclaim_swap(si, offset, TTRS_UNMAPPED | TTRS_FULL)``: trylock the cached folio; free it when
    unmapped or swap is full (6.1 via ``folio_free_swap``, 7.x via ``swap_cache_del_folio``)."""
    folio = k.cache.get(off)
    if folio is None or not trylock(folio, t):
        return
    if not folio.maps or k.swap_full():
        if k.v61:
            folio_free_swap(k, t, folio)
        elif all(k.slots[folio.swap + i].count == 0 for i in range(folio.nr)):
            cache_delete(k, t, folio)
    unlock(folio, t)


# --- counts ---------------------------------------------------------------------------------------------------------


def swapcache_prepare(k: Kernel, t: Thread, off: int) -> int:
    """6.1 ``swapcache_prepare(entry)`` = ``__swap_duplicate(entry, SWAP_HAS_CACHE)``: 0, -EEXIST, -ENOENT."""
    k.tracer.emit(t, "swapcache_prepare", "call", entry=entry_of(off))
    s = k.slots[off]
    if s.has_cache:
        err = EEXIST
    elif s.count:
        s.has_cache = True
        err = 0
    else:
        err = ENOENT
    k.tracer.emit(t, "swapcache_prepare", "return", retval=err)
    return err


def swapcache_clear(k: Kernel, t: Thread, off: int) -> None:
    """6.1 ``swapcache_clear(si, entry)``: drop the prepare's SWAP_HAS_CACHE; usage 0 -> ``free_swap_slot``."""
    k.tracer.emit(t, "swapcache_clear", "call", entry=entry_of(off))
    s = k.slots[off]
    s.has_cache = False
    if s.count == 0:
        free_swap_slot(k, t, off)


def dup_for_unmap(k: Kernel, t: Thread, folio: Folio, idx: int) -> None:
    """``try_to_unmap_one`` takes a swap count for the pte it turns into a swap entry (6.1 ``swap_duplicate``,
    7.x ``folio_dup_swap(folio, page)``)."""
    off = folio.swap + idx
    if k.v61:
        k.tracer.emit(t, "swap_duplicate", "call", entry=entry_of(off))
    else:
        k.tracer.emit(t, "folio_dup_swap", "call", folio=folio.fid, entry=entry_of(off))
    k.slots[off].count += 1


def dup_for_fork(k: Kernel, t: Thread, off: int) -> None:
    """Fork copies a swap pte: 6.1 ``swap_duplicate(entry)``, 7.x ``swap_dup_entry_direct(entry)``."""
    k.tracer.emit(t, "swap_duplicate" if k.v61 else "swap_dup_entry_direct", "call", entry=entry_of(off))
    assert k.slots[off].count > 0
    k.slots[off].count += 1


def zap_swap_pte(k: Kernel, t: Thread, off: int) -> None:
    """Zap of a swap pte: 6.1 ``free_swap_and_cache(entry)``, 7.x ``swap_put_entries_direct(entry, 1)``."""
    s = k.slots[off]
    assert s.count > 0
    if k.v61:
        k.tracer.emit(t, "free_swap_and_cache", "call", entry=entry_of(off))
        s.count -= 1
        if s.count == 0 and not s.has_cache:
            free_swap_slot(k, t, off)
        elif s.count == 0:
            try_to_reclaim_swap(k, t, off)
        return
    k.tracer.emit(t, "swap_put_entries_direct", "call", entry=entry_of(off), nr=1)
    s.count -= 1
    if s.count == 0 and off not in k.cache:
        cluster_free(k, t, off, 1)
    elif s.count == 0:
        try_to_reclaim_swap(k, t, off)


def folio_put_swap(k: Kernel, t: Thread, folio: Folio, off: int, nr: int) -> int:
    """7.x ``folio_put_swap(folio, page)`` (page NULL: all ``nr`` entries): drop counts, never free (the swap
    cache pins the slots)."""
    ts = k.tracer.emit(t, "folio_put_swap", "call", folio=folio.fid, entry=entry_of(off), nr=nr).ts_ns
    for i in range(nr):
        assert k.slots[off + i].count > 0
        k.slots[off + i].count -= 1
    return ts

"""The rest of the kernel around the fault: user accesses and writes, reclaim, ``folio_free_swap`` on a full
swap, zap (``MADV_DONTNEED``), fork, KSM merge. Each is a step generator (see :mod:`.sched`).

Reclaim follows ``shrink_folio_list`` (6.1 vmscan.c; 7.3 the same shape): trylock the folio; if it is not in the
swap cache, allocate slots and add it (6.1 ``add_to_swap`` = ``folio_alloc_swap`` + ``add_to_swap_cache``; 7.x
``folio_alloc_swap`` adds it itself); ``try_to_unmap`` turns every pte into the swap entry, taking a count each
(6.1 ``swap_duplicate``, 7.x ``folio_dup_swap``); ``pageout`` writes the data to the slots; ``__remove_mapping``
removes the folio from the swap cache only if nobody else holds a reference (``folio_ref_freeze``), then drops
the cache pin (6.1 ``put_swap_folio``; 7.x inside ``__swap_cache_del_folio``), which frees count-0 slots.
"""

from __future__ import annotations

from .fault import do_swap_page
from .sched import Step, Thread, Wait
from .state import Folio, Kernel, Pte, entry_of
from .swapcore import (
    add_to_swap_cache,
    cache_delete,
    dup_for_fork,
    dup_for_unmap,
    folio_alloc_swap,
    folio_free_swap,
    trylock,
    unlock,
    zap_swap_pte,
)


def user_write(k: Kernel, mm: int, addr: int, value: int | None = None) -> bool:
    """A store by a user thread to a present or empty pte (no probe fires): in place when the page is the mm's
    own (no other mapping, not KSM, no swap count on it), else copy-on-write; an empty pte gets a new page."""
    key = (mm, addr)
    pte = k.ptes.get(key)
    v = k.new_data() if value is None else value
    if pte is None:
        folio = k.new_folio(1, [v])
        folio.anon_root = k.anon_root[mm]
        k.set_pte_present(key, folio, 0)
    elif pte.present:
        folio = pte.folio
        assert folio is not None
        if k.exclusive(folio, mm):
            folio.data[pte.idx] = v
        else:
            new = k.new_folio(1, [v])
            new.anon_root = k.anon_root[mm]
            k.clear_pte(key)
            k.set_pte_present(key, new, 0)
    else:
        return False
    k.latest[key] = v
    return True


def access(k: Kernel, t: Thread, mm: int, addr: int, write: bool, value: int | None = None) -> Step:
    """A user load/store: fault the page in if its pte holds a swap entry (up to 3 tries), then store."""
    if mm not in k.anon_root:
        return
    while mm in k.forking:
        yield Wait(lambda: mm not in k.forking)
    for _ in range(3):
        pte = k.ptes.get((mm, addr))
        if pte is None or pte.swap is None:
            break
        yield from do_swap_page(k, t, mm, addr, write)
        yield
    if write:
        user_write(k, mm, addr, value)


def write_copy(k: Kernel, t: Thread, mm: int, addr: int, src: tuple[int, int]) -> Step:
    """Store the data another (mm, addr) holds (so KSM can merge the two pages)."""
    if src in k.latest:
        yield from access(k, t, mm, addr, True, k.latest[src])


def write_large(k: Kernel, t: Thread, mm: int, addr: int, nr: int = 2) -> Step:
    """An mTHP anonymous fault: a new ``nr``-page folio over the empty, aligned range from ``addr``."""
    base = addr - addr % nr
    if mm not in k.anon_root or any((mm, base + j) in k.ptes for j in range(nr)):
        return
    folio = k.new_folio(nr, [k.new_data() for _ in range(nr)])
    folio.anon_root = k.anon_root[mm]
    for j in range(nr):
        k.set_pte_present((mm, base + j), folio, j)
        k.latest[(mm, base + j)] = folio.data[j]
    yield


def zap(k: Kernel, t: Thread, mm: int, addr: int) -> Step:
    """``MADV_DONTNEED`` of one page (mmap_lock for read: runs alongside faults)."""
    key = (mm, addr)
    pte = k.ptes.get(key)
    if pte is None:
        return
    if pte.swap is not None:
        zap_swap_pte(k, t, pte.swap)
    k.clear_pte(key)
    k.latest.pop(key, None)
    yield


def _present_folios(k: Kernel) -> list[Folio]:
    seen = {}
    for pte in k.ptes.values():
        if pte.folio is not None:
            seen[pte.folio.fid] = pte.folio
    return [seen[f] for f in sorted(seen)]


def reclaim(k: Kernel, t: Thread, pick: int) -> Step:
    """Swap out one mapped folio (the ``pick``-th of those mapped, by address)."""
    def cands() -> list[Folio]:
        return [f for f in _present_folios(k) if f.locked_by is None]

    while not cands():  # kswapd sleeps until there is something to reclaim
        yield Wait(lambda: bool(cands()))
    f = cands()[pick % len(cands())]
    if not trylock(f, t):
        return
    if not f.swapcache:
        off = folio_alloc_swap(k, t, f)
        if off is None:
            unlock(f, t)
            yield
            return
        if k.v61:
            yield
            add_to_swap_cache(k, t, f, off)
    yield
    for mm, addr, idx in sorted(f.maps):  # try_to_unmap: rmap walk, one pte at a time
        dup_for_unmap(k, t, f, idx)
        f.maps.discard((mm, addr, idx))
        k.ptes[(mm, addr)] = Pte(swap=f.swap + idx)
        yield
    # pageout: 6.1 swap_writepage(&folio->page, wbc) (entry = page_private of the head page), 7.x
    # swap_writeout(ctx, folio); the whole folio is written, and on a SWP_SYNCHRONOUS_IO device the data is on
    # the device when the call returns.
    write_fn = "swap_writepage" if k.v61 else "swap_writeout"
    k.tracer.emit(t, write_fn, "call", folio=f.fid, entry=entry_of(f.swap), nr=f.nr)
    for i in range(f.nr):
        k.slots[f.swap + i].data = f.data[i]
        k.slots[f.swap + i].data_gen = k.slots[f.swap + i].gen
    k.tracer.emit(t, write_fn, "return", retval=0)
    yield
    if not f.maps and not f.refs:  # __remove_mapping: folio_ref_freeze fails while anyone holds a ref
        cache_delete(k, t, f)
    unlock(f, t)
    yield


def free_swap_full(k: Kernel, t: Thread, pick: int) -> Step:
    """The allocator reclaiming swap cache when swap is full (``__try_to_reclaim_swap``): 6.1 through
    ``folio_free_swap``, 7.x through ``swap_cache_del_folio``; only slots with no count left are freed."""
    if not k.swap_full():
        return
    cands = sorted({f.fid: f for f in k.cache.values() if f.locked_by is None}.items())
    if not cands:
        return
    f = cands[pick % len(cands)][1]
    if not trylock(f, t):
        return
    if k.v61:
        folio_free_swap(k, t, f)
    elif all(k.slots[f.swap + i].count == 0 for i in range(f.nr)):
        cache_delete(k, t, f)
    unlock(f, t)
    yield


def fork(k: Kernel, t: Thread, parent: int, child: int) -> Step:
    """``fork()``: mmap_lock for write (waits for the parent's faults), copies every pte (swap ptes take a count:
    6.1 ``swap_duplicate``, 7.x ``swap_dup_entry_direct``); the child shares the parent's anon_vma root."""
    if parent not in k.anon_root or child in k.anon_root:
        return
    k.forking.add(parent)
    while k.in_fault.get(parent, 0):
        yield Wait(lambda: not k.in_fault.get(parent, 0))
    k.add_mm(child, k.anon_root[parent])
    for (mm, addr), pte in sorted(k.ptes.items(), key=lambda kv: kv[0]):
        if mm != parent:
            continue
        if pte.swap is not None:
            dup_for_fork(k, t, pte.swap)
            k.ptes[(child, addr)] = Pte(swap=pte.swap)
        else:
            assert pte.folio is not None
            k.set_pte_present((child, addr), pte.folio, pte.idx)
        if (mm, addr) in k.latest:
            k.latest[(child, addr)] = k.latest[(mm, addr)]
    k.forking.discard(parent)
    yield


def ksm_merge(k: Kernel, t: Thread, pick: int) -> Step:
    """ksmd merges two identical small anonymous pages of different (mm, addr) into one KSM page."""
    ptes = sorted((key, pte) for key, pte in k.ptes.items() if pte.folio is not None and pte.folio.nr == 1)
    pairs = []
    for i, (ka, pa) in enumerate(ptes):
        for kb, pb in ptes[i + 1:]:
            fa, fb = pa.folio, pb.folio
            if fa is fb or fa.data != fb.data or fb.ksm:
                continue
            if any(f.swapcache or f.locked_by is not None or f.refs for f in (fa, fb)):
                continue
            pairs.append((ka, kb))
    if not pairs:
        return
    ka, kb = pairs[pick % len(pairs)]
    keep = k.ptes[ka].folio
    assert keep is not None
    keep.ksm, keep.anon_root = True, None
    k.clear_pte(kb)
    k.set_pte_present(kb, keep, 0)
    yield


__all__ = ["access", "folio_free_swap", "fork", "free_swap_full", "ksm_merge", "reclaim", "user_write",
           "write_copy", "write_large", "zap"]

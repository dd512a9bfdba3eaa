"""``do_swap_page()`` of 6.1.192 and 7.3.4, step by step (notes A.1 and B.1).

Steps (``yield`` = other threads may run): fault entry | lookup call | lookup (the cache is read here) and its
return | on a miss, the swap-in (6.1 skip-swapcache path or ``__read_swap_cache_async``; 7.x ``swapin_sync`` /
``swap_cache_read_folio``), itself in steps | folio lock (sleeps) | the 4969c1192d15 guard and
``ksm_might_need_to_copy`` | the page-table-lock section (``pte_same``, count drop, free-after-install, set pte:
one step, as nothing else can touch that pte meanwhile) | unlock, ``swapcache_clear``, return.

Guards (``KernelConfig``): ``cache_guard`` is the 4969c1192d15/31c4a3d3a0f8 check ``folio in swap cache &&
page_private == entry`` (7.x ``folio_matches_swap_entry``). Off, the kernel behaves as before 2010: no check, and
a KSM copy's swap-cache folio is unlocked right after the copy (Andrea's "stuck in ksm_does_need_to_copy after
the unlock_page"). ``skip_guard`` is 13ddaf26be32's ``swapcache_prepare``/``swapcache_clear`` on 6.1's skip path.
7.x has no skip path (every swap-in goes through the swap cache) and no ``swapcache_prepare``.

Simplifications (documented, not kernel differences that matter to the race): readahead reads only the
faulting entry (page-cluster 0); swap-in folios are order 0 (a large folio is mapped only when the fault finds it
in the swap cache); memcg charging never fails; a fault never retries on ``VM_FAULT_RETRY``.
"""

from __future__ import annotations

from collections.abc import Generator

from .sched import Thread
from .state import (
    EEXIST,
    VM_FAULT_MAJOR,
    VM_FAULT_OOM,
    Folio,
    Install,
    Kernel,
    entry_of,
)
from .swapcore import (
    cluster_free,
    folio_free_swap,
    folio_put_swap,
    lock_folio,
    swap_free,
    swapcache_clear,
    swapcache_prepare,
    swapin_add,
    unlock,
)

FaultStep = Generator[object, None, None]


def _lookup(k: Kernel, t: Thread, off: int) -> Folio | None:
    """``swap_cache_get_folio`` body and return (+1 ref on a hit)."""
    folio = k.cache.get(off)
    if folio is not None:
        folio.ref(t.tid)
    k.tracer.emit(t, "swap_cache_get_folio", "return", retval=folio.fid if folio else 0)
    return folio


def _swapin_cache(k: Kernel, t: Thread, off: int, box: list[Folio | None]) -> FaultStep:
    """Read ``off`` through the swap cache; the folio (locked until its read completes, then unlocked, with a
    ref) or None is left in ``box``. 6.1 ``__read_swap_cache_async`` + ``swap_readpage``; 7.x ``swapin_sync`` /
    ``swap_cache_read_folio`` + ``swap_read_folio``."""
    E = entry_of(off)
    while True:
        if k.v61:
            folio = k.cache.get(off)  # filemap_get_folio: no probe
            if folio is not None:
                folio.ref(t.tid)
                box[0] = folio
                box.append(True)  # found in the cache by the swap-in itself
                return
            err = swapcache_prepare(k, t, off)
            if err == 0:
                break
            if err != EEXIST:
                box[0] = None
                return
            yield  # schedule_timeout_uninterruptible(1), then retry
            continue
        k.tracer.emit(t, "swap_cache_get_folio", "call", entry=E)
        folio = _lookup(k, t, off)
        if folio is not None:
            box[0] = folio
            box.append(True)  # found in the cache by the swap-in itself
            return
        yield
        if off in k.cache:  # swap_cache_alloc_folio: -EEXIST, look up again
            continue
        if not k.slots[off].allocated or k.slots[off].count == 0:  # -ENOENT
            box[0] = None
            return
        break
    new = k.new_folio(1, [0])
    new.locked_by = t.tid
    new.ref(t.tid)
    if k.v61:
        yield
    swapin_add(k, t, new, off)
    yield
    _read(k, t, new, off)
    new.locked_by = None  # read completion unlocks
    box[0] = new


def _read(k: Kernel, t: Thread, folio: Folio, off: int) -> bool:
    """The swap read (6.1 ``swap_readpage(page)``: entry = page_private; 7.x ``swap_read_folio(ctx, folio)``)."""
    k.tracer.emit(t, "swap_readpage" if k.v61 else "swap_read_folio", "call", folio=folio.fid, entry=entry_of(off))
    data = k.slots[off].data
    folio.data = [0 if data is None else data]  # a never-written (or discarded) slot reads as zeroes
    return k.slots[off].data_gen != k.slots[off].gen  # read before this allocation's pageout


def _needs_copy(k: Kernel, folio: Folio, mm: int) -> bool:
    """``ksm_might_need_to_copy``: copy when the page is rmap-bound to another mm's anon_vma (a KSM page that was
    swapped out and read back by one mm, now faulted by another); never for a stable KSM page or a large folio."""
    if folio.nr > 1 or folio.ksm or folio.anon_root is None:
        return False
    return folio.anon_root != k.anon_root[mm]


def do_swap_page(k: Kernel, t: Thread, mm: int, addr: int, write: bool) -> FaultStep:
    """One swap-in fault of thread ``t`` on (mm, addr), if that pte holds a swap entry."""
    key = (mm, addr)
    pte = k.ptes.get(key)
    if pte is None or pte.swap is None:
        return
    off = pte.swap
    E = entry_of(off)
    tr = k.tracer
    k.in_fault[mm] = k.in_fault.get(mm, 0) + 1
    gen0 = k.slots[off].gen
    tr.emit(t, "do_swap_page", "call")
    yield
    tr.emit(t, "swap_cache_get_folio", "call", entry=E)
    yield
    folio = _lookup(k, t, off)
    yield
    swapcache: Folio | None = folio
    need_clear = False
    ret = 0
    path = "cache"
    read_unwritten = False
    relookup = False
    if folio is None:
        ret = VM_FAULT_MAJOR
        if k.v61 and k.cfg.sync_io and k.slots[off].count == 1:
            path = "skip"
            if k.cfg.skip_guard:
                if swapcache_prepare(k, t, off) != 0:
                    yield  # schedule_timeout_uninterruptible(1); goto out
                    _finish(k, t, mm, 0)
                    return
                need_clear = True
                yield
            folio = k.new_folio(1, [0])
            folio.locked_by = t.tid
            folio.ref(t.tid)
            read_unwritten = _read(k, t, folio, off)  # page_private = entry during the call, reset to 0 after
            yield
            folio.locked_by = None
        else:
            box: list[Folio | None] = [None]
            yield from _swapin_cache(k, t, off, box)
            folio = box[0]
            relookup = len(box) > 1
            if folio is None:
                yield
                _finish(k, t, mm, VM_FAULT_OOM if _pte_is(k, key, off) else 0)
                return
            swapcache = folio
            yield
    yield from lock_folio(k, t, folio)
    idx = off % folio.nr if swapcache is not None else 0
    if swapcache is not None and k.cfg.cache_guard and not (folio.swapcache and folio.swap + idx == off):
        _out_page(k, t, folio)
        yield
        _finish(k, t, mm, 0)
        return
    # ksm_might_need_to_copy: 6.1 passes and returns the page, 7.x the folio.
    tr.emit(t, "ksm_might_need_to_copy", "call", folio=folio.page(idx) if k.v61 else folio.fid)
    installed, inst_idx = folio, idx
    if swapcache is not None and _needs_copy(k, folio, mm):
        installed, inst_idx = k.new_folio(1, [folio.data[idx]]), 0
        installed.locked_by = t.tid
        installed.ref(t.tid)
        path = "ksm-copy"
    tr.emit(t, "ksm_might_need_to_copy", "return",
            retval=installed.page(inst_idx) if k.v61 else installed.fid)
    if installed is not folio and not k.cfg.cache_guard:
        unlock(folio, t)  # before 4969c1192d15: the swap-cache page was not kept locked past the copy
    yield
    # --- page-table lock held: pte_same, count drop, (6.1) free, set_pte ---------------------------------------
    if not _pte_is(k, key, off):
        _release(k, t, folio, installed, need_clear, off)
        _finish(k, t, mm, 0)
        return
    extra: list[tuple[int, int]] = []
    if k.v61:
        ev_ts = _install_61(k, t, folio, installed, off, write)
    else:
        ev_ts, extra = _install_7x(k, t, mm, addr, folio, swapcache, installed, idx, off)
    k.set_pte_present(key, installed, inst_idx)
    if not installed.ksm:
        installed.anon_root = k.anon_root[mm]
    extra_stale = False
    for a, i in extra:
        k.set_pte_present((mm, a), installed, i)
        extra_stale |= installed.data[i] != k.latest[(mm, a)]
        k.latest[(mm, a)] = installed.data[i]
    k.truth.append(Install(t.tid, mm, addr, E, ev_ts, installed.data[inst_idx], k.latest[key], path, extra_stale,
                           read_unwritten, k.slots[off].gen != gen0, relookup))
    # A lost write is lost once: from now on the process sees what was installed, so a later swap-out and swap-in
    # of this page carries the corruption faithfully and is not a second stale install.
    k.latest[key] = installed.data[inst_idx]
    if not k.v61 and _should_free_7x(k, installed, write):
        folio_free_swap(k, t, installed)
    yield
    _release(k, t, folio, installed, need_clear, off)
    _finish(k, t, mm, ret)


def _pte_is(k: Kernel, key: tuple[int, int], off: int) -> bool:
    pte = k.ptes.get(key)
    return pte is not None and pte.swap == off


def _install_61(k: Kernel, t: Thread, folio: Folio, installed: Folio, off: int, write: bool) -> int:
    """6.1 memory.c:4031-4040: ``swap_free(entry)``, then ``folio_free_swap`` if it should (before set_pte_at)."""
    ts = swap_free(k, t, off)
    f = installed
    if f.swapcache and (k.swap_full() or (write and not f.ksm and not f.maps and set(f.refs) == {t.tid}
                                          and f.refs[t.tid] == 1)):
        folio_free_swap(k, t, f)
    return ts


def _install_7x(k: Kernel, t: Thread, mm: int, addr: int, folio: Folio, swapcache: Folio | None,
                installed: Folio, idx: int, off: int) -> tuple[int, list[tuple[int, int]]]:
    """7.3 memory.c:5203-5225: ``folio_put_swap`` (never frees) before ``set_ptes``; a large swap-cache folio
    whose whole pte range still holds its entries is mapped at once (``folio_put_swap(folio, NULL)``)."""
    extra: list[tuple[int, int]] = []
    bound = folio.swapcache and folio.swap + idx == off
    if not bound:
        # only without the guard: the folio is not E's cache folio; drop E's count the way swap_free would
        ts = k.tracer.emit(t, "folio_put_swap", "call", folio=folio.fid, entry=entry_of(off)).ts_ns
        k.slots[off].count -= 1
        if k.slots[off].count == 0 and off not in k.cache:
            cluster_free(k, t, off, 1)
        return ts, extra
    if installed is not folio:
        return folio_put_swap(k, t, folio, folio.swap, folio.nr), extra
    base = addr - idx
    if folio.nr > 1 and all((k.ptes.get((mm, base + j)) or _NONE).swap == folio.swap + j for j in range(folio.nr)):
        extra = [(base + j, j) for j in range(folio.nr) if j != idx]
        return folio_put_swap(k, t, folio, folio.swap, folio.nr), extra
    return folio_put_swap(k, t, folio, off, 1), extra


class _NonePte:
    swap = None


_NONE = _NonePte()


def _should_free_7x(k: Kernel, f: Folio, write: bool) -> bool:
    """7.3 ``should_try_to_free_swap``: always on SWP_SYNCHRONOUS_IO, or swap full, or an exclusive write."""
    return f.swapcache and (k.cfg.sync_io or k.swap_full() or (write and not f.ksm))


def _out_page(k: Kernel, t: Thread, folio: Folio) -> None:
    """``out_page``: (7.x: free the swap cache if possible,) unlock, put."""
    if not k.v61 and folio.swapcache:
        folio_free_swap(k, t, folio)
    unlock(folio, t)
    folio.put(t.tid)


def _release(k: Kernel, t: Thread, folio: Folio, installed: Folio, need_clear: bool, off: int) -> None:
    """Unlock and put what the fault holds; ``swapcache_clear`` on 6.1's skip path."""
    for f in {folio.fid: folio, installed.fid: installed}.values():
        if f.locked_by == t.tid:
            unlock(f, t)
        f.put(t.tid)
    if need_clear:
        swapcache_clear(k, t, off)


def _finish(k: Kernel, t: Thread, mm: int, ret: int) -> None:
    k.tracer.emit(t, "do_swap_page", "return", retval=ret)
    k.in_fault[mm] -= 1

"""Hypothesis strategies: small random scenarios (2-4 threads, 4-8 slots, 20-200 scheduling choices)."""

from __future__ import annotations

from hypothesis import strategies as st

from .scenarios import Scenario, ThreadSpec
from .state import KernelConfig

USER_TIDS = (101, 102, 103)
KSWAPD, KSMD, OTHER_MM_TID, CHILD_TID = 40, 41, 201, 301
LARGE_ADDR = 4  # a 2-page folio lives at addresses 4 and 5 of mm 1


@st.composite
def scenarios(draw, flavour: str, guards: bool, sync_io: bool | None = None, focus: bool | None = None) -> Scenario:
    """A random scenario for ``flavour`` with both guards on or off. ``sync_io`` None: drawn."""
    nslots = draw(st.integers(4, 8))
    sync = draw(st.booleans()) if sync_io is None else sync_io
    cfg = KernelConfig(flavour, nslots, sync_io=sync, cache_guard=guards, skip_guard=guards)
    if focus is None:
        focus = draw(st.booleans())  # one page, every thread on it: the race-prone shape
    naddr = 1 if focus else draw(st.sampled_from((1, 2, 3)))
    ksm = not focus and draw(st.booleans())
    large = not focus and draw(st.booleans())
    forks = not focus and draw(st.booleans())
    addrs = list(range(naddr)) + ([LARGE_ADDR, LARGE_ADDR + 1] if large else [])
    pages = {1: list(range(naddr))}
    same_data = []
    if ksm:
        pages[2] = [0]
        same_data = [((1, 0), (2, 0))]
    swapped = draw(st.permutations([(1, a) for a in range(naddr)] + ([(2, 0)] if ksm else [])))
    if large:
        swapped = [(1, LARGE_ADDR), *swapped]
    op = st.one_of(
        st.tuples(st.just("access"), st.sampled_from(addrs), st.integers(0, 1)),
        st.tuples(st.just("access"), st.sampled_from(addrs), st.integers(0, 1)),
        st.tuples(st.just("access"), st.sampled_from(addrs), st.just(1)),
        st.tuples(st.just("zap"), st.sampled_from(addrs)),
        *([st.tuples(st.just("large"), st.just(LARGE_ADDR))] if large else []),
        *([st.tuples(st.just("copy"), st.just(0), st.just(2), st.just(0))] if ksm else []),
    )
    nusers = draw(st.integers(2 if focus else 1, 3 if not (ksm or forks) else 2))
    threads = [ThreadSpec(USER_TIDS[i], 1, draw(st.lists(op, min_size=1, max_size=4))) for i in range(nusers)]
    if forks:
        threads[0].ops.insert(draw(st.integers(0, len(threads[0].ops))), ("fork", 3))
        threads.append(ThreadSpec(CHILD_TID, 3, draw(st.lists(
            st.tuples(st.just("access"), st.sampled_from(addrs), st.integers(0, 1)), min_size=1, max_size=3))))
    if ksm:
        threads.append(ThreadSpec(OTHER_MM_TID, 2, draw(st.lists(
            st.tuples(st.just("access"), st.just(0), st.integers(0, 1)), min_size=1, max_size=3))))
    kernel_op = st.one_of(st.tuples(st.just("reclaim"), st.integers(0, 7)),
                          st.tuples(st.just("reclaim"), st.integers(0, 7)),
                          st.tuples(st.just("free"), st.integers(0, 7)),
                          *([st.tuples(st.just("ksm"), st.integers(0, 3))] if ksm else []))
    threads.append(ThreadSpec(KSWAPD, 0, draw(st.lists(kernel_op, min_size=1, max_size=5)), "kswapd0"))
    # bursts (thread, how many steps): a thread parked inside its fault window while others run many steps is
    # what the races need, and runs of one thread make that likely
    bursts = draw(st.lists(st.tuples(st.integers(0, 5), st.integers(1, 8)), min_size=5, max_size=40))
    choices = [c for c, n in bursts for _ in range(n)][:200]
    return Scenario(cfg, pages, swapped=swapped, threads=threads, choices=choices,
                    large=[(1, LARGE_ADDR)] if large else [], same_data=same_data, merge_at_start=ksm)

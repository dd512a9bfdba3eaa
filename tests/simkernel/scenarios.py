"""A simulation from a compact, printable description (what hypothesis draws and hand-written cases use).

Operations of a thread (tuples):

``("access", addr, write)`` user load/store (faults if the pte holds a swap entry) · ``("zap", addr)``
``MADV_DONTNEED`` · ``("copy", addr, src_mm, src_addr)`` store the data of another page (for KSM) ·
``("large", addr)`` a new 2-page folio · ``("fork", child_mm)`` · ``("reclaim", pick)`` swap out a mapped folio ·
``("free", pick)`` free swap cache when swap is full · ``("ksm", pick)`` ksmd merges two identical pages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Callable

from swaprace.events import Capture

from . import mmops
from .sched import Sim, Step, Thread
from .state import Kernel, KernelConfig

Op = tuple


@dataclass
class ThreadSpec:
    """A thread: ``comm`` decides nothing but the event rows; ``mm`` is its address space (user threads)."""

    tid: int
    mm: int
    ops: list[Op]
    comm: str = "worker"


@dataclass
class Scenario:
    """Initial address spaces, pages swapped out before the threads start, the threads, and the schedule."""

    config: KernelConfig
    pages: dict[int, list[int]]  # mm -> addresses with a page written at start
    swapped: list[tuple[int, int]] = field(default_factory=list)  # (mm, addr) swapped out at start, in order
    threads: list[ThreadSpec] = field(default_factory=list)
    choices: Sequence[int] = ()
    by_tid: bool = False  # choices name tids (hand-written schedules) instead of indexing runnable threads
    strict: bool = True  # with by_tid: a named thread that cannot run is an error (else the first runnable runs)
    large: list[tuple[int, int]] = field(default_factory=list)  # (mm, addr) of 2-page folios made at start
    same_data: list[tuple[tuple[int, int], tuple[int, int]]] = field(default_factory=list)  # KSM-mergeable pairs
    merge_at_start: bool = False  # ksmd merges the same_data pairs before the threads start


def _op(k: Kernel, op: Op, mm: int) -> Callable[[Thread], Step]:
    kind = op[0]
    if kind == "access":
        return lambda t: mmops.access(k, t, mm, op[1], bool(op[2]))
    if kind == "zap":
        return lambda t: mmops.zap(k, t, mm, op[1])
    if kind == "copy":
        return lambda t: mmops.write_copy(k, t, mm, op[1], (op[2], op[3]))
    if kind == "large":
        return lambda t: mmops.write_large(k, t, mm, op[1])
    if kind == "fork":
        return lambda t: mmops.fork(k, t, mm, op[1])
    if kind == "reclaim":
        return lambda t: mmops.reclaim(k, t, op[1])
    if kind == "free":
        return lambda t: mmops.free_swap_full(k, t, op[1])
    if kind == "ksm":
        return lambda t: mmops.ksm_merge(k, t, op[1])
    raise ValueError(f"unknown op {op!r}")


def _run_now(k: Kernel, thread: Thread, gen: Step) -> None:
    for _ in gen:
        pass


def build(sc: Scenario) -> tuple[Kernel, Sim]:
    """Set up the kernel (pages written, some swapped out, sequentially) and the threads to interleave."""
    k = Kernel(sc.config)
    setup = Thread(tid=40, pid=40, comm="kswapd0", cpu=0)
    for mm, addrs in sorted(sc.pages.items()):
        k.add_mm(mm)
        for a in addrs:
            mmops.user_write(k, mm, a)
    for mm, a in sc.large:
        k.anon_root.setdefault(mm, mm)
        _run_now(k, setup, mmops.write_large(k, setup, mm, a))
    for (ma, aa), (mb, ab) in sc.same_data:
        mmops.user_write(k, mb, ab, k.latest[(ma, aa)])
    if sc.merge_at_start:
        ksmd = Thread(tid=41, pid=41, comm="ksmd", cpu=0)
        for _ in sc.same_data:
            _run_now(k, ksmd, mmops.ksm_merge(k, ksmd, 0))
    for mm, a in sc.swapped:
        pte = k.ptes.get((mm, a))
        if pte is None or pte.folio is None:
            continue
        folios = sorted({p.folio.fid for p in k.ptes.values() if p.folio is not None})
        _run_now(k, setup, mmops.reclaim(k, setup, folios.index(pte.folio.fid)))
    threads = []
    for n, spec in enumerate(sc.threads):
        th = Thread(tid=spec.tid, pid=spec.mm if spec.comm not in ("kswapd0", "ksmd") else spec.tid,
                    comm=spec.comm, cpu=n % 2)
        th.program = [_op(k, op, spec.mm) for op in spec.ops]
        th.daemon = spec.comm in ("kswapd0", "ksmd")
        threads.append(th)
    sim = Sim(threads, after_step=k.check)
    return k, sim


def run_scenario(sc: Scenario) -> tuple[Kernel, Capture]:
    """Build and run ``sc``; the kernel (with its truth log) and the capture of every probe event."""
    k, sim = build(sc)
    sim.run(sc.choices, by_tid=sc.by_tid, strict=sc.strict)
    return k, k.tracer.capture()


def truth_stale(k: Kernel) -> set:
    """The simulator's stale installs as (tid, entry, install_ns)."""
    return {(i.tid, i.entry, i.install_ns) for i in k.truth if i.stale}

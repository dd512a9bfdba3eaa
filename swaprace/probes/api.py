"""The live side as a library call: what ``swaprace record`` does, for a notebook or a test harness."""

from __future__ import annotations

from typing import Optional, Sequence

from swaprace.events import ROLES, Capture
from swaprace.probes.backend import get_backend, make_plan
from swaprace.probes.record import record as _record
from swaprace.probes.record import with_thread_filter


def record(output: Optional[str] = None, duration: Optional[float] = None, cmd: Optional[Sequence[str]] = None,
           backend: str = "auto", pid: Optional[int] = None, roles: Sequence[str] = ROLES,
           comm: Optional[str] = None, cgroup: Optional[str] = None, ready_file: Optional[str] = None) -> Capture:
    """Trace the swap-in path (root, a kernel with kprobes) until ``duration`` seconds pass or ``cmd`` exits.

    Returns the capture and writes it to ``output`` (atomically) when given. ``backend`` is ``auto`` (bcc when
    it works here, else ftrace), ``bcc`` or ``ftrace``; ``pid``, ``comm`` (a task name) and ``cgroup`` (a cgroup v2
directory) select the faulting threads whose windows are traced, in the kernel (slot frees and reallocations
by every task stay traced: :mod:`swaprace.probes.filters`); ``ready_file`` is written once the probes are armed.

    >>> cap = swaprace.record("run.parquet", duration=10)   # doctest: +SKIP
    """
    plan = with_thread_filter(make_plan(roles, pid=pid), comm, cgroup)
    return _record(output, get_backend(backend), plan, duration=duration, cmd=cmd, pid=pid, ready_file=ready_file)

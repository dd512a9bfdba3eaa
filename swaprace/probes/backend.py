"""The live-tracing backend interface shared by the bcc and ftrace backends, and the ``auto`` choice.

A backend attaches call and return probes for the roles a :class:`ProbePlan` resolved, hands back events in
the :mod:`swaprace.events` model (``drain``), counts what it lost (``losses``), and detaches everything on
``stop`` -- which must be idempotent and safe to call from a ``finally`` reached through a signal handler.

Backends register by module: ``ftrace`` is :class:`swaprace.probes.ftrace_backend.FtraceBackend`, ``bcc`` is
``swaprace.probes.bcc_backend.BccBackend``. Both are imported lazily, so this module (and ``doctor``) works on
machines without bcc.
"""

from __future__ import annotations

import abc
import importlib
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Type

import pandas as pd

from swaprace.errors import SwapraceError
from swaprace.events import ROLES
from swaprace.kernel.catalog import Resolution, SymbolTable, load_symbols, resolve_roles
from swaprace.kernel.layout import KernelLayout, check_arch, default_layout, detect_layout
from swaprace.probes.filters import Cgroup, ThreadFilter

BACKEND_NAMES = ("auto", "bcc", "ftrace")
#: Backend name -> (module, class). "auto" tries them in this order.
_REGISTRY: Dict[str, Tuple[str, str]] = {
    "bcc": ("swaprace.probes.bcc_backend", "BccBackend"),
    "ftrace": ("swaprace.probes.ftrace_backend", "FtraceBackend"),
}
AUTO_ORDER = ("bcc", "ftrace")


@dataclass
class ProbePlan:
    """What to attach: the resolved roles, the process filter and the backend knobs."""

    resolutions: Dict[str, Resolution]
    pid: Optional[int] = None  # trace only this process's (thread group's) faults; None: every process
    comm: Optional[str] = None  # ... only faults of threads with this name (swaprace.probes.filters)
    cgroup: Optional[Cgroup] = None  # ... only faults of tasks in this cgroup v2 subtree
    maxactive: int = 64  # kretprobe instances per probe (64 gave zero misses in the test guests)
    buffer_kb: int = 16384  # ftrace: per-CPU ring buffer size in KiB while recording
    stream_events: bool = True  # bcc: emit the event stream (False: in-kernel detection only)
    detect: bool = True  # bcc: run the in-kernel race detector
    kernel_release: Optional[str] = None
    #: ftrace: also keep trace_pipe's raw text and write it here after the capture (a '# swaprace:' header,
    #: then the lines); backends without raw text ignore it.
    raw_trace: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict)  # backend-specific options
    #: Struct offsets the probes read memory with (BTF of the running kernel, else verified defaults).
    layout: KernelLayout = field(default_factory=KernelLayout)

    @property
    def thread_filter(self) -> ThreadFilter:
        """Which faulting threads are traced (the slot lifecycle never is filtered)."""
        return ThreadFilter(pid=self.pid, comm=self.comm, cgroup=self.cgroup)

    @property
    def probed(self) -> Dict[str, Resolution]:
        """Resolved roles only (role -> resolution with a symbol)."""
        return {role: res for role, res in self.resolutions.items() if res.ok}

    @property
    def symbols(self) -> Dict[str, str]:
        """role -> kernel symbol actually probed (CaptureMeta.symbols)."""
        return {role: res.symbol for role, res in self.resolutions.items() if res.symbol is not None}

    def require(self, roles: Sequence[str] = ("fault", "lookup")) -> None:
        """Refuse a plan that misses a role the analysis cannot do without."""
        missing = [r for r in roles if r not in self.probed]
        if missing:
            why = "; ".join(f"{r}: tried {', '.join(self.resolutions[r].tried) or '-'} "
                            f"({self.resolutions[r].reason})" for r in missing if r in self.resolutions)
            raise SwapraceError(f"cannot resolve required role(s) {', '.join(missing)}: {why}")


def make_plan(roles: Sequence[str] = ROLES, pid: Optional[int] = None, symbols: Optional[SymbolTable] = None,
              **knobs) -> ProbePlan:
    """Resolve ``roles`` against the live kernel (or ``symbols``) and build a plan."""
    live = symbols is None
    if live:
        check_arch()
    table = symbols if symbols is not None else load_symbols()
    swap_table = table.has("__swap_cluster_free_entries")
    layout = knobs.pop("layout", None) or (detect_layout(swap_table) if live else default_layout(swap_table))
    plan = ProbePlan(resolutions=resolve_roles(table, roles), pid=pid, kernel_release=os.uname().release,
                     layout=layout, **knobs)
    return plan


class Backend(abc.ABC):
    """One way of attaching probes and reading their events."""

    name: str = "?"

    @classmethod
    @abc.abstractmethod
    def check(cls) -> Optional[str]:
        """None when this backend can work here, else a one-line reason."""

    @abc.abstractmethod
    def program_text(self, plan: ProbePlan) -> str:
        """What ``--ebpf`` prints: the BPF C program (bcc) or the kprobe_events lines (ftrace)."""

    @abc.abstractmethod
    def start(self, plan: ProbePlan) -> None:
        """Attach every probe of ``plan``; :class:`SwapraceError` with a clear reason on failure (and nothing
        left attached)."""

    @abc.abstractmethod
    def drain(self) -> pd.DataFrame:
        """Events since the last call, :func:`swaprace.events.normalize`-d (possibly zero rows)."""

    @abc.abstractmethod
    def losses(self) -> Dict[str, int]:
        """Cumulative lost-event counts by source (``ftrace_overrun``, ``perf_buffer``, ``kretprobe_missed:f``)."""

    def uncounted(self) -> List[str]:
        """Loss sources this run can lose events through but cannot count (never reported as a made-up 0)."""
        return []

    def detector(self) -> Optional[dict]:
        """The in-kernel detector's summary (bcc), or None when this backend has none."""
        return None

    def lost_intervals(self, events: pd.DataFrame) -> List[List[int]]:
        """Where the losses happened: ``[start_ns, end_ns, count]`` (see ``CaptureMeta.lost_intervals``), placed
        among the final ``events``; empty when the backend cannot place them."""
        return []

    def raw_lines(self) -> Optional[List[str]]:
        """The raw trace text kept for ``ProbePlan.raw_trace``; None when this backend has none (bcc)."""
        return None

    def hits(self) -> Dict[str, int]:
        """Per-probe hit counts as the kernel counted them (e.g. kprobe_profile), keyed ``<symbol>:<phase>``;
        empty when the backend cannot tell."""
        return {}

    @abc.abstractmethod
    def stop(self) -> None:
        """Detach everything and restore what was changed. Idempotent; safe from a signal path."""

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def backend_class(name: str) -> Type[Backend]:
    """The class registered for ``name`` (``bcc`` or ``ftrace``); SwapraceError when it cannot be imported."""
    if name not in _REGISTRY:
        raise SwapraceError(f"unknown backend {name!r} (choose from {', '.join(BACKEND_NAMES)})")
    module_name, class_name = _REGISTRY[name]
    try:
        module = importlib.import_module(module_name)
        return getattr(module, class_name)
    except (ImportError, AttributeError) as exc:
        raise SwapraceError(f"backend {name} is not available: {exc}") from None


def backend_status() -> Dict[str, Optional[str]]:
    """name -> None when usable here, else why not (for doctor and ``auto``)."""
    status: Dict[str, Optional[str]] = {}
    for name in AUTO_ORDER:
        try:
            status[name] = backend_class(name).check()
        except SwapraceError as exc:
            status[name] = str(exc)
    return status


def get_backend(name: str = "auto", *, program_only: bool = False) -> Backend:
    """An instance of the named backend; ``auto`` picks bcc when it works here, else ftrace.

    ``program_only`` (``record --ebpf``): the instance is only asked for its program text, which needs neither
    root nor kernel support, so a named backend need only import, and ``auto`` falls back to the last backend
    that imports when none works here (it prints what would be attached on a machine where it does).
    """
    if program_only:
        names = AUTO_ORDER if name == "auto" else (name,)
        last: Optional[SwapraceError] = None
        for candidate in names:
            try:
                cls = backend_class(candidate)
            except SwapraceError as exc:
                last = exc
                continue
            if name == "auto" and candidate != names[-1] and cls.check() is not None:
                continue
            return cls()
        raise last or SwapraceError("no backend available")
    if name == "auto":
        reasons: List[str] = []
        for candidate in AUTO_ORDER:
            try:
                cls = backend_class(candidate)
                why = cls.check()
            except SwapraceError as exc:
                why = str(exc)
            if why is None:
                return cls()
            reasons.append(f"{candidate}: {why}")
        raise SwapraceError("no tracing backend works here (" + "; ".join(reasons) + ")")
    cls = backend_class(name)
    why = cls.check()
    if why is not None:
        raise SwapraceError(f"backend {name} cannot run here: {why}")
    return cls()

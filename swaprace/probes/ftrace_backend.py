"""The ftrace backend: kprobe events written to ``kprobe_events``, read back from ``trace_pipe``.

Works on any kernel with kprobes and tracefs, without bcc or a compiler. Design choices:

* Events live in their own group ``swaprace_<pid>`` and are enabled only in a tracefs *instance* of the same
  name, with its own ring buffer: the instance's buffer size and ``trace_clock`` are set there, so the global
  tracing settings (and other users' buffers) are never touched and nothing global needs restoring. The
  instance and the events are removed on :meth:`stop` (disable first: the kernel refuses to delete enabled
  events).
* Clock ``mono`` (ktime_get_mono_fast_ns): the same clock as ``bpf_ktime_get_ns``, so bcc and ftrace
  captures line up.
* A call probe's first fetch argument is the role's key value, a return probe's first is ``$retval``; all are
  typed ``:x64`` (``$retval`` prints hex on 6.1 but decimal on 7.x without a type). The text is parsed by the
  offline reader (:func:`swaprace.readers.ftrace_text.parse_ftrace_lines`): live and offline share one parser.
* Losses: per-CPU ``overrun`` and ``dropped events`` from the instance's ``per_cpu/cpuN/stats``, and each
  probe's miss count from ``kprobe_profile``.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import pandas as pd

from swaprace.errors import SwapraceError
from swaprace.events import KEY_COLUMN, empty_events, normalize
from swaprace.probes import tracefs
from swaprace.probes.backend import Backend, ProbePlan
from swaprace.probes.filters import ftrace_filter
from swaprace.kernel.catalog import THREAD_ROLES, Candidate, needs_return
from swaprace.kernel.layout import KernelLayout

#: x86-64 argument registers, in C argument order (System V ABI). A kprobe placed at func+4 (after endbr64 on
#: IBT kernels) still sees them unchanged.
ARG_REGS = ("%di", "%si", "%dx", "%cx", "%r8", "%r9")
#: Most trace text parsed per poll (~25k lines).
MAX_DRAIN_BYTES = 4 << 20


def _reg(index: Optional[int]) -> str:
    if index is None:  # a catalog entry whose source names no argument for this value
        raise SwapraceError("probe argument missing from the catalog entry")
    if index >= len(ARG_REGS):
        raise SwapraceError(f"argument {index} is not passed in a register on x86-64")
    return ARG_REGS[index]


def call_fetch_args(cand: Candidate, layout: Optional[KernelLayout] = None) -> List[Tuple[str, str]]:
    """(name, fetch spec) pairs for a call probe: the role's key first, then what the reader needs to rebuild
    the entry and ``nr`` (names the text reader knows: ``entry folio nr page psz fhead forder si_type cinfo ci
    ci_off ci_size ci_slots``). Offsets come from ``layout`` (the running kernel's; verified defaults if None)."""
    lay = layout or KernelLayout()
    args: List[Tuple[str, str]] = []
    key = KEY_COLUMN[cand.role]
    swap = lay.folio_swap
    if cand.entry_src == "cluster":
        si, ci, start = cand.cluster_args or (0, 1, 2)
        args += [("si_type", f"+{lay.si_type}({_reg(si)}):s8"), ("cinfo", f"+{lay.si_cluster_info}({_reg(si)}):x64"),
                 ("ci", f"{_reg(ci)}:x64"), ("ci_off", f"{_reg(start)}:u32"), ("ci_size", f"\\{lay.cluster_size}:u32"),
                 ("ci_slots", f"\\{lay.cluster_slots}:u32")]
    elif cand.key_from_folio:
        args.append(("entry", f"+{swap}({_reg(cand.folio_arg)}):x64"))  # folio->swap.val
    elif key is not None and cand.key_arg is not None:
        args.append((key, f"{_reg(cand.key_arg)}:x64"))
    names = {name for name, _ in args}
    if cand.entry_src == "arg" and "entry" not in names:
        args.append(("entry", f"{_reg(cand.entry_arg)}:x64"))
    elif cand.entry_src in ("folio", "subpage") and "entry" not in names and cand.role != "slot_alloc":
        # (slot_alloc is skipped: at its entry the folio has no swap entry yet.)
        args.append(("entry", f"+{swap}({_reg(cand.folio_arg)}):x64"))
    if cand.folio_arg is not None and "folio" not in names:
        args.append(("folio", f"{_reg(cand.folio_arg)}:x64"))
    if cand.entry_src == "subpage" and cand.page_arg is not None:
        args += [("page", f"{_reg(cand.page_arg)}:x64"), ("psz", f"\\{lay.page_size}:u32")]
    if cand.nr_src == "arg" and cand.nr_arg is not None:
        args.append(("nr", f"{_reg(cand.nr_arg)}:u32"))
    elif cand.nr_src in ("folio", "subpage") and cand.folio_arg is not None:
        reg = _reg(cand.folio_arg)
        args += [("fhead", f"+{lay.folio_flags}({reg}):b1@{lay.pg_head}/64"),
                 ("forder", f"+{lay.folio_order}({reg}):u8")]
    return args


def event_names(group: str, role: str) -> Tuple[str, str]:
    """(call, return) event names. Unique per process, because kprobe_profile lists names without groups."""
    suffix = group[len(tracefs.GROUP_PREFIX):] if group.startswith(tracefs.GROUP_PREFIX) else group
    return f"sr{suffix}_{role}", f"sr{suffix}_{role}_ret"


def kprobe_lines(plan: ProbePlan, group: str) -> List[str]:
    """The ``kprobe_events`` definitions for every resolved role of ``plan``."""
    lines: List[str] = []
    for role, res in plan.probed.items():
        cand = res.candidate
        assert cand is not None and res.symbol is not None
        call, ret = event_names(group, role)
        args = " ".join(f"{name}={spec}" for name, spec in call_fetch_args(cand, plan.layout))
        lines.append(f"p:{group}/{call} {res.symbol} {args}".rstrip())
        if needs_return(cand):
            lines.append(f"r{plan.maxactive}:{group}/{ret} {res.symbol} ret=$retval:x64")
    return lines


def event_filters(plan: ProbePlan, group: str) -> Dict[str, str]:
    """event name -> ``filter`` text, for the thread-role events (the faulting threads' own) only: the slot
    lifecycle stays unfiltered (see :mod:`swaprace.probes.filters`). SwapraceError for what a filter cannot
    express (``--cgroup``, a glob character in ``--comm``)."""
    text = ftrace_filter(plan.thread_filter)
    if text is None:
        return {}
    out: Dict[str, str] = {}
    for role, res in plan.probed.items():
        if role not in THREAD_ROLES or res.candidate is None:
            continue
        call, ret = event_names(group, role)
        out[call] = text
        if needs_return(res.candidate):
            out[ret] = text
    return out


class FtraceBackend(Backend):
    """kprobe_events + trace_pipe."""

    name = "ftrace"

    def __init__(self, raw_trace: Optional[str] = None) -> None:
        self.raw_trace = raw_trace  # also keep the raw trace text (fixtures, debugging), as ProbePlan.raw_trace does
        self._root: Optional[Path] = None
        self._mounted = False
        self._group = tracefs.group_name()
        self._instance: Optional[Path] = None
        self._pipe_fd: Optional[int] = None
        self._partial = b""
        self._pending: List[pd.DataFrame] = []
        self._raw: List[str] = []
        self._plan: Optional[ProbePlan] = None
        self._defined: List[str] = []
        self._final_profile: Optional[Dict[str, tracefs.ProbeProfile]] = None
        self._final_stats: Optional[Dict[str, int]] = None
        self._tgid: Dict[int, int] = {}
        self._skipped = 0
        self._lost_marks: List[tuple] = []
        self.unknown_functions: Dict[str, int] = {}
        self._stopped = False
        self.clock = "mono"

    # --- feature check -----------------------------------------------------------------------------
    @classmethod
    def check(cls) -> Optional[str]:
        if os.geteuid() != 0:
            return "not root (kprobe_events needs root)"
        root = tracefs.mounted_tracefs()
        if root is not None and (root / "kprobe_events").exists():
            return None
        if not _kernel_has_kprobes():
            return "this kernel has no kprobes (CONFIG_KPROBES off: register_kprobe not in /proc/kallsyms)"
        if root is None:
            if not Path(tracefs.TRACEFS_CANDIDATES[0]).is_dir():
                return "no tracefs (CONFIG_FTRACE off?)"
            return None  # mountable: start() mounts it and unmounts it on stop
        return f"{root}/kprobe_events missing (CONFIG_KPROBE_EVENTS off)"

    # --- program -----------------------------------------------------------------------------------
    def program_text(self, plan: ProbePlan) -> str:
        header = [f"# swaprace ftrace backend: kprobe_events for group {self._group}",
                  f"# instance {self._group}: buffer_size_kb={plan.buffer_kb} trace_clock={self.clock}"]
        for role, res in plan.resolutions.items():
            if not res.ok:
                header.append(f"# {role}: not probed (tried {', '.join(res.tried)}: {res.reason})")
        filters = [f"# filter {self._group}/{event}: {text}" for event, text in
                   event_filters(plan, self._group).items()]
        return "\n".join(header + filters + kprobe_lines(plan, self._group)) + "\n"

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self, plan: ProbePlan) -> None:
        why = self.check()
        if why is not None:
            raise SwapraceError(f"ftrace backend cannot run here: {why}")
        plan.require()
        event_filters(plan, self._group)  # refuse a filter ftrace cannot apply before attaching anything
        self._plan = plan
        try:
            self._attach(plan)
        except BaseException:
            self.stop()
            raise

    def _attach(self, plan: ProbePlan) -> None:
        root = tracefs.mounted_tracefs()
        if root is None:
            root = tracefs.mount_tracefs()
            self._mounted = True
        self._root = root
        # A previous run of this very pid cannot exist, but a leftover with the same name would make the
        # definitions fail: clear it first.
        tracefs.remove_group(root, self._group)
        self._instance = root / "instances" / self._group
        try:
            self._instance.mkdir()
        except OSError as exc:
            raise SwapraceError(f"cannot create tracefs instance {self._instance}: {exc.strerror}") from None
        for line in kprobe_lines(plan, self._group):
            try:
                tracefs.write_text(root / "kprobe_events", line + "\n", append=True)
            except SwapraceError as exc:
                raise SwapraceError(f"{exc}: {line!r}{_error_log_tail(root)}") from None
            self._defined.append(line)
        tracefs.write_text(self._instance / "buffer_size_kb", str(plan.buffer_kb))
        clocks = tracefs.read_text(self._instance / "trace_clock")
        if self.clock not in clocks.replace("[", " ").replace("]", " ").split():
            self.clock = "local"  # old kernels lack mono: timestamps then come from the local clock
        tracefs.write_text(self._instance / "trace_clock", self.clock)
        self._pipe_fd = os.open(self._instance / "trace_pipe", os.O_RDONLY | os.O_NONBLOCK)
        # The group's enable arms its kprobes one after the other (slow under emulation): with the instance's
        # buffer off meanwhile, no call is recorded whose return probe is not armed yet; all start together.
        tracefs.write_text(self._instance / "tracing_on", "0")
        for event, text in event_filters(plan, self._group).items():
            path = self._instance / "events" / self._group / event / "filter"
            try:
                tracefs.write_text(path, text + "\n")
            except SwapraceError as exc:
                raise SwapraceError(f"{exc}: filter {text!r}{_error_log_tail(root)}") from None
        tracefs.write_text(self._instance / "events" / self._group / "enable", "1")
        tracefs.write_text(self._instance / "tracing_on", "1")

    def _read_pipe(self, limit: Optional[int] = MAX_DRAIN_BYTES) -> bytes:
        """Complete lines trace_pipe has now, up to about ``limit`` bytes (non-blocking; None: everything).

        The limit keeps one poll of the recorder short when parsing falls behind the kernel (the rest waits
        in the ring buffer), so a stop signal is acted on promptly; a trailing partial line waits too."""
        if self._pipe_fd is None:
            return b""
        chunks = [self._partial]
        got = 0
        while limit is None or got < limit:
            try:
                data = os.read(self._pipe_fd, 1 << 20)
            except BlockingIOError:
                break
            except OSError as exc:
                raise SwapraceError(f"reading trace_pipe failed: {exc.strerror}") from None
            if not data:
                break
            chunks.append(data)
            got += len(data)
        buf = b"".join(chunks)
        cut = buf.rfind(b"\n")
        if cut < 0:
            self._partial = buf
            return b""
        self._partial = buf[cut + 1:]
        return buf[:cut + 1]

    def _parse(self, data: bytes) -> pd.DataFrame:
        keep_raw = self.raw_trace is not None or (self._plan is not None and self._plan.raw_trace is not None)
        if keep_raw and data:
            # bytes that are not UTF-8 (a task named so) stay, escaped, as the parser keeps them
            self._raw.extend(data.decode("utf-8", "backslashreplace").splitlines())
        if not data:
            return empty_events()
        from swaprace.readers.ftrace_text import parse_ftrace_bytes

        # The recorder knows what it probed: compiler clones (foo.isra.0) map to their role too.
        overrides = {symbol: role for role, symbol in self._plan.symbols.items()} if self._plan else None
        chunk = parse_ftrace_bytes(data, overrides)
        self._skipped += int(chunk.skipped)
        self._lost_marks += chunk.lost_marks
        for name, n in chunk.unknown_functions.items():
            self.unknown_functions[name] = self.unknown_functions.get(name, 0) + n
        events = chunk.events
        if len(events):
            events = self._with_tgid(events)
            events = self._filter_pid(events)
        return events

    def _with_tgid(self, events: pd.DataFrame) -> pd.DataFrame:
        """ftrace prints the thread id; fill ``pid`` with the thread group id where /proc still knows it."""
        tids = events["tid"].to_numpy()
        uniq, inverse = np.unique(tids, return_inverse=True)
        for tid in uniq.tolist():
            if tid not in self._tgid:
                self._tgid[tid] = _tgid_of(tid)
        tgids = np.array([self._tgid[t] for t in uniq.tolist()], dtype=np.int32)
        events = events.copy()
        events["pid"] = tgids[inverse]
        return events

    def _filter_pid(self, events: pd.DataFrame) -> pd.DataFrame:
        pid = self._plan.pid if self._plan else None
        if pid is None:
            return events
        own = events["role"].astype(str).isin(THREAD_ROLES)
        keep = ~own | (events["pid"] == pid)
        return events[keep].reset_index(drop=True)

    def drain(self) -> pd.DataFrame:
        frames = self._pending
        self._pending = []
        if not self._stopped:
            frames.append(self._parse(self._read_pipe()))
        frames = [f for f in frames if len(f)]
        if not frames:
            return empty_events()
        return normalize(pd.concat(frames, ignore_index=True)) if len(frames) > 1 else frames[0]

    # --- accounting --------------------------------------------------------------------------------
    def _stats(self) -> Dict[str, int]:
        if self._final_stats is not None:
            return self._final_stats
        totals = {"ftrace_overrun": 0, "ftrace_dropped": 0}
        if self._instance is None or not self._instance.exists():
            return totals
        for stats in sorted((self._instance / "per_cpu").glob("cpu*/stats")):
            for line in tracefs.read_text(stats).splitlines():
                key, _, value = line.partition(":")
                value = value.strip().split()[0] if value.strip() else "0"
                if key.strip() == "overrun":
                    totals["ftrace_overrun"] += int(value)
                elif key.strip() == "dropped events":
                    totals["ftrace_dropped"] += int(value)
        return totals

    def _profile(self) -> Dict[str, tracefs.ProbeProfile]:
        if self._final_profile is not None:
            return self._final_profile
        if self._root is None:
            return {}
        prefix = event_names(self._group, "")[0]
        return {k: v for k, v in tracefs.kprobe_profile(self._root).items() if k.startswith(prefix)}

    def losses(self) -> Dict[str, int]:
        out = dict(self._stats())
        if self._plan is None:
            return out
        symbols = self._plan.symbols
        for role, (call, ret) in self._role_events().items():
            prof = self._profile()
            for name, phase in ((call, "call"), (ret, "return")):
                if name in prof and prof[name].missed:
                    kind = "kretprobe_missed" if phase == "return" else "kprobe_missed"
                    out[f"{kind}:{symbols[role]}"] = prof[name].missed
        return out

    def lost_intervals(self, events: pd.DataFrame) -> List[List[int]]:
        """trace_pipe's ``CPU:N [LOST M EVENTS]`` markers, between that CPU's events around them."""
        from swaprace.readers.ftrace_text import place_lost

        return place_lost(events, self._lost_marks)

    def hits(self) -> Dict[str, int]:
        """``<symbol>:<call|return>`` -> hits as kprobe_profile counts them (the kernel's own count)."""
        out: Dict[str, int] = {}
        prof = self._profile()
        if self._plan is None:
            return out
        symbols = self._plan.symbols
        for role, (call, ret) in self._role_events().items():
            symbol = symbols[role]
            for name, phase in ((call, "call"), (ret, "return")):
                if name in prof:
                    out[f"{symbol}:{phase}"] = prof[name].hits
        return out

    def _role_events(self) -> Dict[str, Tuple[str, str]]:
        if self._plan is None:
            return {}
        return {role: event_names(self._group, role) for role in self._plan.probed}

    @property
    def skipped_lines(self) -> int:
        return self._skipped

    def raw_lines(self) -> List[str]:
        return list(self._raw)

    # --- teardown ----------------------------------------------------------------------------------
    def stop(self) -> None:
        if self._stopped:
            return
        root = self._root
        try:
            if root is not None and self._instance is not None:
                enable = self._instance / "events" / self._group / "enable"
                if enable.exists():
                    try:
                        tracefs.write_text(self._instance / "tracing_on", "0")  # every probe stops at once
                        tracefs.write_text(enable, "0")
                    except SwapraceError:
                        pass
                if self._pipe_fd is not None:
                    try:
                        self._pending.append(self._parse(self._read_pipe(limit=None)))
                    except Exception:  # keep tearing down: what was parsed before is kept
                        pass
                self._final_stats = self._stats()
                self._final_profile = self._profile()
        finally:
            self._stopped = True
            if self._pipe_fd is not None:
                try:
                    os.close(self._pipe_fd)
                except OSError:
                    pass
                self._pipe_fd = None
            if root is not None:
                tracefs.remove_group(root, self._group)
                if self._mounted:
                    tracefs.unmount(root)
                    self._mounted = False


@functools.lru_cache(maxsize=1)
def _kernel_has_kprobes() -> bool:
    """Feature detection by symbol: a kernel with CONFIG_KPROBES has register_kprobe."""
    try:
        with open("/proc/kallsyms") as fh:
            return any(line.rstrip().endswith(" register_kprobe") for line in fh)
    except OSError:
        return False


def _tgid_of(tid: int) -> int:
    try:
        with open(f"/proc/{tid}/status") as fh:
            for line in fh:
                if line.startswith("Tgid:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return tid


def _error_log_tail(root: Path) -> str:
    path = root / "error_log"
    try:
        lines = [line for line in path.read_text().splitlines() if line.strip()]
    except OSError:
        return ""
    return f" [error_log: {' | '.join(lines[-3:])}]" if lines else ""

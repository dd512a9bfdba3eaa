"""``swaprace record`` without its printing (:class:`RecordOptions` and the steps the command takes), and the
recorder loop behind it and the stress companion's ``--record``.

Attach, poll the backend, optionally run a command, and stop on the first of: the duration elapsed, the
command exited, SIGINT/SIGTERM/SIGHUP. Whatever happens -- the workload fails, the backend fails midway, a
signal arrives -- the probes are removed and the events captured so far are written (atomically) with their
metadata; a backend failure is re-raised only after the capture is safe on disk.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import pandas as pd

from swaprace import __version__
from swaprace.capture import write_capture, write_raw_trace
from swaprace.errors import SwapraceError
from swaprace.events import ROLES, Capture, CaptureMeta, empty_events, normalize
from swaprace.osutil import STOP_SIGNALS, signals_deferred
from swaprace.osutil import atomic_write_text
from swaprace.probes.backend import Backend, ProbePlan, make_plan
from swaprace.probes.filters import check_comm, resolve_cgroup, running_with_comm

POLL_INTERVAL_S = 0.2
#: How long a stopped command may take to undo its own set-up (cgroups, KSM...) before it is killed.
COMMAND_GRACE_S = 15.0


@dataclass
class Progress:
    """Live counters, handed to the progress callback after every poll."""

    elapsed_s: float = 0.0
    events: int = 0
    windows: int = 0  # completed fault windows (do_swap_page returns)
    lost: int = 0
    by_role: Dict[str, int] = field(default_factory=dict)


ProgressFn = Callable[[Progress], None]


@dataclass(frozen=True)
class RecordOptions:
    """Everything ``swaprace record`` is asked to do (field names are its option names; see its ``--help``)."""

    output: Optional[str] = None
    duration: Optional[float] = None
    backend_name: str = "auto"
    pid: Optional[int] = None
    comm: Optional[str] = None
    cgroup: Optional[str] = None  # a cgroup v2 directory
    roles: Optional[str] = None  # comma-separated; None: every role
    buffer_kb: int = 16384
    maxactive: int = 64
    stream: bool = True
    raw_trace: Optional[str] = None
    ebpf: bool = False
    dry_run: bool = False
    ready_file: Optional[str] = None
    cmd: Tuple[str, ...] = ()

    def role_list(self) -> Tuple[str, ...]:
        if not self.roles:
            return ROLES
        roles = tuple(r.strip() for r in self.roles.split(",") if r.strip())
        unknown = [r for r in roles if r not in ROLES]
        if unknown:
            raise SwapraceError(f"unknown role(s) {', '.join(unknown)} (known: {', '.join(ROLES)})")
        return roles


def record_plan(opts: RecordOptions) -> ProbePlan:
    """The probe plan of ``opts``, resolved against the live kernel."""
    plan = make_plan(opts.role_list(), pid=opts.pid, buffer_kb=opts.buffer_kb, maxactive=opts.maxactive,
                     stream_events=opts.stream, raw_trace=opts.raw_trace)
    return with_thread_filter(plan, opts.comm, opts.cgroup)


def with_thread_filter(plan: ProbePlan, comm: Optional[str], cgroup: Optional[str]) -> ProbePlan:
    """``plan`` with the ``--comm``/``--cgroup`` filters checked and resolved (SwapraceError: one line)."""
    if comm is not None:
        plan.comm = check_comm(comm)
    if cgroup is not None:
        plan.cgroup = resolve_cgroup(cgroup)
    return plan


def filter_warnings(plan: ProbePlan) -> List[str]:
    """What is doubtful about the thread filter, but not wrong (a name nobody has yet may come later)."""
    if plan.comm is not None and not running_with_comm(plan.comm):
        return [f"no thread is named {plan.comm!r} now: --comm matches nothing until one is "
                "(names as in /proc/PID/comm)"]
    return []


def dry_run_summary(backend: Backend, plan: ProbePlan) -> Dict[str, Any]:
    """What ``record --dry-run`` reports; SwapraceError when a required role did not resolve."""
    summary = {"backend": backend.name, "symbols": plan.symbols,
               "unresolved": {r: res.reason for r, res in plan.resolutions.items() if not res.ok}}
    if plan.thread_filter.active:
        summary["thread_filter"] = plan.thread_filter.to_meta(backend.name)
    plan.require()
    return summary


def record_capture(opts: RecordOptions, backend: Backend, plan: ProbePlan, *, progress: Optional[ProgressFn] = None,
                   warn: Optional[Callable[[str], None]] = None,
                   announce: Optional[Callable[[str], None]] = None) -> Capture:
    """``swaprace record`` without its printing: check there is something to record into and from, then
    :func:`record` into ``opts.output``. ``warn`` gets what is doubtful but not fatal, ``announce`` what a
    person watching should know before tracing starts."""
    if not opts.output:
        raise SwapraceError("missing -o/--output CAPTURE (or use --dry-run / --ebpf)")
    from swaprace.probes.doctor import swap_state

    if not swap_state()["devices"]:
        if not opts.cmd:
            raise SwapraceError("no active swap: nothing would be swapped in (swapon a file or device first)")
        if warn:
            warn("no active swap yet (CMD may enable it)")
    if warn:
        for message in filter_warnings(plan):
            warn(message)
    if opts.duration is None and not opts.cmd and announce:
        announce("recording until Ctrl-C (or SIGTERM)...")
    return record(opts.output, backend, plan, duration=opts.duration, cmd=opts.cmd or None, pid=opts.pid,
                  progress=progress, ready_file=opts.ready_file)


def record_summary(output: Optional[str], capture: Capture) -> Dict[str, Any]:
    """The ``--json`` summary of a recording (and the figures of its one-line report)."""
    events = capture.events
    roles = events["role"].astype(str)
    phases = events["phase"].astype(str)
    meta = capture.meta
    return {
        "output": output,
        "events": int(len(events)),
        "windows": int(((roles == "fault") & (phases == "return")).sum()),
        "by_role": {r: int(n) for r, n in roles.value_counts().sort_index().items()},
        "backend": meta.backend,
        "symbols": meta.symbols,
        "lost": meta.lost,
        "lost_events": meta.lost_events,
        "duration_s": meta.duration_s,
        "stopped_by": meta.extra.get("stopped_by"),
        "command_status": meta.extra.get("command_status"),
    }


def command_failure_status(meta: CaptureMeta) -> Optional[int]:
    """The exit status that passes on CMD's own failure (it ended by itself, non-zero), else None."""
    status = meta.extra.get("command_status")
    if status and meta.extra.get("command_finished"):
        return status if 0 < status < 256 else 1
    return None


def tty_progress(stream=None) -> Optional[ProgressFn]:
    """A one-line live counter on a terminal; None (silence) when ``stream`` is not a TTY."""
    stream = stream or sys.stderr
    if not stream.isatty():
        return None

    def show(p: Progress) -> None:
        stream.write(f"\r  {p.elapsed_s:7.1f} s  events {p.events:>10,}  windows {p.windows:>9,}  "
                     f"lost {p.lost:>8,}   ")
        stream.flush()

    return show


#: What signal.signal() accepts and returns (typeshed's private signal._HANDLER).
_SignalHandler = Union[Callable[[int, Optional[FrameType]], Any], int, signal.Handlers, None]


class _StopFlag:
    """Turns the stop signals into a flag the loop polls; restores the previous handlers on exit."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._old: Dict[int, _SignalHandler] = {}

    def __enter__(self) -> "_StopFlag":
        for sig in STOP_SIGNALS:
            try:
                self._old[sig] = signal.signal(sig, self._handler)
            except (ValueError, OSError):  # not the main thread: the caller handles signals
                pass
        return self

    def _handler(self, signum, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop waiting (teardown still runs in finally)
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def record(output: Optional[str], backend: Backend, plan: ProbePlan, duration: Optional[float] = None,
           cmd: Optional[Sequence[str]] = None, pid: Optional[int] = None,
           progress: Optional[ProgressFn] = None, stop: Optional[Callable[[], bool]] = None,
           ready_file: Optional[str] = None) -> Capture:
    """Trace until ``duration`` seconds, ``cmd`` exits, a stop signal, or ``stop()`` returns True.

    Writes the capture to ``output`` (unless None) and returns it. ``pid`` (or ``plan.pid``) limits the
    fault-path events to one process (as ``plan.comm`` and ``plan.cgroup`` do: :mod:`swaprace.probes.filters`).
    ``ready_file`` is written (atomically; a stale one is removed first) once every probe is armed, before
    CMD starts: a script waits for it instead of sleeping. Raises :class:`SwapraceError` when nothing could be attached (nothing is
    written then), or after writing the capture when the backend failed midway.
    """
    if pid is not None:
        plan.pid = pid
    if plan.pid is not None and not Path(f"/proc/{plan.pid}").exists():
        raise SwapraceError(f"no process with pid {plan.pid}")
    frames: List[pd.DataFrame] = []
    meta = CaptureMeta(backend=backend.name, kernel_release=plan.kernel_release or os.uname().release,
                       symbols=plan.symbols, host=socket.gethostname(), tool_version=__version__,
                       command=list(cmd) if cmd else None)
    prog = Progress()
    failure: Optional[BaseException] = None
    child: Optional[subprocess.Popen] = None
    child_finished = False  # the command ended on its own (not stopped by us)
    started = False
    if ready_file is not None:
        _remove_stale(ready_file)
    with _StopFlag() as flag:
        try:
            meta.start_time_ns = time.time_ns()
            meta.start_ts_ns = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
            backend.start(plan)
            started = True
            t0 = time.monotonic()
            if ready_file is not None:
                _write_ready(ready_file, backend, plan)
            if cmd:
                child = _spawn(cmd)
            while flag.signum is None:
                time.sleep(POLL_INTERVAL_S)
                _collect(backend, frames, prog)
                prog.elapsed_s = time.monotonic() - t0
                if progress:
                    progress(prog)
                if duration is not None and prog.elapsed_s >= duration:
                    break
                if child is not None and child.poll() is not None:
                    child_finished = True
                    break
                if stop is not None and stop():
                    break
        except KeyboardInterrupt:
            pass
        except SwapraceError as exc:
            if not started:
                raise  # nothing attached (start() cleans up after itself): nothing to write
            failure = exc
        except Exception as exc:  # a backend bug midway: keep the data, report after writing
            failure = exc
        finally:
            _teardown(backend, child, frames, prog)
    if progress:
        sys.stderr.write("\n")
    meta.duration_s = round(time.monotonic() - t0, 3) if started else 0.0
    meta.lost = {k: int(v) for k, v in backend.losses().items()}
    uncounted = backend.uncounted()
    if uncounted:  # the losses above are then a lower bound: say through what they may be more
        meta.extra["lost_uncounted"] = uncounted
    meta.lost_known = True
    meta.detector = backend.detector()
    hits = backend.hits()
    if hits:
        meta.extra["kernel_hits"] = hits
    skipped = getattr(backend, "skipped_lines", 0)
    if skipped:
        meta.extra["skipped_lines"] = int(skipped)
    if flag.signum is not None:
        meta.extra["stopped_by"] = signal.Signals(flag.signum).name
    if child is not None:
        meta.extra["command_status"] = child.returncode
        # Did the command end on its own (its status means something), or did we stop it?
        meta.extra["command_finished"] = child_finished
    if failure is not None:
        meta.extra["backend_failure"] = f"{type(failure).__name__}: {failure}"
    if plan.pid is not None:
        meta.extra["pid_filter"] = plan.pid
    if plan.thread_filter.active:
        # windows of other threads are absent on purpose: the analysis and analyze's summary say so
        meta.extra["thread_filter"] = plan.thread_filter.to_meta(backend.name)
    events = normalize(pd.concat(frames, ignore_index=True)) if frames else empty_events()
    meta.lost_intervals = backend.lost_intervals(events)
    meta.extra["layout"] = plan.layout.to_dict()
    consumer = getattr(backend, "consumer_stats", None)
    if consumer:
        meta.extra["consumer"] = {k: v for k, v in consumer.items() if k != "last_poll"}
    unknown = dict(getattr(backend, "unknown_functions", {}) or {})
    capture = Capture(events=events, meta=meta, source_format="parquet", unknown_functions=unknown)
    if output is not None:
        with signals_deferred():  # a second Ctrl-C now would cost the whole capture: it waits for the write
            write_capture(capture, output)
    if failure is not None:
        where = f"; the {len(events)} events captured before it are in {output}" if output else ""
        raise SwapraceError(f"tracing failed midway ({failure}){where}")
    raw = backend.raw_lines() if plan.raw_trace is not None else None
    if plan.raw_trace is not None and raw is not None:
        write_raw_trace(plan.raw_trace, raw, meta)
    return capture


def _remove_stale(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise SwapraceError(f"cannot remove the old ready file {path}: {exc.strerror}") from None


def _write_ready(path: str, backend: Backend, plan: ProbePlan) -> None:
    """The ready signal: one JSON line, written whole or not at all."""
    import json

    text = json.dumps({"pid": os.getpid(), "backend": backend.name, "roles": sorted(plan.probed),
                       "ts_ns": time.clock_gettime_ns(time.CLOCK_MONOTONIC)}, sort_keys=True)
    try:
        atomic_write_text(path, text + "\n")
    except OSError as exc:
        raise SwapraceError(f"cannot write the ready file {path}: {exc.strerror or exc}") from None


def _libc_prctl():
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _libc_prctl()  # resolved here: the child, between fork and exec, only calls it
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when swaprace dies, even by SIGKILL (PR_SET_PDEATHSIG)."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() == 1:  # the parent died before prctl: nobody will send the signal
            os._exit(1)


def _spawn(cmd: Sequence[str]) -> subprocess.Popen:
    try:
        return subprocess.Popen(list(cmd), preexec_fn=_die_with_parent)  # noqa: PLW1509 -- one prctl call
    except OSError as exc:
        raise SwapraceError(f"cannot run {cmd[0]}: {exc.strerror or exc}") from None


def _collect(backend: Backend, frames: List[pd.DataFrame], prog: Progress) -> None:
    df = backend.drain()
    if len(df):
        frames.append(df)
        prog.events += len(df)
        # (categorical comparisons: no per-row string conversion on the hot path)
        prog.windows += int(((df["role"] == "fault") & (df["phase"] == "return")).sum())
        for role, n in df["role"].value_counts().items():
            if n:
                prog.by_role[str(role)] = prog.by_role.get(str(role), 0) + int(n)
    prog.lost = int(sum(backend.losses().values()))


def _teardown(backend: Backend, child: Optional[subprocess.Popen], frames: List[pd.DataFrame],
              prog: Progress) -> None:
    """Stop the command (politely, then firmly), detach the probes, and keep the last events."""
    # Signals arriving now must not interrupt the teardown half-way.
    old = {}
    for sig in STOP_SIGNALS:
        try:
            old[sig] = signal.signal(sig, signal.SIG_IGN)
        except (ValueError, OSError):
            pass
    try:
        if child is not None and child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=COMMAND_GRACE_S)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        try:
            backend.stop()
        finally:
            try:
                _collect(backend, frames, prog)
            except Exception:
                pass
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)

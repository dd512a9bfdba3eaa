"""The orchestrator of ``swaprace stress``: plan, set up, run the workers, watch, restore, judge.

The workload processes are started as unrelated processes (``python -m swaprace.stress.worker``) inside
the memory cgroup; this process never touches the workload's memory except to inject corruption for the
oracle's own test (through /proc/PID/mem, behind the oracle's back).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Collection, Dict, List, Mapping, Optional

import numpy as np

from swaprace.errors import SwapraceError
from swaprace.osutil import signals_raise
from swaprace.stress import machine, native, oracle, scenarios

if TYPE_CHECKING:
    from swaprace.events import Capture

# native.Window as the worker writes it (windows-<n>.bin)
WINDOW_DTYPE = np.dtype([
    ("start_ns", "<u8"), ("end_ns", "<u8"), ("page_index", "<u8"), ("tid", "<i4"),
    ("cpu_start", "<i2"), ("cpu_end", "<i2"), ("phase", "<u4"), ("pad", "<u4"),
])
assert WINDOW_DTYPE.itemsize == ctypes.sizeof(native.Window)

MiB = machine.MiB


@dataclass
class StressOptions:
    duration: float = 30.0
    threads: int = 4
    processes: int = 2
    mem_bytes: int = 32 * MiB  # per process
    limit_bytes: Optional[int] = None  # cgroup limit for all processes; default 3/8 of the working set
    swap_bytes: Optional[int] = None  # default: 9/8 of the working set, so swap stays > half full
    ksm: bool = True
    seed: int = 1
    yes: bool = False
    swap_file: Optional[str] = None
    batch: int = 64
    write_permille: int = 100
    shared_permille: int = 250
    group_size: int = 4
    fork_every: int = 4  # rounds between forked readers (a slow emulated guest manages ~1 round/s)
    slow_ns: int = 2000
    pageout: bool = True  # MADV_PAGEOUT each batch before it is read
    native_helper: bool = True  # False: no C compiler here, the Python helper ran
    inject_corruption: int = 0  # pages to corrupt behind the oracle's back (tests the oracle)
    record: Optional[str] = None
    swap_device: str = "file"  # "file" or "zram" (swaprace/stress/zram.py)
    scenario: Optional[str] = None  # swaprace/stress/scenarios.py
    widen_us: int = 0  # lab kernels: vm.swaprace_widen_us for the run
    pager_us: int = 1000  # scenario skip-swapcache-2024: pause between the pager's passes


#: ``swaprace stress`` option -> StressOptions field, where the names differ (sizes are parsed: "64M").
CLI_RENAMED = {"mem": "mem_bytes", "limit": "limit_bytes", "swap": "swap_bytes", "record_path": "record"}


def options_from_cli(args: Mapping[str, Any], explicit: Collection[str] = ()) -> StressOptions:
    """StressOptions from ``swaprace stress``'s options (by their parameter names). A ``scenario`` presets the
    options that are not in ``explicit`` (the parameter names given on the command line)."""
    fields = {CLI_RENAMED.get(name, name): value for name, value in args.items()}
    if "mem_bytes" in fields:
        fields["mem_bytes"] = parse_size(fields["mem_bytes"])
    for name in ("limit_bytes", "swap_bytes"):  # unset: the defaults derived from the working set
        if name in fields:
            fields[name] = parse_size(fields[name]) if fields[name] else None
    opts = StressOptions(**fields)
    if opts.scenario:
        scenarios.apply_preset(opts, opts.scenario, dict.fromkeys(CLI_RENAMED.get(name, name) for name in explicit))
    return opts


@dataclass
class Sizes:
    working_set: int
    limit: int  # the high mark the group is kept at (machine.Machine.apply_limit)
    swap: int
    hard_limit: int = 0  # the cgroup's hard limit: only a bound on a runaway, never reached by the workload


def plan_sizes(opts: StressOptions) -> Sizes:
    working_set = opts.processes * opts.mem_bytes
    # 3/8 of the working set: tight enough to keep swap more than half full, loose enough that KSM pages
    # stay resident long enough to be merged before the limit pushes them out (measured on 6.18).
    limit = opts.limit_bytes if opts.limit_bytes is not None else working_set * 3 // 8
    if limit >= working_set and not opts.scenario:  # a scenario may swap by MADV_PAGEOUT alone
        raise SwapraceError(f"--limit ({limit // MiB} MiB) must be below the working set "
                            f"({opts.processes} x {opts.mem_bytes // MiB} MiB): nothing would be swapped")
    # Swap holds at least (working set - limit), 5/8 of it by default. A swap file of 9/8 of the working set is
    # then more than half full from the start (5/8 > 9/16), where do_swap_page frees the swap cache on every
    # swap-in (vm_swap_full()), and MADV_PAGEOUT pushes it further; it still holds every region page at once plus
    # an eighth for swap-cache duplicates and the interpreters' own pages. (It was the working set + 8 MiB: the
    # same 72 MiB at the default 64 MiB, but a file only the oracle's window records kept half full at small
    # sizes -- 8 % of samples above half on 7.3 at 16 MiB once those records left the group.)
    swap = opts.swap_bytes if opts.swap_bytes is not None else -(-working_set * 9 // 8 // MiB) * MiB
    # every page of the region and the interpreters fit below it: no OOM, ever
    return Sizes(working_set, limit, swap, hard_limit=2 * working_set + 64 * MiB)


def check_options(opts: StressOptions) -> None:
    if opts.threads < 1 or opts.threads > 64:
        raise SwapraceError("--threads must be between 1 and 64")
    if opts.processes < 1:
        raise SwapraceError("--processes must be at least 1")
    if opts.duration <= 0:
        raise SwapraceError("--duration must be positive")
    pages = opts.mem_bytes // os.sysconf("SC_PAGE_SIZE")
    if pages < 4 * opts.batch:
        raise SwapraceError(f"--mem is too small: at least {4 * opts.batch} pages per process")


class Interrupted(SwapraceError):
    pass


def _interrupted(signum: int) -> Interrupted:
    return Interrupted(f"interrupted by {signal.Signals(signum).name}: workload stopped, machine restored",
                       exit_code=128 + signum)


def run_stress(opts: StressOptions, progress: Optional[Callable[[str], None]] = None,
               announce: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
    """Set up, run, restore. Returns the summary (see :func:`summarize`). Raises SwapraceError.

    ``announce`` gets the list of machine changes before they are made (always worth saying); ``progress``
    the live lines (for a terminal)."""
    check_options(opts)
    if os.geteuid() != 0:
        raise SwapraceError("swaprace stress changes swap, cgroups and KSM: it must run as root")
    sizes = plan_sizes(opts)
    plan = machine.make_plan(sizes.swap, sizes.limit, opts.ksm, opts.swap_file, opts.swap_device)
    if not (opts.yes or machine.in_testbox()):
        raise SwapraceError("refusing to change this machine without --yes; it would: " + "; ".join(plan.describe()))
    helper = native.build()
    say = progress or (lambda _msg: None)
    if opts.scenario and helper is None:
        raise SwapraceError("stress scenarios need the native helper: no C compiler found (install gcc)")
    opts.native_helper = helper is not None
    if helper is None:
        (announce or say)("stress: no C compiler: using the slower Python helper (ctypes calls, no forked readers)")
    recorder = _Recorder(opts.record, say) if opts.record else None  # fails here, before any change
    for line in plan.describe():
        (announce or say)(f"stress: will {line}")
    if opts.widen_us and not scenarios.widener_available():
        (announce or say)(f"stress: no window widener on this kernel ({scenarios.WIDEN_US} missing: not a lab "
                          "kernel): --widen-us ignored")
    widener: Dict[str, Any] = {}
    workers: List[subprocess.Popen] = []
    with signals_raise(_interrupted):  # SIGINT, SIGTERM and SIGHUP (the terminal went away) alike
        with tempfile.TemporaryDirectory(prefix="swaprace-stress-") as tmp, machine.Machine(plan) as box:
            out = Path(tmp)
            try:
                run = _Run(opts, sizes, plan, box, out, helper, say)

                def before_go() -> None:
                    if opts.widen_us and scenarios.widener_available():
                        widener.update(scenarios.set_widener(box.log, opts.widen_us, os.getpid()))
                    if recorder:
                        # the tracer attaches (bcc compiles: slow under emulation) while the workers fill memory
                        recorder.start()

                summary = run.execute(workers, before_go=before_go)
                summary.update(_scenario_summary(opts, summary, widener))
            finally:
                _stop_workers(workers)
                if recorder:
                    recorder.finish()
        touches = summary.pop("_touches", None)
        if recorder:
            summary.update(recorder.judge(summary, touches))
            # with the capture, what the join used: the oracle's timed first touches (tid, start, end, page)
            summary["oracle_touches"] = {k: v.tolist() for k, v in touches.items()}
        return summary


def _scenario_summary(opts: StressOptions, summary: Dict[str, Any], widener: Dict[str, Any]) -> Dict[str, Any]:
    """The scenario, the widener's sleeps (read before the machine is restored) and the corruption rate."""
    minutes = summary["rounds_s"] / 60
    return {
        "scenario": opts.scenario,
        "swap_device": opts.swap_device,
        "widener": scenarios.widener_summary(widener, minutes) if widener else
        {"available": scenarios.widener_available(), "widen_us": 0},
        "corruptions_per_minute": round(summary["corruptions"] / minutes, 2) if minutes else None,
    }


class _Recorder:
    """The live tracer, in a thread of this process, for exactly the stress run; then the join."""

    ATTACH_TIMEOUT_S = 300  # bcc compiles its program first: slow under TCG emulation

    def __init__(self, output: str, say: Callable[[str], None]):
        from swaprace.probes.backend import get_backend, make_plan

        self.output, self.say = output, say
        self.backend = get_backend("auto")  # SwapraceError (no kprobes, no bcc...) before touching anything
        self.plan = make_plan()
        self.plan.require()
        self.stop = threading.Event()
        self.attached = threading.Event()
        self.capture: Optional[Capture] = None
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._trace, name="swaprace-record", daemon=True)

    def _trace(self) -> None:
        from swaprace.probes.record import record

        try:
            self.capture = record(self.output, self.backend, self.plan,
                                  progress=lambda _p: self.attached.set(), stop=self.stop.is_set)
        except BaseException as exc:  # reported by finish(), in the main thread
            self.error = exc
        finally:
            self.attached.set()

    def start(self) -> None:
        self.say(f"stress: attaching the {self.backend.name} tracer")
        self.thread.start()
        if not self.attached.wait(self.ATTACH_TIMEOUT_S):
            raise SwapraceError(f"the tracer did not attach within {self.ATTACH_TIMEOUT_S}s")
        if self.error is not None:
            raise SwapraceError(f"tracer failed: {self.error}")

    def finish(self) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()
        if self.error is not None:
            raise SwapraceError(f"tracer failed: {self.error}")

    def judge(self, summary: Dict[str, Any], touches: Dict[str, Any]) -> Dict[str, Any]:
        from swaprace.analysis import analyze
        import pandas as pd

        from swaprace.stress.join import join, trace_window_stats

        capture = self.capture
        if capture is None:
            raise SwapraceError("the tracer wrote no capture")
        result = analyze(capture)
        detector = capture.meta.detector
        # the workload: the workers and the readers they fork (same command name, pids unknown beforehand)
        pids = set(summary.get("worker_pids", []))
        comms = set(result.windows.loc[result.windows["pid"].isin(pids), "comm"].astype(str))
        pids |= set(result.windows.loc[result.windows["comm"].astype(str).isin(comms), "pid"].astype(int))
        verdict = join(result.races, result.windows, summary["mismatches"], capture.meta.lost_events,
                       detector_races=detector.get("races") if detector else None, workload_pids=pids,
                       touches=pd.DataFrame(touches))
        start, end = summary["rounds_interval_ns"]
        duration = (end - start) / 1e9
        windows = result.windows[(result.windows["start_ns"] >= start) & (result.windows["end_ns"] <= end)]
        gens = result.generations
        # a reuse: a generation (slot life) that began by an allocation after an earlier free of the same slot
        alloc = gens["alloc_ns"]
        reuses = int(((gens["generation"] > 0) & alloc.notna() & (alloc >= start) & (alloc <= end)).sum())
        trace = trace_window_stats(windows, duration) | {
            "capture": self.output, "backend": capture.meta.backend, "events": int(len(capture.events)),
            "lost_events": capture.meta.lost_events, "windows_whole_capture": int(len(result.windows)),
            "reuses": reuses, "reuses_whole_capture": result.summary.get("reuses"),
            "reuses_per_minute": round(reuses / duration * 60, 1) if duration else None,
            "race_classes": result.summary.get("race_classes"), "ksm_copies": result.summary.get("ksm_copies"),
        }
        stale_detector = verdict["agreement"]["detector_stale_installs"]
        return {"trace": trace, "join": verdict,
                "ok": summary["ok"] and verdict["stale_install_races"] == 0 and stale_detector == 0}


def _stop_workers(workers: List[subprocess.Popen]) -> None:
    """SIGTERM (the helper finishes its round and exits), then SIGKILL whatever is left."""
    for proc in workers:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 20
    for proc in workers:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class _Run:
    def __init__(self, opts, sizes, plan, box, out, helper, say):
        self.opts, self.sizes, self.plan, self.box = opts, sizes, plan, box
        self.out, self.helper, self.say = out, helper, say
        self.swap_samples: List[float] = []
        self.ksm_sharing_max = 0
        self.injections: List[Dict[str, Any]] = []
        self.rounds_done_at: Optional[float] = None  # when every worker had finished its rounds
        self.vmstat_rounds_done: Optional[Dict[str, int]] = None

    def execute(self, workers: List[subprocess.Popen], before_go: Optional[Callable[[], None]] = None
                ) -> Dict[str, Any]:
        for index in range(self.opts.processes):
            workers.append(self._start_worker(index))
        self._wait_ready(workers)
        if before_go:
            before_go()
        before = oracle.read_vmstat()
        ksm_before = _ksm_counters()
        self.box.apply_limit(self.sizes.hard_limit, self.sizes.working_set)
        (self.out / "go").touch()
        started = time.monotonic()
        try:
            self._watch(workers, started)
        finally:
            self.box.stop_keeper()
        after = oracle.read_vmstat()
        results = self._collect(workers)
        rounds_s = (self.rounds_done_at or time.monotonic()) - started
        measured = Measured(
            results=results, vmstat=oracle.vmstat_delta(before, after),
            rates=oracle.vmstat_delta(before, self.vmstat_rounds_done or after),
            ksm=self._ksm_summary(ksm_before), swap_samples=self.swap_samples, injections=self.injections,
            rounds_s=rounds_s, cgroup_events=self._cgroup_events())
        summary = summarize(self.opts, self.sizes, self.plan, measured)
        summary["duration_s"] = round(time.monotonic() - started, 2)
        summary["worker_pids"] = [int(r["pid"]) for r in results]
        summary["machine"]["hard_limit_mib"] = self.sizes.hard_limit // MiB
        summary["machine"]["interpreters_mib"] = round(getattr(self.box, "interpreter_bytes", 0) / MiB, 1)
        keeper = getattr(self.box, "keeper", None)
        summary["machine"]["limit_keeper_passes"] = keeper.passes if keeper is not None else None
        summary["machine"]["limit_keeper_wakes"] = keeper.wakes if keeper is not None else None
        # CLOCK_MONOTONIC, like the capture's timestamps: the trace figures are taken over the rounds only
        summary["rounds_interval_ns"] = [int(started * 1e9), int((started + rounds_s) * 1e9)]
        return summary

    def _start_worker(self, index: int) -> subprocess.Popen:
        opts = self.opts
        spec = {
            "out_dir": str(self.out), "proc_index": index, "helper": str(self.helper or ""),
            "cgroup_procs": self.box.procs_file, "npages": opts.mem_bytes // os.sysconf("SC_PAGE_SIZE"),
            "seed": opts.seed, "duration_ns": int(opts.duration * 1e9), "slow_ns": opts.slow_ns,
            "max_windows": 100_000, "max_mismatches": 1000, "threads": opts.threads, "batch": opts.batch,
            "shared_permille": opts.shared_permille if opts.ksm else 0, "group_size": opts.group_size,
            "write_permille": opts.write_permille, "fork_every": opts.fork_every, "pageout": int(opts.pageout),
            "mergeable": int(opts.ksm),
            "scenario": scenarios.get(opts.scenario).helper_mode if opts.scenario else native.SCENARIO_ROUNDS,
            "pager_us": opts.pager_us,
        }
        path = self.out / f"spec-{index}.json"
        path.write_text(json.dumps(spec))
        log = open(self.out / f"worker-{index}.log", "wb")
        return subprocess.Popen([sys.executable, "-m", "swaprace.stress.worker", str(path)],
                                stdout=log, stderr=subprocess.STDOUT)

    def _wait_ready(self, workers: List[subprocess.Popen]) -> None:
        # generous: interpreters start and fill pages slowly on an emulated, loaded machine
        deadline = time.monotonic() + 300 + 4 * self.sizes.working_set / MiB
        for index, proc in enumerate(workers):
            while not (self.out / f"status-{index}.json").exists():
                if proc.poll() is not None:
                    self._collect(workers[: index + 1])  # raises with the worker's reason
                if time.monotonic() > deadline:
                    raise SwapraceError(f"worker {index} did not fill its memory in time")
                time.sleep(0.02)

    def _watch(self, workers: List[subprocess.Popen], started: float) -> None:
        # the final sweep re-reads every page, possibly all from swap: allow for slow (emulated) machines
        hard_deadline = started + self.opts.duration + 120 + self.sizes.working_set / MiB
        inject_at = started + self.opts.duration * 0.3
        next_report = started + 5
        while any(p.poll() is None for p in workers):
            now = time.monotonic()
            if self.rounds_done_at is None and all(
                    (self.out / f"rounds-done-{i}").exists() for i in range(len(workers))):
                self.rounds_done_at, self.vmstat_rounds_done = now, oracle.read_vmstat()
                self.box.lift_limit()  # the final sweep checks pages: no more pressure needed
                if self.opts.widen_us and scenarios.widener_available():
                    scenarios.stop_widener()  # nor 20 ms sleeps on each of its faults
            if now > hard_deadline:
                raise SwapraceError("workers did not finish in time (stuck in the kernel?): stopped them")
            self._sample()
            if self.opts.inject_corruption and not self.injections and now >= inject_at:
                self._inject()
            if now >= next_report:
                next_report = now + 5
                self.say(f"stress: {now - started:5.0f}s  swap {self._swap_fill():4.0%} full  "
                         f"ksm pages_sharing {self.ksm_sharing_max}")
            time.sleep(0.25)

    def _sample(self) -> None:
        self.swap_samples.append(self._swap_fill())
        sharing = _ksm_counters().get("pages_sharing", 0)
        self.ksm_sharing_max = max(self.ksm_sharing_max, sharing)

    def _swap_fill(self) -> float:
        swaps = machine.active_swaps()
        total = sum(s["size_kib"] for s in swaps)
        return sum(s["used_kib"] for s in swaps) / total if total else 0.0

    def _inject(self) -> None:
        """Overwrite a few private pages of worker 0 through /proc/PID/mem, without telling the oracle."""
        status_path = self.out / "status-0.json"
        if not status_path.exists():
            return
        status = json.loads(status_path.read_text())
        private_pages = status["npages"] - status["npages"] * status["shared_permille"] // 1000
        step = max(1, private_pages // (self.opts.inject_corruption + 1))
        with open(f"/proc/{status['pid']}/mem", "r+b", buffering=0) as mem:
            for n in range(self.opts.inject_corruption):
                index = step * (n + 1)
                addr = status["region_addr"] + index * status["page_size"] + 1024
                mem.seek(addr)
                mem.write(b"\xde\xad\xbe\xef" * 4)
                self.injections.append({"pid": status["pid"], "proc_index": 0, "page_index": index, "addr": addr,
                                        "mono_ns": time.monotonic_ns()})
        self.say(f"stress: injected corruption into {len(self.injections)} pages of pid {status['pid']}")

    def _collect(self, workers: List[subprocess.Popen]) -> List[Dict[str, Any]]:
        results = []
        for index, proc in enumerate(workers):
            path = self.out / f"result-{index}.json"
            if proc.returncode != 0 or not path.exists():
                log = (self.out / f"worker-{index}.log").read_text(errors="replace").strip().splitlines()
                why = _death_reason(proc.returncode)
                raise SwapraceError(f"worker {index} (pid {proc.pid}) failed: {why}"
                                    + (f": {log[-1]}" if log else ""))
            result = json.loads(path.read_text())
            windows = np.fromfile(self.out / f"windows-{index}.bin", dtype=WINDOW_DTYPE)
            result["windows"] = windows
            results.append(result)
        return results

    def _ksm_summary(self, before: Dict[str, int]) -> Dict[str, int]:
        after = _ksm_counters()
        return {"pages_sharing_max": self.ksm_sharing_max,
                "full_scans": after.get("full_scans", 0) - before.get("full_scans", 0)}

    def _cgroup_events(self) -> Dict[str, int]:
        path = Path(self.plan.cgroup_path) / "memory.events"
        events = {}
        if path.exists():
            for line in path.read_text().splitlines():
                name, _, value = line.partition(" ")
                events[name] = int(value)
        return events


def _ksm_counters() -> Dict[str, int]:
    out = {}
    for name in ("pages_sharing", "pages_shared", "full_scans"):
        try:
            out[name] = int((machine.KSM_DIR / name).read_text())
        except (OSError, ValueError):
            pass
    return out


def _death_reason(returncode: Optional[int]) -> str:
    if returncode is not None and returncode < 0:
        sig = signal.Signals(-returncode).name
        if returncode == -signal.SIGKILL:
            return f"killed by {sig} (the OOM killer? the swap file may be too small: raise --swap or --limit)"
        return f"killed by {sig}"
    return f"exit status {returncode}"


@dataclass
class Measured:
    """What one stress run measured, for :func:`summarize`."""

    results: List[Dict[str, Any]]  # each worker's result-N.json, with its timed touches under "windows"
    vmstat: Dict[str, Dict[str, int]]  # /proc/vmstat deltas over the whole run, final sweep included
    ksm: Dict[str, int]
    swap_samples: List[float]  # swap fill (0..1), sampled while the workers ran
    injections: List[Dict[str, Any]]  # pages corrupted behind the oracle's back (--inject-corruption)
    rounds_s: float  # the rounds' wall time (the final sweep excluded)
    cgroup_events: Dict[str, int]
    #: vmstat deltas over the rounds only, for the per-minute rates (the final sweep's swap-ins are in
    #: ``vmstat`` but not in the rates); None: ``vmstat``.
    rates: Optional[Dict[str, Dict[str, int]]] = None


def summarize(opts: StressOptions, sizes: Sizes, plan: machine.Plan, measured: Measured) -> Dict[str, Any]:
    """The run's summary (what ``--json`` prints, less the trace join)."""
    results, vmstat, swap_samples = measured.results, measured.vmstat, measured.swap_samples
    elapsed = measured.rounds_s
    rates = measured.rates or vmstat
    counters: Dict[str, int] = {}
    mismatches: List[Dict[str, Any]] = []
    all_windows, window_pids = [], []
    start_mono = min(r["counters"]["start_mono_ns"] for r in results)
    for r in results:
        for name, value in r["counters"].items():
            if name in ("region_addr", "page_size", "start_mono_ns", "end_mono_ns", "start_real_ns",
                        "pageout_errno", "mergeable_errno"):
                continue
            counters[name] = counters.get(name, 0) + int(value)
        for m in r["mismatches"]:
            m["phase_name"] = native.PHASES.get(m["phase"], str(m["phase"]))
            m["elapsed_s"] = (m["mono_ns"] - start_mono) / 1e9
            mismatches.append(m)
        all_windows.append(r["windows"])
        window_pids.append(np.full(len(r["windows"]), r["pid"], dtype=np.int64))
    windows = np.concatenate(all_windows) if all_windows else np.zeros(0, dtype=WINDOW_DTYPE)
    pids = np.concatenate(window_pids) if window_pids else np.zeros(0, dtype=np.int64)
    overlaps = oracle.overlap_stats(windows, pids)
    minutes = elapsed / 60
    full = [s for s in swap_samples if s > 0.5]
    summary = {
        # the oracle's timed first touches, for the join (taken out before the summary is printed)
        "_touches": {"tid": windows["tid"].astype(np.int64), "start_ns": windows["start_ns"].astype(np.int64),
                     "end_ns": windows["end_ns"].astype(np.int64),
                     "page_index": windows["page_index"].astype(np.int64)},
        "ok": not mismatches,
        "corruptions": counters.get("mismatches", 0),
        "mismatches": oracle.sort_mismatches(mismatches),
        "injected": measured.injections,
        "rounds_s": round(elapsed, 2),
        "helper": "native" if opts.native_helper else "python-fallback",
        "options": {k: v for k, v in asdict(opts).items() if k not in ("yes",)},
        "machine": {"working_set_mib": sizes.working_set // MiB, "limit_mib": sizes.limit // MiB,
                    "swap_mib": sizes.swap // MiB, "swap_file": plan.swap_path,
                    "cgroup": plan.cgroup_path, "cgroup_version": plan.cgroup_version, "ksm": plan.ksm,
                    "cgroup_events": measured.cgroup_events},
        "workload": counters,
        "fault_windows": overlaps | {
            "per_second": round(overlaps["windows"] / elapsed, 1) if elapsed else 0.0,
            "slow_ns": opts.slow_ns},
        "swap_fill": {"samples": len(swap_samples),
                      "mean": round(float(np.mean(swap_samples)), 3) if swap_samples else None,
                      "share_above_half": round(len(full) / len(swap_samples), 3) if swap_samples else None},
        "ksm": measured.ksm,
        "vmstat": vmstat,
        "per_minute": {k: round(v["delta"] / minutes, 1) for k, v in rates.items()
                       if k in ("pswpin", "pswpout", "ksm_swpin_copy", "cow_ksm")} if minutes else {},
    }
    return summary


def format_summary(summary: Dict[str, Any]) -> List[str]:
    """Human-readable lines for the terminal."""
    w, m = summary["workload"], summary["machine"]
    fw = summary["fault_windows"]
    lines = [
        f"workload: {summary['options']['processes']} processes x {summary['options']['threads']} threads, "
        f"{summary['rounds_s']:.1f}s of rounds ({summary['duration_s']:.1f}s with the final sweep), working set {m['working_set_mib']} MiB, limit {m['limit_mib']} MiB "
        f"(cgroup v{m['cgroup_version']}), swap file {m['swap_mib']} MiB",
        f"  rounds {w.get('rounds', 0)}, pages read {w.get('pages_read', 0)}, written {w.get('pages_written', 0)}, "
        f"forked readers {w.get('forks', 0)} ({w.get('child_pages_read', 0)} pages), "
        f"final sweep {w.get('final_pages_checked', 0)} pages, MADV_PAGEOUT {w.get('pageouts', 0)}",
        f"  fault windows (first touch >= {fw['slow_ns']} ns): {fw['windows']} ({fw['per_second']}/s), "
        f"{fw['overlapping_windows']} overlapping another on a different CPU, "
        f"{fw['same_page_overlapping_pairs']} same-page pairs in flight together",
    ]
    sf = summary["swap_fill"]
    if sf["mean"] is not None:
        lines.append(f"  swap fill: mean {sf['mean']:.0%}, above half in {sf['share_above_half']:.0%} of samples")
    lines.append(f"  ksm: pages_sharing max {summary['ksm']['pages_sharing_max']}, "
                 f"full scans {summary['ksm']['full_scans']}")
    lines.append("per minute of rounds: " + ", ".join(f"{k} {v}" for k, v in summary["per_minute"].items()))
    lines.append("vmstat (before -> after, delta):")
    for name, v in summary["vmstat"].items():
        lines.append(f"  {name:16} {v['before']:>12} -> {v['after']:>12}  +{v['delta']}")
    for inj in summary["injected"]:
        lines.append(f"injected: pid {inj['pid']} page {inj['page_index']} addr {inj['addr']:#x}")
    for mm in summary["mismatches"][:20]:
        lines.append("MISMATCH " + oracle.describe_mismatch(mm))
    if summary["corruptions"] > 20:
        lines.append(f"... {summary['corruptions'] - 20} more mismatches (see --json)")
    lines.append(f"oracle: {summary['corruptions']} corrupted page reads")
    if summary.get("scenario") or summary.get("swap_device") == "zram":
        wid = summary.get("widener") or {}
        how = (f"widener {wid['widen_us']} us, {wid.get('sleeps', '?')} sleeps" if wid.get("widen_us") else
               "widener off" if wid.get("available") else "no widener (not a lab kernel)")
        lines.append(f"scenario: {summary.get('scenario') or 'none'}, swap on {summary.get('swap_device')}, {how}; "
                     f"{summary.get('corruptions_per_minute')} corruptions per minute of rounds")
    trace = summary.get("trace")
    if trace:
        lost = "unknown" if trace["lost_events"] is None else trace["lost_events"]
        lines.append(f"trace: {trace['capture']} ({trace['backend']}): {trace['events']} events, lost {lost}, "
                     f"{trace['windows']} fault windows ({trace['per_second']}/s), {trace['overlapping_windows']} "
                     f"overlapping another on a different CPU, {trace['same_entry_overlapping_pairs']} same-entry "
                     f"pairs; {trace['reuses']} entry reuses ({trace['reuses_per_minute']}/min), "
                     f"races {trace['race_classes']}")
        lines.extend(join_table_lines(summary["join"]))
    return lines


def join_table_lines(joined: Dict[str, Any], limit: int = 20) -> List[str]:
    """The corruption <-> stale-install table: one line per corruption, then every stale-install without one."""
    agree = joined["agreement"]
    det = agree["detector_ran"]
    lines = [f"join: {agree['corruptions']} corruptions: {agree['with_offline_stale_install']} follow an offline "
             f"stale-install" + (f", {agree['with_detector_stale_install']} a detector stale-install" if det else
                                 " (no in-kernel detector ran)"),
             f"      offline stale-installs {agree['offline_stale_installs_with_corruption']} of "
             f"{agree['offline_stale_installs']} with a corruption" +
             (f"; detector {agree['detector_stale_installs_with_corruption']} of "
              f"{agree['detector_stale_installs']}" if det else "")]
    header = f"  {'corruption ns':>16} {'pid':>6} {'tid':>6} {'page':>5} {'gen':>9}  offline / detector race"
    lines.append(header)

    def side(race):
        if not race:
            return "-"
        return f"{race['class']} {race['entry']:#x} tid {race['tid']} ({race['matched_by']})" if race["entry"] \
            is not None else f"{race['class']} tid {race['tid']}"
    for row in joined["table"][:limit]:
        gen = f"{row['got_gen']}<{row['expected_gen']}" if row.get("got_gen") is not None else "?"
        lines.append(f"  {row['mismatch_ns']:>16} {row['pid']:>6} {row['tid']:>6} {row['page_index']:>5} {gen:>9}  "
                     f"{side(row['offline'])} / {side(row['detector']) if det else 'n/a'}"
                     + (f"  [{row['why_unpartnered']}]" if row["why_unpartnered"] else ""))
    if len(joined["table"]) > limit:
        lines.append(f"  ... {len(joined['table']) - limit} more (see --json)")
    for u in joined["unpartnered"][:limit]:
        entry = f"{u['entry']:#x}" if u["entry"] is not None else "?"
        lines.append(f"  {u['source']} stale-install without corruption: entry {entry} pid {u['pid']} tid "
                     f"{u['tid']} at {u['start']}: {u['why']}")
    return lines


def parse_size(text: str) -> int:
    """``64M``, ``1G``, ``512K``, ``4096`` (bytes) -> bytes; units are binary (MiB, GiB)."""
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    value = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = value[-1:] if value[-1:] in units else ""
    number = value[: len(value) - len(unit)]
    try:
        size = int(float(number) * units[unit])
    except ValueError:
        raise SwapraceError(f"not a size: {text!r} (use e.g. 64M, 1G)") from None
    if size <= 0:
        raise SwapraceError(f"size must be positive: {text!r}")
    return size


def verdict(summary: Dict[str, Any]) -> str:
    join = summary.get("join")
    if join:
        return join["verdict"]
    n = summary["corruptions"]
    if n:
        return f"verdict: CORRUPTION ({n} corrupted page reads; no tracer ran: use --record to match races)"
    return "verdict: clean (0 corruptions; no tracer ran)"

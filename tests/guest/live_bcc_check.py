#!/usr/bin/env python3
"""Guest side of the live bcc tests: one boot runs every check and writes results to OUT_DIR.

Run inside the test box (root, the checkout at /mnt/swaprace):

    python3 tests/guest/live_bcc_check.py /mnt/out [--only record,both,sigterm]

Checks (each one a key of result.json; the host-side tests in tests/test_live_bcc.py and
tests/test_detector_vm.py assert on them):
  record   `swaprace record --backend bcc` while the swap workload runs with KSM on: the capture's per-role
           counts, the BPF program's own hit counters, kprobe_profile hits of bcc's kretprobes, losses, and
           `analyze` of the capture next to the in-kernel detector's counters and races.
           Writes record.parquet (the bcc fixture of this kernel).
  both     the bcc and ftrace backends attached at the same time to one workload run: per-role counts of each.
  sigterm  `swaprace record --backend bcc` killed with SIGTERM mid-run: kprobes left, capture readable.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(CHECKOUT))
WORKLOAD = [sys.executable, str(CHECKOUT / "tests/guest/swap_workload.py")]
SWAPRACE = [sys.executable, "-m", "swaprace"]
KPROBES_LIST = Path("/sys/kernel/debug/kprobes/list")
TRACEFS = Path("/sys/kernel/tracing")
#: A small run: a few thousand events, so the capture doubles as the committed fixture.
SMALL_WORKLOAD = ["--threads", "2", "--mem", "24", "--limit", "16", "--passes", "2", "--ksm", "--json"]


def sh(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def role_counts(events) -> dict:
    """{role: {"call": n, "return": n}} of an event table."""
    out: dict = {}
    grouped = events.groupby([events["role"].astype(str), events["phase"].astype(str)]).size()
    for (role, phase), n in grouped.items():
        out.setdefault(role, {"call": 0, "return": 0})[phase] = int(n)
    return out


def probes_on(symbols) -> list:
    """Lines of the kernel's list of registered kprobes that sit on one of ``symbols``."""
    try:
        lines = KPROBES_LIST.read_text().splitlines()
    except OSError:
        return []
    wanted = set(symbols)
    return [line for line in lines if any(part.split("+")[0] in wanted for part in line.split())]


def bcc_kprobe_events() -> list:
    return [line for line in (TRACEFS / "kprobe_events").read_text().splitlines() if "_bcc_" in line]


def check_record(out: Path) -> dict:
    from swaprace.analysis.model import analyze
    from swaprace.capture import read_capture

    capture_path = out / "record.parquet"
    t0 = time.monotonic()
    done = sh(SWAPRACE + ["record", "-o", str(capture_path), "--backend", "bcc", "--json", "--"]
              + WORKLOAD + SMALL_WORKLOAD)
    result = {"seconds": round(time.monotonic() - t0, 1), "status": done.returncode, "stderr": done.stderr[-3000:]}
    if done.returncode != 0:
        return result
    result["summary"] = json.loads(done.stdout)
    capture = read_capture(capture_path)
    meta = capture.meta
    result["capture_counts"] = role_counts(capture.events)
    result["detector"] = meta.detector
    result["lost"] = meta.lost
    result["lost_events"] = meta.lost_events
    result["kernel_hits"] = meta.extra.get("kernel_hits")
    result["symbols"] = meta.symbols
    result["release"] = meta.kernel_release
    analysis = analyze(capture)
    result["analysis"] = {k: analysis.summary[k] for k in
                          ("events", "windows", "windows_with_entry", "lookup_hits", "reuses", "races",
                           "ksm_copies", "entries")}
    result["workload_bytes"] = capture_path.stat().st_size
    return result


def check_both(out: Path) -> dict:
    """bcc and ftrace attached together to one run: the same probe hits seen through both."""
    from swaprace.probes.backend import make_plan
    from swaprace.probes.bcc_backend import BccBackend
    from swaprace.probes.ftrace_backend import FtraceBackend

    import pandas as pd

    plans = {name: make_plan() for name in ("bcc", "ftrace")}
    backends = {"bcc": BccBackend(), "ftrace": FtraceBackend()}
    frames = {name: [] for name in backends}
    started = []
    result: dict = {}
    try:
        for name, backend in backends.items():
            backend.start(plans[name])
            started.append(name)
        child = subprocess.Popen(WORKLOAD + SMALL_WORKLOAD, stdout=subprocess.PIPE, text=True)
        while child.poll() is None:
            time.sleep(0.2)
            for name, backend in backends.items():
                frames[name].append(backend.drain())
        result["workload"] = json.loads(child.stdout.read() or "{}")
        result["workload_pid"] = child.pid
        time.sleep(0.5)  # let the last returns land
    finally:
        for name in started:
            backends[name].stop()
    for name, backend in backends.items():
        frames[name].append(backend.drain())
        events = pd.concat(frames[name], ignore_index=True)
        mine = events[events["pid"] == result.get("workload_pid", -1)]
        result[name] = {
            "counts": role_counts(events),
            "workload_counts": role_counts(mine),
            "lost": backend.losses(),
            "hits": backend.hits(),
        }
    return result


def check_sigterm(out: Path) -> dict:
    from swaprace.capture import read_capture
    from swaprace.probes.backend import make_plan

    symbols = list(make_plan().symbols.values())
    before = probes_on(symbols)
    capture_path = out / "sigterm.parquet"
    proc = subprocess.Popen(SWAPRACE + ["record", "-o", str(capture_path), "--backend", "bcc", "--duration",
                                        "600", "--"] + WORKLOAD + ["--threads", "2", "--mem", "24", "--limit",
                                                                   "16", "--seconds", "600"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    result: dict = {"probes_before": before}
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(probes_on(symbols)) <= len(before) and proc.poll() is None:
        time.sleep(0.5)
    result["attached"] = len(probes_on(symbols)) - len(before)
    time.sleep(3.0)  # trace a little
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    result["status"] = proc.returncode
    result["stderr"] = err[-2000:]
    result["probes_after"] = probes_on(symbols)
    result["bcc_kprobe_events_after"] = bcc_kprobe_events()
    try:
        capture = read_capture(capture_path)
        result["capture_events"] = int(len(capture.events))
        result["stopped_by"] = capture.meta.extra.get("stopped_by")
    except Exception as exc:  # noqa: BLE001 -- reported to the host test
        result["capture_error"] = str(exc)
    # The workload restores its cgroup on SIGTERM; give it a moment before the next check.
    time.sleep(1.0)
    return result


CHECKS = {"record": check_record, "both": check_both, "sigterm": check_sigterm}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--only", default=",".join(CHECKS))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sh(["swaprace-testbox", "swap-on"], check=True)
    result: dict = {"release": os.uname().release}
    for name in args.only.split(","):
        t0 = time.monotonic()
        try:
            result[name] = CHECKS[name](out)
        except Exception as exc:  # noqa: BLE001 -- one failed check must not hide the others
            import traceback

            result[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        result[name]["check_seconds"] = round(time.monotonic() - t0, 1)
        (out / "result.json").write_text(json.dumps(result, indent=1, default=str))
        print(f"live_bcc_check: {name} done in {result[name]['check_seconds']} s", flush=True)
    sh(["swaprace-testbox", "swap-off"])
    return 0


if __name__ == "__main__":
    sys.exit(main())

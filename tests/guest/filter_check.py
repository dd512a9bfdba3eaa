#!/usr/bin/env python3
"""Guest side of tests/test_filters_vm.py: record two swap workloads with a thread filter that selects one.

Run inside the test box (root, the checkout at /mnt/swaprace):

    python3 tests/guest/filter_check.py /mnt/out [ftrace] [bcc]

Two copies of tests/guest/swap_workload.py run at once, under two task names (``srwl_a``, ``srwl_b``: python3
started through symlinks of those names, so the kernel names the tasks so), each in its own memory cgroup. Per
backend, ``swaprace record --comm srwl_a`` (bcc: also ``--cgroup`` of A's cgroup) records them; the workloads
are held (SIGSTOP) until ``--ready-file`` says every probe is armed. Writes OUT_DIR/<backend>.parquet and
OUT_DIR/result.json (each step's status, stderr tail and timings).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]
WORKLOAD = str(CHECKOUT / "tests/guest/swap_workload.py")
SWAPRACE = [sys.executable, "-m", "swaprace"]
SWAPINS = 300  # swap-ins while recording (both workloads together)
NAMES = ("srwl_a", "srwl_b")


def pswpin() -> int:
    with open("/proc/vmstat") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("pswpin "))


def start_workloads() -> list:
    procs = []
    for name in NAMES:
        exe = Path("/tmp") / name
        if not exe.exists():
            exe.symlink_to(os.path.realpath(sys.executable))  # the task is named after the path exec'ed
        procs.append(subprocess.Popen([str(exe), WORKLOAD, "--threads", "2", "--mem", "16", "--limit", "8",
                                       "--seconds", "1800", "--write", "--json"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def stop_workloads(procs: list) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGCONT)
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def run_backend(backend: str, out: Path) -> dict:
    step: dict = {}
    t0 = time.monotonic()
    procs = start_workloads()
    ready = out / f"{backend}.ready"
    try:
        cgroup = Path(f"/sys/fs/cgroup/swaprace-wl-{procs[0].pid}")
        deadline = time.monotonic() + 300
        while not cgroup.exists() and time.monotonic() < deadline and procs[0].poll() is None:
            time.sleep(0.1)
        step["cgroup"] = str(cgroup)
        # Held still while the probes attach (a kretprobe attached under load once oopsed the 6.1 guest).
        for proc in procs:
            proc.send_signal(signal.SIGSTOP)
        args = ["record", "-o", str(out / f"{backend}.parquet"), "--backend", backend, "--comm", NAMES[0],
                "--ready-file", str(ready), "--json"]
        if backend == "bcc":
            args += ["--cgroup", str(cgroup)]
        rec = subprocess.Popen(SWAPRACE + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 900  # bcc compiles for minutes under TCG
        while not ready.exists() and rec.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        step["ready"] = json.loads(ready.read_text()) if ready.exists() else None
        step["armed_s"] = round(time.monotonic() - t0, 1)
        for proc in procs:
            proc.send_signal(signal.SIGCONT)
        start = pswpin()
        deadline = time.monotonic() + 300
        while rec.poll() is None and pswpin() - start < SWAPINS and time.monotonic() < deadline:
            time.sleep(0.5)
        step["pswpin"] = pswpin() - start
        rec.send_signal(signal.SIGTERM)
        try:
            stdout, stderr = rec.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            rec.kill()
            stdout, stderr = rec.communicate()
        step.update(rc=rec.returncode, stderr=stderr[-3000:], stdout=stdout[-3000:])
    finally:
        stop_workloads(procs)
    step["seconds"] = round(time.monotonic() - t0, 1)
    return step


def main(out_dir: str, backends: list) -> int:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(["swaprace-testbox", "swap-on"], check=True)
    result: dict = {"release": os.uname().release}
    for backend in backends:
        result[backend] = run_backend(backend, out)
        (out / "result.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "/mnt/out", sys.argv[2:] or ["ftrace", "bcc"]))

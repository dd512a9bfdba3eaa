#!/usr/bin/env python3
"""Guest side of the live ftrace tests: one boot runs every check and writes results to OUT_DIR.

Run inside the test box (root, the checkout at /mnt/swaprace):

    python3 tests/guest/live_ftrace_check.py /mnt/out

Writes to OUT_DIR:
  kallsyms.txt / traceable.txt   the kernel's swap-related symbols (trimmed) and traceable functions
  record.parquet, record.trace   a capture of the swap workload (KSM on) and its raw ftrace text
  record.json                    `swaprace record --json` summary
  workload.json                  the workload's own summary (vmstat deltas, corruption)
The recorder is stopped by SIGTERM while the workload still swaps (after SWAPINS_BEFORE_SIGTERM swap-ins).
  result.json                    what the host-side tests assert on
The host side compares: capture counts vs kprobe_profile hits, analyze windows vs do_swap_page returns, and
that no kprobe event, instance or group is left after SIGTERM.
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
WORKLOAD = [sys.executable, str(CHECKOUT / "tests/guest/swap_workload.py")]
SWAPRACE = [sys.executable, "-m", "swaprace"]
TRACEFS = Path("/sys/kernel/tracing")
SWAPINS_BEFORE_SIGTERM = 500


def vmstat() -> dict:
    with open("/proc/vmstat") as fh:
        return {k: int(v) for k, v in (line.split() for line in fh)}


def sh(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def leftovers() -> dict:
    """What swaprace might leave behind in tracefs: kprobe events, instances, and events in kprobe_profile."""
    events = [line for line in (TRACEFS / "kprobe_events").read_text().splitlines() if "swaprace_" in line]
    instances = [p.name for p in (TRACEFS / "instances").iterdir() if p.name.startswith("swaprace_")]
    return {"kprobe_events": events, "instances": instances}


def main(out_dir: str) -> int:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result: dict = {"release": os.uname().release, "steps": {}}
    sh(["swaprace-testbox", "swap-on"], check=True)
    # 1. the kernel's symbols, for the kallsyms fixtures and the catalog test
    trim = sh([sys.executable, str(CHECKOUT / "tests/fixtures/trim_kallsyms.py")],
              input=Path("/proc/kallsyms").read_text())
    (out / "kallsyms.txt").write_text(trim.stdout)
    traceable = (TRACEFS / "available_filter_functions").read_text().splitlines()
    wanted = {line.split()[2] for line in trim.stdout.splitlines() if len(line.split()) >= 3}
    (out / "traceable.txt").write_text("".join(f"{name}\n" for name in traceable
                                               if name.split()[0] in wanted))
    doctor = sh(SWAPRACE + ["doctor", "--json"])
    result["doctor"] = json.loads(doctor.stdout) if doctor.returncode == 0 else {"error": doctor.stderr}
    result["before"] = leftovers()

    # 2. record the swap workload (KSM on), and stop the recorder with SIGTERM while the workload still
    #    swaps: the recorder must stop the workload, remove every probe and still write a complete capture.
    result["ksm_run_before"] = Path("/sys/kernel/mm/ksm/run").read_text().strip()
    vm_before = vmstat()
    t0 = time.monotonic()
    ready = out / "record.ready"
    proc = subprocess.Popen(SWAPRACE + ["record", "-o", str(out / "record.parquet"), "--backend", "ftrace",
                                        "--json", "--raw-trace", str(out / "record.trace"),
                                        "--ready-file", str(ready), "--"] + WORKLOAD +
                            ["--threads", "2", "--mem", "16", "--limit", "8", "--seconds", "600", "--ksm",
                             "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300  # python + pandas start slowly under TCG
    # --ready-file: written once every probe is armed (no polling of tracefs for what the recorder set up)
    while time.monotonic() < deadline and proc.poll() is None and not ready.exists():
        time.sleep(0.1)
    result["steps"]["attach_s"] = round(time.monotonic() - t0, 1)
    result["ready"] = json.loads(ready.read_text()) if ready.exists() else None
    result["during_record"] = leftovers()
    attached = vmstat()
    while time.monotonic() < deadline and proc.poll() is None:
        if vmstat().get("pswpin", 0) - attached.get("pswpin", 0) >= SWAPINS_BEFORE_SIGTERM:
            break
        time.sleep(0.5)
    result["steps"]["swapping_s"] = round(time.monotonic() - t0, 1)
    proc.send_signal(signal.SIGTERM)
    try:
        stdout, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
    result["steps"]["record"] = {"rc": proc.returncode, "stderr": stderr[-3000:],
                                 "seconds": round(time.monotonic() - t0, 1)}
    vm_after = vmstat()
    result["vmstat"] = {k: vm_after.get(k, 0) - vm_before.get(k, 0) for k in ("pswpin", "ksm_swpin_copy")}
    lines = stdout.strip().splitlines()
    # the workload prints its JSON line first (it shares stdout), then record prints its summary
    if lines and lines[0].startswith("{") and lines[0].endswith("}"):
        (out / "workload.json").write_text(lines[0] + "\n")
        lines = lines[1:]
    (out / "record.json").write_text("\n".join(lines) + "\n")
    result["after_record"] = leftovers()
    result["ksm_run_after"] = Path("/sys/kernel/mm/ksm/run").read_text().strip()
    workloads = sh(["pgrep", "-f", "swap_workload.py"])
    result["stray_workloads"] = workloads.stdout.split()
    result["cgroups_left"] = [p.name for p in Path("/sys/fs/cgroup").iterdir()
                              if p.name.startswith("swaprace-wl-")]
    (out / "result.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "/mnt/out"))

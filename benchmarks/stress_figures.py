#!/usr/bin/env python3
"""Figures of `swaprace stress --record` in the test box, per kernel: fault windows per second and how many
overlapped on different CPUs, entry reuses per minute, ksm_swpin_copy per minute, and the verdict.

    python3 benchmarks/stress_figures.py                       # both kernels, 60 s each
    python3 benchmarks/stress_figures.py --kernel bookworm --duration 30
    python3 benchmarks/stress_figures.py --local --duration 30  # this machine, no tracer (--yes implied)

Each guest run boots a fresh test box (TCG emulation: figures are far below bare metal; compare kernels and
runs with each other, not with real hardware).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

KERNELS = ("bookworm", "trixie-backports")


def guest_run(kernel: str, duration: float, extra: list) -> dict:
    with tempfile.TemporaryDirectory(prefix="stress-figures-") as out:
        cmd = ["swaprace", "vm", "run", "--kernel", kernel, "--out", out, "--timeout", str(900 + duration), "--",
               "sh", "-c", f"swaprace stress --duration {duration} --record /mnt/out/stress.parquet --json "
                           f"{' '.join(extra)} > /mnt/out/stress.json"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        path = Path(out) / "stress.json"
        if not path.exists() or not path.read_text().strip():
            raise SystemExit(f"{kernel}: no summary (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
        summary = json.loads(path.read_text())
        summary["_kernel_release"] = next((line.split()[-1] for line in done.stderr.splitlines()
                                           if "kernel" in line.lower()), None)
        return summary


def local_run(duration: float, extra: list) -> dict:
    done = subprocess.run(["swaprace", "stress", "--yes", "--duration", str(duration), "--json", *extra],
                          capture_output=True, text=True)
    if not done.stdout.strip():
        raise SystemExit(f"local run failed: {done.stderr.strip()}")
    return json.loads(done.stdout)


def figures(name: str, s: dict) -> list:
    per_min = s.get("per_minute", {})
    fw = s["fault_windows"]
    rows = [
        (name, "duration (s)", s["duration_s"]),
        (name, "workload first-touch windows/s (>= 2 us)", fw["per_second"]),
        (name, "  overlapping one on another CPU", fw["overlapping_windows"]),
        (name, "  same-page pairs in flight together", fw["same_page_overlapping_pairs"]),
        (name, "pswpin/min", per_min.get("pswpin")),
        (name, "ksm_swpin_copy/min", per_min.get("ksm_swpin_copy")),
        (name, "swap fill: share of samples above half", s["swap_fill"]["share_above_half"]),
        (name, "oracle corruptions", s["corruptions"]),
    ]
    trace = s.get("trace")
    if trace:
        rows += [
            (name, "trace fault windows/s", trace["per_second"]),
            (name, "  overlapping one on another CPU", trace["overlapping_windows"]),
            (name, "  same-entry pairs in flight together", trace["same_entry_overlapping_pairs"]),
            (name, "entry reuses/min (trace)", trace["reuses_per_minute"]),
            (name, "races by class", trace["race_classes"]),
            (name, "events / lost", f"{trace['events']} / {trace['lost_events']}"),
        ]
    rows.append((name, "verdict", s.get("verdict")))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kernel", choices=KERNELS, action="append")
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--local", action="store_true", help="run on this machine, without the tracer")
    ap.add_argument("--json", action="store_true", help="print the raw summaries")
    ap.add_argument("extra", nargs="*", help="more `swaprace stress` options (after --)")
    args = ap.parse_args()
    runs = {"local": local_run(args.duration, args.extra)} if args.local else {
        k: guest_run(k, args.duration, args.extra) for k in (args.kernel or KERNELS)}
    if args.json:
        print(json.dumps(runs, indent=2, default=str))
        return 0
    for name, s in runs.items():
        for _, label, value in figures(name, s):
            print(f"{name:18} {label:44} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

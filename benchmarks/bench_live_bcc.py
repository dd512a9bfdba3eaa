#!/usr/bin/env python3
"""Live bcc benchmark (run inside the test box, as root): events/s, losses, and overhead on the swap workload.

    swaprace vm run --kernel bookworm -- python3 benchmarks/bench_live_bcc.py [--mem 64 --limit 32 --repeat 2]

Prints, for the same swap workload (tests/guest/swap_workload.py, MADV_PAGEOUT before every pass so each pass
swaps the whole area in again):

* untraced run time;
* detection only (in-kernel detector, no event stream): run time ratio to untraced, probe hits/s counted by
  the BPF program itself -- the "untraced bcc counter" baseline of the event rate;
* full stream (ring buffer, or perf buffer with --perf): run time ratio, events/s written to the capture,
  losses; the ratio of written events to the hits the kernel counted in that same run;
* where loss starts: the full stream again, drained every 5 s, and only at the end of the run (the 4 MiB ring
  holds 65,536 records: loss starts when the rate times the drain interval passes that).

Under QEMU TCG only the ratios mean anything; absolute rates are an emulated CPU's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(CHECKOUT))

from swaprace.probes.backend import make_plan  # noqa: E402
from swaprace.probes.bcc_backend import BccBackend  # noqa: E402

WORKLOAD = [sys.executable, str(CHECKOUT / "tests/guest/swap_workload.py")]


def workload_cmd(args, out: Path) -> list:
    inner = WORKLOAD + ["--threads", str(args.threads), "--mem", str(args.mem), "--limit", str(args.limit),
                        "--passes", str(args.passes), "--pageout", "--json"]
    return ["sh", "-c", " ".join(inner) + f" > {out}"]


def run_untraced(args) -> float:
    with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
        subprocess.run(workload_cmd(args, Path(tmp.name)), check=True)
        return json.loads(Path(tmp.name).read_text())["seconds"]


class Traced:
    """One compiled and attached program, used for several workload runs (bcc compiles for minutes under
    TCG, so each mode compiles once)."""

    def __init__(self, stream: bool, perf: bool = False):
        plan = make_plan(stream_events=stream, detect=True)
        plan.extra["perf_buffer"] = perf
        self.backend = BccBackend()
        t0 = time.monotonic()
        self.backend.start(plan)
        self.start_seconds = time.monotonic() - t0

    def _totals(self):
        counters = self.backend.counters()
        hits = sum(p["call"] + p["return"] for p in counters["hits"].values())
        return hits, int(sum(self.backend.losses().values()))

    def run(self, args, poll_interval: float = 0.1) -> dict:
        hits0, lost0 = self._totals()
        self.backend.drain()
        events = 0
        with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
            child = subprocess.Popen(workload_cmd(args, Path(tmp.name)))
            last = time.monotonic()
            while child.poll() is None:
                time.sleep(0.05)
                if time.monotonic() - last >= poll_interval:
                    events += len(self.backend.drain())
                    last = time.monotonic()
            events += len(self.backend.drain())
            seconds = json.loads(Path(tmp.name).read_text())["seconds"]
        hits1, lost1 = self._totals()
        return {"seconds": seconds, "events": events, "hits": hits1 - hits0, "lost": lost1 - lost0,
                "poll_interval": poll_interval}

    def stop(self) -> None:
        self.backend.stop()


def median(values):
    return statistics.median(values) if values else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mem", type=int, default=64)
    ap.add_argument("--limit", type=int, default=32)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--perf", action="store_true", help="perf buffer instead of the ring buffer")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    why = BccBackend.check()
    if why:
        print(f"bench_live_bcc: bcc unusable here: {why}", file=sys.stderr)
        return 2
    subprocess.run(["swaprace-testbox", "swap-on"], check=False)
    kernel = os.uname().release
    untraced = [run_untraced(args) for _ in range(args.repeat)]
    detect_prog = Traced(stream=False)
    try:
        detect = [detect_prog.run(args) for _ in range(args.repeat)]
    finally:
        detect_prog.stop()
    full_prog = Traced(stream=True, perf=args.perf)
    try:
        full = [full_prog.run(args) for _ in range(args.repeat)]
        # Where loss starts: the same stream, drained less and less often (the ring fills in between).
        slow = [full_prog.run(args, poll_interval=interval) for interval in (5.0, 1e9)]
    finally:
        full_prog.stop()
    untraced.append(run_untraced(args))  # after: drift shows as a spread in the untraced runs
    base = median(untraced)
    report = {
        "kernel": kernel,
        "workload": {"threads": args.threads, "mem_mib": args.mem, "limit_mib": args.limit,
                     "passes": args.passes},
        "compile_attach_s": {"detect": round(detect_prog.start_seconds, 1), "full": round(full_prog.start_seconds, 1)},
        "untraced_s": untraced,
        "detect_only_ratio": round(median([d["seconds"] for d in detect]) / base, 3),
        "full_stream_ratio": round(median([f["seconds"] for f in full]) / base, 3),
        "detect_only_hits_per_s": round(median([d["hits"] / d["seconds"] for d in detect])),
        "full_stream_events_per_s": round(median([f["events"] / f["seconds"] for f in full])),
        "written_vs_counted": round(median([f["events"] / max(f["hits"], 1) for f in full]), 4),
        "full_stream_lost": [f["lost"] for f in full],
        "loss_vs_poll_interval": slow,
        "runs": {"detect": detect, "full": full},
    }
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"kernel {kernel}: workload untraced {base:.2f} s (median of {len(untraced)}: {untraced})")
        print(f"  compile+attach : {report['compile_attach_s']} s")
        print(f"  detection only : x{report['detect_only_ratio']} run time, "
              f"{report['detect_only_hits_per_s']:,} probe hits/s counted in the kernel")
        print(f"  full stream    : x{report['full_stream_ratio']} run time, "
              f"{report['full_stream_events_per_s']:,} events/s written, "
              f"written/counted {report['written_vs_counted']}, lost {report['full_stream_lost']}")
        for row in slow:
            print(f"  drained every {row['poll_interval']:>4} s: {row['events'] / row['seconds']:,.0f} events/s "
                  f"written, {row['hits']:,} hits, lost {row['lost']:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

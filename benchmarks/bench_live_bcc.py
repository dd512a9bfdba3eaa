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
* where loss starts: the full stream again with smaller and smaller ring buffers.

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
from swaprace.probes.record import record  # noqa: E402

WORKLOAD = [sys.executable, str(CHECKOUT / "tests/guest/swap_workload.py")]


def workload_cmd(args, out: Path) -> list:
    inner = WORKLOAD + ["--threads", str(args.threads), "--mem", str(args.mem), "--limit", str(args.limit),
                        "--passes", str(args.passes), "--pageout", "--json"]
    return ["sh", "-c", " ".join(inner) + f" > {out}"]


def run_untraced(args) -> float:
    with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
        subprocess.run(workload_cmd(args, Path(tmp.name)), check=True)
        return json.loads(Path(tmp.name).read_text())["seconds"]


def run_traced(args, stream: bool, ringbuf_pages: int = 1024, perf: bool = False) -> dict:
    plan = make_plan(stream_events=stream, detect=True)
    plan.extra["ringbuf_pages"] = ringbuf_pages
    plan.extra["perf_buffer"] = perf
    backend = BccBackend()
    with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
        t0 = time.monotonic()
        capture = record(None, backend, plan, cmd=workload_cmd(args, Path(tmp.name)))
        wall = time.monotonic() - t0
        seconds = json.loads(Path(tmp.name).read_text())["seconds"]
    counters = capture.meta.detector["counters"]
    hits = sum(p["call"] + p["return"] for p in counters["hits"].values())
    return {
        "seconds": seconds,
        "wall": wall,
        "events": len(capture.events),
        "hits": hits,
        "lost": capture.meta.lost,
        "lost_events": capture.meta.lost_events,
        "traced_s": capture.meta.duration_s,
    }


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
    untraced, detect, full = [], [], []
    for _ in range(args.repeat):  # interleaved, so drift hits every mode alike
        untraced.append(run_untraced(args))
        detect.append(run_traced(args, stream=False))
        full.append(run_traced(args, stream=True, perf=args.perf))
    base = median(untraced)
    detect_hits_rate = median([d["hits"] / d["seconds"] for d in detect])
    full_rate = median([f["events"] / f["seconds"] for f in full])
    loss_curve = []
    for pages in (1, 4, 16, 64):
        r = run_traced(args, stream=True, ringbuf_pages=pages)
        loss_curve.append({"ringbuf_pages": pages, "events": r["events"], "lost": r["lost_events"],
                           "events_per_s": round(r["events"] / r["seconds"])})
    report = {
        "kernel": kernel,
        "workload": {"threads": args.threads, "mem_mib": args.mem, "limit_mib": args.limit,
                     "passes": args.passes},
        "untraced_s": base,
        "detect_only_ratio": round(median([d["seconds"] for d in detect]) / base, 3),
        "full_stream_ratio": round(median([f["seconds"] for f in full]) / base, 3),
        "detect_only_hits_per_s": round(detect_hits_rate),
        "full_stream_events_per_s": round(full_rate),
        "written_vs_counted": round(median([f["events"] / max(f["hits"], 1) for f in full]), 4),
        "full_stream_lost": [f["lost_events"] for f in full],
        "loss_vs_ring_size": loss_curve,
        "runs": {"untraced": untraced, "detect": detect, "full": full},
    }
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"kernel {kernel}: workload untraced {base:.2f} s (median of {args.repeat})")
        print(f"  detection only : x{report['detect_only_ratio']} run time, "
              f"{report['detect_only_hits_per_s']:,} probe hits/s counted in the kernel")
        print(f"  full stream    : x{report['full_stream_ratio']} run time, "
              f"{report['full_stream_events_per_s']:,} events/s written, "
              f"written/counted {report['written_vs_counted']}, lost {report['full_stream_lost']}")
        for row in loss_curve:
            print(f"  ring {row['ringbuf_pages']:>5} pages: {row['events_per_s']:>9,} events/s, "
                  f"lost {row['lost']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

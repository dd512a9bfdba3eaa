#!/usr/bin/env python3
"""ftrace text parsing speed on a synthetic `trace` dump (default 3 million kprobe lines).

Prints lines/s for the raw parser on in-memory bytes (parse_ftrace_bytes, one block like the live backend
feeds it) and for read_any() on the file (block reads, concat, sort). Goal (issue 2): >= 1,000,000 lines/s.

    python3 benchmarks/bench_ftrace_parse.py
    python3 benchmarks/bench_ftrace_parse.py --lines 1e6 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synth import synthetic_events, to_ftrace_text  # noqa: E402

from swaprace.readers.ftrace_text import parse_ftrace_bytes  # noqa: E402
from swaprace.readers import read_any  # noqa: E402

CACHE = Path(os.environ.get("SWAPRACE_BENCH_CACHE", Path.home() / ".cache" / "swaprace" / "bench"))


def trace_file(n_lines: int, seed: int) -> Path:
    path = CACHE / f"synth-{n_lines}-{seed}.trace"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        data = to_ftrace_text(synthetic_events(n_lines, seed=seed))
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.rename(path)
        print(f"wrote {len(data) / 2**20:.0f} MiB of ftrace text in {time.perf_counter() - t0:.1f} s -> {path}",
              file=sys.stderr)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=float, default=3e6)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    path = trace_file(int(args.lines), args.seed)
    data = path.read_bytes()
    n_lines = data.count(b"\n")
    best_raw = best_file = cpu_raw = cpu_file = float("inf")
    for _ in range(args.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        chunk = parse_ftrace_bytes(data)
        best_raw, cpu_raw = min(best_raw, time.perf_counter() - t0), min(cpu_raw, time.process_time() - c0)
        t0, c0 = time.perf_counter(), time.process_time()
        capture = read_any(path)
        best_file, cpu_file = min(best_file, time.perf_counter() - t0), min(cpu_file, time.process_time() - c0)
    print(f"lines                {n_lines:,} ({len(data) / 2**20:.0f} MiB), events {len(chunk.events):,}, "
          f"skipped {chunk.skipped}")
    print(f"parse_ftrace_bytes   wall {best_raw:.2f} s = {n_lines / best_raw:,.0f} lines/s; CPU {cpu_raw:.2f} s = "
          f"{n_lines / cpu_raw:,.0f} lines/s of CPU (one thread)   (goal >= 1,000,000)")
    print(f"read_any(file)       wall {best_file:.2f} s = {n_lines / best_file:,.0f} lines/s; CPU {cpu_file:.2f} s "
          f"(blocks on {os.cpu_count()} threads; events {len(capture.events):,})")
    print(f"load average         {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()

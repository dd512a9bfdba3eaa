#!/usr/bin/env python3
"""Analysis speed and memory on a large synthetic capture (default 10 million events).

Prints events/s of analyze() (best of --repeat runs), the event table's in-memory size, and the extra memory
analyze() allocates at its peak (tracemalloc, which sees numpy and pandas buffers), as a ratio to the table.
Goals: >= 2,000,000 events/s; peak <= 2x the table (i.e. extra <= 1x).

    python3 benchmarks/bench_analysis.py              # 10M events; capture cached under ~/.cache/swaprace/bench
    python3 benchmarks/bench_analysis.py --events 1e6 --repeat 3
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synth import synthetic_events  # noqa: E402

from swaprace.analysis.model import analyze  # noqa: E402
from swaprace.capture import read_capture, write_capture  # noqa: E402
from swaprace.events import Capture, CaptureMeta  # noqa: E402

CACHE = Path(os.environ.get("SWAPRACE_BENCH_CACHE", Path.home() / ".cache" / "swaprace" / "bench"))


def load_capture(n_events: int, seed: int) -> Capture:
    path = CACHE / f"synth-{n_events}-{seed}.parquet"
    if path.exists():
        return read_capture(path)
    t0 = time.perf_counter()
    events = synthetic_events(n_events, seed=seed)
    capture = Capture(events, CaptureMeta(backend="synthetic", lost_known=True))
    write_capture(capture, path)
    print(f"generated {len(events):,} events in {time.perf_counter() - t0:.1f} s -> {path}", file=sys.stderr)
    return capture


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=float, default=10e6)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    capture = load_capture(int(args.events), args.seed)
    n = len(capture.events)
    table_bytes = int(capture.events.memory_usage(deep=True).sum())
    gc.collect()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    times, cpu_times = [], []
    for _ in range(args.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        result = analyze(capture)
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
        del result
        gc.collect()
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    tracemalloc.reset_peak()
    result = analyze(capture)
    _, peak_extra = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    s = result.summary
    best = min(times)
    print(f"events               {n:,}")
    print(f"windows              {s['windows']:,} ({s['windows_with_entry']:,} with entry), reuses {s['reuses']:,}, "
          f"races {len(s['races']):,} ({s['race_classes']})")
    print(f"analyze time         best {best:.2f} s of {args.repeat} ({', '.join(f'{t:.2f}' for t in times)})")
    print(f"analysis speed       {n / best:,.0f} events/s wall   (goal >= 2,000,000)")
    print(f"analysis CPU time    best {min(cpu_times):.2f} s = {n / min(cpu_times):,.0f} events/s of CPU "
          f"(what an idle machine would see; wall time suffers from other load)")
    print(f"event table          {table_bytes / 2**20:,.0f} MiB in memory ({table_bytes / n:.0f} B/event)")
    print(f"analyze extra peak   {peak_extra / 2**20:,.0f} MiB (tracemalloc) = {peak_extra / table_bytes:.2f}x table;"
          f" table + extra = {(table_bytes + peak_extra) / table_bytes:.2f}x table   (goal <= 2x)")
    print(f"process max RSS      {rss_after / 2**20:,.0f} MiB (before timing runs: {rss_before / 2**20:,.0f} MiB)")
    print(f"load average         {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()

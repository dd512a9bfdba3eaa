#!/usr/bin/env python3
"""Analysis speed and memory on a large synthetic capture (default 10 million events).

Prints events/s of analyze() (best of --repeat runs), the event table's in-memory size, and the extra memory
analyze() allocates at its peak (tracemalloc, which sees numpy and pandas buffers), as a ratio to the table.
Goals: >= 10,000,000 events/s; peak (table + extra) <= 1.5x the table.

``--ref REV`` also runs ``swaprace/analysis/model.py`` as it was at git revision REV, alternating with the
current one in the same process (so load noise hits both), checks both give the same summary, and prints the
ratios.

    python3 benchmarks/bench_analysis.py              # 10M events; capture cached under ~/.cache/swaprace/bench
    python3 benchmarks/bench_analysis.py --events 2e6 --repeat 3 --ref 0d4c894
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import subprocess
import sys
import time
import tracemalloc
import types
from pathlib import Path
from typing import Callable, Tuple

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


def ref_analyze(rev: str) -> Callable:
    """``analyze`` of swaprace/analysis/model.py at git revision ``rev`` (loaded as a separate module)."""
    root = Path(__file__).resolve().parent.parent
    src = subprocess.run(["git", "-C", str(root), "show", f"{rev}:swaprace/analysis/model.py"], check=True,
                         capture_output=True, text=True).stdout
    mod = types.ModuleType("model_ref")
    sys.modules["model_ref"] = mod  # dataclasses look their module up
    exec(compile(src, f"model.py@{rev}", "exec"), mod.__dict__)
    return mod.analyze


def timed(fn: Callable, capture: Capture) -> Tuple[float, float]:
    gc.collect()
    t0, c0 = time.perf_counter(), time.process_time()
    fn(capture)
    return time.perf_counter() - t0, time.process_time() - c0


def traced_peak(fn: Callable, capture: Capture) -> int:
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn(capture)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def compare(capture: Capture, rev: str, repeat: int, table_bytes: int) -> None:
    """Old and new analyze, alternating; best of ``repeat`` each; same summary checked."""
    old = ref_analyze(rev)
    s_old, s_new = old(capture).summary, analyze(capture).summary
    assert s_old == s_new, "summaries differ"
    runs: dict = {"old": [], "new": []}
    for _ in range(repeat):
        for name, fn in (("old", old), ("new", analyze)):
            runs[name].append(timed(fn, capture))
    n = len(capture.events)
    best = {k: (min(w for w, _ in v), min(c for _, c in v)) for k, v in runs.items()}
    peaks = {"old": traced_peak(old, capture), "new": traced_peak(analyze, capture)}
    for k, label in (("old", f"model.py@{rev}"), ("new", "model.py (this tree)")):
        wall, cpu = best[k]
        print(f"{label:22s} {n / wall:>12,.0f} events/s wall {n / cpu:>12,.0f} events/s CPU   "
              f"peak {(table_bytes + peaks[k]) / table_bytes:.2f}x table")
    print(f"ratio new/old          speed x{best['old'][0] / best['new'][0]:.2f} wall, "
          f"x{best['old'][1] / best['new'][1]:.2f} CPU; extra memory x{peaks['new'] / peaks['old']:.2f}; "
          f"summaries equal")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=float, default=10e6)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ref", metavar="REV", help="also run model.py at this git revision and print ratios")
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
    print(f"analysis speed       {n / best:,.0f} events/s wall   (goal >= 10,000,000)")
    print(f"analysis CPU time    best {min(cpu_times):.2f} s = {n / min(cpu_times):,.0f} events/s of CPU "
          f"(what an idle machine would see; wall time suffers from other load)")
    print(f"event table          {table_bytes / 2**20:,.0f} MiB in memory ({table_bytes / n:.0f} B/event)")
    print(f"analyze extra peak   {peak_extra / 2**20:,.0f} MiB (tracemalloc) = {peak_extra / table_bytes:.2f}x table;"
          f" table + extra = {(table_bytes + peak_extra) / table_bytes:.2f}x table   (goal <= 1.5x)")
    print(f"process max RSS      {rss_after / 2**20:,.0f} MiB (before timing runs: {rss_before / 2**20:,.0f} MiB)")
    print(f"load average         {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if args.ref:
        del result
        compare(capture, args.ref, args.repeat, table_bytes)


if __name__ == "__main__":
    main()

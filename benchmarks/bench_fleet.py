"""Fleet throughput: N synthetic captures derived by the local process pool and by a Dask LocalCluster, then
DuckDB over all their derived tables.

    python3 benchmarks/bench_fleet.py                          # 200 captures x 1 M events (long: ~GBs, hours on 2 cores)
    python3 benchmarks/bench_fleet.py --captures 12 --events 200000 --workers 2

Prints captures/s and events/s for each engine (every capture derived, --force), the time a second run takes
to find everything up to date, and the DuckDB query times (per kernel/host summary; a scan of every window).
The captures are made with benchmarks/synth.py: three synthetic kernel versions on four hosts, one kernel with a
small entry pool (so it has races), losses on some runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from synth import synthetic_events

from swaprace.capture import write_capture
from swaprace.events import Capture, CaptureMeta

KERNELS = (("6.1.0-50-synth", 50_000), ("6.6.30-synth", 5), ("7.3.4-synth", 50_000))  # (release, entry pool)


def make_captures(directory: Path, n: int, events: int, seed: int = 1) -> list[Path]:
    """``n`` synthetic captures of about ``events`` events each in ``directory`` (kernels and hosts vary)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        kernel, pool = KERNELS[i % len(KERNELS)]
        host = f"ci-box-{i % 4:02d}"
        frame = synthetic_events(events, seed=seed + i, threads=16 if pool < 100 else 8, entry_pool=pool)
        lost = {"ringbuf": (i * 7) % 13} if i % 5 == 0 else {"ringbuf": 0}
        meta = CaptureMeta(kernel_release=kernel, backend="synthetic", host=host, lost=lost, lost_known=True,
                           duration_s=round(float(frame["ts_ns"].iloc[-1] - frame["ts_ns"].iloc[0]) / 1e9, 3))
        path = directory / f"run-{i:04d}-{host}.parquet"
        write_capture(Capture(events=frame, meta=meta), path)
        paths.append(path)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--captures", type=int, default=200)
    ap.add_argument("--events", type=int, default=1_000_000, help="events per capture")
    ap.add_argument("--workers", type=int, default=2, help="local processes and Dask workers")
    ap.add_argument("--dir", default=None, help="work directory (default: a temporary one, removed after)")
    ap.add_argument("--skip-dask", action="store_true")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = ap.parse_args()

    from swaprace.fleet import query
    from swaprace.fleet.run import run_fleet

    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="swaprace-bench-fleet-"))
    figures: dict = {"captures": args.captures, "events_per_capture": args.events, "workers": args.workers,
                     "cpus": os.cpu_count()}
    try:
        t = time.perf_counter()
        paths = make_captures(work / "captures", args.captures, args.events)
        figures["make_captures_s"] = round(time.perf_counter() - t, 2)
        total_events = sum(_events(p) for p in paths)
        figures["total_events"] = total_events
        figures["capture_bytes"] = sum(p.stat().st_size for p in paths)
        print(f"made {len(paths)} captures, {total_events:,} events, {figures['capture_bytes'] / 1e6:.1f} MB "
              f"in {figures['make_captures_s']} s", file=sys.stderr)

        res = run_fleet([str(work / "captures")], work / "fleet-local", engine="local", workers=args.workers,
                        force=True)
        _rates(figures, "local", res, total_events)
        again = run_fleet([str(work / "captures")], work / "fleet-local", engine="local", workers=args.workers)
        figures["local_up_to_date_s"] = round(again.seconds, 3)

        if not args.skip_dask:
            from dask.distributed import Client, LocalCluster

            t = time.perf_counter()
            cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
            client = Client(cluster)
            client.run(_warm)  # the workers are fresh processes: import the analysis once, outside the timing
            figures["dask_cluster_start_s"] = round(time.perf_counter() - t, 2)
            try:
                res = run_fleet([str(work / "captures")], work / "fleet-dask", client=client, force=True)
                _rates(figures, "dask", res, total_events)
            finally:
                client.close()
                cluster.close()

        fleet_dir = work / "fleet-local"
        t = time.perf_counter()
        summary = query.summary(fleet_dir)
        figures["duckdb_summary_s"] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        scan = query.query(fleet_dir, "SELECT kernel_release, count(*) AS windows, median(duration_ns) AS median_ns, "
                                      "count(*) FILTER (WHERE race_class IS NOT NULL) AS raced FROM windows "
                                      "GROUP BY ALL ORDER BY 1")
        figures["duckdb_windows_scan_s"] = round(time.perf_counter() - t, 3)
        figures["derived_windows"] = int(scan["windows"].sum())
        figures["derived_bytes"] = sum(f.stat().st_size for f in fleet_dir.rglob("*.parquet"))
        print(query.format_table(summary), file=sys.stderr)
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(figures, indent=1))
    else:
        for key, value in figures.items():
            print(f"{key:<28} {value:,}" if isinstance(value, int) else f"{key:<28} {value}")


def _warm() -> None:
    import swaprace.analysis.model
    import swaprace.fleet.run
    import swaprace.readers  # noqa: F401


def _events(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def _rates(figures: dict, name: str, res, total_events: int) -> None:
    if res.failed:
        raise SystemExit(f"{name}: {len(res.failed)} captures failed: {res.failed[0].get('error')}")
    figures[f"{name}_s"] = round(res.seconds, 2)
    figures[f"{name}_captures_per_s"] = round(len(res.records) / res.seconds, 2)
    figures[f"{name}_events_per_s"] = int(total_events / res.seconds)
    # the tasks' own time (read + analyse + write), summed: wall time x workers minus this is the engine's cost
    figures[f"{name}_task_s_sum"] = round(sum(r.get("seconds", 0) for r in res.records), 2)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""JSON Lines reader: peak memory per event and events/s (goal: <= 200 B/event, streamed).

Writes N synthetic events (``benchmarks/synth.py``) as JSON Lines the way swaprace writes JSON (64-bit values
as ``"0x..."`` strings, a first ``{"meta": ...}`` line), then reads the file in fresh subprocesses, once per
measure, so one reading's memory cannot hide another's:

* ``rss``: the process's peak RSS while reading (``VmHWM``, reset through ``/proc/self/clear_refs`` once the
  imports are done) minus its RSS before: everything, numpy, pandas and pyarrow buffers and the interpreter's
  own, as the OS sees it. Events/s is timed in this run.
* ``tracemalloc``: the peak of Python-tracked allocations (numpy's are included, pyarrow's are not).

``--ref`` also reads with the reader before the streaming work (``benchmarks/jsonl_ref.py``), on a file of
``--ref-events`` events (it needs ~2 KB/event), and checks both give the same table.

    PYTHONPATH=. python3 benchmarks/bench_jsonl.py --events 2e6 --ref --ref-events 2e5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

CACHE = Path(os.environ.get("SWAPRACE_BENCH_CACHE", Path.home() / ".cache" / "swaprace" / "bench"))
GOAL_BYTES_PER_EVENT = 200


def write_jsonl(n_events: int, path: Path, seed: int = 1) -> int:
    """N synthetic events as JSON Lines at ``path``; returns the number of events written."""
    from synth import synthetic_events

    events = synthetic_events(n_events, seed=seed)
    cols = {c: events[c].astype(str).to_numpy() for c in ("comm", "func", "role", "phase")}
    ints = {c: events[c].to_numpy() for c in ("ts_ns", "cpu", "pid", "tid")}
    hexes = {c: _hex_or_null(events[c].to_numpy(dtype="uint64", na_value=0), events[c].isna().to_numpy())
             for c in ("entry", "folio", "retval")}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as fh:
        fh.write(json.dumps({"meta": {"backend": "synthetic", "lost_known": True}}) + "\n")
        for i in range(len(events)):
            fh.write(f'{{"ts_ns": {ints["ts_ns"][i]}, "cpu": {ints["cpu"][i]}, "pid": {ints["pid"][i]}, '
                     f'"tid": {ints["tid"][i]}, "comm": "{cols["comm"][i]}", "func": "{cols["func"][i]}", '
                     f'"role": "{cols["role"][i]}", "phase": "{cols["phase"][i]}", "entry": {hexes["entry"][i]}, '
                     f'"folio": {hexes["folio"][i]}, "retval": {hexes["retval"][i]}, "nr": null}}\n')
    tmp.rename(path)
    return len(events)


def _hex_or_null(values: np.ndarray, null: np.ndarray) -> list:
    return ["null" if n else f'"0x{v:x}"' for v, n in zip(values.tolist(), null.tolist())]


def synthetic_file(n_events: int) -> Path:
    path = CACHE / f"synth-{n_events}.jsonl"
    if not path.exists():
        t0 = time.perf_counter()
        write_jsonl(n_events, path)
        print(f"wrote {path} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return path


def _reader(which: str):
    if which == "ref":
        import jsonl_ref

        return jsonl_ref.read_jsonl
    from swaprace.readers import read_jsonl

    return read_jsonl


def measure(which: str, path: Path, how: str) -> dict:
    """Read ``path`` in this process and return what was measured (run in a fresh subprocess)."""
    read = _reader(which)
    import gc

    gc.collect()
    rss0 = _status_bytes("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS (VmHWM) := current RSS
    if how == "tracemalloc":
        tracemalloc.start()
    t0, c0 = time.perf_counter(), time.process_time()
    capture = read(path)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = tracemalloc.get_traced_memory()[1] if how == "tracemalloc" else 0
    tracemalloc.stop()
    rss = _status_bytes("VmHWM") - rss0
    events = capture.events
    return {"events": len(events), "wall": wall, "cpu": cpu, "rss": rss, "peak": peak,
            "table": int(events.memory_usage(deep=True).sum())}


def _status_bytes(field: str) -> int:
    """A ``/proc/self/status`` memory field (kB there) in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def run_child(which: str, path: Path, how: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", which, str(path), how], check=True,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    return json.loads(out.stdout)


def report(label: str, path: Path, which: str) -> dict:
    rss = run_child(which, path, "rss")
    traced = run_child(which, path, "tracemalloc")
    n = rss["events"]
    print(f"{label:<10} {n:>10,} events  {n / rss['wall']:>9,.0f} events/s wall  {n / rss['cpu']:>9,.0f} events/s CPU"
          f"  peak RSS growth {rss['rss'] / n:>6.0f} B/event  tracemalloc peak {traced['peak'] / n:>6.0f} B/event"
          f"  (table {rss['table'] / n:.0f} B/event)")
    return {"rss": rss, "traced": traced}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=float, default=2e6)
    ap.add_argument("--ref", action="store_true", help="also time the reader before the streaming work")
    ap.add_argument("--ref-events", type=float, default=2e5)
    ap.add_argument("--child", nargs=3, metavar=("READER", "PATH", "HOW"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        which, path, how = args.child
        print(json.dumps(measure(which, Path(path), how)))
        return
    new = report("streaming", synthetic_file(int(args.events)), "new")
    if args.ref:
        small = synthetic_file(int(args.ref_events))
        ref = report("before", small, "ref")
        new_small = report("streaming", small, "new")
        print(f"ratio at {ref['rss']['events']:,} events: speed x{ref['rss']['wall'] / new_small['rss']['wall']:.2f}"
              f" wall, x{ref['rss']['cpu'] / new_small['rss']['cpu']:.2f} CPU;"
              f" RSS growth x{new_small['rss']['rss'] / ref['rss']['rss']:.3f}")
        _check_same(small)
    worst = max(new["rss"]["rss"], new["traced"]["peak"]) / new["rss"]["events"]
    print(f"goal <= {GOAL_BYTES_PER_EVENT} B/event: {'met' if worst <= GOAL_BYTES_PER_EVENT else 'NOT met'}"
          f" ({worst:.0f} B/event, the larger of the two measures)")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


def _check_same(path: Path) -> None:
    import pandas as pd

    a, b = _reader("ref")(path), _reader("new")(path)
    pd.testing.assert_frame_equal(a.events, b.events)
    assert a.meta == b.meta and a.skipped_lines == b.skipped_lines
    print("tables equal (assert_frame_equal)")


if __name__ == "__main__":
    main()

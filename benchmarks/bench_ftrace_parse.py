#!/usr/bin/env python3
"""ftrace text parsing speed, old (reference) and new parser measured in the same run.

Input: a synthetic `trace` dump (default 2 million kprobe lines, benchmarks/synth.py), or ``--real NAME``: the
event lines of a committed real capture (tests/fixtures/real/NAME.trace) repeated up to ``--lines``. Printed,
for the reference parser (benchmarks/ftrace_text_ref.py, the implementation before the speed work) and for the
package's:

* ``parse_ftrace_bytes`` on the file's 8 MiB blocks, one thread (what each read_any worker does);
* ``read_any`` on the file, end to end (block reads, parsing on all CPUs, concat, sort);

as lines/s of wall time and of CPU time, and the new/old ratios. Runs alternate old/new and keep the best of
``--repeat``, so load on the machine hits both alike; a bare Python line count is printed as the yardstick
(ratios against it cancel noise). The two paths' event tables are checked equal.

    python3 benchmarks/bench_ftrace_parse.py
    python3 benchmarks/bench_ftrace_parse.py --real ftrace-bookworm-6.1 --lines 2e6 --repeat 3
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pandas as pd  # noqa: E402

import ftrace_text_ref  # noqa: E402
from synth import synthetic_events, to_ftrace_text  # noqa: E402

import swaprace.readers as readers  # noqa: E402
from swaprace.readers import _blocks, read_any  # noqa: E402
from swaprace.readers.ftrace_text import parse_ftrace_bytes  # noqa: E402

CACHE = Path(os.environ.get("SWAPRACE_BENCH_CACHE", Path.home() / ".cache" / "swaprace" / "bench"))
REAL = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "real"


def trace_file(n_lines: int, seed: int) -> Path:
    path = CACHE / f"synth-{n_lines}-{seed}.trace"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        data = to_ftrace_text(synthetic_events(n_lines, seed=seed))
        _write(path, data)
        print(f"wrote {len(data) / 2**20:.0f} MiB of ftrace text in {time.perf_counter() - t0:.1f} s -> {path}",
              file=sys.stderr)
    return path


def real_file(name: str, n_lines: int) -> Path:
    """The event lines of a committed real capture, repeated to about ``n_lines`` (its header kept once)."""
    path = CACHE / f"real-{name}-{n_lines}.trace"
    if not path.exists():
        lines = (REAL / f"{name}.trace").read_bytes().splitlines(keepends=True)
        head = b"".join(ln for ln in lines if ln.startswith(b"#"))
        body = b"".join(ln for ln in lines if not ln.startswith(b"#"))
        repeat = max(1, n_lines // max(1, body.count(b"\n")))
        CACHE.mkdir(parents=True, exist_ok=True)
        _write(path, head + body * repeat)
    return path


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.rename(path)


def _timed(fn: Callable[[], object]) -> Tuple[float, float, object]:
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t0, time.process_time() - c0, out


def _read_any_old(path: Path):
    """read_any with the reference block parser in place of the package's (same blocks, threads, concat)."""
    saved = readers.parse_ftrace_bytes
    readers.parse_ftrace_bytes = ftrace_text_ref.parse_ftrace_bytes  # type: ignore[assignment]
    try:
        return read_any(path)
    finally:
        readers.parse_ftrace_bytes = saved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=float, default=2e6)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--real", metavar="NAME", help="a capture in tests/fixtures/real (without .trace)")
    args = ap.parse_args()
    path = real_file(args.real, int(args.lines)) if args.real else trace_file(int(args.lines), args.seed)
    data = path.read_bytes()
    n_lines = data.count(b"\n")
    blocks = list(_blocks(io.BytesIO(data)))
    best: Dict[str, Tuple[float, float]] = {}

    def keep(name: str, wall: float, cpu: float) -> None:
        w, c = best.get(name, (float("inf"), float("inf")))
        best[name] = (min(w, wall), min(c, cpu))

    for _ in range(args.repeat):
        with open(path, "rb") as fh:
            wall, cpu, _ = _timed(lambda: sum(1 for _ in fh))
        keep("line count", wall, cpu)
        for label, parse in (("old", ftrace_text_ref.parse_ftrace_bytes), ("new", parse_ftrace_bytes)):
            wall, cpu, _ = _timed(lambda: [parse(b) for b in blocks])  # noqa: B023
            keep(f"parse_ftrace_bytes {label}", wall, cpu)
        wall, cpu, old = _timed(lambda: _read_any_old(path))
        keep("read_any old", wall, cpu)
        wall, cpu, new = _timed(lambda: read_any(path))
        keep("read_any new", wall, cpu)
    pd.testing.assert_frame_equal(old.events, new.events)  # type: ignore[attr-defined]
    assert old.skipped_lines == new.skipped_lines  # type: ignore[attr-defined]

    print(f"input                {path.name}: {n_lines:,} lines ({len(data) / 2**20:.0f} MiB), "
          f"{len(blocks)} blocks, events {len(new.events):,}, skipped {new.skipped_lines}")  # type: ignore
    print(f"{'':38} {'wall lines/s':>14} {'CPU lines/s':>14}")
    for name, (wall, cpu) in best.items():
        print(f"{name:38} {n_lines / wall:>14,.0f} {n_lines / cpu:>14,.0f}")
    for what in ("parse_ftrace_bytes", "read_any"):
        (w_old, c_old), (w_new, c_new) = best[f"{what} old"], best[f"{what} new"]
        print(f"ratio new/old {what:23} {w_old / w_new:>14.2f} {c_old / c_new:>14.2f}")
    w_lc, c_lc = best["line count"]
    w_new, c_new = best["read_any new"]
    print(f"read_any new / line count {'':11} {w_lc / w_new:>14.3f} {c_lc / c_new:>14.3f}")
    print(f"load average         {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (read_any parses on "
          f"{min(os.cpu_count() or 1, 8)} threads)")


if __name__ == "__main__":
    main()

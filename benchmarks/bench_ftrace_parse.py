#!/usr/bin/env python3
"""ftrace text parsing speed: the reference parser and the package's two field scans, measured in the same run.

Input: a synthetic `trace` dump (default 2 million kprobe lines, benchmarks/synth.py), or ``--real NAME``: the
event lines of a committed real capture (tests/fixtures/real/NAME.trace) repeated up to ``--lines``. Printed,
for the reference parser (``old``: benchmarks/ftrace_text_ref.py, the implementation before the speed work) and
for the package's parser with its numpy field scan (``numpy``) and with the C scanner (``c``,
swaprace/readers/ftrace_scan.c; SWAPRACE_FTRACE_SCANNER selects them):

* ``parse_ftrace_bytes`` on the file's 8 MiB blocks, one thread (what each read_any worker does);
* ``read_any`` on the file, end to end (block reads, parsing on all CPUs, concat, sort);

as lines/s of wall time and of CPU time, the ratios to the reference and to a bare Python line count of the same
file (ratios against it cancel much of the noise of a loaded machine). Runs alternate between the parsers and
keep the best of ``--repeat``, so load hits all alike. The three event tables are checked equal.

    python3 benchmarks/bench_ftrace_parse.py
    python3 benchmarks/bench_ftrace_parse.py --real ftrace-bookworm-6.1 --lines 2e6 --repeat 3
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pandas as pd  # noqa: E402

import ftrace_text_ref  # noqa: E402
from synth import synthetic_events, to_ftrace_text  # noqa: E402

import swaprace.readers as readers  # noqa: E402
from swaprace.readers import _blocks, ftrace_scan, read_any  # noqa: E402
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


@contextlib.contextmanager
def scanner(name: str) -> Iterator[None]:
    """The package's parser with field scan ``name`` (``c`` or ``numpy``)."""
    saved = os.environ.get(ftrace_scan.ENV)
    os.environ[ftrace_scan.ENV] = name
    try:
        yield
    finally:
        if saved is None:
            del os.environ[ftrace_scan.ENV]
        else:
            os.environ[ftrace_scan.ENV] = saved


PATHS = ("old", "numpy", "c")


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

    results = {}
    for _ in range(args.repeat):
        with open(path, "rb") as fh:
            wall, cpu, _ = _timed(lambda: sum(1 for _ in fh))
        keep("line count", wall, cpu)
        wall, cpu, _ = _timed(lambda: [ftrace_text_ref.parse_ftrace_bytes(b) for b in blocks])
        keep("parse_ftrace_bytes old", wall, cpu)
        for name in PATHS[1:]:
            with scanner(name):
                wall, cpu, _ = _timed(lambda: [parse_ftrace_bytes(b) for b in blocks])
            keep(f"parse_ftrace_bytes {name}", wall, cpu)
        wall, cpu, results["old"] = _timed(lambda: _read_any_old(path))
        keep("read_any old", wall, cpu)
        for name in PATHS[1:]:
            with scanner(name):
                wall, cpu, results[name] = _timed(lambda: read_any(path))
            keep(f"read_any {name}", wall, cpu)
    for name in PATHS[1:]:
        pd.testing.assert_frame_equal(results["old"].events, results[name].events)  # type: ignore[attr-defined]
        assert results["old"].skipped_lines == results[name].skipped_lines  # type: ignore[attr-defined]
    new = results["c"]

    print(f"input                {path.name}: {n_lines:,} lines ({len(data) / 2**20:.0f} MiB), "
          f"{len(blocks)} blocks, events {len(new.events):,}, skipped {new.skipped_lines}")  # type: ignore
    print(f"{'':30} {'wall lines/s':>13} {'CPU lines/s':>13} {'wall /count':>12} {'wall /old':>10}")
    w_lc, c_lc = best["line count"]
    for name, (wall, cpu) in best.items():
        what = name.rsplit(" ", 1)[0]
        vs_old = best.get(f"{what} old", (wall, cpu))[0] / wall
        print(f"{name:30} {n_lines / wall:>13,.0f} {n_lines / cpu:>13,.0f} {w_lc / wall:>12.3f} {vs_old:>10.2f}")
    print(f"load average         {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (read_any parses on "
          f"{min(os.cpu_count() or 1, 8)} threads)")


if __name__ == "__main__":
    main()

"""How long `swaprace report` takes on big captures, and that drawing does not grow with the event count.

Builds synthetic 6.1-shaped captures (benchmarks/synth.py: faulting threads + kswapd on a small entry pool, so
both race classes occur), analyses them, then times each step of the report separately: the data behind each
figure (numpy over the whole capture) and its rendering (bounded by pixels, not events). Prints one line per
size plus the load average, because on a shared 2-core box the figures move with it.

    python3 benchmarks/bench_report.py                 # 1M and 5M events
    python3 benchmarks/bench_report.py --events 10000000 --timelines 8
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synth import synthetic_events  # noqa: E402

from swaprace.analysis.model import analyze  # noqa: E402
from swaprace.analysis.report import build_report, distributions, rate, style, timeline  # noqa: E402
from swaprace.events import Capture, CaptureMeta  # noqa: E402


class Clock:
    """Wall and CPU seconds of each step: on a shared, loaded box the CPU figure is the one to compare."""

    def __init__(self):
        self.cpu = {}

    def __call__(self, name, fn):
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        self.cpu[name] = time.process_time() - cpu
        return out, time.perf_counter() - wall


def bench(n_events: int, timelines: int, out_dir: Path) -> None:
    _timed = Clock()
    events, t_synth = _timed("synth", lambda: synthetic_events(n_events))
    capture = Capture(events, CaptureMeta(kernel_release="6.1.0-bench", backend="synthetic", lost_known=True))
    analysis, t_analyze = _timed("analyze", lambda: analyze(capture))
    n = len(events)

    series, t_rate_data = _timed("rate_data", lambda: rate.event_rates(events, capture.meta))
    _, t_rate_draw = _timed("rate_draw",
                            lambda: style.save_png(rate.draw_event_rates(series), out_dir / "rate.png"))
    hist, t_win_data = _timed("win_data", lambda: distributions.window_durations(analysis.windows))
    _, t_win_draw = _timed("win_draw",
                           lambda: style.save_png(distributions.draw_window_durations(hist), out_dir / "w.png"))
    reuse, t_reuse_data = _timed("reuse_data", lambda: distributions.reuse_distances(analysis.generations))
    index, t_index = _timed("index", lambda: timeline.EventIndex(events))
    busiest = int(analysis.windows["entry"].value_counts().index[0])
    tl, t_tl_data = _timed("tl_data", lambda: timeline.entry_timeline(analysis, busiest, index=index))
    _, t_tl_draw = _timed("tl_draw",
                          lambda: style.save_png(timeline.draw_entry_timeline(tl), out_dir / "busy.png"))

    report, t_report = _timed("report", lambda: build_report(analysis, out_dir / "report", max_timelines=timelines,
                                                   busiest=2))
    figures = len(report.figures)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    table_mb = events.memory_usage(deep=False).sum() / 2**20
    print(f"{n:>11,} events ({table_mb:,.0f} MiB table): synth {t_synth:5.1f}s, analyze {t_analyze:5.1f}s "
          f"({n / t_analyze / 1e6:.2f} M ev/s); {len(analysis.windows):,} windows, {len(analysis.races):,} races")
    print(f"    data: rates {t_rate_data:.2f}s  windows hist {t_win_data:.2f}s  reuse hist {t_reuse_data:.2f}s  "
          f"event index {t_index:.2f}s  busiest-entry timeline {t_tl_data:.2f}s "
          f"({len(tl.windows):,} windows, {len(tl.generations):,} generations)")
    print(f"    draw+png: rates {t_rate_draw:.2f}s  windows {t_win_draw:.2f}s  busiest entry {t_tl_draw:.2f}s")
    print(f"    full report: {t_report:.1f}s for {figures} figures ({t_report / figures:.2f}s/figure), "
          f"peak RSS {peak_mb:,.0f} MiB, html {report.html_path.stat().st_size / 2**20:.1f} MiB")
    c = _timed.cpu
    print(f"    CPU s: analyze {c['analyze']:.2f}  data (rates+hists+index+timeline) "
          f"{c['rate_data'] + c['win_data'] + c['reuse_data'] + c['index'] + c['tl_data']:.2f}  "
          f"draw+png rates {c['rate_draw']:.2f} windows {c['win_draw']:.2f} busiest entry {c['tl_draw']:.2f}  "
          f"full report {c['report']:.1f} ({c['report'] / figures:.2f}/figure)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, nargs="*", default=[1_000_000, 5_000_000])
    parser.add_argument("--timelines", type=int, default=8, help="race timelines per report")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="swaprace-bench-report.") as tmp:
        for n in args.events:
            bench(n, args.timelines, Path(tmp))


if __name__ == "__main__":
    main()

"""Events per second over the capture, one line per role, with what is known about lost events.

Events are counted into at most :data:`MAX_BUCKETS` buckets of a round width (1, 2 or 5 x 10^k ns) with one
``np.bincount`` per role, so ten million events cost a few passes over two arrays.

Losses: where the capture knows *when* events were lost (``meta.lost_intervals``: ``[start_ns, end_ns,
count]``, e.g. from ftrace's ``CPU:N [LOST M EVENTS]`` lines, between the two events of that CPU around the
loss; older captures' ``meta.extra["lost_marks"]`` points) each is marked on the time axis; otherwise the
totals per source from ``meta.lost`` are printed on the plot, and "unknown" when the source cannot tell
(``lost_known`` false) -- never a made-up zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from swaprace.analysis.report import style
from swaprace.events import ROLES, CaptureMeta

MAX_BUCKETS = 300


@dataclass
class RateSeries:
    start_ns: int
    bucket_ns: int
    rates: Dict[str, np.ndarray]  # role -> events/s per bucket
    counts: Dict[str, int]  # role -> events
    lost_marks: pd.DataFrame  # ts_ns, count
    loss_text: str
    lost_total: Optional[int] = None  # None: unknown
    span_ns: int = 0
    notes: List[str] = field(default_factory=list)

    @property
    def buckets(self) -> int:
        return len(next(iter(self.rates.values()))) if self.rates else 0


def bucket_width(span_ns: int, max_buckets: int = MAX_BUCKETS) -> int:
    """The smallest round width (1, 2 or 5 x 10^k ns) that cuts ``span_ns`` into at most ``max_buckets``."""
    target = max(span_ns / max_buckets, 1.0)
    exponent = int(np.floor(np.log10(target)))
    for mantissa in (1, 2, 5, 10):
        width = mantissa * 10 ** exponent
        if width >= target:
            return int(width)
    return int(10 ** (exponent + 1))


def loss_summary(meta: CaptureMeta) -> str:
    """One line on losses: total and per source, or 'unknown' when the capture cannot say."""
    if not meta.lost_known:
        return "lost events: unknown (this capture's source does not report losses)"
    total = meta.lost_events or 0
    # Only the sources that lost something: a bcc capture checks one kretprobe counter per probe.
    nonzero = [f"{k} {v:,}" for k, v in sorted(meta.lost.items()) if v]
    if nonzero:
        return f"lost events: {total:,} ({', '.join(nonzero[:4])}{', ...' if len(nonzero) > 4 else ''})"
    checked = len(meta.lost)
    return f"lost events: 0 ({checked} source{'' if checked == 1 else 's'} checked)" if checked else \
        "lost events: 0"


def _lost_marks(meta: CaptureMeta) -> pd.DataFrame:
    """Where events were lost: the start of each ``meta.lost_intervals`` entry (``[start_ns, end_ns, count]``),
    and the ``extra["lost_marks"]`` points of older captures."""
    rows = [(int(iv[0]), int(iv[2]) if len(iv) > 2 else 0) for iv in (meta.lost_intervals or [])]
    rows += [(int(m["ts_ns"]), int(m.get("count", 0))) for m in ((meta.extra or {}).get("lost_marks") or [])]
    return pd.DataFrame({"ts_ns": pd.Series([r[0] for r in rows], dtype="int64"),
                         "count": pd.Series([r[1] for r in rows], dtype="int64")})


def event_rates(events: pd.DataFrame, meta: CaptureMeta) -> RateSeries:
    """Events per second per role per bucket over the capture's span."""
    ts = events["ts_ns"].to_numpy(dtype="int64")
    marks = _lost_marks(meta)
    if len(ts) == 0:
        return RateSeries(0, 1, {}, {}, marks, loss_summary(meta), meta.lost_events, notes=["no events"])
    start, end = int(ts.min()), int(ts.max())
    role_codes = events["role"].astype("category")
    categories = list(role_codes.cat.categories)
    # At most MAX_BUCKETS, and on sparse captures about 8 events of each role a bucket, so the lines show a
    # rate rather than isolated events drawn over each other.
    per_role = len(ts) // (8 * max(len(categories), 1))
    width = bucket_width(end - start + 1, max(min(MAX_BUCKETS, per_role), 10))
    # Whole buckets only: the last one absorbs the remainder (up to 1.5 widths) and is divided by its
    # true width, so a 1 ns sliver at the end does not show as a spike or a dip.
    n_buckets = max(1, int(round((end - start + 1) / width)))
    bucket = np.minimum((ts - start) // width, n_buckets - 1)
    seconds = np.full(n_buckets, width / 1e9)
    seconds[-1] = max(end + 1 - (start + (n_buckets - 1) * width), 1) / 1e9
    codes = role_codes.cat.codes.to_numpy()
    order = [r for r in ROLES if r in categories] + [r for r in categories if r not in ROLES]
    rates, counts = {}, {}
    for role in order:
        pick = codes == categories.index(role)
        n = int(pick.sum())
        if n == 0:
            continue
        counts[role] = n
        rates[role] = np.bincount(bucket[pick], minlength=n_buckets) / seconds
    return RateSeries(start, width, rates, counts, marks, loss_summary(meta), meta.lost_events,
                      span_ns=end + 1 - start)


def draw_event_rates(series: RateSeries, size_px=style.RATE_PX) -> Figure:
    fig = style.new_figure(size_px)
    ax = fig.add_subplot()
    ax.set_title(f"Events per second by role (buckets of {style.format_duration(series.bucket_ns)})", loc="left")
    if not series.rates:
        style.note(ax, "no events in this capture")
        return fig
    span_ns = max(series.bucket_ns * series.buckets, series.span_ns)
    scale, unit = style.time_unit(span_ns / 4)
    edges = np.arange(series.buckets + 1, dtype="float64") * series.bucket_ns / scale
    edges[-1] = max(edges[-1], series.span_ns / scale)
    peak = 1.0
    for role, rate in series.rates.items():
        ax.stairs(rate, edges, label=f"{role} ({series.counts[role]:,} events)",
                  color=style.ROLE_COLORS.get(role, None), linewidth=1.5)
        peak = max(peak, float(rate.max()))
    ax.set_yscale("log")
    lowest = min(float(r[r > 0].min()) for r in series.rates.values())
    ax.set_ylim(lowest / 2, peak * 3)
    ax.set_xlim(0, edges[-1])
    ax.set_xlabel(f"time since the capture's first event ({unit})")
    ax.set_ylabel("events / s (log)")
    ax.grid(color="#dddddd", linewidth=0.6)
    if len(series.lost_marks):
        xs = (series.lost_marks["ts_ns"].to_numpy(dtype="float64") - series.start_ns) / scale
        xs = style.thin_points(xs, edges[-1] / (size_px[0] * 0.8))
        for i, x in enumerate(xs):
            ax.axvline(x, color="#b2182b", alpha=0.5, linewidth=1.2,
                       label="events lost here" if i == 0 else None)
    lost_color = "#333333" if series.lost_total == 0 else "#b2182b"
    ax.text(0.005, 0.985, series.loss_text, transform=ax.transAxes, ha="left", va="top", fontsize=9.5,
            color=lost_color, bbox=dict(facecolor="white", edgecolor="#cccccc", alpha=0.9), in_layout=False)
    fig.legend(loc="outside right upper", fontsize=8.5)
    return fig

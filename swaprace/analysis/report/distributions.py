"""Distributions on log axes: fault-window durations by outcome, and reuse distance (release -> next bind).

Both are histograms computed with numpy over log-spaced bins, so a capture with millions of windows draws
the same few hundred line segments as one with ten. The race is possible exactly when an entry's reuse
distance is shorter than a fault window on it, so the reuse plot marks the median window duration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from swaprace.analysis.report import style

BINS = 60


@dataclass
class Histogram:
    """Counts over shared log-spaced ``edges_ns`` for each named series, with each series' size and median."""

    edges_ns: np.ndarray
    counts: Dict[str, np.ndarray] = field(default_factory=dict)
    sizes: Dict[str, int] = field(default_factory=dict)
    medians_ns: Dict[str, float] = field(default_factory=dict)
    notes: Dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return int(sum(self.sizes.values()))


def _log_edges(values: np.ndarray) -> np.ndarray:
    positive = values[values > 0]
    if len(positive) == 0:
        return np.geomspace(1, 10, BINS + 1)
    lo, hi = float(positive.min()), float(positive.max())
    lo, hi = 10 ** np.floor(np.log10(lo)), 10 ** np.ceil(np.log10(hi) + 1e-9)
    if hi <= lo:
        hi = lo * 10
    return np.geomspace(lo, hi, BINS + 1)


def _histogram(series: Dict[str, np.ndarray]) -> Histogram:
    everything = np.concatenate([v for v in series.values()]) if series else np.array([], dtype="float64")
    hist = Histogram(edges_ns=_log_edges(everything.astype("float64")))
    for name, values in series.items():
        values = values.astype("float64")
        # A 0 ns interval (same timestamp) belongs to the first bin on a log axis rather than vanishing.
        clipped = np.clip(values, hist.edges_ns[0], hist.edges_ns[-1])
        hist.counts[name] = np.histogram(clipped, bins=hist.edges_ns)[0]
        hist.sizes[name] = int(len(values))
        hist.medians_ns[name] = float(np.median(values)) if len(values) else float("nan")
    return hist


def window_durations(windows: pd.DataFrame) -> Histogram:
    """Fault-window durations per outcome, plus the windows that held a race (as their own series)."""
    durations = windows["duration_ns"].to_numpy(dtype="float64")
    outcome = windows["outcome"].astype("category")  # compared by code: no string per window
    codes, names = outcome.cat.codes.to_numpy(), [str(c) for c in outcome.cat.categories]
    series = {}
    for name in style.OUTCOME_ORDER:
        if name in names:
            picked = durations[codes == names.index(name)]
            if len(picked):
                series[name] = picked
    raced = windows["race_class"].notna().to_numpy()
    if raced.any():
        series["raced"] = durations[raced]
    return _histogram(series)


def reuse_distances(generations: pd.DataFrame) -> Histogram:
    """Time from each release of an entry to its next binding, per release kind.

    Releases never followed by a bind in the capture are counted in ``notes["never rebound"]``.
    """
    gens = generations.sort_values(["entry", "generation"], kind="stable")
    entries = gens["entry"].to_numpy(dtype="uint64", na_value=0)
    released = gens["release_ns"].notna().to_numpy()
    release_ns = gens["release_ns"].astype("Float64").fillna(0).to_numpy(dtype="float64")
    bind_ns = gens["bind_ns"].astype("Float64").fillna(np.nan).to_numpy(dtype="float64")
    kinds = gens["release_kind"].astype("category").cat.add_categories(["?"]).fillna("?").astype(str) \
        .to_numpy(dtype=object) if len(gens) else np.array([], dtype=object)
    has_next = np.zeros(len(gens), dtype=bool)
    if len(gens) > 1:
        has_next[:-1] = entries[1:] == entries[:-1]
    next_bind = np.full(len(gens), np.nan)
    next_bind[:-1] = bind_ns[1:] if len(gens) > 1 else []
    reused = released & has_next & ~np.isnan(next_bind)
    distance = next_bind[reused] - release_ns[reused] if reused.any() else np.array([])
    series = {k: distance[kinds[reused] == k] for k in sorted(set(kinds[reused]))}
    hist = _histogram(series)
    hist.notes["never rebound"] = int((released & ~has_next).sum())
    return hist


# --- drawing -------------------------------------------------------------------------------------------

_SERIES_STYLE = {
    "raced": dict(color="#b2182b", linestyle="--", linewidth=2.2),
    "free_cache": dict(color="#d62728"),
    "cache_delete": dict(color="#17becf"),
    "slot_free": dict(color="#e377c2"),
}


def _draw_histogram(ax, hist: Histogram, scale: int, label_of) -> None:
    ymax = 0
    for name, counts in hist.counts.items():
        if not counts.any():
            continue
        kwargs = dict(_SERIES_STYLE.get(name, {}))
        kwargs.setdefault("color", style.OUTCOME_COLORS.get(name, None))
        kwargs.setdefault("linewidth", 1.8)
        ax.stairs(counts, hist.edges_ns / scale, label=label_of(name), **kwargs)
        ymax = max(ymax, int(counts.max()))
    ax.set_xscale("log")
    ax.grid(which="major", color="#dddddd", linewidth=0.6)
    if ymax > 50:  # counts spanning decades: log, so the tails stay visible next to the mode
        ax.set_yscale("log")
        ax.set_ylim(0.7, ymax * 2.5)
        ax.set_ylabel("count per bin (log)")
    else:  # a handful of windows: whole numbers on a linear axis read better
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(0, ymax * 1.25 + 0.5)
        ax.set_ylabel("count per bin")


def draw_window_durations(hist: Histogram, size_px=style.DISTRIBUTION_PX) -> Figure:
    fig = style.new_figure(size_px)
    ax = fig.add_subplot()
    ax.set_title("Fault-window duration (do_swap_page call -> return) by outcome", loc="left")
    if hist.total == 0:
        style.note(ax, "no complete fault windows in this capture")
        ax.set_xticks([]), ax.set_yticks([])
        return fig
    scale, unit = style.time_unit(float(np.nanmedian(list(hist.medians_ns.values()))))
    _draw_histogram(ax, hist, scale, lambda n: (
        f"{'windows with a race' if n == 'raced' else n} (n={hist.sizes[n]:,}, "
        f"median {style.format_duration(hist.medians_ns[n])})"))
    ax.set_xlabel(f"window duration ({unit}, log)")
    ax.legend(loc="upper right", fontsize=9)
    return fig


def draw_reuse_distances(hist: Histogram, median_window_ns: Optional[float] = None,
                         size_px=style.DISTRIBUTION_PX) -> Figure:
    fig = style.new_figure(size_px)
    ax = fig.add_subplot()
    ax.set_title("Reuse distance: entry released -> bound to a folio again, by release kind", loc="left")
    never = hist.notes.get("never rebound", 0)
    if hist.total == 0:
        style.note(ax, f"no entry was bound again after a release in this capture\n"
                       f"({never:,} releases never rebound)")
        ax.set_xticks([]), ax.set_yticks([])
        return fig
    scale, unit = style.time_unit(float(np.nanmedian(list(hist.medians_ns.values()))))
    _draw_histogram(ax, hist, scale, lambda n: (
        f"released by {n} (n={hist.sizes[n]:,}, median {style.format_duration(hist.medians_ns[n])})"))
    if median_window_ns is not None and np.isfinite(median_window_ns) and median_window_ns > 0:
        ax.axvline(median_window_ns / scale, color="#3182bd", linestyle=":", linewidth=1.6,
                   label=f"median fault window ({style.format_duration(median_window_ns)}): "
                         "reuse faster than this can race")
    never_text = f"{never:,} release{'' if never == 1 else 's'} never rebound in the capture"
    ax.set_xlabel(f"release -> next bind ({unit}, log)   [{never_text}]")
    ax.legend(loc="upper right", fontsize=9)
    return fig

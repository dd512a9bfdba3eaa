"""Distributions on log axes: fault-window durations by outcome, and reuse distance (slot free -> realloc).

Both are histograms computed with numpy over log-spaced bins, so a capture with millions of windows draws
the same few hundred line segments as one with ten. The race is possible exactly when a slot is allocated
again sooner after its free than a fault window on its entry lasts, so the reuse plot marks the median window
duration. Evictions are not reuses (the slot and its data stay); their distance to the re-read of the same
slot is drawn as a separate, dashed series for comparison.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

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


#: Name of the eviction -> re-read series in :func:`reuse_distances`.
REREAD_SERIES = "eviction → re-read"


def _next_in_entry(entries: np.ndarray) -> np.ndarray:
    """For rows sorted by entry then time: does the next row belong to the same entry?"""
    has_next = np.zeros(len(entries), dtype=bool)
    if len(entries) > 1:
        has_next[:-1] = entries[1:] == entries[:-1]
    return has_next


def _shift_up(values: np.ndarray) -> np.ndarray:
    out = np.full(len(values), np.nan)
    out[:-1] = values[1:]
    return out


def reuse_distances(generations: pd.DataFrame, residency: Optional[pd.DataFrame] = None) -> Histogram:
    """Time from each free of a swap slot to its next allocation (the next generation of the entry), one
    series per free kind (``slot_free``, ``free_cache``); and, when ``residency`` is given, the time from each
    eviction to the next re-read of the same entry (series :data:`REREAD_SERIES`).

    ``notes``: ``never reallocated`` (frees with no later generation in the capture), ``reallocations``
    (the reuses measured), and with residency ``evictions`` and ``evictions never re-read``.
    """
    gens = generations.sort_values(["entry", "generation"], kind="stable")
    entries = gens["entry"].to_numpy(dtype="uint64", na_value=0)
    freed = gens["free_ns"].notna().to_numpy()
    free_ns = gens["free_ns"].astype("Float64").fillna(0).to_numpy(dtype="float64")
    alloc_ns = gens["alloc_ns"].astype("Float64").fillna(np.nan).to_numpy(dtype="float64")
    kinds = gens["free_kind"].astype("category").cat.add_categories(["?"]).fillna("?").astype(str) \
        .to_numpy(dtype=object) if len(gens) else np.array([], dtype=object)
    has_next = _next_in_entry(entries)
    next_alloc = _shift_up(alloc_ns)
    reused = freed & has_next & ~np.isnan(next_alloc)
    distance = next_alloc[reused] - free_ns[reused]
    series = {k: distance[kinds[reused] == k] for k in sorted(set(kinds[reused]))}
    notes = {"never reallocated": int((freed & ~has_next).sum()), "reallocations": int(reused.sum())}
    if residency is not None and len(residency):
        res = residency.sort_values(["entry", "bind_ns"], kind="stable", na_position="first")
        r_entries = res["entry"].to_numpy(dtype="uint64", na_value=0)
        evicted = res["eviction"].to_numpy(dtype=bool) & res["unbind_ns"].notna().to_numpy()
        unbind_ns = res["unbind_ns"].astype("Float64").fillna(0).to_numpy(dtype="float64")
        bind_ns = res["bind_ns"].astype("Float64").fillna(np.nan).to_numpy(dtype="float64")
        next_bind = _shift_up(bind_ns)
        next_reread = np.zeros(len(res), dtype=bool)
        next_reread[:-1] = res["reread"].to_numpy(dtype=bool)[1:]
        reread = evicted & _next_in_entry(r_entries) & next_reread & ~np.isnan(next_bind)
        if reread.any():
            series[REREAD_SERIES] = next_bind[reread] - unbind_ns[reread]
        notes["evictions"] = int(evicted.sum())
        notes["evictions never re-read"] = int((evicted & ~reread).sum())
    hist = _histogram(series)
    hist.notes.update(notes)
    return hist


# --- drawing -------------------------------------------------------------------------------------------

_SERIES_STYLE: Dict[str, Dict[str, Any]] = {
    "raced": dict(color="#b2182b", linestyle="--", linewidth=2.2),
    "free_cache": dict(color="#d62728"),
    "slot_free": dict(color="#8c510a"),
    REREAD_SERIES: dict(color="#01665e", linestyle="--", linewidth=1.6),
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
    ax.set_title("Reuse distance: swap slot freed -> allocated again (a new generation), by what freed it",
                 loc="left")
    never = hist.notes.get("never reallocated", 0)
    if hist.total == 0:
        style.note(ax, f"no swap slot was allocated again after a free in this capture\n"
                       f"({never:,} frees never reallocated)")
        ax.set_xticks([]), ax.set_yticks([])
        return fig
    scale, unit = style.time_unit(float(np.nanmedian(list(hist.medians_ns.values()))))

    def label(name: str) -> str:
        size, median = hist.sizes[name], style.format_duration(hist.medians_ns[name])
        if name == REREAD_SERIES:
            return f"eviction -> re-read of the same slot, not a reuse (n={size:,}, median {median})"
        return f"freed by {name} (n={size:,}, median {median})"

    _draw_histogram(ax, hist, scale, label)
    if median_window_ns is not None and np.isfinite(median_window_ns) and median_window_ns > 0:
        ax.axvline(median_window_ns / scale, color="#3182bd", linestyle=":", linewidth=1.6,
                   label=f"median fault window ({style.format_duration(median_window_ns)}): "
                         "reallocation faster than this can race")
    never_text = f"{never:,} free{'' if never == 1 else 's'} never reallocated in the capture"
    if "evictions never re-read" in hist.notes:
        notes = hist.notes
        never_text += f"; {notes['evictions never re-read']:,} of {notes['evictions']:,} evictions never re-read"
    ax.set_xlabel(f"slot free -> next allocation ({unit}, log)   [{never_text}]")
    ax.legend(loc="upper right", fontsize=9)
    return fig

"""Shared look and helpers for every report figure: sizes, colours, time units, pixel-level aggregation.

Figures are built with :class:`matplotlib.figure.Figure` and the Agg canvas directly, never through pyplot:
no global state, no display needed, safe on a headless test box.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Tuple

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# Labels carry task names and symbols from the capture (any process names itself: "$x", "a$b$c"): text is
# text, never mathtext (an unbalanced "$" would end the picture with a parse error).
matplotlib.rcParams["text.parse_math"] = False

#: Every PNG is rendered at this resolution; the pixel sizes below are what the files decode to.
DPI = 100
TIMELINE_PX = (1400, 760)
DISTRIBUTION_PX = (1100, 560)
RATE_PX = (1400, 560)

OUTCOME_COLORS = {
    "minor": "#9ecae1",
    "major": "#3182bd",
    "retry": "#fd8d3c",
    "error": "#d62728",
}
OUTCOME_ORDER = ("minor", "major", "retry", "error")
RACE_COLORS = {"stale-install": "#b2182b", "benign": "#1a9850", "recovered": "#e08214"}
RACE_ORDER = ("stale-install", "benign", "recovered")
#: Slot generations (outer layer) in tan, swap-cache residency (inner layer) in teal; alternate shades
#: tell neighbouring bars apart.
GENERATION_COLORS = ("#dfc27d", "#f6e8c3")
GENERATION_EDGE = "#8c510a"
RESIDENCY_COLORS = ("#80cdc1", "#c7eae5")
RESIDENCY_EDGE = "#01665e"
ROLE_COLORS = {
    "fault": "#1f77b4",
    "lookup": "#2ca02c",
    "ksm_copy": "#9467bd",
    "free_cache": "#d62728",
    "slot_alloc": "#8c564b",
    "slot_free": "#e377c2",
    "swap_put": "#7f7f7f",
    "cache_add": "#bcbd22",
    "cache_delete": "#17becf",
    "prepare": "#ff7f0e",
    "prepare_clear": "#ffbb78",
    "zap_put": "#c49c94",
    "swap_dup": "#aec7e8",
    "swap_read": "#98df8a",
}

_UNITS = ((1, "ns"), (1_000, "µs"), (1_000_000, "ms"), (1_000_000_000, "s"))


def new_figure(size_px: Tuple[int, int]) -> Figure:
    """A figure of exactly ``size_px`` pixels at :data:`DPI`, laid out so labels do not overlap."""
    width, height = size_px
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: Path, inputs: tuple = ()) -> Path:
    """Write ``fig`` as a PNG of its nominal size (no tight bbox: the size stays predictable), atomically:
    a full disk or a kill leaves the previous picture (or none), never a truncated one."""
    from swaprace.capture import atomic_output

    path = Path(path)
    with atomic_output(path, "wb", inputs=inputs) as fh:
        fig.savefig(fh, format="png", dpi=DPI)
    return path


def check_writable(path: Path, inputs: tuple = ()) -> Path:
    """Fail before any drawing when ``path`` cannot be created (a missing or read-only directory) or must not
    be written (a link, a device, an input: :func:`swaprace.osutil.check_output_path`)."""
    from swaprace.errors import SwapraceError
    from swaprace.osutil import UnsafeOutput, check_output_path

    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise SwapraceError(f"cannot write {path}: no directory {parent}")
    if path.is_dir():
        raise SwapraceError(f"cannot write {path}: it is a directory")
    if not os.access(parent, os.W_OK):
        raise SwapraceError(f"cannot write {path}: directory {parent} is not writable")
    try:
        check_output_path(path, inputs)
    except UnsafeOutput as exc:
        raise SwapraceError(str(exc)) from None
    return path


def time_unit(span_ns: float) -> Tuple[int, str]:
    """The largest unit (ns, µs, ms, s) in which ``span_ns`` is still at least 1, as (ns per unit, name)."""
    chosen = _UNITS[0]
    for scale, name in _UNITS:
        if span_ns >= scale:
            chosen = (scale, name)
    return chosen


def format_duration(ns: Optional[float]) -> str:
    """``ns`` in a readable unit: ``950 ns``, ``18.2 µs``, ``3.1 ms``, ``2.00 s``."""
    if ns is None or (isinstance(ns, float) and np.isnan(ns)):
        return "-"
    scale, name = time_unit(abs(ns))
    value = ns / scale
    digits = 0 if scale == 1 else (1 if abs(value) >= 10 else 2)
    return f"{value:.{digits}f} {name}"


def format_entry(entry: int) -> str:
    """A swap entry as kernel people read it: raw value plus (swap type, slot offset)."""
    from swaprace.events import SWP_OFFSET_MASK, SWP_TYPE_SHIFT

    entry = int(entry)
    return f"{entry:#x} (type {entry >> SWP_TYPE_SHIFT}, offset {entry & SWP_OFFSET_MASK:#x})"


def coalesce_intervals(starts: np.ndarray, ends: np.ndarray, min_gap: float) -> Tuple[np.ndarray, np.ndarray]:
    """Merge sorted-by-start intervals closer than ``min_gap`` (one pixel) into one bar.

    A row drawn at 1400 px never needs more than ~1400 bars; this keeps busy entries and million-window
    rows cheap to draw and readable, instead of drawing one rectangle per window.
    """
    if len(starts) == 0:
        return starts, ends
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], ends[order]
    running_end = np.maximum.accumulate(ends)
    new_group = np.empty(len(starts), dtype=bool)
    new_group[0] = True
    new_group[1:] = starts[1:] > running_end[:-1] + min_gap
    group = np.cumsum(new_group) - 1
    merged_starts = starts[new_group]
    merged_ends = np.maximum.reduceat(ends, np.flatnonzero(new_group))
    assert len(merged_starts) == group[-1] + 1
    return merged_starts, merged_ends


def thin_points(xs: np.ndarray, min_gap: float) -> np.ndarray:
    """One point per ``min_gap``-wide bin: markers closer than a pixel would only paint over each other."""
    if len(xs) == 0 or min_gap <= 0:
        return xs
    bins = np.floor(np.asarray(xs, dtype="float64") / min_gap)
    _, first = np.unique(bins, return_index=True)
    return np.asarray(xs)[np.sort(first)]


def note(ax, text: str, color: str = "#555555") -> None:
    """A short message in the middle of an axes that has nothing to draw (instead of an empty frame)."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=12, color=color,
            wrap=True)

"""The life of one swap entry in two layers, and every thread's fault window on it.

Two steps, kept apart so tests can check what a picture shows without looking at pixels:
:func:`entry_timeline` selects the data (pure pandas/numpy), :func:`draw_entry_timeline` draws it.

Rows, top to bottom (see the spec in :mod:`swaprace.analysis.model`):

* **slot generations**: the life of the entry's swap slot, one bar per generation from its allocation to
  its free, labelled with the generation number and the threads that allocated and freed it. A bar that
  starts at the left edge began before the capture; one that reaches the right edge is still allocated.
* **swap-cache residency**: the inner lifecycle, one bar per folio bound to the entry (bind -> unbind),
  labelled with the folio; evictions (cache delete, slot kept) and re-reads (cache add in the same
  generation) are marked. They are never reuses.
* one row per thread that held a fault window on the entry or acted on it: its windows coloured by outcome,
  where it obtained its page and where it installed the entry. A raced window is outlined in its race class's
  colour (hatched and marked "?" when the race is uncertain), with an arrow from the slot's free to its
  reallocation inside the window.

Lost-event intervals in view are shaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from swaprace.analysis.report import style
from swaprace.errors import SwapraceError

#: Thread rows drawn at most; the rest are counted in the y-axis label (race threads are always kept).
MAX_THREAD_ROWS = 14
#: The view around a single race extends this fraction of the window's span on each side.
FOCUS_MARGIN = 0.12
#: y of the two layers; thread rows follow from FIRST_THREAD_ROW.
SLOT_ROW, CACHE_ROW, FIRST_THREAD_ROW = 0, 1, 2
LAYER_LABELS = ("slot generations", "swap-cache residency")

MARK_KINDS = ("alloc", "free", "eviction", "reread", "obtain", "install", "other")
#: Events on the entry shown as "other" when no bar or mark already stands for them.
OTHER_ROLES = ("prepare", "prepare_clear", "swap_dup", "zap_put", "swap_put", "swap_read", "slot_free",
               "slot_alloc", "cache_add", "cache_delete", "free_cache")
UNBIND_ROLES = ("cache_delete", "free_cache")


def _codes(column: pd.Series):
    """(int codes, category names) of a categorical column; -1 codes are nulls."""
    cat = column.astype("category")
    return cat.cat.codes.to_numpy(), [str(c) for c in cat.cat.categories]


class EventIndex:
    """Numpy views of the event table, built once per report and shared by every timeline.

    Filtering a 10-million-row table by entry is one vectorised compare on these arrays.
    """

    def __init__(self, events: pd.DataFrame):
        self.ts = events["ts_ns"].to_numpy(dtype="int64")
        self.tid = events["tid"].to_numpy(dtype="int64")
        self.entry = events["entry"].to_numpy(dtype="uint64", na_value=0)
        # Categorical columns stay as codes (no per-row strings): role/phase names are compared through
        # their code, comm/func names are looked up for the few rows a picture needs.
        self._role_codes, self._role_names = _codes(events["role"])
        self._phase_codes, self._phase_names = _codes(events["phase"])
        self._comm_codes, self._comm_names = _codes(events["comm"])
        self._func_codes, self._func_names = _codes(events["func"])
        self._comm_by_tid: dict[int, str] | None = None

    def role_is(self, *roles: str) -> np.ndarray:
        return np.isin(self._role_codes, [self._role_names.index(r) for r in roles if r in self._role_names])

    def phase_is(self, phase: str) -> np.ndarray:
        return self._phase_codes == (self._phase_names.index(phase) if phase in self._phase_names else -2)

    def comm(self, i) -> str:
        code = self._comm_codes[i]
        return self._comm_names[code] if code >= 0 else "?"

    def funcs(self, rows: np.ndarray) -> np.ndarray:
        names = np.array(self._func_names + ["?"], dtype=object)
        return names[self._func_codes[np.asarray(rows, dtype="int64")]]  # code -1 (null) picks "?"

    def actors_at(self, ts_ns: np.ndarray, roles, entry: int) -> np.ndarray:
        """For each time, the tid of the event at exactly that time playing one of ``roles`` (preferring
        one that carries ``entry``), or -1. Vectorised: one pass over the table, not one per time."""
        ts_ns = np.asarray(ts_ns, dtype="int64")
        out = np.full(len(ts_ns), -1, dtype="int64")
        if not len(ts_ns):
            return out
        cand = np.flatnonzero(self.role_is(*roles) & np.isin(self.ts, ts_ns))
        if not len(cand):
            return out
        other_entry = (self.entry[cand] != np.uint64(entry)).astype("int64")
        order = np.lexsort((cand, other_entry, self.ts[cand]))  # by time, then entry match first, then row
        cand = cand[order]
        first_ts, first = np.unique(self.ts[cand], return_index=True)
        pos = np.searchsorted(first_ts, ts_ns)
        found = (pos < len(first_ts)) & (first_ts[np.minimum(pos, len(first_ts) - 1)] == ts_ns)
        out[found] = self.tid[cand[first[pos[found]]]]
        return out

    def comm_of(self, tid) -> str:
        """The command name of ``tid``'s first event (one pass over the table the first time, then a dict)."""
        if tid is None or pd.isna(tid):
            return "?"
        if self._comm_by_tid is None:
            tids, first = np.unique(self.tid, return_index=True)
            self._comm_by_tid = {int(t): self.comm(i) for t, i in zip(tids, first)}
        return self._comm_by_tid.get(int(tid), "?")


@dataclass
class EntryTimeline:
    """Everything one entry's timeline shows, in nanoseconds of the capture's event clock."""

    entry: int
    anchor_ns: int  # x = 0 on the plot
    anchor_label: str  # what x = 0 is, for the axis label
    start_ns: int
    end_ns: int
    generations: pd.DataFrame  # analysis.generations of the entry in view
    residency: pd.DataFrame  # analysis.residency of the entry in view
    rows: pd.DataFrame  # row (FIRST_THREAD_ROW..), tid, comm, label, windows
    windows: pd.DataFrame  # analysis.windows of the entry in view
    marks: pd.DataFrame  # kind, ts_ns, tid (-1: nobody known), detail
    races: pd.DataFrame  # the analysis' races on this entry in view, plus comm
    lost: np.ndarray  # (n, 2) lost-event intervals overlapping the view
    focus: dict | None = None  # the race this view is centred on
    hidden_threads: int = 0
    notes: list[str] = field(default_factory=list)


def _float(series: pd.Series, missing: float) -> np.ndarray:
    """A nullable integer column as float64 with ``missing`` for nulls (ns values stay exact below 2**53)."""
    return series.astype("Float64").fillna(missing).to_numpy(dtype="float64")


def _u64(series: pd.Series) -> np.ndarray:
    return series.to_numpy(dtype="uint64", na_value=0)


def _int(value) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def _overlaps(start: pd.Series, end: pd.Series, t0: int, t1: int) -> np.ndarray:
    return ((start.to_numpy(dtype="int64") <= t1) & (end.to_numpy(dtype="int64") >= t0))


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    """A nullable Int64 column, all null when an older analysis lacks it."""
    if name in frame.columns:
        return frame[name].astype("Int64")
    return pd.Series(pd.array([None] * len(frame), dtype="Int64"), index=frame.index)


def _of_entry(frame: pd.DataFrame | None, entry: int) -> pd.DataFrame:
    if frame is None or not len(frame):
        return frame if frame is not None else pd.DataFrame()
    return frame[_u64(frame["entry"]) == np.uint64(entry)]


def _lost_intervals(meta) -> np.ndarray:
    """Lost-event intervals ``[start_ns, end_ns]`` of the capture (``meta.lost_intervals``; older captures'
    ``extra["lost_marks"]`` points as zero-length intervals)."""
    spans = [[int(a), int(b)] for a, b, *_ in (getattr(meta, "lost_intervals", None) or [])]
    spans += [[int(m["ts_ns"]), int(m["ts_ns"])] for m in ((meta.extra or {}).get("lost_marks") or [])]
    return np.array(spans, dtype="int64").reshape(-1, 2)


def entry_timeline(analysis, entry: int, focus: dict | None = None, since_ns: int | None = None,
                   until_ns: int | None = None, index: EventIndex | None = None) -> EntryTimeline:
    """Select what the timeline of ``entry`` shows.

    ``focus`` is one row of ``analysis.races`` (as a dict): the view is that race's fault window (and the
    slot's free and reallocation) plus a margin, and x = 0 is the window's start. Without it the view is the
    entry's whole recorded life (or ``since_ns``/``until_ns``), and x = 0 is the first time shown.
    """
    entry = int(entry)
    index = index or EventIndex(analysis.capture.events)
    gens_all = _of_entry(analysis.generations, entry)
    res_all = _of_entry(getattr(analysis, "residency", None), entry)
    wins_all = _of_entry(analysis.windows, entry)
    on_entry = index.entry == np.uint64(entry)

    if focus is not None:
        w0, w1 = int(focus["window_start_ns"]), int(focus["window_end_ns"])
        lo = min(w0, int(focus["release_ns"]), int(focus["realloc_ns"]))
        hi = max(w1, int(focus["release_ns"]), int(focus["realloc_ns"]))
        margin = max(int((hi - lo) * FOCUS_MARGIN), 1)
        t0, t1 = lo - margin, hi + margin
        anchor, anchor_label = w0, f"the fault start of tid {int(focus['tid'])}"
    else:
        times = [index.ts[on_entry], wins_all.get("start_ns"), wins_all.get("end_ns")]
        for frame, cols in ((gens_all, ("alloc_ns", "free_ns")), (res_all, ("bind_ns", "unbind_ns"))):
            times += [frame[c].dropna() for c in cols if len(frame) and c in frame.columns]
        arrays = [np.asarray(t, dtype="int64") for t in times if t is not None and len(t)]
        if not arrays:
            raise SwapraceError(f"swap entry {entry:#x} does not appear in this capture")
        all_times = np.concatenate(arrays)
        t0 = int(since_ns) if since_ns is not None else int(all_times.min())
        t1 = int(until_ns) if until_ns is not None else int(all_times.max())
        if t1 <= t0:
            t1 = t0 + 1
        pad = max(int((t1 - t0) * 0.02), 1)
        # x = 0 at the first time shown: readable ticks even when the entry lives late in a long capture
        anchor = t0
        capture_start = int(index.ts.min()) if len(index.ts) else t0
        anchor_label = (f"the entry's first event ({style.format_duration(anchor - capture_start)} into the "
                        f"capture)") if since_ns is None else \
            f"{style.format_duration(anchor - capture_start)} into the capture"
        t0, t1 = t0 - pad, t1 + pad

    # A generation (residency) with no start began before the capture; one with no end is still live.
    generations = gens_all
    if len(gens_all):
        keep = (_float(gens_all["alloc_ns"], -np.inf) <= t1) & (_float(gens_all["free_ns"], np.inf) >= t0)
        generations = gens_all[keep]
    residency = res_all
    if len(res_all):
        keep = (_float(res_all["bind_ns"], -np.inf) <= t1) & (_float(res_all["unbind_ns"], np.inf) >= t0)
        residency = res_all[keep]
    generations, residency = generations.reset_index(drop=True), residency.reset_index(drop=True)
    if len(generations):  # who allocated and freed each slot, as comm/tid for the bar labels
        generations = generations.assign(**{
            f"{k}_by": [None if pd.isna(t) else f"{index.comm_of(int(t))}/{int(t)}" for t in generations[f"{k}_tid"]]
            for k in ("alloc", "free")})
    windows = wins_all
    if len(wins_all):
        windows = wins_all[_overlaps(wins_all["start_ns"], wins_all["end_ns"], t0, t1)]
    windows = windows.reset_index(drop=True)

    races = _of_entry(analysis.races, entry)
    if len(races):
        races = races[_overlaps(races["window_start_ns"], races["window_end_ns"], t0, t1)]
    races = races.reset_index(drop=True)
    races = races.assign(comm=[index.comm_of(int(t)) for t in races["tid"]]) if len(races) else \
        races.assign(comm=pd.Series([], dtype=object))
    if focus is not None and not focus.get("comm"):
        focus = {**focus, "comm": index.comm_of(int(focus["tid"]))}

    marks = _marks(index, entry, on_entry, generations, residency, windows, t0, t1)
    rows, hidden = _rows(index, windows, marks, races, focus)
    lost = _lost_intervals(analysis.capture.meta)
    lost = lost[(lost[:, 0] <= t1) & (lost[:, 1] >= t0)] if len(lost) else lost
    return EntryTimeline(entry=entry, anchor_ns=anchor, anchor_label=anchor_label, start_ns=t0, end_ns=t1,
                         generations=generations, residency=residency, rows=rows, windows=windows, marks=marks,
                         races=races, lost=lost, focus=focus, hidden_threads=hidden)


def _mark_frame(kind: str, ts: np.ndarray, tid: np.ndarray, detail) -> pd.DataFrame:
    return pd.DataFrame({"kind": kind, "ts_ns": np.asarray(ts, dtype="int64"),
                         "tid": np.asarray(tid, dtype="int64"), "detail": detail})


def _marks(index: EventIndex, entry: int, on_entry: np.ndarray, gens: pd.DataFrame, res: pd.DataFrame,
           windows: pd.DataFrame, t0: int, t1: int) -> pd.DataFrame:
    """Every mark in view with the thread whose event made it: slot allocs and frees (from the generations),
    evictions and re-reads (from the residency), each window's obtain and install, and the entry's other
    events that no bar or mark already stands for."""
    frames = []

    def inside(ns):
        return (ns >= t0) & (ns <= t1)

    if len(gens):
        for kind, ts_col, tid_col, kind_col in (("alloc", "alloc_ns", "alloc_tid", "alloc_kind"),
                                                ("free", "free_ns", "free_tid", "free_kind")):
            ts = gens[ts_col].to_numpy(dtype="int64", na_value=0)
            pick = gens[ts_col].notna().to_numpy() & inside(ts)
            sub = gens[pick]
            frames.append(_mark_frame(kind, ts[pick], sub[tid_col].to_numpy(dtype="int64", na_value=-1),
                                      "gen " + sub["generation"].astype(str).to_numpy() + " "
                                      + sub[kind_col].astype(str).to_numpy()))
    if len(res):
        for kind, flag, ts_col, roles in (("eviction", "eviction", "unbind_ns", UNBIND_ROLES),
                                          ("reread", "reread", "bind_ns", ("cache_add",))):
            ts = res[ts_col].to_numpy(dtype="int64", na_value=0)
            pick = res[flag].to_numpy(dtype=bool) & res[ts_col].notna().to_numpy() & inside(ts)
            folios = res["folio"][pick]
            frames.append(_mark_frame(kind, ts[pick], index.actors_at(ts[pick], roles, entry),
                                      [f"folio {int(f):#x}" if not pd.isna(f) else "" for f in folios]))
    if len(windows):
        tids = windows["tid"].to_numpy(dtype="int64")
        for kind, col, detail in (("obtain", "obtain_ns", "obtain_kind"), ("install", "install_ns", None)):
            values = _column(windows, col)
            ts = values.to_numpy(dtype="int64", na_value=0)
            pick = values.notna().to_numpy() & inside(ts)
            text = windows[detail].astype(str).to_numpy()[pick] if detail in windows.columns else kind
            frames.append(_mark_frame(kind, ts[pick], tids[pick], text))
    drawn = np.concatenate([f["ts_ns"].to_numpy() for f in frames]) if frames else np.empty(0, "int64")
    bars = [res[c].dropna().to_numpy(dtype="int64") for c in ("bind_ns", "unbind_ns") if len(res)]
    drawn = np.concatenate([drawn, *bars])
    other = np.flatnonzero(on_entry & inside(index.ts) & index.role_is(*OTHER_ROLES) & index.phase_is("call")
                           & ~np.isin(index.ts, drawn))
    frames.append(_mark_frame("other", index.ts[other], index.tid[other], index.funcs(other)))
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame({"kind": pd.Series([], dtype=object), "ts_ns": pd.Series([], dtype="int64"),
                             "tid": pd.Series([], dtype="int64"), "detail": pd.Series([], dtype=object)})
    return pd.concat(frames, ignore_index=True).sort_values("ts_ns", kind="stable").reset_index(drop=True)


def _rows(index: EventIndex, windows: pd.DataFrame, marks: pd.DataFrame, races: pd.DataFrame,
          focus: dict | None):
    """One row per thread: the focus race's thread first, then raced threads and the threads that freed and
    reallocated their slots, then the busiest others."""
    win = pd.DataFrame({"tid": windows["tid"].to_numpy(dtype="int64") if len(windows) else np.empty(0, "int64"),
                        "ts": windows["start_ns"].to_numpy(dtype="int64") if len(windows) else np.empty(0, "int64"),
                        "windows": 1, "actions": 0})
    acted = marks[marks["tid"] >= 0]
    act = pd.DataFrame({"tid": acted["tid"].to_numpy(dtype="int64"), "ts": acted["ts_ns"].to_numpy(dtype="int64"),
                        "windows": 0, "actions": 1})
    both = pd.concat([win, act])
    stats: dict[int, list[int]] = {}
    if len(both):
        per_tid = both.groupby("tid").agg(windows=("windows", "sum"), actions=("actions", "sum"),
                                          first=("ts", "min"))
        stats = {int(t): [0, int(r.windows), int(r.actions), int(r.first)]
                 for t, r in zip(per_tid.index, per_tid.itertuples(index=False))}
    for race in races.to_dict("records"):
        for key, rank in (("tid", 2), ("release_tid", 1), ("realloc_tid", 1)):
            tid = _int(race.get(key))
            if tid is not None:
                stat = stats.setdefault(tid, [0, 0, 0, int(race["window_start_ns"])])
                stat[0] = max(stat[0], rank)
    if focus is not None:
        stats.setdefault(int(focus["tid"]), [0, 0, 0, int(focus["window_start_ns"])])[0] = 3
    # Priority: focus thread, race threads, then most windows and actions; the kept rows are shown in order
    # of first appearance so the picture reads left to right, top to bottom.
    ranked = sorted(stats, key=lambda t: (-stats[t][0], -(stats[t][1] + stats[t][2]), stats[t][3]))
    kept = ranked[:MAX_THREAD_ROWS]
    kept.sort(key=lambda t: (-(stats[t][0] == 3) if focus is not None else 0, stats[t][3]))
    rows = pd.DataFrame({
        "row": np.arange(FIRST_THREAD_ROW, FIRST_THREAD_ROW + len(kept)),
        "tid": np.array(kept, dtype="int64"),
        "comm": [index.comm_of(t) for t in kept],
        "windows": [int(stats[t][1]) for t in kept],
    })
    rows["label"] = [f"{c}/{t}" for c, t in zip(rows["comm"], rows["tid"])]
    return rows, len(ranked) - len(kept)


# --- drawing -------------------------------------------------------------------------------------------

_MARK_STYLE: dict[str, dict[str, Any]] = {
    "alloc": {"marker": "o", "color": "#8c510a", "s": 54, "label": "slot allocated (generation begins)"},
    "free": {"marker": "X", "color": "#cb181d", "s": 80, "label": "slot freed (generation ends)"},
    "eviction": {"marker": "s", "color": "#01665e", "s": 50, "label": "evicted: cache delete, slot kept"},
    "reread": {"marker": "P", "color": "#35978f", "s": 80, "label": "re-read into the cache (same slot)"},
    "obtain": {"marker": "v", "color": "#252525", "s": 50, "label": "page obtained (lookup hit, own add, read)"},
    "install": {"marker": "*", "color": "#6a51a3", "s": 170, "label": "install (its count drop of the entry)"},
    "other": {"marker": "D", "color": "#969696", "s": 30, "label": "other event on the entry"},
}
#: Marks also drawn on a layer row (besides their thread's row).
_LAYER_OF = {"alloc": SLOT_ROW, "free": SLOT_ROW, "eviction": CACHE_ROW, "reread": CACHE_ROW}


def draw_entry_timeline(tl: EntryTimeline, size_px=style.TIMELINE_PX) -> Figure:
    """Draw ``tl``; busy rows are merged at pixel resolution, never one rectangle per event."""
    fig = style.new_figure(size_px)
    ax = fig.add_subplot()
    span = max(tl.end_ns - tl.start_ns, 1)
    scale, unit = style.time_unit(span / 4)

    def to_x(ns):
        return (np.asarray(ns, dtype="float64") - tl.anchor_ns) / scale

    pixel = (span / scale) / (size_px[0] * 0.8)  # one pixel, in x units
    row_of = dict(zip(tl.rows["tid"], tl.rows["row"]))
    x_start, x_end = float(to_x(tl.start_ns)), float(to_x(tl.end_ns))
    # Bars reaching far outside the view are cut at its edges: a bar (or its centred label) seconds away on
    # a microsecond axis sits at ~1e9 px, where Agg/FreeType fail with "raster overflow".

    def clip(x):
        return np.clip(x, x_start - 2 * pixel, x_end + 2 * pixel)

    view = _View(ax, tl, to_x, clip, pixel, x_start, x_end, row_of)

    _draw_lost(view)
    _draw_generations(view)
    _draw_residency(view)
    _draw_windows(view)
    _draw_marks(view)
    _draw_races(view)

    n_rows = FIRST_THREAD_ROW + len(tl.rows)
    ax.axhline(CACHE_ROW + 0.5, color="#999999", linewidth=0.8)
    ax.set_ylim(n_rows - 0.4, -0.6)
    ax.set_yticks(range(n_rows), list(LAYER_LABELS) + list(tl.rows["label"]))
    for label in ax.get_yticklabels()[:FIRST_THREAD_ROW]:
        label.set_fontweight("bold")
    ax.set_xlim(x_start, x_end)
    ax.set_xlabel(f"time since {tl.anchor_label} ({unit})")
    ax.ticklabel_format(axis="x", style="plain", useOffset=False)
    ylabel = "thread (comm/tid)"
    if tl.hidden_threads:
        ylabel += f"  [+{tl.hidden_threads} more threads not shown]"
    ax.set_ylabel(ylabel)
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.set_title(_title(tl), loc="left", fontsize=10.5)
    _legend(fig, tl)
    return fig


@dataclass
class _View:
    ax: Axes
    tl: EntryTimeline
    to_x: Callable[[Any], np.ndarray]
    clip: Callable[[Any], np.ndarray]
    pixel: float
    x_start: float
    x_end: float
    row_of: dict[int, int]


def _draw_lost(v: _View) -> None:
    for a, b in v.tl.lost:
        x0, x1 = float(v.clip(v.to_x(a))), float(v.clip(v.to_x(b)))
        v.ax.axvspan(x0 - v.pixel, max(x1, x0 + v.pixel) + v.pixel, color="#fdae6b", alpha=0.35, zorder=0,
                     linewidth=0)


def _bars(v: _View, starts_ns: pd.Series, ends_ns: pd.Series):
    """(x starts, x ends, began before the capture, still open) of intervals, cut at the view's edges."""
    began_before = starts_ns.isna().to_numpy()
    still_open = ends_ns.isna().to_numpy()
    starts = v.clip(np.maximum(v.to_x(_float(starts_ns, -np.inf)), v.x_start - 2 * v.pixel))
    ends = v.clip(np.where(still_open, v.x_end + 2 * v.pixel, v.to_x(_float(ends_ns, 0))))
    return starts, ends, began_before, still_open


def _layer(v: _View, y: float, starts, ends, parity, colors, edge: str) -> None:
    for p, color in enumerate(colors):
        pick = parity % 2 == p
        s, e = style.coalesce_intervals(starts[pick], ends[pick], v.pixel)
        if len(s):
            v.ax.broken_barh(list(zip(s, np.maximum(e - s, v.pixel))), (y - 0.32, 0.64), facecolors=color,
                             edgecolors=edge, linewidth=0.7)


def _labels(v: _View, y: float, starts, ends, texts) -> None:
    """Each bar's longest label that fits (8 pt text is ~5.5 px a character); only when few bars are shown."""
    if len(starts) > 200:
        return
    last_end = -np.inf
    for start, end, candidates in zip(starts, ends, texts):
        lo, hi = max(start, v.x_start), min(end, v.x_end)
        width_px = (hi - lo) / v.pixel
        text = next((t for t in candidates if len(t) * 5.5 + 8 <= width_px), None)
        if text is None or lo < last_end:
            continue
        v.ax.text((lo + hi) / 2, y, text, ha="center", va="center", fontsize=8, clip_on=True)
        last_end = hi


def _who(tid) -> str:
    return "?" if tid is None or pd.isna(tid) else str(int(tid))


def _draw_generations(v: _View) -> None:
    gens = v.tl.generations
    if not len(gens):
        v.ax.text(v.x_start + 2 * v.pixel, SLOT_ROW, "no slot generation of this entry recorded in view",
                  va="center", fontsize=9, color="#777777")
        return
    starts, ends, before, live = _bars(v, gens["alloc_ns"], gens["free_ns"])
    numbers = gens["generation"].to_numpy(dtype="int64")
    _layer(v, SLOT_ROW, starts, ends, numbers, style.GENERATION_COLORS, style.GENERATION_EDGE)
    texts = []
    a_by = gens["alloc_by"] if "alloc_by" in gens else gens["alloc_tid"].map(_who)
    f_by = gens["free_by"] if "free_by" in gens else gens["free_tid"].map(_who)
    for number, b, lv, a_tid, f_tid, a_name, f_name in zip(numbers, before, live, gens["alloc_tid"],
                                                           gens["free_tid"], a_by, f_by):
        head = f"gen {number}"
        alloc = "from before the capture" if b else f"alloc {a_name or '?'}"
        free = "still allocated" if lv else f"free {f_name or '?'}"
        short = f"{'…' if b else _who(a_tid)} → {'live' if lv else _who(f_tid)}"
        texts.append([f"{head} · {alloc} → {free}", f"{head} · {short}", head, str(number)])
    _labels(v, SLOT_ROW, starts, ends, texts)


def _draw_residency(v: _View) -> None:
    res = v.tl.residency
    if not len(res):
        v.ax.text(v.x_start + 2 * v.pixel, CACHE_ROW, "no folio in the swap cache under this entry in view",
                  va="center", fontsize=9, color="#777777")
        return
    starts, ends, _, live = _bars(v, res["bind_ns"], res["unbind_ns"])
    _layer(v, CACHE_ROW, starts, ends, np.arange(len(res)), style.RESIDENCY_COLORS, style.RESIDENCY_EDGE)
    texts = []
    for folio, lv, ev in zip(res["folio"], live, res["eviction"].to_numpy(dtype=bool)):
        if pd.isna(folio):
            texts.append(["folio ?"])
            continue
        tail = " (cached)" if lv else (" · evicted" if ev else "")
        texts.append([f"folio {int(folio):#x}{tail}", f"folio {int(folio):#x}", f"…{int(folio) & 0xFFFFFF:06x}"])
    _labels(v, CACHE_ROW, starts, ends, texts)


def _race_of_window(v: _View) -> dict[tuple, dict]:
    return {(int(r["tid"]), int(r["window_start_ns"])): r for r in v.tl.races.to_dict("records")}


def _draw_windows(v: _View) -> None:
    wins = v.tl.windows
    if not len(wins):
        return
    tids = wins["tid"].to_numpy(dtype="int64")
    starts = v.clip(v.to_x(wins["start_ns"].to_numpy(dtype="int64")))
    ends = v.clip(v.to_x(wins["end_ns"].to_numpy(dtype="int64")))
    outcomes = wins["outcome"].astype("string").fillna("minor").to_numpy(dtype=object)
    raced = wins["race_class"].astype("string").fillna("").to_numpy(dtype=object)
    races = _race_of_window(v)
    w_start = wins["start_ns"].to_numpy(dtype="int64")
    for tid, row in v.row_of.items():
        on_row = tids == tid
        for outcome in style.OUTCOME_ORDER:
            pick = on_row & (outcomes == outcome) & (raced == "")
            s, e = style.coalesce_intervals(starts[pick], ends[pick], v.pixel)
            if len(s):
                v.ax.broken_barh(list(zip(s, np.maximum(e - s, v.pixel))), (row - 0.27, 0.54),
                                 facecolors=style.OUTCOME_COLORS[outcome], edgecolors="none")
        for i in np.flatnonzero(on_row & (raced != "")):
            uncertain = bool(races.get((int(tid), int(w_start[i])), {}).get("uncertain", False))
            v.ax.broken_barh([(starts[i], max(ends[i] - starts[i], v.pixel))], (row - 0.3, 0.6),
                             facecolors=style.OUTCOME_COLORS.get(outcomes[i], "#cccccc"),
                             edgecolors=style.RACE_COLORS.get(raced[i], "#000000"), linewidth=2.4,
                             hatch="///" if uncertain else None, zorder=2)


def _draw_marks(v: _View) -> None:
    marks = v.tl.marks
    # Zoomed out, a window's obtain and install fall on one pixel: lift one and drop the other a little so
    # neither hides the other. Zoomed on one race they are apart already and stay on the row's centre.
    lift = {"obtain": -0.15, "install": 0.15, "other": 0.15} if v.tl.focus is None else {"other": 0.15}
    for kind in MARK_KINDS:
        of_kind = marks[marks["kind"] == kind]
        if not len(of_kind):
            continue
        xs_all, ys_all = [], []
        for tid, group in of_kind.groupby("tid", sort=False):
            row = v.row_of.get(int(tid))
            if row is None:
                continue
            xs = style.thin_points(v.to_x(group["ts_ns"].to_numpy(dtype="int64")), v.pixel * 3)
            xs_all.append(xs)
            ys_all.append(np.full(len(xs), row + lift.get(kind, 0.0)))
        if kind in _LAYER_OF:  # slot and residency boundaries also show on their layer
            xs = style.thin_points(v.to_x(of_kind["ts_ns"].to_numpy(dtype="int64")), v.pixel * 3)
            xs_all.append(xs)
            ys_all.append(np.full(len(xs), float(_LAYER_OF[kind])))
        if xs_all:
            v.ax.scatter(np.concatenate(xs_all), np.concatenate(ys_all), zorder=4, edgecolors="white",
                         linewidths=0.6, **{k: val for k, val in _MARK_STYLE[kind].items() if k != "label"})


def _draw_races(v: _View) -> None:
    """Each race: its class above its window ("?" when uncertain), and an arrow on the thread's row from the
    slot's free to its reallocation; zoomed on one race, both times also as lines across every row."""
    tl, ax = v.tl, v.ax
    last_x: dict[int, float] = {}
    for race in tl.races.sort_values("window_start_ns").to_dict("records"):
        row = v.row_of.get(int(race["tid"]))
        if row is None:
            continue
        cls = str(race["class"])
        color = style.RACE_COLORS.get(cls, "#000000")
        x0 = float(v.clip(v.to_x(int(race["release_ns"]))))
        x1 = float(v.clip(v.to_x(int(race["realloc_ns"]))))
        y = row + 0.4
        if x1 - x0 >= 4 * v.pixel:
            ax.annotate("", xy=(x1, y), xytext=(x0, y), zorder=5,
                        arrowprops={"arrowstyle": "-|>", "color": color, "lw": 1.6, "shrinkA": 0, "shrinkB": 0})
        else:
            ax.plot([x0], [y], marker=">", color=color, markersize=5, zorder=5)
        if tl.focus is not None:
            ax.text(x1 + 3 * v.pixel, y, "slot freed → allocated again", color=color, fontsize=8, va="center",
                    ha="left", clip_on=True)
        x = float(v.to_x(int(race["window_start_ns"])))
        if x - last_x.get(row, -np.inf) < 160 * v.pixel:
            continue  # labels that would overlap on one row are skipped (the legend and title count them)
        last_x[row] = x
        text = cls.upper() if cls == "stale-install" else cls
        if bool(race.get("uncertain", False)):
            text += " ?"
        ax.annotate(text, (max(x, v.x_start), row - 0.3), xytext=(2, 3), textcoords="offset points", fontsize=9,
                    fontweight="bold", color=color, va="bottom", clip_on=True)
    if tl.focus is not None:
        for key, color, text, ha in (("release_ns", "#cb181d", "slot freed ", "right"),
                                     ("realloc_ns", "#8c510a", " slot allocated again", "left")):
            x = float(v.to_x(int(tl.focus[key])))
            ax.axvline(x, color=color, linestyle=":", linewidth=1.3, zorder=1)
            # the free's label left of its line, the reallocation's right of its: they never collide
            ax.text(x, 0.995, text, transform=ax.get_xaxis_transform(), color=color, fontsize=8.5, va="top",
                    ha=ha)


def _plus(ns, start: int) -> str:
    return "-" if ns is None or pd.isna(ns) else "+" + style.format_duration(int(ns) - start)


def _title(tl: EntryTimeline) -> str:
    entry = style.format_entry(tl.entry)
    if tl.focus is not None:
        f = tl.focus
        cls = str(f["class"])
        uncertain = bool(f.get("uncertain", False))
        start = int(f["window_start_ns"])
        comm = f.get("comm") or "?"
        line1 = (f"{cls}{' (uncertain)' if uncertain else ''} race on swap entry {entry} in tid {int(f['tid'])} "
                 f"({comm})")
        line2 = (f"fault window {style.format_duration(int(f['window_end_ns']) - start)}; page obtained at "
                 f"{_plus(f.get('obtain_ns'), start)} ({f.get('obtain_kind', '?')}); slot freed at "
                 f"{_plus(f['release_ns'], start)} by tid {_who(f.get('release_tid'))}, allocated again at "
                 f"{_plus(f['realloc_ns'], start)} by tid {_who(f.get('realloc_tid'))}; ")
        install = f.get("install_ns")
        line2 += "not installed" if install is None or pd.isna(install) else f"installed at {_plus(install, start)}"
        reason = str(f.get("reason") or "")
        return f"{line1}\n{line2}" + (f"\n{reason[:170]}" if reason else "")
    n_races = len(tl.races)
    classes = tl.races["class"].astype(str).value_counts().to_dict() if n_races else {}
    race_text = ", ".join(f"{n} {c}" for c, n in sorted(classes.items()) if n) or "no race"
    n_uncertain = int(tl.races["uncertain"].sum()) if n_races and "uncertain" in tl.races else 0
    if n_uncertain:
        race_text += f" ({n_uncertain} uncertain)"
    gens, res, wins = len(tl.generations), len(tl.residency), len(tl.windows)
    evictions = int(tl.residency["eviction"].sum()) if res else 0
    rereads = int(tl.residency["reread"].sum()) if res else 0

    def s(n: int) -> str:
        return "" if n == 1 else "s"

    return (f"swap entry {entry}\n{gens} slot generation{s(gens)}, {res} cache residenc{'y' if res == 1 else 'ies'} "
            f"({evictions} eviction{s(evictions)}, {rereads} re-read{s(rereads)}), {wins} fault window{s(wins)}, "
            f"{race_text} in view ({style.format_duration(tl.end_ns - tl.start_ns)} shown)")


def _legend(fig: Figure, tl: EntryTimeline) -> None:
    handles: list[Artist] = [Patch(facecolor=style.GENERATION_COLORS[0], edgecolor=style.GENERATION_EDGE,
                     label="slot generation (alloc → free)"),
               Patch(facecolor=style.RESIDENCY_COLORS[0], edgecolor=style.RESIDENCY_EDGE,
                     label="folio in the swap cache (bind → unbind)")]
    outcomes = set(tl.windows["outcome"].astype("string").dropna()) if len(tl.windows) else set()
    for outcome in style.OUTCOME_ORDER:
        if outcome in outcomes:
            handles.append(Patch(facecolor=style.OUTCOME_COLORS[outcome], label=f"fault window: {outcome}"))
    for cls in style.RACE_ORDER:
        if len(tl.races) and (tl.races["class"].astype(str) == cls).any():
            handles.append(Patch(facecolor="white", edgecolor=style.RACE_COLORS[cls], linewidth=2,
                                 label=f"window with a {cls} race"))
    if len(tl.races) and "uncertain" in tl.races and tl.races["uncertain"].any():
        handles.append(Patch(facecolor="white", edgecolor="#555555", hatch="///", linewidth=2,
                             label='uncertain race ("?"): losses or a history gap'))
    if len(tl.races):
        handles.append(Line2D([], [], color="#555555", marker=">", markersize=6, linewidth=1.6,
                              label="slot freed → allocated again in the window"))
    present = set(tl.marks["kind"])
    for kind in MARK_KINDS:
        if kind in present:
            st = _MARK_STYLE[kind]
            handles.append(Line2D([], [], linestyle="none", marker=st["marker"], color=st["color"],
                                  markersize=8 if kind != "install" else 12, label=st["label"]))
    if len(tl.lost):
        handles.append(Patch(facecolor="#fdae6b", alpha=0.5, label="events lost here"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(4, len(handles)), fontsize=8.5,
               frameon=False)

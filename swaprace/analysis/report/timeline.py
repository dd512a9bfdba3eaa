"""The life of one swap entry: its generations, every thread's fault window on it, releases, rebinds, installs.

Two steps, kept apart so tests can check what a picture shows without looking at pixels:
:func:`entry_timeline` selects the data (pure pandas/numpy), :func:`draw_entry_timeline` draws it.

Rows, top to bottom: the entry's generations as bars (bind -> release), then one row per thread that held a
fault window on the entry or acted on it (looked it up, released it, bound it again, dropped its swap count
after installing it). Markers: lookup (v), bind (o), release (X), install (*). A raced window is outlined in
its race class's colour and labelled with the class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from swaprace.analysis.report import style
from swaprace.errors import SwapraceError

#: Thread rows drawn at most; the rest are counted in the y-axis label (race threads are always kept).
MAX_THREAD_ROWS = 14
#: The view around a single race extends this fraction of the window's span on each side.
FOCUS_MARGIN = 0.12

RELEASE_ROLES = ("free_cache", "cache_delete", "slot_free")
BIND_ROLES = ("lookup", "cache_add", "slot_alloc")
MARK_KINDS = ("lookup", "bind", "release", "install", "slot")
#: Swap-slot events on the entry that neither start nor end a generation by themselves (a slot freed after
#: its cache folio was already deleted, a slot allocated, SWAP_HAS_CACHE taken): shown so nothing is hidden.
SLOT_ROLES = ("slot_free", "slot_alloc", "prepare", "cache_add", "cache_delete")


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
        self.retval = events["retval"].to_numpy(dtype="uint64", na_value=0)
        # Categorical columns stay as codes (no per-row strings): role/phase names are compared through
        # their code, comm/func names are looked up for the few rows a picture needs.
        self._role_codes, self._role_names = _codes(events["role"])
        self._phase_codes, self._phase_names = _codes(events["phase"])
        self._comm_codes, self._comm_names = _codes(events["comm"])
        self._func_codes, self._func_names = _codes(events["func"])
        self._sorted = bool(len(self.ts) < 2 or np.all(self.ts[1:] >= self.ts[:-1]))
        self._comm_by_tid: Optional[Dict[int, str]] = None

    def role_is(self, *roles: str) -> np.ndarray:
        return np.isin(self._role_codes, [self._role_names.index(r) for r in roles if r in self._role_names])

    def phase_is(self, phase: str) -> np.ndarray:
        return self._phase_codes == (self._phase_names.index(phase) if phase in self._phase_names else -2)

    def role(self, i: int) -> str:
        code = self._role_codes[i]
        return self._role_names[code] if code >= 0 else ""

    def comm(self, i) -> str:
        code = self._comm_codes[i]
        return self._comm_names[code] if code >= 0 else "?"

    def func(self, i) -> str:
        code = self._func_codes[i]
        return self._func_names[code] if code >= 0 else "?"

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

    def comm_of(self, tid: int) -> str:
        """The command name of ``tid``'s first event (one pass over the table the first time, then a dict)."""
        if self._comm_by_tid is None:
            tids, first = np.unique(self.tid, return_index=True)
            self._comm_by_tid = {int(t): self.comm(i) for t, i in zip(tids, first)}
        return self._comm_by_tid.get(int(tid), "?")

    def actor_at(self, ts_ns: int, roles, entry: Optional[int] = None) -> Optional[int]:
        """Index of the event at exactly ``ts_ns`` that plays one of ``roles`` (the entry's if it has one)."""
        if self._sorted:
            lo, hi = np.searchsorted(self.ts, ts_ns, "left"), np.searchsorted(self.ts, ts_ns, "right")
            candidates = np.arange(lo, hi)
        else:
            candidates = np.flatnonzero(self.ts == ts_ns)
        fallback = None
        for i in candidates:
            if self.role(i) not in roles:
                continue
            if entry is not None and self.entry[i] == entry:
                return int(i)
            if fallback is None:
                fallback = int(i)
        return fallback


@dataclass
class EntryTimeline:
    """Everything one entry's timeline shows, in nanoseconds of the capture's event clock."""

    entry: int
    anchor_ns: int  # x = 0 on the plot
    anchor_label: str  # what x = 0 is, for the axis label
    start_ns: int
    end_ns: int
    generations: pd.DataFrame  # generation, bind_ns, release_ns (nullable), folio, bind_kind, release_kind
    rows: pd.DataFrame  # row (1..), tid, comm, label, windows
    windows: pd.DataFrame  # tid, start_ns, end_ns, outcome, race_class
    marks: pd.DataFrame  # kind, ts_ns, tid (-1: nobody known), detail
    races: pd.DataFrame  # the analysis' races on this entry in view, plus comm
    focus: Optional[Dict] = None  # the race this view is centred on
    hidden_threads: int = 0
    notes: List[str] = field(default_factory=list)


def _float(series: pd.Series, missing: float) -> np.ndarray:
    """A nullable integer column as float64 with ``missing`` for nulls (ns values stay exact below 2**53)."""
    return series.astype("Float64").fillna(missing).to_numpy(dtype="float64")


def _u64(series: pd.Series) -> np.ndarray:
    return series.to_numpy(dtype="uint64", na_value=0)


def _overlaps(start: pd.Series, end: pd.Series, t0: int, t1: int) -> np.ndarray:
    return ((start.to_numpy(dtype="int64") <= t1) & (end.to_numpy(dtype="int64") >= t0))


def entry_timeline(analysis, entry: int, focus: Optional[Dict] = None, since_ns: Optional[int] = None,
                   until_ns: Optional[int] = None, index: Optional[EventIndex] = None) -> EntryTimeline:
    """Select what the timeline of ``entry`` shows.

    ``focus`` is one row of ``analysis.races`` (as a dict): the view is that race's fault window plus a
    margin, and x = 0 is the window's start. Without it the view is the entry's whole recorded life (or
    ``since_ns``/``until_ns``), and x = 0 is the first event of the capture.
    """
    entry = int(entry)
    index = index or EventIndex(analysis.capture.events)
    gens_all = analysis.generations[_u64(analysis.generations["entry"]) == np.uint64(entry)]
    wins_all = analysis.windows[_u64(analysis.windows["entry"]) == np.uint64(entry)]
    on_entry = index.entry == np.uint64(entry)

    if focus is not None:
        w0, w1 = int(focus["window_start_ns"]), int(focus["window_end_ns"])
        lo = min(w0, int(focus["release_ns"]), int(focus["rebind_ns"]))
        hi = max(w1, int(focus["release_ns"]), int(focus["rebind_ns"]))
        margin = max(int((hi - lo) * FOCUS_MARGIN), 1)
        t0, t1 = lo - margin, hi + margin
        anchor, anchor_label = w0, f"the fault start of tid {int(focus['tid'])}"
    else:
        times = [gens_all["bind_ns"].dropna().to_numpy(dtype="int64"), wins_all["start_ns"].to_numpy(dtype="int64"),
                 wins_all["end_ns"].to_numpy(dtype="int64"), index.ts[on_entry],
                 gens_all["release_ns"].dropna().to_numpy(dtype="int64")]
        times = np.concatenate([t for t in times if len(t)]) if any(len(t) for t in times) else np.array([])
        if len(times) == 0:
            raise SwapraceError(f"swap entry {entry:#x} does not appear in this capture")
        t0 = int(since_ns) if since_ns is not None else int(times.min())
        t1 = int(until_ns) if until_ns is not None else int(times.max())
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

    # A generation with no bind_ns began before the capture; one with no release_ns is still bound.
    bind_start = _float(gens_all["bind_ns"], -np.inf)
    release_end = _float(gens_all["release_ns"], np.inf)
    in_view = (bind_start <= t1) & (release_end >= t0)
    generations = gens_all[in_view].reset_index(drop=True)
    windows = wins_all[_overlaps(wins_all["start_ns"], wins_all["end_ns"], t0, t1)].reset_index(drop=True)

    marks = _marks(index, entry, on_entry, gens_all, t0, t1)
    races = analysis.races[_u64(analysis.races["entry"]) == np.uint64(entry)]
    races = races[_overlaps(races["window_start_ns"], races["window_end_ns"], t0, t1)].reset_index(drop=True)
    races = races.assign(comm=[index.comm_of(int(t)) for t in races["tid"]])
    if focus is not None and not focus.get("comm"):
        focus = {**focus, "comm": index.comm_of(int(focus["tid"]))}

    rows, hidden = _rows(index, windows, marks, races, focus)
    return EntryTimeline(entry=entry, anchor_ns=anchor, anchor_label=anchor_label, start_ns=t0, end_ns=t1,
                         generations=generations, rows=rows, windows=windows, marks=marks, races=races,
                         focus=focus, hidden_threads=hidden)


def _marks(index: EventIndex, entry: int, on_entry: np.ndarray, gens: pd.DataFrame, t0: int, t1: int):
    """Lookups and installs straight from the events; binds and releases from the generations, each with
    the thread whose event made it (found by its timestamp and role)."""
    in_view = (index.ts >= t0) & (index.ts <= t1) & on_entry
    frames = []
    lookup = np.flatnonzero(in_view & index.role_is("lookup") & index.phase_is("call"))
    frames.append(pd.DataFrame({"kind": "lookup", "ts_ns": index.ts[lookup], "tid": index.tid[lookup],
                                "detail": index.funcs(lookup)}))
    # The faulting thread's own swap-count drop on E after it set the pte: the install of E.
    install = np.flatnonzero(in_view & index.role_is("swap_put"))
    frames.append(pd.DataFrame({"kind": "install", "ts_ns": index.ts[install], "tid": index.tid[install],
                                "detail": index.funcs(install)}))
    binds = gens[gens["bind_ns"].notna()]
    bind_ns = binds["bind_ns"].to_numpy(dtype="int64")
    keep_b = (bind_ns >= t0) & (bind_ns <= t1)
    releases = gens[gens["release_ns"].notna()]
    release_ns = releases["release_ns"].to_numpy(dtype="int64")
    keep_r = (release_ns >= t0) & (release_ns <= t1)
    frames.append(pd.DataFrame({
        "kind": "bind", "ts_ns": bind_ns[keep_b], "tid": index.actors_at(bind_ns[keep_b], BIND_ROLES, entry),
        "detail": "gen " + binds["generation"].astype(str).to_numpy()[keep_b] + " via "
                  + binds["bind_kind"].astype(str).to_numpy()[keep_b]}))
    frames.append(pd.DataFrame({
        "kind": "release", "ts_ns": release_ns[keep_r],
        "tid": index.actors_at(release_ns[keep_r], RELEASE_ROLES, entry),
        "detail": "gen " + releases["generation"].astype(str).to_numpy()[keep_r] + " by "
                  + releases["release_kind"].astype(str).to_numpy()[keep_r]}))
    drawn_ts = np.concatenate([bind_ns[keep_b], release_ns[keep_r]])
    # slot_alloc reports the entry it allocated as its return value; the others carry it as their key.
    in_time = (index.ts >= t0) & (index.ts <= t1)
    slot = in_time & index.role_is(*SLOT_ROLES) & (
        (index.entry == np.uint64(entry)) | (index.role_is("slot_alloc") & index.phase_is("return")
                                             & (index.retval == np.uint64(entry))))
    # not again where a bind or release mark already stands for the same event
    keep = np.flatnonzero(slot & ~np.isin(index.ts, drawn_ts))
    frames.append(pd.DataFrame({"kind": "slot", "ts_ns": index.ts[keep], "tid": index.tid[keep],
                                "detail": index.funcs(keep)}))
    marks = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(len(f) for f in frames) else \
        pd.DataFrame(columns=["kind", "ts_ns", "tid", "detail"])
    return marks.astype({"ts_ns": "int64", "tid": "int64"}).sort_values("ts_ns", kind="stable") \
        .reset_index(drop=True)


def _rows(index: EventIndex, windows: pd.DataFrame, marks: pd.DataFrame, races: pd.DataFrame,
          focus: Optional[Dict]):
    """One row per thread: the focus race's thread first, then raced threads, then the busiest others."""
    win = pd.DataFrame({"tid": windows["tid"].to_numpy(dtype="int64"),
                        "ts": windows["start_ns"].to_numpy(dtype="int64"), "windows": 1, "actions": 0})
    acted = marks[marks["tid"] >= 0]
    act = pd.DataFrame({"tid": acted["tid"].to_numpy(dtype="int64"), "ts": acted["ts_ns"].to_numpy(dtype="int64"),
                        "windows": 0, "actions": 1})
    per_tid = pd.concat([win, act]).groupby("tid").agg(windows=("windows", "sum"), actions=("actions", "sum"),
                                                        first=("ts", "min"))
    stats: Dict[int, List[float]] = {int(t): [0, int(r.windows), int(r.actions), int(r.first)]
                                     for t, r in zip(per_tid.index, per_tid.itertuples(index=False))}
    for tid in races["tid"].to_numpy(dtype="int64"):
        stats.setdefault(int(tid), [0, 0, 0, 0])[0] = 1
    if focus is not None:
        stats.setdefault(int(focus["tid"]), [0, 0, 0, 0])[0] = 2
    # Priority: focus thread, race threads, then most windows and actions; the kept rows are shown in order
    # of first appearance so the picture reads left to right, top to bottom.
    ranked = sorted(stats, key=lambda t: (-stats[t][0], -(stats[t][1] + stats[t][2]), stats[t][3]))
    kept = ranked[:MAX_THREAD_ROWS]
    kept.sort(key=lambda t: (-stats[t][0] if focus is not None else 0, stats[t][3]))
    rows = pd.DataFrame({
        "row": np.arange(1, len(kept) + 1),
        "tid": np.array(kept, dtype="int64"),
        "comm": [index.comm_of(t) for t in kept],
        "windows": [int(stats[t][1]) for t in kept],
    })
    rows["label"] = [f"{c}/{t}" for c, t in zip(rows["comm"], rows["tid"])]
    return rows, len(ranked) - len(kept)


# --- drawing -------------------------------------------------------------------------------------------

_MARK_STYLE = {
    "lookup": dict(marker="v", color="#252525", s=46, label="lookup of the entry"),
    "bind": dict(marker="o", color="#238b45", s=56, label="bound to a folio (new generation)"),
    "release": dict(marker="X", color="#cb181d", s=80, label="released (generation ends)"),
    "install": dict(marker="*", color="#6a51a3", s=170, label="install: swap count dropped after set_pte"),
    "slot": dict(marker="D", color="#969696", s=34, label="other slot event (alloc, free, prepare, cache)"),
}


def draw_entry_timeline(tl: EntryTimeline, size_px=style.TIMELINE_PX) -> Figure:
    """Draw ``tl``; busy rows are merged at pixel resolution, never one rectangle per event."""
    fig = style.new_figure(size_px)
    ax = fig.add_subplot()
    span = max(tl.end_ns - tl.start_ns, 1)
    scale, unit = style.time_unit(span / 4)
    to_x = lambda ns: (np.asarray(ns, dtype="float64") - tl.anchor_ns) / scale  # noqa: E731
    pixel = (span / scale) / (size_px[0] * 0.8)  # one pixel, in x units
    row_of = dict(zip(tl.rows["tid"], tl.rows["row"]))
    x_start, x_end = float(to_x(tl.start_ns)), float(to_x(tl.end_ns))
    # Bars reaching far outside the view are cut at its edges: a bar (or its centred label) seconds away on
    # a microsecond axis sits at ~1e9 px, where Agg/FreeType fail with "raster overflow".
    clip = lambda x: np.clip(x, x_start - 2 * pixel, x_end + 2 * pixel)  # noqa: E731

    _draw_generations(ax, tl, to_x, clip, pixel, x_end)
    _draw_windows(ax, tl, to_x, clip, pixel, row_of)
    _draw_marks(ax, tl, to_x, pixel, row_of)
    _draw_race_labels(ax, tl, to_x, pixel, row_of)

    n_rows = len(tl.rows) + 1
    ax.set_ylim(n_rows - 0.4, -0.6)
    ax.set_yticks(range(n_rows), ["entry generations"] + list(tl.rows["label"]))
    ax.set_xlim(float(to_x(tl.start_ns)), x_end)
    ax.set_xlabel(f"time since {tl.anchor_label} ({unit})")
    ax.ticklabel_format(axis="x", style="plain", useOffset=False)
    ylabel = "thread (comm/tid)"
    if tl.hidden_threads:
        ylabel += f"  [+{tl.hidden_threads} more threads not shown]"
    ax.set_ylabel(ylabel)
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.set_title(_title(tl), loc="left", fontsize=11)
    _legend(fig, tl)
    return fig


def _draw_generations(ax, tl: EntryTimeline, to_x, clip, pixel: float, x_end: float) -> None:
    gens = tl.generations
    if not len(gens):
        ax.text(float(to_x(tl.start_ns)) + 2 * pixel, 0, "no binding of this entry recorded in view",
                va="center", fontsize=9, color="#777777")
        return
    x_start = float(to_x(tl.start_ns))
    starts = clip(np.maximum(to_x(_float(gens["bind_ns"], -np.inf)), x_start))
    open_ = gens["release_ns"].isna().to_numpy()
    ends = clip(np.where(open_, x_end, to_x(_float(gens["release_ns"], 0))))
    numbers = gens["generation"].to_numpy(dtype="int64")
    for parity, color in enumerate(style.GENERATION_COLORS):
        pick = numbers % 2 == parity
        s, e = style.coalesce_intervals(starts[pick], ends[pick], pixel)
        ax.broken_barh(list(zip(s, np.maximum(e - s, pixel))), (-0.32, 0.64), facecolors=color,
                       edgecolors="#31a354", linewidth=0.6)
    if len(gens) <= 200:  # labels only where they fit: a label is ~60 px wide
        last_label_end = -np.inf
        for start, end, number, is_open, folio in zip(starts, ends, numbers, open_, gens["folio"]):
            width_px = (end - start) / pixel
            text = _generation_label(number, folio, is_open, width_px)
            if text is None or start < last_label_end:
                continue
            ax.text((start + end) / 2, 0, text, ha="center", va="center", fontsize=8, clip_on=True)
            last_label_end = end


def _generation_label(number: int, folio, is_open: bool, width_px: float) -> Optional[str]:
    """The longest label that fits in a bar ``width_px`` wide (8 pt text is ~5.5 px a character)."""
    tail = " (still bound)" if is_open else ""
    candidates = [f"gen {number}{tail}", f"gen {number}"]
    if not pd.isna(folio):
        candidates.insert(0, f"gen {number} · folio {int(folio):#x}{tail}")
    for text in candidates:
        if len(text) * 5.5 + 8 <= width_px:
            return text
    return None


def _draw_windows(ax, tl: EntryTimeline, to_x, clip, pixel: float, row_of: Dict[int, int]) -> None:
    wins = tl.windows
    if not len(wins):
        return
    tids = wins["tid"].to_numpy(dtype="int64")
    starts = clip(to_x(wins["start_ns"].to_numpy(dtype="int64")))
    ends = clip(to_x(wins["end_ns"].to_numpy(dtype="int64")))
    outcomes = wins["outcome"].astype("string").fillna("minor").to_numpy(dtype=object)
    raced = wins["race_class"].astype("string").fillna("").to_numpy(dtype=object)
    for tid, row in row_of.items():
        on_row = tids == tid
        for outcome in style.OUTCOME_ORDER:
            pick = on_row & (outcomes == outcome) & (raced == "")
            s, e = style.coalesce_intervals(starts[pick], ends[pick], pixel)
            if len(s):
                ax.broken_barh(list(zip(s, np.maximum(e - s, pixel))), (row - 0.27, 0.54),
                               facecolors=style.OUTCOME_COLORS[outcome], edgecolors="none")
        for i in np.flatnonzero(on_row & (raced != "")):
            ax.broken_barh([(starts[i], max(ends[i] - starts[i], pixel))], (row - 0.3, 0.6),
                           facecolors=style.OUTCOME_COLORS.get(outcomes[i], "#cccccc"),
                           edgecolors=style.RACE_COLORS.get(raced[i], "#000000"), linewidth=2.4, hatch="//")


def _draw_marks(ax, tl: EntryTimeline, to_x, pixel: float, row_of: Dict[int, int]) -> None:
    marks = tl.marks
    # Zoomed out, a window's lookup, bind and install fall on one pixel: lift lookups and drop installs
    # a little so none hides another. Zoomed on one race they are apart already and stay on the row's centre.
    lift = {"lookup": -0.17, "install": 0.17, "slot": 0.17} if tl.focus is None else {}
    for kind in MARK_KINDS:
        of_kind = marks[marks["kind"] == kind]
        xs_all, ys_all = [], []
        for tid, group in of_kind.groupby("tid", sort=False):
            row = row_of.get(int(tid))
            if row is None:
                continue
            xs = style.thin_points(to_x(group["ts_ns"].to_numpy(dtype="int64")), pixel * 3)
            xs_all.append(xs)
            ys_all.append(np.full(len(xs), row + lift.get(kind, 0.0)))
        if kind in ("bind", "release"):  # generation boundaries also show on the generation row
            xs = style.thin_points(to_x(of_kind["ts_ns"].to_numpy(dtype="int64")), pixel * 3)
            xs_all.append(xs)
            ys_all.append(np.zeros(len(xs)))
        if xs_all:
            ax.scatter(np.concatenate(xs_all), np.concatenate(ys_all), zorder=4, edgecolors="white",
                       linewidths=0.6, **{k: v for k, v in _MARK_STYLE[kind].items() if k != "label"})
    if tl.focus is not None:
        for key, color, text in (("release_ns", "#cb181d", "released "), ("rebind_ns", "#238b45", " bound again")):
            x = float(to_x(int(tl.focus[key])))
            ax.axvline(x, color=color, linestyle=":", linewidth=1.3, zorder=1)
            # release label left of its line, rebind label right of its: they never collide
            ax.text(x, 0.995, text, transform=ax.get_xaxis_transform(), color=color, fontsize=8.5, va="top",
                    ha="right" if key == "release_ns" else "left")


def _draw_race_labels(ax, tl: EntryTimeline, to_x, pixel: float, row_of: Dict[int, int]) -> None:
    """The class of each race above its window; labels that would overlap on one row are skipped (the
    legend and title still count them)."""
    last_x: Dict[int, float] = {}
    for race in tl.races.sort_values("window_start_ns").to_dict("records"):
        row = row_of.get(int(race["tid"]))
        if row is None:
            continue
        x = float(to_x(int(race["window_start_ns"])))
        if x - last_x.get(row, -np.inf) < 160 * pixel:
            continue
        last_x[row] = x
        cls = race["class"]
        ax.annotate(cls.upper() if cls == "stale-install" else cls, (max(x, float(to_x(tl.start_ns))), row - 0.3),
                    xytext=(2, 3), textcoords="offset points", fontsize=9, fontweight="bold",
                    color=style.RACE_COLORS.get(cls, "#000000"), va="bottom", clip_on=True)


def _title(tl: EntryTimeline) -> str:
    entry = style.format_entry(tl.entry)
    if tl.focus is not None:
        f = tl.focus
        cls = f["class"]
        start = int(f["window_start_ns"])
        comm = f.get("comm") or "?"
        line1 = f"{cls} race on swap entry {entry} in tid {int(f['tid'])} ({comm})"
        line2 = (f"fault window {style.format_duration(int(f['window_end_ns']) - start)}; "
                 f"entry released at +{style.format_duration(int(f['release_ns']) - start)}, "
                 f"bound again at +{style.format_duration(int(f['rebind_ns']) - start)}")
        installed = tl.marks[(tl.marks["kind"] == "install") & (tl.marks["tid"] == int(f["tid"]))
                             & (tl.marks["ts_ns"] >= int(f["rebind_ns"]))
                             & (tl.marks["ts_ns"] <= int(f["window_end_ns"]))]
        line2 += ("; the faulting thread then installed it" if len(installed)
                  else "; the faulting thread did not install it")
        return f"{line1}\n{line2}"
    n_races = len(tl.races)
    classes = tl.races["class"].astype(str).value_counts().to_dict() if n_races else {}
    race_text = ", ".join(f"{n} {c}" for c, n in sorted(classes.items()) if n) or "no race"
    gens, wins = len(tl.generations), len(tl.windows)
    return (f"swap entry {entry}\n{gens} generation{'' if gens == 1 else 's'}, "
            f"{wins} fault window{'' if wins == 1 else 's'}, "
            f"{race_text} in view ({style.format_duration(tl.end_ns - tl.start_ns)} shown)")


def _legend(fig: Figure, tl: EntryTimeline) -> None:
    handles = []
    outcomes = set(tl.windows["outcome"].astype("string").dropna()) if len(tl.windows) else set()
    for outcome in style.OUTCOME_ORDER:
        if outcome in outcomes:
            handles.append(Patch(facecolor=style.OUTCOME_COLORS[outcome], label=f"fault window: {outcome}"))
    for cls in sorted(set(tl.races["class"])) if len(tl.races) else []:
        handles.append(Patch(facecolor="white", edgecolor=style.RACE_COLORS.get(cls, "#000"), hatch="//",
                             linewidth=2, label=f"window with a {cls} race"))
    handles.append(Patch(facecolor=style.GENERATION_COLORS[0], edgecolor="#31a354", label="generation (bound)"))
    present = set(tl.marks["kind"])
    for kind in MARK_KINDS:
        if kind in present:
            st = _MARK_STYLE[kind]
            handles.append(Line2D([], [], linestyle="none", marker=st["marker"], color=st["color"],
                                  markersize=8 if kind != "install" else 12, label=st["label"]))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(4, len(handles)), fontsize=8.5,
               frameon=False)

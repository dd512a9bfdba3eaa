"""Reports: pictures of an :class:`Analysis` for a kernel engineer, and the self-contained report.html.

Modules, one concern each: :mod:`.style` (sizes, colours, units, pixel-level aggregation), :mod:`.timeline`
(one entry's life in two layers, slot generations and swap-cache residency, then each thread's fault windows
with obtain, install, and the race's slot free -> reallocation), :mod:`.distributions` (window durations,
reuse distance), :mod:`.rate` (events per second per role, losses), :mod:`.html` (the page). Reading and
analysing a capture, and parsing an entry, live in :mod:`swaprace.analysis.selection`.
Nothing here imports bcc; everything works on a capture read offline.

>>> from swaprace.readers import read_any          # doctest: +SKIP
>>> report = build_report(analyze(read_any("cap.parquet")), "out/")  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import pandas as pd

from swaprace.analysis.report import distributions, html, rate, style, timeline
from swaprace.errors import SwapraceError
from swaprace.events import ROLES

#: progress(done, total, what): called before each rendering step; the CLI shows it on a terminal only.
Progress = Callable[[int, int, str], None]

DEFAULT_MAX_TIMELINES = 24
DEFAULT_BUSIEST = 4


@dataclass
class ReportFigure:
    kind: str  # "overview", "race", "busiest"
    file: str  # relative to the report directory
    title: str
    caption: str
    width: int
    height: int
    anchor: str
    entry: Optional[int] = None
    data: Dict[str, Any] = field(default_factory=dict)  # what the picture shows, for report.json and tests


@dataclass
class Report:
    analysis: Any
    directory: Path
    source_name: str
    figures: List[ReportFigure] = field(default_factory=list)
    race_rows: List[Dict[str, Any]] = field(default_factory=list)
    races_not_drawn: int = 0
    loss_text: str = ""
    failures: List[str] = field(default_factory=list)  # figures that could not be drawn, with the reason

    @property
    def html_path(self) -> Path:
        return self.directory / "report.html"

    @property
    def json_path(self) -> Path:
        return self.directory / "report.json"

    def figures_of(self, kind: str) -> List[ReportFigure]:
        return [f for f in self.figures if f.kind == kind]

    def summary_items(self) -> List[Tuple[str, Any]]:
        """(key, value) rows of the summary table; nested counts are flattened as ``group.key``."""
        s = self.analysis.summary or {}
        wanted = ("events", "skipped_lines", "windows", "windows_with_entry", "windows_with_page", "lookup_hits",
                  "entries", "ksm_copies", "generations", "reuses", "history_gaps")
        items = [(k, s[k]) for k in wanted if k in s]
        for group in ("residency", "prepare"):
            items += [(f"{group}.{k}", v) for k, v in (s.get(group) or {}).items()]
        if "races" in s:
            items.append(("races", len(s["races"]) if isinstance(s["races"], list) else s["races"]))
        items += [(f"race_classes.{k}", v) for k, v in (s.get("race_classes") or {}).items()]
        items += [(k, s[k]) for k in ("uncertain_races", "lost_events") if k in s]
        if s.get("unknown_functions"):
            items.append(("unknown_functions", sum(s["unknown_functions"].values())))
        if not items:  # an analysis without a summary still gets the basic counts
            items = [("events", len(self.analysis.capture.events)), ("windows", len(self.analysis.windows)),
                     ("races", len(self.analysis.races))]
        return items

    def role_rows(self) -> List[List[Any]]:
        return role_counts(self.analysis.capture.events).values.tolist()

    def to_json(self) -> Dict[str, Any]:
        """The machine-readable index written as report.json and printed by ``report --json``."""
        return {
            "html": str(self.html_path),
            "directory": str(self.directory),
            "capture": self.source_name,
            "races": [{k: v for k, v in r.items() if not k.endswith("_text") and k != "n"}
                      for r in self.race_rows],
            "races_not_drawn": self.races_not_drawn,
            "figures": [{"kind": f.kind, "file": f.file, "title": f.title, "width": f.width, "height": f.height,
                         "entry": f.entry, "data": f.data} for f in self.figures],
            "lost": self.loss_text,
            "failures": self.failures,
        }


def role_counts(events: pd.DataFrame) -> pd.DataFrame:
    """Calls and returns per role and kernel symbol, roles in the model's order."""
    if not len(events):
        return pd.DataFrame(columns=["role", "func", "call", "return"])
    counts = (events.groupby(["role", "func", "phase"], observed=True).size().unstack("phase", fill_value=0)
              .reindex(columns=["call", "return"], fill_value=0).reset_index())
    counts["order"] = counts["role"].astype(str).map({r: i for i, r in enumerate(ROLES)}).fillna(len(ROLES))
    counts = counts.sort_values(["order", "func"]).drop(columns="order")
    counts[["role", "func"]] = counts[["role", "func"]].astype(str)
    counts[["call", "return"]] = counts[["call", "return"]].astype(int)
    return counts.reset_index(drop=True)


# --- single plots (the `swaprace plot` commands) ---------------------------------------------------------

def plot_entry(analysis, entry: int, path, since_ns: Optional[int] = None, until_ns: Optional[int] = None,
               race: Optional[int] = None, inputs: tuple = ()) -> Tuple[Path, timeline.EntryTimeline]:
    """One entry's timeline: its whole life, or zoomed on its ``race``-th race (0-based). ``inputs``: files
    that ``path`` must not be (the capture)."""
    style.check_writable(path, inputs)
    focus = None
    if race is not None:
        on_entry = analysis.races[analysis.races["entry"].to_numpy(dtype="uint64", na_value=0) == np.uint64(entry)]
        if not 0 <= race < len(on_entry):
            raise SwapraceError(f"swap entry {entry:#x} has {len(on_entry)} race(s); --race {race} does not exist")
        focus = on_entry.sort_values("window_start_ns").iloc[race].to_dict()
    data = timeline.entry_timeline(analysis, entry, focus=focus, since_ns=since_ns, until_ns=until_ns)
    return style.save_png(timeline.draw_entry_timeline(data), path, inputs), data


def plot_windows(analysis, path, inputs: tuple = ()) -> Tuple[Path, distributions.Histogram]:
    style.check_writable(path, inputs)
    hist = distributions.window_durations(analysis.windows)
    return style.save_png(distributions.draw_window_durations(hist), path, inputs), hist


def plot_reuse(analysis, path, inputs: tuple = ()) -> Tuple[Path, distributions.Histogram]:
    style.check_writable(path, inputs)
    hist = distributions.reuse_distances(analysis.generations, getattr(analysis, "residency", None))
    median = float(analysis.windows["duration_ns"].median()) if len(analysis.windows) else None
    return style.save_png(distributions.draw_reuse_distances(hist, median), path, inputs), hist


def plot_rate(analysis, path, inputs: tuple = ()) -> Tuple[Path, rate.RateSeries]:
    style.check_writable(path, inputs)
    series = rate.event_rates(analysis.capture.events, analysis.capture.meta)
    return style.save_png(rate.draw_event_rates(series), path, inputs), series


# --- the report --------------------------------------------------------------------------------------------

def busiest_entries(analysis, n: int) -> List[int]:
    """Entries with the most slot generations, cache residencies and fault windows (ties: lower entry first)."""
    frames = [analysis.generations, getattr(analysis, "residency", None), analysis.windows]
    values = np.concatenate([f["entry"].dropna().to_numpy(dtype="uint64") for f in frames if f is not None]
                            + [np.empty(0, "uint64")])
    entries, counts = np.unique(values, return_counts=True)
    order = np.lexsort((entries, -counts))
    return [int(e) for e in entries[order][:n]]


def build_report(analysis, out_dir, source_name: Optional[str] = None,
                 max_timelines: int = DEFAULT_MAX_TIMELINES, busiest: int = DEFAULT_BUSIEST,
                 progress: Optional[Progress] = None, inputs: tuple = ()) -> Report:
    """Render every picture of ``analysis`` into ``out_dir`` and write report.html and report.json there.

    Raises :class:`SwapraceError` when ``out_dir`` cannot be written. Existing files of the same names are
    replaced; pictures a previous report listed in its report.json and this one does not draw are removed
    (no stale race picture survives a re-run); nothing else in ``out_dir`` is touched.
    """
    from swaprace.osutil import UnsafeOutput, check_output_path

    directory = Path(out_dir)
    try:
        if directory.is_symlink():
            raise UnsafeOutput(f"not writing into {directory}: it is a symbolic link (outputs never follow links)")
        directory.mkdir(parents=True, exist_ok=True)
        check_output_path(directory / "report.html", inputs)
    except UnsafeOutput as exc:
        raise SwapraceError(str(exc)) from None
    except OSError as exc:
        raise SwapraceError(f"cannot create report directory {directory}: {exc.strerror or exc}") from None
    previous = _previous_files(directory)
    report = Report(analysis=analysis, directory=directory, source_name=source_name or "capture",
                    loss_text=rate.loss_summary(analysis.capture.meta))
    index = timeline.EventIndex(analysis.capture.events)
    races = analysis.races.sort_values(["window_start_ns", "tid"], kind="stable").reset_index(drop=True)
    # when not all can be drawn, the stale-installs first (the lost writes), then benign, then recovered
    severity = races["class"].astype(str).map({"stale-install": 0, "benign": 1}).fillna(2)
    chosen = severity.sort_values(kind="stable").index[:max(max_timelines, 0)]
    drawn = races.loc[sorted(chosen)]
    report.races_not_drawn = len(races) - len(drawn)
    busy = busiest_entries(analysis, busiest)
    steps: List[Tuple[str, Callable[[], None]]] = [
        ("events per second", lambda: _overview_rate(report)),
        ("window durations", lambda: _overview_windows(report)),
        ("reuse distances", lambda: _overview_reuse(report)),
    ]
    for i, race in enumerate(drawn.to_dict("records"), 1):
        steps.append((f"race {i}/{len(drawn)}", functools.partial(_race_figure, report, index, i, race)))
    for i, entry in enumerate(busy, 1):
        steps.append((f"busiest entry {i}/{len(busy)}", functools.partial(_busiest_figure, report, index, i, entry)))
    for done, (what, step) in enumerate(steps):
        if progress:
            progress(done, len(steps), what)
        try:
            step()
        except SwapraceError:
            raise
        except Exception as exc:  # noqa: BLE001 -- one picture failing must not cost the rest of the report
            text = (str(exc).strip().splitlines() or [""])[0]
            report.failures.append(f"{what}: {type(exc).__name__}: {text}")
    report.race_rows = _race_rows(analysis, races, index, report)
    if progress:
        progress(len(steps), len(steps), "writing report.html")
    _write_text(report.html_path, html.render(report))
    from swaprace import jsonout

    _write_text(report.json_path, jsonout.dumps(report.to_json(), indent=2))
    for name in previous - {f.file for f in report.figures}:
        stale = directory / name
        if stale.is_file() and not stale.is_symlink():
            stale.unlink()
    return report


def _previous_files(directory: Path) -> set:
    """Pictures the report.json already in ``directory`` lists (plain names inside it only)."""
    try:
        old = json.loads((directory / "report.json").read_text())
        names = {f["file"] for f in old.get("figures", [])}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return set()
    return {n for n in names if isinstance(n, str) and n.endswith(".png") and "/" not in n and not n.startswith(".")}


def _write_text(path: Path, text: str) -> None:
    from swaprace.capture import atomic_output

    with atomic_output(path, "w") as fh:
        fh.write(text)


def _add(report: Report, fig, kind: str, name: str, title: str, caption: str, entry=None, data=None):
    path = report.directory / name
    try:
        style.save_png(fig, path)
    except OSError as exc:
        raise SwapraceError(f"cannot write {path}: {exc.strerror or exc}") from None
    width, height = (int(round(v)) for v in fig.get_size_inches() * fig.dpi)
    report.figures.append(ReportFigure(kind=kind, file=name, title=title, caption=caption, width=width,
                                       height=height, anchor=name.rsplit(".", 1)[0], entry=entry, data=data or {}))


def _overview_rate(report: Report) -> None:
    series = rate.event_rates(report.analysis.capture.events, report.analysis.capture.meta)
    _add(report, rate.draw_event_rates(series), "overview", "events-per-second.png", "Events per second by role",
         f"Events per second for each role, buckets of {style.format_duration(series.bucket_ns)}; "
         f"{series.loss_text}.", data={"bucket_ns": series.bucket_ns, "counts": series.counts,
                                       "lost_marks": int(len(series.lost_marks))})


def _overview_windows(report: Report) -> None:
    hist = distributions.window_durations(report.analysis.windows)
    _add(report, distributions.draw_window_durations(hist), "overview", "window-durations.png",
         "Fault-window duration by outcome",
         "How long each do_swap_page ran (call to return), split by its VM_FAULT outcome; the dashed line is "
         "the windows in which a race was flagged.",
         data={"sizes": hist.sizes, "medians_ns": hist.medians_ns})


def _overview_reuse(report: Report) -> None:
    hist = distributions.reuse_distances(report.analysis.generations, getattr(report.analysis, "residency", None))
    windows = report.analysis.windows
    median = float(windows["duration_ns"].median()) if len(windows) else None
    _add(report, distributions.draw_reuse_distances(hist, median), "overview", "reuse-distance.png",
         "Reuse distance", "Time from a swap slot's free to its reallocation (a new generation of the entry), by "
         "what freed it. A reallocation faster than a fault window is what lets pte_same pass on data that is "
         "no longer the entry's. For comparison, the dashed line is the time from a swap-cache eviction to the "
         "re-read of the same slot: no reuse, the data stayed.",
         data={"sizes": hist.sizes, "medians_ns": hist.medians_ns, **hist.notes})


def _race_figure(report: Report, index: timeline.EventIndex, n: int, race: Dict[str, Any]) -> None:
    tl = timeline.entry_timeline(report.analysis, int(race["entry"]), focus=race, index=index)
    assert tl.focus is not None  # the race it was given (with the comm filled in)
    name = f"race-{n:03d}.png"
    uncertain = " (uncertain)" if bool(race.get("uncertain", False)) else ""
    _add(report, timeline.draw_entry_timeline(tl), "race", name,
         f"race {n}: {race['class']}{uncertain} on {int(race['entry']):#x}",
         f"Race {n}: {race['class']}{uncertain} on swap entry {style.format_entry(int(race['entry']))}, "
         f"tid {int(race['tid'])} ({tl.focus.get('comm', '?')}): {race.get('reason') or ''}.",
         entry=int(race["entry"]), data=timeline_summary(tl))
    race["anchor"] = name.rsplit(".", 1)[0]


def _busiest_figure(report: Report, index: timeline.EventIndex, n: int, entry: int) -> None:
    tl = timeline.entry_timeline(report.analysis, entry, index=index)
    name = f"entry-{n:02d}-{entry:x}.png"
    _add(report, timeline.draw_entry_timeline(tl), "busiest", name, f"busiest entry {n}: {entry:#x}",
         f"Busiest entry {n}: {style.format_entry(entry)}: {html.plural(len(tl.generations), 'slot generation')}, "
         f"{len(tl.residency):,} cache residenc{'y' if len(tl.residency) == 1 else 'ies'}, "
         f"{html.plural(len(tl.windows), 'fault window')}, {html.plural(len(tl.races), 'race')}.", entry=entry,
         data=timeline_summary(tl))


def _opt(value) -> Optional[int]:
    return None if value is None or pd.isna(value) else int(value)


def timeline_summary(tl: timeline.EntryTimeline) -> Dict[str, Any]:
    """What a timeline shows, in plain JSON types: tests and scripts check this instead of pixels."""
    gens, res = tl.generations, tl.residency
    return {
        "entry": tl.entry,
        "start_ns": tl.start_ns,
        "end_ns": tl.end_ns,
        "layers": list(timeline.LAYER_LABELS),
        "rows": [str(x) for x in tl.rows["label"]],
        "hidden_threads": tl.hidden_threads,
        "generations": [{"generation": int(g["generation"]), "alloc_ns": _opt(g["alloc_ns"]),
                         "alloc_tid": _opt(g["alloc_tid"]), "free_ns": _opt(g["free_ns"]),
                         "free_tid": _opt(g["free_tid"])} for g in gens.to_dict("records")] if len(gens) else [],
        "residency": [{"folio": _opt(r["folio"]), "bind_ns": _opt(r["bind_ns"]), "unbind_ns": _opt(r["unbind_ns"]),
                       "eviction": bool(r["eviction"]), "reread": bool(r["reread"])}
                      for r in res.to_dict("records")] if len(res) else [],
        "windows": int(len(tl.windows)),
        "marks": {str(k): int(v) for k, v in tl.marks["kind"].value_counts().items()},
        "lost_intervals": int(len(tl.lost)),
        "races": [{"tid": int(r["tid"]), "class": str(r["class"]), "uncertain": bool(r.get("uncertain", False)),
                   "window_start_ns": int(r["window_start_ns"]), "release_ns": int(r["release_ns"]),
                   "release_tid": _opt(r.get("release_tid")), "realloc_ns": int(r["realloc_ns"]),
                   "realloc_tid": _opt(r.get("realloc_tid")), "install_ns": _opt(r.get("install_ns"))}
                  for r in tl.races.to_dict("records")],
        "focus": None if tl.focus is None else {"tid": int(tl.focus["tid"]), "class": str(tl.focus["class"]),
                                                "uncertain": bool(tl.focus.get("uncertain", False)),
                                                "window_start_ns": int(tl.focus["window_start_ns"])},
    }


def _race_rows(analysis, races: pd.DataFrame, index: timeline.EventIndex, report: Report) -> List[Dict]:
    """One row per race for the HTML table and report.json: the analysis' race columns in plain types, the
    comm of each thread involved, and readable times relative to the window's start."""
    anchors = {(f.data["focus"]["tid"], f.data["focus"]["window_start_ns"], f.entry): f.anchor
               for f in report.figures_of("race") if f.data.get("focus")}
    origin = int(index.ts.min()) if len(index.ts) else 0
    rows = []
    for n, race in enumerate(races.to_dict("records"), 1):
        entry, tid = int(race["entry"]), int(race["tid"])
        start, end = int(race["window_start_ns"]), int(race["window_end_ns"])
        release_tid, realloc_tid = _opt(race.get("release_tid")), _opt(race.get("realloc_tid"))
        install_ns, installed_folio = _opt(race.get("install_ns")), _opt(race.get("installed_folio"))
        obtain_kind = race.get("obtain_kind")
        named = lambda t: "?" if t is None else f"{index.comm_of(t)}/{t}"  # noqa: E731
        rows.append({
            "n": n, "class": str(race["class"]), "uncertain": bool(race.get("uncertain", False)),
            "entry": entry, "tid": tid, "comm": index.comm_of(tid),
            "window_start_ns": start, "window_end_ns": end,
            "obtain_ns": _opt(race.get("obtain_ns")),
            "obtain_kind": None if obtain_kind is None or pd.isna(obtain_kind) else str(obtain_kind),
            "release_ns": int(race["release_ns"]), "release_tid": release_tid,
            "realloc_ns": int(race["realloc_ns"]), "realloc_tid": realloc_tid,
            "install_ns": install_ns, "folio": _opt(race.get("folio")), "installed_folio": installed_folio,
            "ksm_copy_ns": _opt(race.get("ksm_copy_ns")), "reason": str(race.get("reason") or ""),
            "anchor": anchors.get((tid, start, entry)),
            "entry_text": style.format_entry(entry),
            "start_text": html.relative_text(start, origin),
            "window_text": style.format_duration(end - start),
            "release_text": html.relative_text(int(race["release_ns"]), start),
            "release_by_text": named(release_tid),
            "realloc_text": html.relative_text(int(race["realloc_ns"]), start),
            "realloc_by_text": named(realloc_tid),
            "install_text": "no" if install_ns is None else html.relative_text(install_ns, start),
            "installed_folio_text": "-" if installed_folio is None else f"{installed_folio:#x}",
        })
    return rows


__all__ = ["Report", "ReportFigure", "build_report", "busiest_entries", "plot_entry", "plot_windows", "plot_reuse",
           "plot_rate", "role_counts", "timeline_summary"]

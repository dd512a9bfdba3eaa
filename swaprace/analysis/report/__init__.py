"""Reports: pictures of an :class:`Analysis` for a kernel engineer, and the self-contained report.html.

Modules, one concern each: :mod:`.style` (sizes, colours, units, pixel-level aggregation), :mod:`.timeline`
(one entry's life: generations, fault windows per thread, releases, rebinds, installs), :mod:`.distributions`
(window durations, reuse distance), :mod:`.rate` (events per second per role, losses), :mod:`.html` (the page).
Nothing here imports bcc; everything works on a capture read offline.

>>> from swaprace.readers import read_any          # doctest: +SKIP
>>> report = build_report(analyze(read_any("cap.parquet")), "out/")  # doctest: +SKIP
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import pandas as pd

from swaprace.analysis.report import distributions, html, rate, style, timeline
from swaprace.errors import SwapraceError
from swaprace.events import ROLES, SWP_OFFSET_MASK, swp_entry

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
        s = self.analysis.summary or {}
        wanted = ("events", "skipped_lines", "windows", "windows_with_entry", "lookup_hits", "entries",
                  "ksm_copies", "reuses", "lost_events")
        items = [(k, s[k]) for k in wanted if k in s]
        if "races" in s:
            items.append(("races", len(s["races"]) if isinstance(s["races"], list) else s["races"]))
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


def parse_entry(text: str) -> int:
    """A swap entry from the command line: ``0x400000000012a``, decimal, or ``TYPE:OFFSET`` (offset hex ok)."""
    text = text.strip()
    try:
        if ":" in text:
            swap_type, offset = text.split(":", 1)
            value = swp_entry(int(swap_type, 0), int(offset, 0))
            if int(swap_type, 0) >= 32 or int(offset, 0) > SWP_OFFSET_MASK:
                raise ValueError
            return value
        value = int(text, 0)
        if not 0 < value < 2 ** 64:
            raise ValueError
        return value
    except ValueError:
        raise SwapraceError(f"not a swap entry: {text!r} (give 0x<swp_entry_t value>, a decimal value, "
                            f"or TYPE:OFFSET like 0:0x12a)") from None


def load_analysis(path, fmt: Optional[str] = None, status: Optional[Callable[[str], None]] = None):
    """Read a capture of any supported format and analyse it (``status`` hears what is going on)."""
    from swaprace.readers import read_any
    from swaprace.analysis.model import analyze

    if status:
        status(f"reading {path}")
    capture = read_any(path, fmt)
    if status:
        status(f"analysing {len(capture.events):,} events")
    return analyze(capture)


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
    hist = distributions.reuse_distances(analysis.generations)
    median = float(analysis.windows["duration_ns"].median()) if len(analysis.windows) else None
    return style.save_png(distributions.draw_reuse_distances(hist, median), path, inputs), hist


def plot_rate(analysis, path, inputs: tuple = ()) -> Tuple[Path, rate.RateSeries]:
    style.check_writable(path, inputs)
    series = rate.event_rates(analysis.capture.events, analysis.capture.meta)
    return style.save_png(rate.draw_event_rates(series), path, inputs), series


# --- the report --------------------------------------------------------------------------------------------

def busiest_entries(analysis, n: int) -> List[int]:
    """Entries with the most generations plus fault windows (ties: lower entry value first)."""
    values = np.concatenate([
        analysis.generations["entry"].dropna().to_numpy(dtype="uint64"),
        analysis.windows["entry"].dropna().to_numpy(dtype="uint64"),
    ])
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
    drawn = races.iloc[:max(max_timelines, 0)]
    report.races_not_drawn = len(races) - len(drawn)
    busy = busiest_entries(analysis, busiest)
    steps: List[Tuple[str, Callable[[], None]]] = [
        ("events per second", lambda: _overview_rate(report)),
        ("window durations", lambda: _overview_windows(report)),
        ("reuse distances", lambda: _overview_reuse(report)),
    ]
    for i, race in enumerate(drawn.to_dict("records"), 1):
        steps.append((f"race {i}/{len(drawn)}", lambda i=i, race=race: _race_figure(report, index, i, race)))
    for i, entry in enumerate(busy, 1):
        steps.append((f"busiest entry {i}/{len(busy)}", lambda i=i, e=entry: _busiest_figure(report, index, i, e)))
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
    hist = distributions.reuse_distances(report.analysis.generations)
    windows = report.analysis.windows
    median = float(windows["duration_ns"].median()) if len(windows) else None
    _add(report, distributions.draw_reuse_distances(hist, median), "overview", "reuse-distance.png",
         "Reuse distance", "Time from an entry's release to its next binding, by what released it. Reuse "
         "faster than a fault window is what lets pte_same pass on a stale page.",
         data={"sizes": hist.sizes, "medians_ns": hist.medians_ns, **hist.notes})


def _race_figure(report: Report, index: timeline.EventIndex, n: int, race: Dict[str, Any]) -> None:
    tl = timeline.entry_timeline(report.analysis, int(race["entry"]), focus=race, index=index)
    name = f"race-{n:03d}.png"
    _add(report, timeline.draw_entry_timeline(tl), "race", name,
         f"race {n}: {race['class']} on {int(race['entry']):#x}",
         f"Race {n}: {race['class']} on swap entry {style.format_entry(int(race['entry']))}, "
         f"tid {int(race['tid'])} ({tl.focus.get('comm', '?')}).", entry=int(race["entry"]),
         data=timeline_summary(tl))
    race["anchor"] = name.rsplit(".", 1)[0]


def _busiest_figure(report: Report, index: timeline.EventIndex, n: int, entry: int) -> None:
    tl = timeline.entry_timeline(report.analysis, entry, index=index)
    name = f"entry-{n:02d}-{entry:x}.png"
    _add(report, timeline.draw_entry_timeline(tl), "busiest", name, f"busiest entry {n}: {entry:#x}",
         f"Busiest entry {n}: {style.format_entry(entry)}: {html.plural(len(tl.generations), 'generation')}, "
         f"{html.plural(len(tl.windows), 'fault window')}, {html.plural(len(tl.races), 'race')}.", entry=entry,
         data=timeline_summary(tl))


def timeline_summary(tl: timeline.EntryTimeline) -> Dict[str, Any]:
    """What a timeline shows, in plain JSON types: tests and scripts check this instead of pixels."""
    return {
        "entry": tl.entry,
        "start_ns": tl.start_ns,
        "end_ns": tl.end_ns,
        "rows": [str(x) for x in tl.rows["label"]],
        "hidden_threads": tl.hidden_threads,
        "generations": int(len(tl.generations)),
        "folios": [None if pd.isna(f) else int(f) for f in tl.generations["folio"]],
        "windows": int(len(tl.windows)),
        "marks": {k: int(v) for k, v in tl.marks["kind"].value_counts().items()},
        "races": [{"tid": int(r["tid"]), "class": str(r["class"]), "window_start_ns": int(r["window_start_ns"]),
                   "release_ns": int(r["release_ns"]), "rebind_ns": int(r["rebind_ns"])}
                  for r in tl.races.to_dict("records")],
        "focus": None if tl.focus is None else {"tid": int(tl.focus["tid"]), "class": str(tl.focus["class"]),
                                                "window_start_ns": int(tl.focus["window_start_ns"])},
    }


def _race_rows(analysis, races: pd.DataFrame, index: timeline.EventIndex, report: Report) -> List[Dict]:
    anchors = {(f.data["focus"]["tid"], f.data["focus"]["window_start_ns"], f.entry): f.anchor
               for f in report.figures_of("race") if f.data.get("focus")}
    origin = int(index.ts.min()) if len(index.ts) else 0
    rows = []
    for n, race in enumerate(races.to_dict("records"), 1):
        entry, tid = int(race["entry"]), int(race["tid"])
        start, end = int(race["window_start_ns"]), int(race["window_end_ns"])
        release, rebind = int(race["release_ns"]), int(race["rebind_ns"])
        released_by = index.actor_at(release, timeline.RELEASE_ROLES, entry)
        rebound_by = index.actor_at(rebind, timeline.BIND_ROLES, entry)
        install_ns = None if pd.isna(race.get("install_ns", pd.NA)) else int(race["install_ns"])
        if "install_ns" not in race:  # an analysis without the column: find T's swap_put of E after the rebind
            installs = np.flatnonzero((index.entry == np.uint64(entry)) & (index.tid == tid)
                                      & index.role_is("swap_put") & (index.ts >= rebind) & (index.ts <= end))
            install_ns = int(index.ts[installs[0]]) if len(installs) else None
        who = lambda i: "" if i is None else f" by {index.comm(i)}/{index.tid[i]} ({index.func(i)})"  # noqa
        rows.append({
            "n": n, "class": str(race["class"]), "entry": entry, "tid": tid, "comm": index.comm_of(tid),
            "window_start_ns": start, "window_end_ns": end, "release_ns": release, "rebind_ns": rebind,
            "install_ns": install_ns,
            "released_by": None if released_by is None else int(index.tid[released_by]),
            "rebound_by": None if rebound_by is None else int(index.tid[rebound_by]),
            "anchor": anchors.get((tid, start, entry)),
            "entry_text": style.format_entry(entry),
            "start_text": html.relative_text(start, origin),
            "window_text": style.format_duration(end - start),
            "release_text": html.relative_text(release, start) + who(released_by),
            "rebind_text": html.relative_text(rebind, start) + who(rebound_by),
            "install_text": "no" if install_ns is None else html.relative_text(install_ns, start),
        })
    return rows


__all__ = ["Report", "ReportFigure", "build_report", "busiest_entries", "parse_entry", "plot_entry",
           "plot_windows", "plot_reuse", "plot_rate", "role_counts"]

"""report.html: one self-contained page (inline CSS, images inlined as data URIs, no script, no network).

Each image is also a PNG file next to the page; every ``<img>`` links to its file so the full-size picture
opens on click, and the page still shows everything when mailed alone.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

import pandas as pd

from swaprace import __version__
from swaprace.analysis.report import style
from swaprace.events import ROLES

MAX_RACE_ROWS = 2000

_CSS = """
body { font: 14px/1.45 -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; margin: 2em auto; max-width: 1450px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: .2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
.sub { color: #666; } code, .mono { font-family: "DejaVu Sans Mono", monospace; font-size: 12.5px; }
table { border-collapse: collapse; margin: .5em 0; } th, td { border: 1px solid #ddd; padding: 3px 8px; }
th { background: #f3f3f3; text-align: left; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.verdict { padding: .7em 1em; border-radius: 4px; font-weight: bold; margin: 1em 0; }
.bad { background: #fde0dd; border: 1px solid #b2182b; color: #7f0000; }
.warn { background: #fff3e0; border: 1px solid #e08214; color: #7a4100; }
.good { background: #e5f5e0; border: 1px solid #31a354; color: #00441b; }
.stale-install { color: #b2182b; font-weight: bold; } .recovered { color: #b35806; }
.benign { color: #1a9850; } .uncertain { color: #7a4100; font-weight: bold; } .scroll { overflow-x: auto; }
.reason { display: inline-block; min-width: 18em; }
figure { margin: 1.2em 0; } figcaption { color: #444; margin-top: .3em; }
img { max-width: 100%; border: 1px solid #eee; }
.cols { display: flex; flex-wrap: wrap; gap: 2em; } details { margin: .5em 0; }
"""


SUMMARY_LABELS = {
    "events": "events parsed",
    "skipped_lines": "lines skipped by the reader",
    "windows": "complete fault windows",
    "windows_with_entry": "windows with a swap entry",
    "windows_with_page": "windows that obtained their page",
    "lookup_hits": "swap-cache lookup hits",
    "entries": "distinct swap entries",
    "ksm_copies": "KSM copies",
    "generations": "slot generations",
    "reuses": "reuses (slot allocated again after a free)",
    "history_gaps": "entries whose history has a gap",
    "residency.cache_adds": "swap-cache adds",
    "residency.cache_deletes": "swap-cache deletes",
    "residency.evictions": "evictions (cache delete, slot kept)",
    "residency.rereads": "re-reads (cache add in the same generation)",
    "residency.unresolved_deletes": "cache deletes of an unknown folio",
    "prepare.calls": "swapcache_prepare calls",
    "prepare.backoffs": "swapcache_prepare back-offs (-EEXIST)",
    "prepare.conflicts": "swapcache_prepare conflicts",
    "prepare.installs_after_failed_prepare": "installs after a failed prepare",
    "races": "races",
    "race_classes.stale-install": "races: stale-install",
    "race_classes.benign": "races: benign",
    "race_classes.recovered": "races: recovered",
    "uncertain_races": "uncertain races (losses or a history gap)",
    "lost_events": "lost events",
    "unknown_functions": "events of unknown functions",
}


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[bool] = ()) -> str:
    """An HTML table; cells are escaped unless given as ``Markup``."""
    out = ["<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>"]
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            cls = ' class="n"' if i < len(numeric) and numeric[i] else ""
            text = cell.html if isinstance(cell, Markup) else esc(cell)
            cells.append(f"<td{cls}>{text}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


class Markup:
    """Already-escaped HTML for a table cell."""

    def __init__(self, html_text: str):
        self.html = html_text


def image(path: Path, relative: str, alt: str, width: int, height: int) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (f'<a href="{esc(relative)}"><img src="data:image/png;base64,{data}" data-file="{esc(relative)}" '
            f'alt="{esc(alt)}" width="{width}" height="{height}"></a>')


def _num(value: Any) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def verdict(races: pd.DataFrame) -> str:
    classes = races["class"].astype(str).value_counts().to_dict() if len(races) else {}
    stale, benign, recovered = (int(classes.get(c, 0)) for c in ("stale-install", "benign", "recovered"))
    uncertain = int(races["uncertain"].sum()) if len(races) and "uncertain" in races else 0
    others = f"{benign:,} benign and {recovered:,} recovered race(s)"
    unsure = f" {uncertain:,} of the races are uncertain (events lost nearby, or a gap in the entry's history)." \
        if uncertain else ""
    if stale:
        return (f'<div class="verdict bad">{stale:,} stale-install race(s): a fault installed data that was no longer '
                f"its swap entry's: the slot was freed and allocated again inside its window (the ABA of "
                f"do_swap_page). {others}.{unsure}</div>")
    if benign or recovered:
        return (f'<div class="verdict warn">{others}: a swap slot was freed and allocated again inside a fault '
                f"window; the faulting thread installed the folio bound in the new generation (benign) or backed "
                f"out (recovered). No stale install.{unsure}</div>")
    return '<div class="verdict good">No swap slot was allocated again inside a fault window in this capture.</div>'


def metadata_rows(capture, source: Optional[str]) -> List[List[Any]]:
    meta = capture.meta
    started = None
    if meta.start_time_ns:
        started = _dt.datetime.fromtimestamp(meta.start_time_ns / 1e9, _dt.timezone.utc).strftime(
            "%Y-%m-%d %H:%M:%S UTC")
    rows = [
        ["capture", source or "-"],
        ["kernel", meta.kernel_release or "unknown"],
        ["backend", meta.backend or "unknown"],
        ["read as", capture.source_format],
        ["host", meta.host or "-"],
        ["started", started or "-"],
        ["duration", f"{meta.duration_s:.2f} s" if meta.duration_s is not None else "-"],
        ["command", " ".join(meta.command) if meta.command else "-"],
        ["recorded by", meta.tool_version or "-"],
        ["lines skipped by the reader", f"{capture.skipped_lines:,}"],
    ]
    return rows


def detector_rows(detector: Dict[str, Any]) -> List[List[Any]]:
    """The in-kernel detector's scalar counters (and how many races it reported), to hold against the
    offline analysis of the same run."""
    rows = [[k, _num(v)] for k, v in sorted(detector.items()) if isinstance(v, (int, float, str, bool))]
    for key, value in sorted(detector.items()):
        if isinstance(value, list):
            rows.append([f"{key} (listed)", f"{len(value):,}"])
        elif isinstance(value, dict):
            rows.extend([f"{key}.{k}", _num(v)] for k, v in sorted(value.items())
                        if isinstance(v, (int, float, str, bool)))
    return rows


def losses_rows(meta) -> List[List[Any]]:
    if not meta.lost_known:
        return [["(all)", "unknown: this capture's source does not report losses"]]
    rows = [[source, f"{count:,}"] for source, count in sorted(meta.lost.items())]
    rows.append(["total", f"{meta.lost_events:,}"])
    return rows


def render(report) -> str:
    """The page for a :class:`swaprace.analysis.report.Report`."""
    a = report.analysis
    meta = a.capture.meta
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
             f"<title>swaprace report: {esc(report.source_name)}</title><style>{_CSS}</style></head><body>"]
    parts.append(f"<h1>swaprace report: <span class=\"mono\">{esc(report.source_name)}</span></h1>")
    parts.append(f'<div class="sub">kernel {esc(meta.kernel_release or "unknown")} · backend '
                 f'{esc(meta.backend or "unknown")} · {len(a.capture.events):,} events · '
                 f"{esc(report.loss_text)}</div>")
    parts.append(verdict(a.races))
    if report.failures:
        items = "".join(f"<li>{esc(f)}</li>" for f in report.failures)
        parts.append(f'<div class="verdict warn">{len(report.failures)} picture(s) could not be drawn (a swaprace '
                     f"bug: please report it with the capture):<ul>{items}</ul></div>")
    parts.append('<nav>Sections: <a href="#summary">summary</a> · <a href="#races">races</a> · '
                 '<a href="#activity">activity</a> · <a href="#timelines">race timelines</a> · '
                 '<a href="#busiest">busiest entries</a> · <a href="#capture">capture</a></nav>')

    parts.append('<h2 id="summary">Summary</h2><div class="cols">')
    summary_rows = [[SUMMARY_LABELS.get(k, k), _num(v)] for k, v in report.summary_items()]
    parts.append(table(["measure", "value"], summary_rows, numeric=(False, True)))
    parts.append(table(["role", "kernel symbol", "calls", "returns"], report.role_rows(),
                       numeric=(False, False, True, True)))
    parts.append(table(["lost from", "events"], losses_rows(meta), numeric=(False, True)))
    parts.append("</div>")

    parts.append(f'<h2 id="races">Races ({len(a.races):,})</h2>')
    if len(report.race_rows):
        shown = report.race_rows[:MAX_RACE_ROWS]
        parts.append('<div class="scroll">')
        parts.append(table(
            ["#", "swap entry", "thread", "class", "uncertain", "obtain kind", "window start", "window",
             "slot freed (+)", "free tid", "reallocated (+)", "realloc tid", "installed (+)", "installed folio",
             "reason", "timeline"],
            [[r["n"], Markup(f'<span class="mono">{esc(r["entry_text"])}</span>'), f'{r["comm"]}/{r["tid"]}',
              Markup(f'<span class="{esc(r["class"])}">{esc(r["class"])}</span>'),
              Markup('<span class="uncertain">yes ?</span>') if r["uncertain"] else "no",
              r["obtain_kind"] or "-", r["start_text"], r["window_text"], r["release_text"], r["release_by_text"],
              r["realloc_text"], r["realloc_by_text"], r["install_text"],
              Markup(f'<span class="mono">{esc(r["installed_folio_text"])}</span>'),
              Markup(f'<span class="reason">{esc(r["reason"])}</span>'),
              Markup(f'<a href="#{esc(r["anchor"])}">picture</a>') if r.get("anchor") else "-"]
             for r in shown],
            numeric=(True, False, False, False, False, False, True, True, True, False, True, False, True)))
        parts.append("</div>")
        if len(report.race_rows) > MAX_RACE_ROWS:
            parts.append(f"<p>{len(report.race_rows) - MAX_RACE_ROWS:,} more races are in report.json.</p>")
    else:
        parts.append("<p>None flagged.</p>")

    parts.append('<h2 id="activity">Activity</h2>')
    for fig in report.figures_of("overview"):
        parts.append(_figure(report, fig))

    parts.append(f'<h2 id="timelines">Race timelines ({len(report.figures_of("race"))} drawn)</h2>')
    if report.races_not_drawn:
        parts.append(f"<p>{report.races_not_drawn:,} further races are listed above but not drawn "
                     f"(--max-timelines).</p>")
    for fig in report.figures_of("race"):
        parts.append(_figure(report, fig))
    if not report.figures_of("race"):
        parts.append("<p>No race to draw.</p>")

    parts.append('<h2 id="busiest">Busiest entries</h2><p>The entries with the most slot generations, cache '
                 "residencies and fault windows, over the whole capture: slot generations on top, the swap-cache "
                 "residency beneath, then each thread's fault windows.</p>")
    for fig in report.figures_of("busiest"):
        parts.append(_figure(report, fig))
    if not report.figures_of("busiest"):
        parts.append("<p>No entry has a slot generation, a cache residency or a fault window in this capture.</p>")

    parts.append('<h2 id="capture">Capture</h2><div class="cols">')
    parts.append(table(["", ""], metadata_rows(a.capture, report.source_name)))
    order = {role: i for i, role in enumerate(ROLES)}
    symbols = sorted((meta.symbols or {}).items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0]))
    parts.append(table(["role", "symbol probed"],
                       symbols or [["-", "not recorded in the capture (the per-role table shows what fired)"]]))
    if meta.detector:
        parts.append(table(["in-kernel detector (bcc)", "value"], detector_rows(meta.detector),
                           numeric=(False, True)))
    parts.append("</div>")
    full = json.dumps(json.loads(meta.to_json()), indent=2, sort_keys=True)
    parts.append(f"<details><summary>full capture metadata (JSON)</summary><pre class=\"mono\">{esc(full)}</pre>"
                 f"</details>")
    summary_json = json.dumps(a.summary, indent=2, sort_keys=True, default=str)
    parts.append(f"<details><summary>analysis summary (<code>swaprace analyze --json</code>)</summary>"
                 f"<pre class=\"mono\">{esc(summary_json)}</pre></details>")
    parts.append(f'<p class="sub">Made by swaprace {esc(__version__)}. Times are on the capture\'s event clock; '
                 f"entries read as raw swp_entry_t value (swap type, slot offset).</p></body></html>")
    return "\n".join(parts)


def _figure(report, fig) -> str:
    caption = f"<figcaption>{esc(fig.caption)} <a href=\"{esc(fig.file)}\">{esc(fig.file)}</a></figcaption>"
    return (f'<figure id="{esc(fig.anchor)}">'
            f"{image(report.directory / fig.file, fig.file, fig.title, fig.width, fig.height)}{caption}</figure>")


def relative_text(ns: Optional[int], origin: int) -> str:
    return "-" if ns is None else "+" + style.format_duration(ns - origin)

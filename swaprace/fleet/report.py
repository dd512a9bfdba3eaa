"""The fleet report: one offline HTML page over every derived capture of a fleet directory.

It answers what distro QA asks first: did any kernel, host or run install stale data, and how do reuse, race
and loss rates move between kernel versions. The numbers come from DuckDB (:mod:`swaprace.fleet.query`); the
pictures are PNG files beside the page (also inlined, so the page can be mailed alone).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.collections import PathCollection

from swaprace import __version__
from swaprace.analysis.report import style
from swaprace.analysis.report.html import _CSS, esc, image, table
from swaprace.fleet import query
from swaprace.fleet.run import load_manifest

RATES_PX = (1400, 660)
SPREAD_PX = (1400, 520)
CLASS_COLORS = {"recovered": "#e08214", "benign": "#74add1", "stale_install": "#b2182b"}
CLASS_LABELS = {"recovered": "recovered", "benign": "benign", "stale_install": "stale-install"}


def build_fleet_report(fleet_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Write ``fleet.html`` and its PNGs into ``out_dir`` (default ``FLEET_DIR/report``); returns an index."""
    out = Path(out_dir) if out_dir else Path(fleet_dir) / "report"
    out.mkdir(parents=True, exist_ok=True)
    rates = query.rates(fleet_dir)
    per_host = query.summary(fleet_dir)
    per_capture = query.query(fleet_dir, """
        SELECT run_id, capture, coalesce(kernel_release, 'unknown') AS kernel, coalesce(host, 'unknown') AS host, backend,
               events, windows, reuses, races_recovered, races_benign, races_stale_install, uncertain_races,
               lost_events
        FROM summary ORDER BY kernel, host, capture""")
    stale = query.query(fleet_dir, """
        SELECT coalesce(kernel_release, 'unknown') AS kernel, coalesce(host, 'unknown') AS host, capture, entry, tid, comm,
               window_start_ns, obtain_kind, uncertain, reason
        FROM races WHERE class = 'stale-install' ORDER BY kernel, host, capture, window_start_ns LIMIT 500""") \
        if (Path(fleet_dir) / "races").is_dir() else pd.DataFrame()
    figures = [
        ("rates.png", draw_rates(rates), "Rates per kernel version",
         ("Per kernel version, over all its captures: slot reuses per 1,000 fault windows; races per 1,000 windows "
         "by class (stale-install is the ABA bug: it must be zero on a fixed kernel); lost events per 1,000 "
         "events recorded. The number on each bar is the count behind the rate.")),
        ("spread.png", draw_spread(per_capture), "Reuse rate of each capture, by kernel version",
         ("One dot per capture (run): slot reuses per 1,000 fault windows. A red ring marks a capture with "
         "stale installs; an orange one, races of other classes. The spread shows whether a kernel's rate is "
         "one run's or all of them.")),
    ]
    index: dict[str, Any] = {"html": str(out / "fleet.html"), "figures": [], "kernels": query.to_records(rates),
             "captures": len(per_capture), "stale_installs": int(per_capture["races_stale_install"].sum())}
    parts = []
    for name, fig, title, caption in figures:
        path = style.save_png(fig, out / name)
        width, height = fig.get_size_inches() * fig.dpi
        index["figures"].append({"file": str(path), "title": title})
        parts.append(f"<figure>{image(path, name, title, int(width), int(height))}"
                     f"<figcaption><b>{esc(title)}.</b> {esc(caption)}</figcaption></figure>")
    manifest = load_manifest(fleet_dir)
    failures = [(c, r.get("error")) for c, r in sorted(manifest["captures"].items()) if r.get("status") == "failed"]
    page = _render(fleet_dir, rates, per_host, per_capture, stale, parts, failures)
    (out / "fleet.html").write_text(page, encoding="utf-8")
    (out / "fleet.json").write_text(json.dumps(index, indent=1, default=str), encoding="utf-8")
    return index


def draw_rates(rates: pd.DataFrame):
    fig = style.new_figure(RATES_PX)
    axes = fig.subplots(1, 3, width_ratios=[1, 1.6, 1])
    kernels = [str(k) for k in rates["kernel"]]
    x = np.arange(len(kernels))
    ax = axes[0]
    values = rates["reuses_per_1k_windows"].fillna(0).to_numpy()
    bars = ax.bar(x, values, color="#3182bd")
    _label_bars(ax, bars, rates["reuses"].to_numpy())
    _kernel_axis(ax, x, kernels)
    ax.set_title("slot reuses per 1,000 fault windows")
    ax = axes[1]
    width = 0.8 / 3
    for i, cls in enumerate(("recovered", "benign", "stale_install")):
        values = rates[f"{cls}_per_1k_windows"].fillna(0).to_numpy()
        bars = ax.bar(x + (i - 1) * width, values, width, color=CLASS_COLORS[cls], label=CLASS_LABELS[cls])
        _label_bars(ax, bars, rates[cls].to_numpy())
    _kernel_axis(ax, x, kernels)
    ax.set_title("races per 1,000 fault windows, by class")
    ax.legend(loc="upper left", frameon=False)
    ax = axes[2]
    known = rates["lost_per_1k_events"].to_numpy(dtype=float, na_value=np.nan)
    bars = ax.bar(x, np.nan_to_num(known), color="#969696")
    _label_bars(ax, bars, rates["lost_events"].to_numpy(dtype=float, na_value=np.nan))
    _kernel_axis(ax, x, kernels)
    ax.set_title("lost events per 1,000 recorded")
    for a in axes:
        a.set_ylim(bottom=0, top=max(a.get_ylim()[1] * 1.15, 1))
        a.grid(axis="y", alpha=0.3)
        a.spines[["top", "right"]].set_visible(False)
    fig.suptitle(f"swaprace fleet: {int(rates['captures'].sum()):,} captures, {len(kernels)} kernel versions",
                 fontsize=14)
    return fig


def draw_spread(per_capture: pd.DataFrame):
    fig = style.new_figure(SPREAD_PX)
    ax = fig.subplots()
    kernels = sorted(per_capture["kernel"].astype(str).unique(), key=query.kernel_sort_key)
    rng = np.random.default_rng(0)
    labels: list[str] = []
    for i, kernel in enumerate(kernels):
        rows = per_capture[per_capture["kernel"].astype(str) == kernel]
        windows = rows["windows"].to_numpy(dtype=float)
        rate = np.divide(rows["reuses"].to_numpy(dtype=float) * 1000, windows, out=np.zeros(len(rows)),
                         where=windows > 0)
        x = i + rng.uniform(-0.18, 0.18, len(rows))
        ax.scatter(x, rate, s=36, color="#3182bd", alpha=0.75, zorder=3, label="a capture")
        stale = rows["races_stale_install"].to_numpy() > 0
        other = ~stale & ((rows["races_recovered"] + rows["races_benign"]).to_numpy() > 0)
        ax.scatter(x[stale], rate[stale], s=150, facecolors="none", edgecolors="#b2182b", linewidths=2, zorder=4,
                   label="with stale installs")
        ax.scatter(x[other], rate[other], s=120, facecolors="none", edgecolors="#e08214", linewidths=1.5, zorder=4,
                   label="with races (none stale)")
        labels.append(f"{kernel}\n{len(rows)} run{'s' if len(rows) != 1 else ''}")
    ax.set_xticks(range(len(kernels)), labels, rotation=20 if len(kernels) > 5 else 0,
                  ha="right" if len(kernels) > 5 else "center")
    ax.set_xlim(-0.6, len(kernels) - 0.4)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("slot reuses per 1,000 fault windows")
    ax.grid(axis="y", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    handles, names = ax.get_legend_handles_labels()
    # only the marks that are drawn
    shown = {n: h for n, h in zip(names, handles)
             if isinstance(h, PathCollection) and len(np.asarray(h.get_offsets()))}
    ax.legend(shown.values(), shown.keys(), loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return fig


def _kernel_axis(ax, x: np.ndarray, kernels: list[str]) -> None:
    ax.set_xticks(x, kernels, rotation=35 if len(kernels) > 2 else 0, ha="right" if len(kernels) > 2 else "center",
                  rotation_mode="anchor")
    ax.set_xlim(-0.6, len(kernels) - 0.4)


def _label_bars(ax, bars, counts: np.ndarray) -> None:
    for bar, count in zip(bars, counts):
        text = "?" if count is None or (isinstance(count, float) and np.isnan(count)) else f"{int(count):,}"
        ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), xytext=(0, 3),
                    textcoords="offset points", ha="center", va="bottom", fontsize=9)


def _render(fleet_dir, rates, per_host, per_capture, stale, figures, failures) -> str:
    n_stale = int(per_capture["races_stale_install"].sum())
    n_races = int(per_capture[["races_recovered", "races_benign", "races_stale_install"]].to_numpy().sum())
    if n_stale:
        bad = per_capture[per_capture["races_stale_install"] > 0]
        verdict = (f'<div class="verdict bad">{n_stale:,} stale installs in {len(bad)} capture(s) on kernel(s) '
                   f'{esc(", ".join(sorted(bad["kernel"].astype(str).unique(), key=query.kernel_sort_key)))}: the '
                   f'swap-in ABA happened.</div>')
    elif n_races:
        verdict = f'<div class="verdict warn">{n_races:,} races, none installed stale data.</div>'
    else:
        verdict = '<div class="verdict good">No race in any capture.</div>'
    when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    out = [(f"<!doctype html><html><head><meta charset='utf-8'><title>swaprace fleet report</title>"
           f"<style>{_CSS}</style></head><body>"),
           "<h1>swaprace fleet report</h1>",
           (f"<div class='sub'>{len(per_capture):,} captures from {esc(fleet_dir)}; swaprace {esc(__version__)}, "
           f"{esc(when)}</div>"), verdict,
           "<h2>Per kernel and host</h2>", _frame_table(per_host),
           "<h2>Rates per kernel version</h2>", *figures,
           _frame_table(rates[["kernel", "captures", "hosts", "windows", "reuses_per_1k_windows",
                               "recovered_per_1k_windows", "benign_per_1k_windows", "stale_install_per_1k_windows",
                               "uncertain_per_1k_windows", "lost_per_1k_events"]])]
    if len(stale):
        out += ["<h2>Stale installs</h2>", _frame_table(stale)]
    if failures:
        out += ["<h2>Captures that could not be analysed</h2>",
                table(["capture", "error"], [[c, e] for c, e in failures])]
    out += ["<h2>Captures</h2>", _frame_table(per_capture.drop(columns=["run_id"])), "</body></html>"]
    return "\n".join(out)


def _frame_table(frame: pd.DataFrame) -> str:
    rows, numeric = [], []
    for col in frame.columns:
        numeric.append(pd.api.types.is_numeric_dtype(frame[col]) and not pd.api.types.is_bool_dtype(frame[col]))
    for rec in frame.itertuples(index=False):
        rows.append([query.cell_text(v, n, str(c) in query.HEX_COLUMNS) for v, n, c in zip(rec, numeric, frame.columns)])
    return table([str(c) for c in frame.columns], rows, numeric)

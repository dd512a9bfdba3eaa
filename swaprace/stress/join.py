"""Hold the detector's races against the oracle's corruptions, and measure the trace's fault windows.

The capture and the oracle share a clock: both tracer backends stamp events with CLOCK_MONOTONIC (bcc's
bpf_ktime_get_ns, ftrace's ``mono`` trace clock) and the helper stamps mismatches with it too. The event
model carries no user address, so a corruption is tied to a race by process, thread and time: the
faulting thread checks the page right after its first touch, so a stale install shows up as a mismatch on
the same thread within microseconds of the window's end (``SAME_THREAD_SLACK_NS`` allows for scheduling).
A corruption found later (another thread, a forked reader, the final sweep) is matched to the latest race
of the same process before it.
"""

from __future__ import annotations

from typing import Any, Dict, List

import numpy as np
import pandas as pd

from swaprace.stress.oracle import overlaps

SAME_THREAD_SLACK_NS = 50_000_000


def trace_window_stats(windows: pd.DataFrame, duration_s: float) -> Dict[str, Any]:
    """Fault windows in the capture: count, per second, and how many overlapped one on another CPU."""
    if len(windows) == 0:
        return {"windows": 0, "per_second": 0.0, "overlapping_windows": 0, "overlapping_pairs": 0,
                "same_entry_overlapping_pairs": 0}
    entry = windows["entry"].astype("Float64").fillna(-1).to_numpy(dtype=np.float64).astype(np.int64)
    stats = overlaps(windows["start_ns"].to_numpy(np.int64), windows["end_ns"].to_numpy(np.int64),
                     windows["cpu"].to_numpy(np.int64), windows["tid"].to_numpy(np.int64),
                     np.where(entry < 0, -np.arange(1, len(entry) + 1), entry))
    stats["same_entry_overlapping_pairs"] = stats.pop("same_page_overlapping_pairs")
    stats["windows"] = int(len(windows))
    stats["per_second"] = round(len(windows) / duration_s, 1) if duration_s else 0.0
    return stats


def join(races: pd.DataFrame, windows: pd.DataFrame, mismatches: List[Dict[str, Any]],
         lost_events: Any = 0) -> Dict[str, Any]:
    """Match oracle mismatches to detector races; returns the matches and a verdict line."""
    pid_of_tid = dict(zip(windows["tid"].astype(int), windows["pid"].astype(int))) if len(windows) else {}
    race_rows = []
    for r in races.to_dict("records"):
        race_rows.append({"tid": int(r["tid"]), "pid": pid_of_tid.get(int(r["tid"])),
                          "start": int(r["window_start_ns"]), "end": int(r["window_end_ns"]),
                          "entry": None if pd.isna(r["entry"]) else int(r["entry"]), "class": str(r["class"])})
    matches = []
    for m in mismatches:
        match = _match(m, race_rows)
        matches.append({"mismatch_ns": int(m["mono_ns"]), "pid": m["pid"], "tid": m["tid"],
                        "addr": m["addr"], "page_index": m["page_index"], "phase": m.get("phase_name"),
                        "race": match[0] if match else None, "matched_by": match[1] if match else None})
    matched = [x for x in matches if x["race"] is not None]
    stale = sum(1 for r in race_rows if r["class"] == "stale-install")
    return {"races": len(race_rows), "stale_install_races": stale, "corruptions": len(mismatches),
            "matched": len(matched), "matches": matches,
            "verdict": _verdict(len(race_rows), stale, len(mismatches), len(matched), lost_events)}


def _match(m: Dict[str, Any], races: List[Dict[str, Any]]):
    t = int(m["mono_ns"])
    same_thread = [r for r in races if r["tid"] == m["tid"] and r["start"] <= t <= r["end"] + SAME_THREAD_SLACK_NS]
    if same_thread:
        return max(same_thread, key=lambda r: r["end"]), "thread+time"
    same_process = [r for r in races if r["pid"] == m["pid"] and r["start"] <= t]
    if same_process:
        return max(same_process, key=lambda r: r["end"]), "process+time"
    return None


def _verdict(races: int, stale: int, corruptions: int, matched: int, lost: Any) -> str:
    lost_note = ""
    if lost is None:
        lost_note = " (capture losses unknown)"
    elif lost:
        lost_note = f" (the capture lost {lost} events)"
    if corruptions == 0 and races == 0:
        return f"verdict: clean (0 races, 0 corruptions){lost_note}"
    if corruptions == 0:
        kind = (f"{stale} stale-install flagged but no page held wrong data (false positives, or the stale "
                f"page happened to hold the right bytes)" if stale else
                "all recovered: the kernel's own checks caught them")
        return f"verdict: no corruption; {races} races flagged, {kind}{lost_note}"
    if matched:
        return (f"verdict: CORRUPTION matched to race ({matched} of {corruptions} corruptions follow a flagged "
                f"race; {races} races){lost_note}")
    return f"verdict: corruption with no flagged race (detector missed it: {corruptions} corruptions){lost_note}"

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

from typing import Any, Dict, List, Optional, Set

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
    stats: Dict[str, Any] = overlaps(windows["start_ns"].to_numpy(np.int64), windows["end_ns"].to_numpy(np.int64),
                     windows["cpu"].to_numpy(np.int64), windows["tid"].to_numpy(np.int64),
                     np.where(entry < 0, -np.arange(1, len(entry) + 1), entry))
    stats["same_entry_overlapping_pairs"] = stats.pop("same_page_overlapping_pairs")
    stats["windows"] = int(len(windows))
    stats["per_second"] = round(len(windows) / duration_s, 1) if duration_s else 0.0
    return stats


def join(races: pd.DataFrame, windows: pd.DataFrame, mismatches: List[Dict[str, Any]],
         lost_events: Any = 0, detector_races: Optional[List[Dict[str, Any]]] = None,
         workload_pids: Optional[Set[int]] = None, touches: Optional[pd.DataFrame] = None) -> Dict[str, Any]:
    """Match oracle mismatches to the races of the offline analysis and of the in-kernel detector.

    Returns ``table`` (one row per corruption, with its partner race on each side or why there is none),
    ``unpartnered`` (every stale-install with no corruption, and why), ``agreement`` (the counts) and the
    offline ``matches`` and ``verdict`` line.
    """
    pid_of_tid = dict(zip(windows["tid"].astype(int), windows["pid"].astype(int))) if len(windows) else {}
    offline = [_race_row(r, pid_of_tid) for r in races.to_dict("records")]
    detector = [_race_row(r, pid_of_tid) for r in (detector_races or [])]
    if touches is not None:
        for rows in (offline, detector):
            _place_on_pages(rows, touches)
    table, matches = [], []
    partnered: Dict[str, Set[int]] = {"offline": set(), "detector": set()}
    for m in mismatches:
        row = {"mismatch_ns": int(m["mono_ns"]), "pid": m["pid"], "tid": m["tid"], "addr": m["addr"],
               "page_index": m["page_index"], "phase": m.get("phase_name"),
               "got_gen": m.get("got_gen"), "expected_gen": m.get("expected_gen")}
        for side, rows in (("offline", offline), ("detector", detector)):
            found = _match(m, rows)
            row[side] = {k: v for k, v in found[0].items() if k != "index"} | {"matched_by": found[1]} \
                if found else None
            if found:
                partnered[side].add(found[0]["index"])
        row["why_unpartnered"] = _why_no_race(row, lost_events, detector_races is not None)
        table.append(row)
        matches.append({k: row[k] for k in ("mismatch_ns", "pid", "tid", "addr", "page_index", "phase")}
                       | {"race": row["offline"], "matched_by": (row["offline"] or {}).get("matched_by")})
    unpartnered = [{k: v for k, v in r.items() if k != "index"} | {"source": side,
                                                                   "why": _why_no_corruption(r, workload_pids)}
                   for side, rows in (("offline", offline), ("detector", detector))
                   for r in rows if r["class"] == "stale-install" and r["index"] not in partnered[side]]
    matched = [x for x in matches if x["race"] is not None]
    agreement: Dict[str, Any] = {"corruptions": len(mismatches)}
    for side, rows in (("offline", offline), ("detector", detector)):
        n_stale = sum(1 for r in rows if r["class"] == "stale-install")
        agreement[f"with_{side}_stale_install"] = sum(1 for r in table
                                                      if (r[side] or {}).get("class") == "stale-install")
        agreement[f"{side}_stale_installs"] = n_stale
        agreement[f"{side}_stale_installs_with_corruption"] = \
            n_stale - sum(1 for u in unpartnered if u["source"] == side)
    agreement["detector_ran"] = detector_races is not None
    stale = agreement["offline_stale_installs"]
    return {"races": len(offline), "stale_install_races": stale, "corruptions": len(mismatches),
            "matched": len(matched), "matches": matches, "table": table, "unpartnered": unpartnered,
            "agreement": agreement,
            "verdict": _verdict(len(offline), stale, len(mismatches), len(matched), lost_events)}


def _place_on_pages(rows: List[Dict[str, Any]], touches: pd.DataFrame) -> None:
    """The workload page each race's fault was on: the oracle's timed first touch (``touches``: tid,
    start_ns, end_ns, page_index) of the same thread that contains the fault window's start -- the fault
    happens inside the touch, on the same CLOCK_MONOTONIC."""
    by_tid = {int(tid): grp.sort_values("start_ns") for tid, grp in touches.groupby("tid")}
    for r in rows:
        grp = by_tid.get(r["tid"])
        if grp is None:
            continue
        starts = grp["start_ns"].to_numpy(np.int64)
        i = int(np.searchsorted(starts, r["start"], side="right")) - 1
        if i >= 0 and int(grp["end_ns"].iloc[i]) >= r["start"]:
            r["page_index"] = int(grp["page_index"].iloc[i])


def _race_row(r: Dict[str, Any], pid_of_tid: Dict[int, int]) -> Dict[str, Any]:
    tid, start = int(r["tid"]), int(r["window_start_ns"])
    pid, end, install = (_int_or_none(r.get(k)) for k in ("pid", "window_end_ns", "install_ns"))
    uncertain = r.get("uncertain", False)
    return {"tid": tid, "pid": pid if pid is not None else pid_of_tid.get(tid), "start": start,
            # the detector reports a race at its install, before the window closed (no end yet)
            "end": end if end is not None else install if install is not None else start,
            "entry": _int_or_none(r["entry"]), "class": str(r["class"]),
            "uncertain": bool(uncertain) if not pd.isna(uncertain) else False,
            "install": install, "page_index": None, "index": id(r)}


def _int_or_none(value: Any) -> Optional[int]:
    return None if value is None or pd.isna(value) else int(value)


def _why_no_race(row: Dict[str, Any], lost_events: Any, detector_ran: bool) -> Optional[str]:
    missing = [side for side in ("offline", "detector") if row[side] is None and (side == "offline" or detector_ran)]
    stale = [side for side in ("offline", "detector") if row[side] and row[side]["class"] != "stale-install"]
    if not missing and not stale:
        return None
    why = []
    if missing:
        why.append(f"no race flagged by {' and '.join(missing)} on its page, thread or process")
    if stale:
        why.append(f"{' and '.join(stale)} classed its race otherwise")
    if lost_events:
        why.append(f"the capture lost {lost_events} events: the race may be among them")
    elif lost_events is None:
        why.append("the capture's losses are unknown")
    else:
        why.append("nothing was lost: a detector defect")
    return "; ".join(why)


def _why_no_corruption(race: Dict[str, Any], workload_pids: Optional[Set[int]]) -> str:
    if workload_pids is not None and race["pid"] not in workload_pids:
        return "not a workload process: the oracle checks only its own pages"
    if race["uncertain"]:
        return "uncertain: near a capture loss or a history gap of its entry"
    # The oracle checks the page right after the fault: no mismatch means the installed copy held the data
    # last written -- nothing wrote the page between the read and the install (the writer's next write had
    # not happened yet when the page went out again under the same slot).
    return "no oracle mismatch followed: the stale copy held the page's latest data (no write in between)"


def _match(m: Dict[str, Any], races: List[Dict[str, Any]]):
    """The race a corruption follows, a stale-install first: the latest on the same page installed before it
    (when the races are placed on pages); else on its own thread (the faulting thread checks the page right
    after its fault); else the latest of its process before it (found later by another thread or the sweep)."""
    t = int(m["mono_ns"])
    # The page is exact (the race's fault placed on the oracle's touch of that page): the latest race on it
    # before the mismatch. Any thread can find a lost write: whichever takes the page's lock next.
    on_page = [r for r in races if r["pid"] == m["pid"] and r["page_index"] == m["page_index"]
               and (r["install"] if r["install"] is not None else r["start"]) <= t]
    if on_page:
        stale = [r for r in on_page if r["class"] == "stale-install"]
        return max(stale or on_page, key=lambda r: r["end"]), "page+time"
    for how, near in (("thread+time", lambda r: r["tid"] == m["tid"] and r["start"] <= t <= r["end"]
                       + SAME_THREAD_SLACK_NS),
                      ("process+time", lambda r: r["pid"] == m["pid"] and r["start"] <= t)):
        found = [r for r in races if near(r)]
        if found:
            return max(found, key=lambda r: (r["class"] == "stale-install", r["end"])), how
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

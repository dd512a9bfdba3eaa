"""Export an analysis as a timeline for Perfetto UI (ui.perfetto.dev), chrome://tracing or Catapult.

The format is Chrome's trace-event JSON (the "JSON Array/Object Format"), which Perfetto's UI and
trace_processor import natively and which needs no dependency to write. Perfetto's protobuf TrackEvent format
would add a package and a schema for nothing the JSON cannot show here. Layout:

* **Threads** (pid/tid tracks): each fault window is a complete slice named after its outcome, with args
  entry, retval, obtain kind and race class. A race is an instant on the faulting thread at its install, or at
  the window end when it recovered.
* **Swap entries** (one async track per entry, in the "swap slots" process): slot generations as async slices
  ``generation N``, and cache residency as nested slices ``cached <folio>``.
* **Flows**: arrows from the thread that freed the slot to the one that allocated it again, and on to the
  faulting thread's install.

Timestamps are microseconds on the capture's event clock (CLOCK_MONOTONIC for both live backends).
"""

from __future__ import annotations

import json
from typing import Any, Dict, Iterator, List, Optional

import pandas as pd

from swaprace.analysis.model import Analysis

#: The pseudo-process that holds one track per swap entry.
SLOTS_PID = 0
SLOTS_NAME = "swap slots"


def _us(ns: Any) -> float:
    return float(ns) / 1e3


def _hex(value: Any) -> Optional[str]:
    return None if value is None or pd.isna(value) else hex(int(value))


def _windows(a: Analysis) -> Iterator[Dict[str, Any]]:
    for w in a.windows.itertuples(index=False):
        yield {"ph": "X", "name": str(w.outcome), "cat": "fault", "pid": int(w.pid), "tid": int(w.tid),
               "ts": _us(w.start_ns), "dur": _us(w.duration_ns),
               "args": {"entry": _hex(w.entry), "retval": _hex(w.retval), "cpu": int(w.cpu),
                        "obtain": None if pd.isna(w.obtain_kind) else str(w.obtain_kind),
                        "race": None if pd.isna(w.race_class) else str(w.race_class)}}


def _async(name: str, cat: str, key: str, start: Any, end: Any, t0: float, t1: float,
           args: Dict[str, Any]) -> List[Dict[str, Any]]:
    """A begin/end pair on the entry's async track; an open end is clipped to the capture's edges."""
    begin = t0 if pd.isna(start) else _us(start)
    stop = t1 if pd.isna(end) else _us(end)
    base = {"name": name, "cat": cat, "id2": {"local": key}, "pid": SLOTS_PID, "tid": SLOTS_PID}
    return [base | {"ph": "b", "ts": begin, "args": args}, base | {"ph": "e", "ts": stop}]


def _entries(a: Analysis, t0: float, t1: float) -> Iterator[Dict[str, Any]]:
    for g in a.generations.itertuples(index=False):
        key = hex(int(g.entry))
        yield from _async(f"generation {g.generation}", "slot", key, g.alloc_ns, g.free_ns, t0, t1, {
            "entry": key, "alloc": None if pd.isna(g.alloc_kind) else str(g.alloc_kind),
            "alloc_tid": None if pd.isna(g.alloc_tid) else int(g.alloc_tid),
            "free": None if pd.isna(g.free_kind) else str(g.free_kind),
            "free_tid": None if pd.isna(g.free_tid) else int(g.free_tid),
            "began_before_capture": bool(pd.isna(g.alloc_ns))})
    for r in a.residency.itertuples(index=False):
        key = hex(int(r.entry))
        yield from _async(f"cached {_hex(r.folio)}", "residency", key, r.bind_ns, r.unbind_ns, t0, t1, {
            "entry": key, "folio": _hex(r.folio), "eviction": bool(r.eviction), "reread": bool(r.reread)})


def _pid_of(a: Analysis) -> Dict[int, int]:
    ev = a.capture.events
    pairs = ev[["tid", "pid"]].drop_duplicates("tid")
    return dict(zip(pairs["tid"].astype(int), pairs["pid"].astype(int)))


def _races(a: Analysis) -> Iterator[Dict[str, Any]]:
    pid_of = _pid_of(a)
    for i, r in enumerate(a.races.to_dict("records")):
        at = r["window_end_ns"] if pd.isna(r["install_ns"]) else r["install_ns"]
        args = {"entry": _hex(r["entry"]), "class": str(r["class"]), "uncertain": bool(r["uncertain"]),
                "reason": r["reason"], "free_tid": int(r["release_tid"]), "realloc_tid": int(r["realloc_tid"]),
                "installed_folio": _hex(r["installed_folio"])}
        yield {"ph": "i", "s": "t", "name": f"race: {r['class']}", "cat": "race", "pid": int(r["pid"]),
               "tid": int(r["tid"]), "ts": _us(at), "args": args}
        # A short slice on the freeing and on the reallocating thread, so the flow arrows have ends to bind to.
        entry = args["entry"]
        for what, tid, ns in (("slot free", r["release_tid"], r["release_ns"]),
                              ("slot realloc", r["realloc_tid"], r["realloc_ns"])):
            yield {"ph": "X", "name": f"{what} {entry}", "cat": "race", "pid": pid_of.get(int(tid), int(tid)),
                   "tid": int(tid), "ts": _us(ns), "dur": 1.0, "args": {"entry": entry}}
        flow = {"name": "slot reused", "cat": "race", "id": i + 1}
        yield flow | {"ph": "s", "pid": pid_of.get(int(r["release_tid"]), int(r["release_tid"])),
                      "tid": int(r["release_tid"]), "ts": _us(r["release_ns"])}
        yield flow | {"ph": "t", "pid": pid_of.get(int(r["realloc_tid"]), int(r["realloc_tid"])),
                      "tid": int(r["realloc_tid"]), "ts": _us(r["realloc_ns"])}
        yield flow | {"ph": "f", "bp": "e", "pid": int(r["pid"]), "tid": int(r["tid"]), "ts": _us(at)}


def _names(a: Analysis) -> Iterator[Dict[str, Any]]:
    yield {"ph": "M", "name": "process_name", "pid": SLOTS_PID, "args": {"name": SLOTS_NAME}}
    seen = set()
    for w in a.windows[["pid", "tid", "comm"]].drop_duplicates().itertuples(index=False):
        if (w.pid, w.tid) not in seen:
            seen.add((w.pid, w.tid))
            yield {"ph": "M", "name": "thread_name", "pid": int(w.pid), "tid": int(w.tid), "args": {"name": str(w.comm)}}


def trace_events(a: Analysis) -> Dict[str, Any]:
    """The analysis as a Chrome trace-event JSON object (``traceEvents`` plus swaprace's own metadata)."""
    span = a.summary.get("time_range_ns") or [0, 0]
    t0, t1 = _us(span[0]), _us(span[1])
    events: List[Dict[str, Any]] = [*_names(a), *_windows(a), *_entries(a, t0, t1), *_races(a)]
    meta = a.capture.meta
    return {"traceEvents": events, "displayTimeUnit": "ns",
            "otherData": {"tool": "swaprace", "kernel": meta.kernel_release, "backend": meta.backend,
                          "lost_events": meta.lost_events, "race_classes": a.summary["race_classes"],
                          "reuses": a.summary["reuses"]}}


def write_trace_json(a: Analysis, out) -> None:
    """Write :func:`trace_events` to the open text file ``out``."""
    json.dump(trace_events(a), out, separators=(",", ":"))

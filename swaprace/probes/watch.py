"""``swaprace watch``: the in-kernel detector, live -- one summary line per interval and one line per race.

Runs the bcc program in detection-only mode (no event stream: nothing per event crosses to user space), reads
the detector's per-CPU counters once per interval, and prints each race record the moment the race channel
delivers it. The counters are cumulative in the kernel; each line shows the interval's difference.
"""

from __future__ import annotations

import json
import signal
import time
from dataclasses import dataclass
from typing import Callable, Dict, Optional

from swaprace import jsonout
from swaprace.errors import SwapraceError
from swaprace.events import SWP_OFFSET_MASK, SWP_TYPE_SHIFT
from swaprace.osutil import signals_raise
from swaprace.probes.backend import ProbePlan
from swaprace.probes.bcc_backend import BccBackend, wait_interval

#: Columns of an interval line: (heading, counter).
COLUMNS = (
    ("FAULTS", "faults"),
    ("WINDOWS", "windows"),
    ("LOOKUPS", "lookups"),
    ("RELEASES", "releases"),
    ("REUSES", "reuses"),
    ("RACES", "races"),
    ("LOST", "lost"),
)


def interval_counts(counters: dict, losses: Dict[str, int]) -> Dict[str, int]:
    """The cumulative figures a watch line is made of, from the backend's counters and losses."""
    hits = counters["hits"]
    return {
        "faults": hits.get("fault", {}).get("call", 0),
        "windows": counters["windows"],
        "lookups": hits.get("lookup", {}).get("call", 0),
        "releases": counters["releases"],
        "reuses": counters["reuses"],
        "races": counters["races_recovered"] + counters.get("races_benign", 0) + counters["races_stale_install"],
        "stale": counters["races_stale_install"],
        "lost": int(sum(losses.values())),
    }


def difference(now: Dict[str, int], before: Dict[str, int]) -> Dict[str, int]:
    return {key: now[key] - before.get(key, 0) for key in now}


def format_header(timestamp: bool = True) -> str:
    return ("TIME     " if timestamp else "") + " ".join(f"{h:>9}" for h, _ in COLUMNS)


def format_interval(clock: Optional[str], delta: Dict[str, int]) -> str:
    """An interval line; ``clock`` None: without its TIME column (``watch -t``)."""
    return (f"{clock:<8} " if clock is not None else "") + " ".join(f"{delta[key]:>9,}" for _, key in COLUMNS)


def format_race(race: dict) -> str:
    entry = race["entry"]
    kind = race["class"].upper()
    where = f"type {entry >> SWP_TYPE_SHIFT} offset {entry & SWP_OFFSET_MASK:#x}"
    start = race["window_start_ns"]
    rel = (race["release_ns"] - start) / 1e3
    realloc = (race["realloc_ns"] - start) / 1e3
    end = race.get("window_end_ns")
    closed = f", window {(end - start) / 1e3:.1f} us" if end else ""
    return (f"RACE {kind}: entry {entry:#x} ({where}) tid {race['tid']} pid {race['pid']}: slot freed "
            f"+{rel:.1f} us, allocated again +{realloc:.1f} us after the fault began{closed}")


@dataclass
class WatchOptions:
    interval: float = 1.0
    count: Optional[int] = None
    as_json: bool = False
    #: None: interval lines carry the time, RACE lines not (the default); True: every line (``-T``); False:
    #: none (``-t``).
    timestamp: Optional[bool] = None

    @property
    def interval_time(self) -> bool:
        return self.timestamp is not False

    @property
    def race_time(self) -> bool:
        return self.timestamp is True


def watch(plan: ProbePlan, options: WatchOptions, write: Callable[[str], None],
          backend: Optional[BccBackend] = None) -> dict:
    """Run the live detector until ``count`` intervals passed (or Ctrl-C); returns the final totals."""
    plan.stream_events = False
    plan.detect = True
    backend = backend or BccBackend()
    why = backend.check()
    if why is not None:
        raise SwapraceError(f"watch needs the bcc backend: {why}")

    def on_race(race: dict) -> None:
        clock = time.strftime("%H:%M:%S") if options.race_time else None
        if options.as_json:
            write(jsonout.dumps({"type": "race", **race, **({"time": clock} if clock else {})}, sort_keys=True))
        else:
            write(f"{clock:<8} {format_race(race)}" if clock else format_race(race))

    backend.on_race = on_race
    # SIGTERM and SIGHUP (the terminal went away) detach like Ctrl-C does
    with signals_raise(signals=(signal.SIGTERM, signal.SIGHUP)):
        totals = _watch_loop(backend, plan, options, write)
    if not totals:
        totals = interval_counts(backend.counters(), backend.losses())
    return totals


def _watch_loop(backend, plan: ProbePlan, options: WatchOptions, write: Callable[[str], None]) -> dict[str, int]:
    totals: dict[str, int] = {}
    try:
        backend.start(plan)
        if not options.as_json:
            write(format_header(options.interval_time))
        before = interval_counts(backend.counters(), backend.losses())
        done = 0
        while options.count is None or done < options.count:
            wait_interval(backend, options.interval)
            backend.drain_races()  # already printed by on_race: memory stays flat over a long watch
            now = interval_counts(backend.counters(), backend.losses())
            delta = difference(now, before)
            before = now
            done += 1
            clock = time.strftime("%H:%M:%S") if options.interval_time else None
            if options.as_json:
                write(json.dumps({"type": "interval", **({"time": clock} if clock else {}), **delta},
                                 sort_keys=True))
            else:
                write(format_interval(clock, delta))
        totals = before
    except KeyboardInterrupt:
        pass
    finally:
        backend.stop()
    return totals

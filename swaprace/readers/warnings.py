"""Say it when an answer is empty, or thin, for a reason: warnings about a capture and about filters.

Each is one sentence; the CLI prints them on stderr (``swaprace: warning: ...``) and puts them in ``--json``
as a ``warnings`` list. They never change an answer, they explain it.
"""

from __future__ import annotations

import numpy as np

from swaprace.events import Capture

#: warn when more than this share of the non-comment lines did not become events
SKIPPED_SHARE = 0.5
SKIPPED_MIN = 20


def capture_warnings(capture: Capture) -> list[str]:
    """What in the capture itself makes its analysis thin or empty."""
    out: list[str] = []
    events = capture.events
    phases = events["phase"].astype(str).to_numpy() if len(events) else np.array([], dtype=object)
    calls, returns = int((phases == "call").sum()), int((phases == "return").sum())
    if calls and not returns:
        out.append(f"the capture has {calls:,} call events and no return events (return probes missing or "
                   f"lost?): no fault window can close, so there are no windows and no races")
    if len(events):
        dup = int(events.duplicated(keep="first").sum())
        if dup:
            out.append(f"{dup:,} events appear twice (same time, thread, function and values): a capture "
                       f"concatenated with itself, or lines pasted twice? Counts and reuses are inflated")
    comments = int(capture.meta.extra.get("comment_lines", 0) or 0) if isinstance(capture.meta.extra, dict) else 0
    skipped = max(int(capture.skipped_lines) - comments, 0)
    total = skipped + len(events)
    if skipped >= SKIPPED_MIN and total and skipped / total > SKIPPED_SHARE:
        out.append(f"{skipped:,} of {total:,} lines ({skipped / total:.0%}) were not swap-path events and were "
                   f"skipped: is this the right file (or --format)?")
    return out


def filter_warnings(capture: Capture, since_ns: int | None, until_ns: int | None, entry: int | None,
                    tid: int | None) -> list[str]:
    """Filters that select nothing, and why."""
    out: list[str] = []
    events = capture.events
    if since_ns is not None and until_ns is not None and since_ns > until_ns:
        out.append(f"--since ({since_ns / 1e9:.6f}) is after --until ({until_ns / 1e9:.6f}): nothing can match")
        return out
    if not len(events):
        return out
    ts = events["ts_ns"].to_numpy()
    in_range = np.ones(len(events), bool)
    if since_ns is not None:
        in_range &= ts >= since_ns
    if until_ns is not None:
        in_range &= ts <= until_ns
    if (since_ns is not None or until_ns is not None) and not in_range.any():
        out.append(f"no event between --since and --until: the capture spans {ts.min() / 1e9:.6f} .. "
                   f"{ts.max() / 1e9:.6f} s")
    if entry is not None:
        entries = events["entry"].to_numpy(dtype="uint64", na_value=0)
        valid = ~events["entry"].isna().to_numpy()
        if not (valid & (entries == np.uint64(entry))).any():
            out.append(f"no event carries swap entry {entry:#x}: --entry matches nothing")
    if tid is not None and not (events["tid"].to_numpy() == tid).any():
        out.append(f"no event of thread {tid}: --tid matches nothing")
    return out

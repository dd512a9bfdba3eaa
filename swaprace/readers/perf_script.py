"""Reader for ``perf script`` text of kprobe events (``perf probe`` / ``perf record -e probe:...``).

perf prints addresses, not symbols, so the function comes from the event name: ``probe:<func>`` for a call,
``probe:<func>__return`` for a return (any group name is accepted; perf's duplicate suffix ``_1`` and compiler
clone suffixes are stripped). A line looks like::

    stress  1234/1235 [001]  5170.262360: probe:swap_cache_get_folio: (ffffffff812c3a40) entry=0x4000000000012a
    stress  1235 [001]  5170.262371: probe:do_swap_page__return: (ffffffff812ab0c0 <- ffffffff812b1234) arg1=0x4

``pid/tid`` when perf recorded both (``-F pid,tid``, or ``perf script`` on a multi-threaded record), else the
single number is the thread id. Optional fields perf may add before the event (``period``, the event count)
are skipped. Perf output is far smaller than ftrace dumps in practice, so this reader is a per-line regex.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

import pandas as pd

from swaprace.errors import SwapraceError
from swaprace.events import KEY_COLUMN, empty_events, normalize
from swaprace.kernel.layout import entry_from_cluster, nr_from_folio, subpage_entry
from swaprace.kernel.symbols import role_of_symbol
from swaprace.readers.ftrace_text import ARG_NAMES
from swaprace.readers.validate import check_events

_NAMES = set(ARG_NAMES)

_LINE_RE = re.compile(
    r"^\s*(?P<comm>.*?)\s+(?:(?P<pid>-?\d+)/)?(?P<tid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?:\S+\s+)*?"
    r"(?P<sec>\d+)\.(?P<frac>\d+):\s+(?:\d+\s+)?(?P<event>[\w.\-]+:[\w.\-]+):\s+"
    r"\((?P<loc>[^)]*)\)\s*(?P<args>.*)$"
)
_ARG_RE = re.compile(r"(?P<name>[\w.]+)=(?P<value>\S+)")
#: A loss marker: ``LOST 12 EVENTS`` (optionally after ``CPU:N`` or ``[NNN]``), as trace text and perf print them.
_LOST_RE = re.compile(r"(?:CPU:(?P<cpu>\d+)\s*)?\[?LOST (?P<n>\d+) EVENTS", re.IGNORECASE)
_DUP_SUFFIX = re.compile(r"_\d+$")


def _parse_value(text: str, n: int = 0) -> Optional[int]:
    """A 64-bit register value as perf prints it (hex, or signed decimal: two's complement); a number that
    does not fit 64 bits is an error, not a wrap."""
    try:
        value = int(text, 0) if text.lower().startswith(("0x", "-0x")) else int(text, 10)
    except ValueError:
        return None
    if not -(2**63) <= value <= 2**64 - 1:
        raise SwapraceError(f"line {n}: value {text[:40]} does not fit in 64 bits")
    return value & (2**64 - 1)


def event_function(event: str, symbols: Optional[Mapping[str, str]] = None) -> Tuple[Optional[str], bool]:
    """(kernel function, is_return) named by a perf event like ``probe:do_swap_page__return``."""
    name = event.split(":", 1)[-1]
    is_return = name.endswith("__return")
    if is_return:
        name = name[: -len("__return")]
    for candidate in (name, _DUP_SUFFIX.sub("", name)):
        if role_of_symbol(candidate, symbols):
            return candidate, is_return
    return None, is_return


@dataclass
class PerfParse:
    events: pd.DataFrame
    skipped: int = 0
    unknown_functions: Dict[str, int] = field(default_factory=dict)
    lost_marks: List[tuple] = field(default_factory=list)  # (cpu, count, anchor ts, after) as in ftrace_text


def _derived(args: Dict[str, int], call_entry: Optional[int], folio: Optional[int]):
    """(entry, nr) from swaprace's named fetch arguments (the same rules as the ftrace text reader)."""
    entry, nr = call_entry, args.get("nr")
    if nr is None and "fhead" in args:
        nr = int(nr_from_folio(args["fhead"], args.get("forder", 0)))
    page, psz = args.get("page"), args.get("psz")
    if page and psz and entry is not None and folio is not None:
        entry, nr = int(subpage_entry(entry, folio, page, psz)), 1
    if all(k in args for k in ("ci", "cinfo", "ci_size")) and args["ci_size"]:
        entry = entry_from_cluster(args.get("si_type", 0) & 0xFF, args["ci"], args["cinfo"], args.get("ci_off", 0),
                                   args["ci_size"], args.get("ci_slots", 512))
    return entry, nr


def parse_perf(lines: Iterable[str], symbols: Optional[Mapping[str, str]] = None) -> PerfParse:
    """Parse perf script lines: events, skipped lines, events of unknown functions, loss markers."""
    rows: List[tuple] = []
    out = PerfParse(events=empty_events())
    pending_lost: List[tuple] = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        lost = _LOST_RE.search(line)
        if lost:
            pending_lost.append((int(lost.group("cpu") or -1), int(lost.group("n"))))
            continue
        m = _LINE_RE.match(line)
        if not m:
            out.skipped += 1
            continue
        func, is_return = event_function(m.group("event"), symbols)
        is_return = is_return or "<-" in m.group("loc")
        role = role_of_symbol(func, symbols) if func else None
        frac = m.group("frac")
        ts = int(m.group("sec")) * 10**9 + int(frac.ljust(9, "0")[:9])
        cpu = int(m.group("cpu"))
        for lost_cpu, n in pending_lost:
            out.lost_marks.append((cpu if lost_cpu < 0 else lost_cpu, n, ts, True))
        pending_lost = []
        if role is None:
            name = m.group("event").split(":", 1)[-1]
            out.unknown_functions[name] = out.unknown_functions.get(name, 0) + 1
            continue
        pairs = _ARG_RE.findall(m.group("args"))
        values = [(name, _parse_value(value, n)) for name, value in pairs]
        first = values[0][1] if values else None
        args = {name: v for name, v in values[1:] + values[:1] if v is not None}
        entry = folio = retval = nr = None
        if is_return:
            retval = first
        else:
            key = KEY_COLUMN.get(role)
            known_first = bool(values) and values[0][0] in _NAMES
            entry = args.get("entry", first if key == "entry" and not known_first else None)
            folio = args.get("folio", first if key == "folio" and not known_first else None)
            entry, nr = _derived(args, entry, folio)
        tid = int(m.group("tid"))
        pid = int(m.group("pid")) if m.group("pid") and int(m.group("pid")) >= 0 else tid
        rows.append((ts, cpu, pid, tid, m.group("comm").strip(), func, role,
                     "return" if is_return else "call", entry, folio, retval, nr))
    if pending_lost and rows:
        out.lost_marks += [(c if c >= 0 else rows[-1][1], n, rows[-1][0], False) for c, n in pending_lost]
    if not rows:
        return out
    names = ["ts_ns", "cpu", "pid", "tid", "comm", "func", "role", "phase", "entry", "folio", "retval", "nr"]
    columns = dict(zip(names, zip(*rows)))
    # dtype=object: a column mixing None and 64-bit values would otherwise pass through float64 and lose bits
    frame = pd.DataFrame({name: pd.Series(list(values), dtype=object) for name, values in columns.items()})
    check_events(frame, "perf script")
    out.events = normalize(frame)
    return out


def parse_perf_lines(lines: Iterable[str], symbols: Optional[Mapping[str, str]] = None
                     ) -> Tuple[pd.DataFrame, int]:
    """Parse perf script lines into (normalized events, skipped non-blank line count)."""
    parsed = parse_perf(lines, symbols)
    return parsed.events, parsed.skipped


def looks_like_perf(line: str) -> bool:
    """True when ``line`` parses as a perf script kprobe line (used by format detection)."""
    m = _LINE_RE.match(line)
    return m is not None and ":" in m.group("event") and not re.search(r"\+0x[0-9a-f]+/0x", m.group("loc"))

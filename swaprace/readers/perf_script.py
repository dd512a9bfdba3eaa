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
from typing import Iterable, List, Mapping, Optional, Tuple

import pandas as pd

from swaprace.kernel.symbols import role_of_symbol
from swaprace.errors import SwapraceError
from swaprace.events import KEY_COLUMN, empty_events, normalize
from swaprace.readers.validate import check_events

_LINE_RE = re.compile(
    r"^\s*(?P<comm>.*?)\s+(?:(?P<pid>-?\d+)/)?(?P<tid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?:\S+\s+)*?"
    r"(?P<sec>\d+)\.(?P<frac>\d+):\s+(?:\d+\s+)?(?P<event>[\w.\-]+:[\w.\-]+):\s+"
    r"\((?P<loc>[^)]*)\)\s*(?P<args>.*)$"
)
_ARG_RE = re.compile(r"(?P<name>[\w.]+)=(?P<value>\S+)")
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


def parse_perf_lines(lines: Iterable[str], symbols: Optional[Mapping[str, str]] = None
                     ) -> Tuple[pd.DataFrame, int]:
    """Parse perf script lines into (normalized events, skipped non-blank line count)."""
    rows: List[tuple] = []
    skipped = 0
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        m = _LINE_RE.match(line)
        if not m:
            skipped += 1
            continue
        func, is_return = event_function(m.group("event"), symbols)
        is_return = is_return or "<-" in m.group("loc")
        role = role_of_symbol(func, symbols) if func else None
        if role is None:
            skipped += 1
            continue
        first = _ARG_RE.search(m.group("args"))
        value = _parse_value(first.group("value"), n) if first else None
        entry = folio = retval = None
        if is_return:
            retval = value
        elif KEY_COLUMN.get(role) == "entry":
            entry = value
        elif KEY_COLUMN.get(role) == "folio":
            folio = value
            named = re.search(r"\bentry=(\S+)", m.group("args")[first.end():]) if first else None
            entry = _parse_value(named.group(1), n) if named else None
        frac = m.group("frac")
        ts = int(m.group("sec")) * 10**9 + int(frac.ljust(9, "0")[:9])
        tid = int(m.group("tid"))
        pid = int(m.group("pid")) if m.group("pid") and int(m.group("pid")) >= 0 else tid
        rows.append((ts, int(m.group("cpu")), pid, tid, m.group("comm").strip(), func, role,
                     "return" if is_return else "call", entry, folio, retval))
    if not rows:
        return empty_events(), skipped
    names = ["ts_ns", "cpu", "pid", "tid", "comm", "func", "role", "phase", "entry", "folio", "retval"]
    columns = dict(zip(names, zip(*rows)))
    frame = pd.DataFrame({name: pd.Series(list(values), dtype=object) for name, values in columns.items()})
    check_events(frame, "perf script")
    return normalize(frame), skipped


def looks_like_perf(line: str) -> bool:
    """True when ``line`` parses as a perf script kprobe line (used by format detection)."""
    m = _LINE_RE.match(line)
    return bool(m) and ":" in m.group("event") and not re.search(r"\+0x[0-9a-f]+/0x", m.group("loc"))

"""A capture as ftrace ``trace`` text and as ``perf script`` text, in the line shapes swaprace's readers parse
(and the real fixtures in tests/fixtures/ show).

ftrace (kprobe_events, ``record-tgid`` on, irq-info flags)::

    <comm>-<tid> (<tgid>) [<cpu>] ..... <sec>.<usec>: sr_<role>: (<func>+0x0/0x100) <key>=0x.. [entry=0x..] [nr=N]
    <comm>-<tid> (<tgid>) [<cpu>] ..... <sec>.<usec>: sr_<role>_ret: (<caller>+0x2a/0x400 <- <func>) ret=0x..

The first line is swaprace's ``# swaprace: {...}`` metadata comment (symbols probed, losses known). perf::

    <comm> <pid>/<tid> [<cpu>] <sec>.<usec>: probe:<func>: (<addr>) <key>=0x.. [entry=0x..] [nr=N]
    <comm> <pid>/<tid> [<cpu>] <sec>.<usec>: probe:<func>__return: (<addr> <- <caller>) arg1=0x..

A call's first fetch argument is its role's key (``events.KEY_COLUMN``); folio-keyed calls carry ``entry=`` second
(``+40(folio)`` on a real probe); range events carry ``nr=`` (a real probe fetches it where the kernel has it).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

import pandas as pd

from swaprace.events import KEY_COLUMN, Capture
from swaprace.readers.ftrace_text import meta_line

_KEYNAME = {"entry": "entry", "folio": "folio", None: "vmf"}


def _rows(capture: Capture) -> Iterable[dict]:
    df = capture.events
    for rec in df.to_dict("records"):
        yield {k: (None if pd.isna(v) else v) for k, v in rec.items()}


def _args(rec: dict) -> str:
    """The fetch arguments of a call event: the key, then ``entry=`` for folio keys, then ``nr=``."""
    key = KEY_COLUMN.get(rec["role"])
    parts: list[str] = []
    if key is None:
        parts.append("vmf=0xffffc90000a3fdf8")
    elif key == "entry":
        parts.append(f"entry={int(rec['entry'] or 0):#x}")
    else:
        parts.append(f"folio={int(rec['folio'] or 0):#x}")
        if rec["entry"] is not None:
            parts.append(f"entry={int(rec['entry']):#x}")
    if rec["nr"] is not None:
        parts.append(f"nr={int(rec['nr'])}")
    return " ".join(parts)


def _addr(func: str) -> int:
    """A stable fake kernel text address for ``func``."""
    return 0xFFFFFFFF81000000 + (zlib.crc32(func.encode()) & 0xFFFFF0)


def _stamp(ts_ns: int) -> str:
    assert ts_ns % 1000 == 0, "ftrace/perf print microseconds"
    return f"{ts_ns // 10**9}.{(ts_ns % 10**9) // 1000:06d}"


def ftrace_text(capture: Capture) -> str:
    """The capture as ftrace ``trace`` text with swaprace's metadata line."""
    lines = [meta_line(capture.meta), "# tracer: nop", "#"]
    for rec in _rows(capture):
        head = f"{rec['comm']:>16}-{rec['tid']:<7} ({rec['pid']:>7}) [{rec['cpu']:03d}] ..... {_stamp(rec['ts_ns'])}:"
        if rec["phase"] == "call":
            lines.append(f"{head} sr_{rec['role']}: ({rec['func']}+0x0/0x100) {_args(rec)}".rstrip())
        else:
            lines.append(f"{head} sr_{rec['role']}_ret: (do_swap_page+0x2a/0x400 <- {rec['func']}) "
                         f"ret={int(rec['retval'] or 0):#x}")
    return "\n".join(lines) + "\n"


def perf_script_text(capture: Capture) -> str:
    """The capture as ``perf script`` text of ``probe:`` events."""
    lines = []
    for rec in _rows(capture):
        head = f"{rec['comm']:>16} {rec['pid']:>5}/{rec['tid']:<5} [{rec['cpu']:03d}] {_stamp(rec['ts_ns'])}:"
        addr = _addr(rec["func"])
        if rec["phase"] == "call":
            lines.append(f"{head} probe:{rec['func']}: ({addr:x}) {_args(rec)}".rstrip())
        else:
            lines.append(f"{head} probe:{rec['func']}__return: ({addr:x} <- {_addr('do_swap_page') + 0x2a:x}) "
                         f"arg1={int(rec['retval'] or 0):#x}")
    return "\n".join(lines) + "\n"

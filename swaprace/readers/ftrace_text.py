"""Reader for ftrace text (``trace`` / ``trace_pipe``) of kprobe events, vectorized over the raw bytes.

A kprobe event line looks like (record-tgid adds the ``(  TGID)`` column, irq-info the flags column)::

    <comm>-<pid> [(<tgid>)] [<cpu>] [<flags>] <sec>.<usec>: <event>: (<sym>+0x0/0x9f0) <name>=<value> ...
    <comm>-<pid> [(<tgid>)] [<cpu>] [<flags>] <sec>.<usec>: <event>: (<caller>+0x86b/0xfa0 <- <sym>) <name>=<value>

The role comes from the kernel symbol (``<sym>``), never from the event name; a call's first fetch argument is
the role's key value (:data:`swaprace.events.KEY_COLUMN`), a return's first fetch argument is the return value.
Values may be hex (``0x...``) or decimal (7.x prints ``$retval`` in decimal unless ``:x64`` is given). A later
argument literally named ``entry`` is kept as the entry where the key is a folio (``add_to_swap_cache``).

Speed: Python's ``re`` costs several microseconds a line, so lines are not parsed one by one. The text is one
numpy byte array; the positions of the few punctuation bytes that delimit fields (``: (``, ``[]``, ``()``,
``<``, ``+``, ``=``) are found once, and every field is located per line with ``searchsorted`` and decoded
from small fixed-width windows. Only comment and ``CPU:N [LOST M EVENTS]`` lines (a handful) go through Python.

Faster still, where a C compiler is: the same fields come from one C pass over the bytes
(:mod:`swaprace.readers.ftrace_scan`, which transliterates the numpy rules and hands any block it is unsure of
back to them). Either scan yields the same :class:`_Rows`; everything that knows the kernel -- roles, keys,
entries, sizes, losses, metadata -- is the Python below, shared by both.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Tuple, Union

import numpy as np
import pandas as pd
import pyarrow as pa

from swaprace.errors import SwapraceError
from swaprace.kernel.symbols import role_of_symbol
from swaprace.readers import ftrace_scan
from swaprace.readers.validate import meta_from_json
from swaprace.events import KEY_COLUMN, CaptureMeta, _split_entries, empty_events
from swaprace.kernel.catalog import returns_entry
from swaprace.kernel.layout import entry_from_cluster, nr_from_folio, subpage_entry

_NL, _CR, _SP, _HASH = 10, 13, 32, 35
_COLON, _LPAR, _RPAR, _LT, _PLUS, _EQ, _LBR, _RBR, _DOT, _DASH = (ord(c) for c in ":()<+=[].-")
_SPECIAL = np.zeros(256, np.uint8)
for _i, _c in enumerate((_COLON, _LPAR, _RPAR, _LT, _PLUS, _EQ, _LBR, _RBR, _NL), start=1):
    _SPECIAL[_c] = _i
_IS_SPECIAL = bytes((_SPECIAL > 0).astype(np.uint8).tolist())
_DIGIT = np.zeros(256, bool)
_DIGIT[48:58] = True
_HEXVAL = np.full(256, 255, np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEXVAL[_c] = _i
for _i, _c in enumerate(b"ABCDEF", start=10):
    _HEXVAL[_c] = _i
_POW10 = np.array([10**k for k in range(20)], dtype=np.uint64)
_PAD = b"\n" * 64
_MAX_SEC = (2**63 - 1) // 10**9 - 1  # seconds whose ns, plus any fraction, still fit int64

_LOST_RE = re.compile(r"^CPU:(\d+) \[LOST (\d+) EVENTS\]")
_ENTRIES_RE = re.compile(r"^#\s*entries-in-buffer/entries-written:\s*(\d+)/(\d+)")
_META_PREFIX = "# swaprace:"
_NO_EVENTS = pd.DataFrame()


@dataclass
class FtraceChunk:
    """What one piece of ftrace text held."""

    events: pd.DataFrame  # normalized event table
    skipped: int = 0  # non-blank lines that did not become events (comments, other events, garbage)
    comment_lines: int = 0  # of which comments ('#' lines)
    lost_reports: Dict[int, int] = field(default_factory=dict)  # CPU -> events ftrace said it lost
    lost_report_lines: int = 0  # "CPU:N [LOST M EVENTS]" lines (understood: not counted as skipped)
    #: (cpu, count, anchor ts, anchor is after the marker) per loss marker (see :func:`place_lost`)
    lost_marks: List[tuple] = field(default_factory=list)
    unknown_functions: Dict[str, int] = field(default_factory=dict)  # event lines of functions no role knows
    entries_in_buffer: Optional[int] = None  # from the `trace` header
    entries_written: Optional[int] = None
    meta: Optional[CaptureMeta] = None  # a `# swaprace: {...}` line, if any
    meta_error: Optional[str] = None  # why a `# swaprace:` line is not valid metadata (the reader raises it)
    bad_timestamps: int = 0  # event lines whose timestamp does not fit int64 ns or is negative (not events)
    bad_timestamp_line: Optional[str] = None  # the first of them


def parse_ftrace_lines(lines: Iterable[str], symbols: Optional[Mapping[str, str]] = None
                       ) -> Tuple[pd.DataFrame, int]:
    """Parse ftrace text lines into (normalized events, skipped line count).

    Works on any chunk of lines (the live ftrace backend feeds trace_pipe text through it incrementally).
    ``symbols`` maps extra kernel symbols to roles (e.g. the inverse of ``CaptureMeta.symbols``).
    """
    text = "\n".join(line.rstrip("\n") for line in lines)
    chunk = parse_ftrace_bytes(text.encode("utf-8", "surrogateescape"), symbols)
    return chunk.events, chunk.skipped


def parse_ftrace_bytes(data: bytes, symbols: Optional[Mapping[str, str]] = None) -> FtraceChunk:
    """Parse a block of ftrace text (whole lines) into events; see the module docstring."""
    if not data.endswith(b"\n"):
        data = data + b"\n"
    # The raw fields of every event line: from the C scanner where it is built (one pass, several times
    # faster), else from numpy; both give the same rows (tests/test_ftrace_scan.py).
    rows = _c_rows(data)
    if rows is None:
        # Blank lines around the text: fixed-width windows near the first/last line stay inside the buffer
        # (the C scanner reads newlines beyond either end instead).
        data = _PAD + data + _PAD
        rows = _numpy_rows(data, np.frombuffer(data, np.uint8))
    buf = np.frombuffer(data, np.uint8)
    chunk = FtraceChunk(events=_NO_EVENTS)  # replaced below (building an empty table costs more than a block)
    _parse_side_lines(data, buf, rows.starts, rows.ends, chunk)
    return _events(data, buf, rows, chunk, symbols)


@dataclass
class _Rows:
    """The raw fields of a block: one row per event line (in line order) with positions into the block and
    numbers as the text has them, plus what the line counts need. Nothing kernel-specific."""

    starts: np.ndarray  # lines for _parse_side_lines (every line, or those that begin with "#" or "C")
    ends: np.ndarray  # without a final "\r"
    nonblank: int  # non-blank lines
    ls: np.ndarray  # event lines: start, end
    le: np.ndarray
    ts: np.ndarray  # uint64 ns (wrapped where ts_bad)
    ts_bad: np.ndarray  # negative, or seconds beyond int64 ns
    cpu: np.ndarray
    tid: np.ndarray
    tgid: np.ndarray
    tgid_known: np.ndarray
    comm_start: np.ndarray  # task name span
    comm_end: np.ndarray
    sym_start: np.ndarray  # kernel symbol span
    sym_end: np.ndarray
    is_ret: np.ndarray
    args: Callable[[Union[np.ndarray, slice]], dict]  # the :func:`_named_args` result for the given rows
    #: (codes, row of each code's first appearance) of the task names and symbols, where the scanner numbered them
    comm_codes: Optional[Tuple[np.ndarray, np.ndarray]] = None
    sym_codes: Optional[Tuple[np.ndarray, np.ndarray]] = None


def _c_rows(data: bytes) -> Optional[_Rows]:
    """The C scanner's rows, or None where it is not built or leaves the block to numpy."""
    scan = ftrace_scan.scan(data, ARG_NAMES)
    if scan is None:
        return None
    i, u = scan.irows, scan.urows  # one contiguous array per field
    flags = i[ftrace_scan.I_FLAGS]

    def args(sel) -> dict:
        found = i[ftrace_scan.I_NAMED, sel]
        out: Dict[str, Tuple[np.ndarray, ...]] = {
            name: (u[ftrace_scan.U_NAMED0 + c, sel], (found >> c) & 1 == 1) for c, name in enumerate(ARG_NAMES)}
        out[_FIRST] = (u[ftrace_scan.U_FIRST, sel], flags[sel] & ftrace_scan.F_FIRST_OK != 0,
                       i[ftrace_scan.I_FIRST_CODE, sel].astype(np.int16))
        return out

    def codes(field: int, firsts: Optional[np.ndarray]) -> Optional[Tuple[np.ndarray, np.ndarray]]:
        return None if firsts is None else (i[field], firsts)

    return _Rows(scan.side_starts, scan.side_ends, scan.nonblank, i[ftrace_scan.I_LS], i[ftrace_scan.I_LE],
                 u[ftrace_scan.U_TS], flags & ftrace_scan.F_TS_BAD != 0, i[ftrace_scan.I_CPU], i[ftrace_scan.I_TID],
                 i[ftrace_scan.I_TGID], flags & ftrace_scan.F_TGID_KNOWN != 0, i[ftrace_scan.I_COMM0],
                 i[ftrace_scan.I_COMM1], i[ftrace_scan.I_SYM0], i[ftrace_scan.I_SYM1], flags & ftrace_scan.F_RET != 0,
                 args, codes(ftrace_scan.I_COMM_CODE, scan.comm_firsts), codes(ftrace_scan.I_SYM_CODE, scan.sym_firsts))


def _numpy_rows(data: bytes, buf: np.ndarray) -> _Rows:
    """The rows, located with numpy (the path without a C compiler); see the module docstring."""
    # One pass classifies every byte; the positions of the few delimiters are all the parser needs
    # (bytes.translate to a 0/1 mask and a boolean nonzero are several times faster than a numpy table lookup).
    special = np.flatnonzero(np.frombuffer(data.translate(_IS_SPECIAL), bool))
    kinds = _SPECIAL[buf[special]]
    ends = special[kinds == _SPECIAL[_NL]]
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    cr = (ends > starts) & (buf[np.maximum(ends - 1, 0)] == _CR)
    ends = ends - cr

    pos = {c: special[kinds == _SPECIAL[c]] for c in (_COLON, _LPAR, _RPAR, _LT, _PLUS, _EQ, _LBR, _RBR)}
    colons = pos[_COLON]
    loc_colons = colons[(buf[np.minimum(colons + 1, len(buf) - 1)] == _SP)
                        & (buf[np.minimum(colons + 2, len(buf) - 1)] == _LPAR)]

    # Lines with a ": (" (a kprobe event's location) are candidates; '#' lines never are.
    lc, ok = _first_after(loc_colons, starts, ends)
    ok &= buf[starts] != _HASH
    ls, le, lc = starts[ok], ends[ok], lc[ok]

    # Timestamp: "<sec>.<frac>" right before the colon that precedes the event name.
    tc, ok = _last_before(colons, lc, ls)
    frac, nfrac = _digits_back(buf, tc, 12)
    dot = tc - nfrac - 1
    has_dot = (nfrac > 0) & (buf[np.maximum(dot, 0)] == _DOT)
    sec, nsec = _digits_back(buf, np.where(has_dot, dot, tc), 12)
    ts = np.where(has_dot, sec * np.uint64(10**9) + frac * _POW10[np.clip(9 - nfrac, 0, 19)], frac)
    ts_start = np.where(has_dot, dot - nsec, tc - nfrac)
    ok &= (nfrac > 0) & (~has_dot | (nsec > 0)) & (nfrac <= 9)
    # a timestamp that does not fit int64 ns, or a negative one, is not silently wrapped or made positive
    ts_bad = (has_dot & (sec > np.uint64(_MAX_SEC))) | (buf[np.maximum(ts_start - 1, 0)] == _DASH)

    # Header, read from the right: "[cpu]" is the last "]" before the timestamp.
    rb, ok_rb = _last_before(pos[_RBR], ts_start, ls)
    lb, ok_lb = _last_before(pos[_LBR], rb, ls)
    cpu, ncpu = _digits_back(buf, rb, 6)
    ok &= ok_rb & ok_lb & (ncpu > 0) & (rb - ncpu - 1 == lb)
    before_cpu = _skip_spaces_back(buf, lb, ls)  # position just after the field before "[cpu]"
    has_tgid = buf[np.maximum(before_cpu - 1, 0)] == _RPAR
    lp_tgid, ok_tg = _last_before(pos[_LPAR], before_cpu - 1, ls)
    tgid_end = _skip_spaces_back(buf, before_cpu - 1, ls)
    tgid, ntgid = np.zeros(len(ls), np.uint64), np.zeros(len(ls), np.intp)
    at = np.flatnonzero(has_tgid)  # record-tgid is usually off: no digits to read
    if len(at):
        tgid[at], ntgid[at] = _digits_back(buf, tgid_end[at], 8)
    tgid_known = has_tgid & ok_tg & (ntgid > 0) & (tgid_end - ntgid - 1 >= lp_tgid)
    ok &= ~has_tgid | ok_tg
    pid_end = np.where(has_tgid, _skip_spaces_back(buf, np.where(ok_tg, lp_tgid, ls), ls), before_cpu)
    tid, ntid = _digits_back(buf, pid_end, 8)
    dash = pid_end - ntid - 1
    ok &= (ntid > 0) & (dash >= ls) & (buf[np.maximum(dash, 0)] == _DASH)
    comm_start = _skip_spaces_fwd(buf, ls, dash)

    # Location: "(sym+0x../0x..)" for a call, "(caller+0x../0x.. <- sym)" for a return.
    lpar = lc + 2
    rpar, ok_rp = _first_after(pos[_RPAR], lpar, le)
    lt, has_lt = _first_after(pos[_LT], lpar, rpar)
    is_ret = has_lt & (buf[np.minimum(lt + 1, len(buf) - 1)] == _DASH)
    plus, has_plus = _first_after(pos[_PLUS], lpar, rpar)
    sym_start = np.where(is_ret, _skip_spaces_fwd(buf, lt + 2, rpar), lpar + 1)
    sym_end = np.where(is_ret, rpar, np.where(has_plus, plus, rpar))
    ok &= ok_rp & (sym_end > sym_start)

    sel = np.flatnonzero(ok)
    rpar_s, le_s = rpar[sel], le[sel]
    return _Rows(starts, ends, int(np.count_nonzero(ends > starts)), ls[sel], le_s, ts[sel], ts_bad[sel], cpu[sel], tid[sel], tgid[sel], tgid_known[sel],
                 comm_start[sel], dash[sel], sym_start[sel], sym_end[sel], is_ret[sel],
                 lambda rows: _named_args(buf, pos[_EQ], rpar_s[rows], le_s[rows]))


def _events(data: bytes, buf: np.ndarray, rows: _Rows, chunk: FtraceChunk, symbols: Optional[Mapping[str, str]]
            ) -> FtraceChunk:
    """The event table of a block's rows: roles from symbols, keys, entries and sizes (kernel knowledge)."""
    ls, le, ts, ts_bad, is_ret, tid = rows.ls, rows.le, rows.ts, rows.ts_bad, rows.is_ret, rows.tid
    sel = np.arange(len(ls))
    func_codes, func_names = _dictionary(buf, rows.sym_start, rows.sym_end, rows.sym_codes, slice(None))
    func_roles = [role_of_symbol(name, symbols) for name in func_names]
    role_known = np.array([r is not None for r in func_roles] + [False], bool)[func_codes]
    if len(func_names) and not role_known.all():
        counts = np.bincount(func_codes[~role_known], minlength=len(func_names))
        chunk.unknown_functions = {func_names[i]: int(c) for i, c in enumerate(counts) if c}
    if chunk.lost_marks:
        _anchor_lost_marks(chunk, ls, ts.astype(np.int64))
    sel = sel[role_known]
    func_codes = func_codes[role_known]
    bad = ts_bad[sel]
    if bad.any():
        chunk.bad_timestamps = int(bad.sum())
        first_bad = sel[bad][0]
        chunk.bad_timestamp_line = data[ls[first_bad]:le[first_bad]].decode("utf-8", "backslashreplace")[:120]
        sel, func_codes = sel[~bad], func_codes[~bad]
    chunk.skipped = rows.nonblank - len(sel) - chunk.lost_report_lines - sum(chunk.unknown_functions.values())
    if len(sel) == 0:
        chunk.events = empty_events()
        return chunk
    pick: Union[np.ndarray, slice] = slice(None) if len(sel) == len(ls) else sel  # every row: views, not copies

    comms = _dictionary(buf, rows.comm_start, rows.comm_end, rows.comm_codes, pick)
    # Per-function facts, looked up by function code (no per-row strings).
    role_names = sorted({r for r in func_roles if r is not None})
    role_code_of_func = np.array([role_names.index(r) if r else -1 for r in func_roles], np.int16)
    key_of_func = np.array([{"entry": 1, "folio": 2}.get(KEY_COLUMN.get(r or "") or "", 0) for r in func_roles],
                           np.int8)
    by_value = np.array([returns_entry(name) for name in func_names], bool)
    is_ret_s = is_ret[pick]
    call = ~is_ret_s
    key = key_of_func[func_codes]
    args = rows.args(pick)
    first, first_ok, first_name = args.pop(_FIRST)
    legacy_key = call & first_ok & (first_name < 0)  # an unnamed first argument ("arg1=") is the key

    def named(name):
        return args[name]

    entry, entry_ok = named("entry")
    entry = np.where(entry_ok, entry, first)
    entry_ok = entry_ok | (legacy_key & (key == 1))
    folio, folio_ok = named("folio")
    folio = np.where(folio_ok, folio, first)
    folio_ok = folio_ok | (legacy_key & (key == 2))
    nr, nr_ok = named("nr")
    head, head_ok = named("fhead")
    order, _ = named("forder")
    folio_nr = nr_from_folio(head, order)
    nr = np.where(nr_ok, nr, folio_nr)
    nr_ok = nr_ok | head_ok
    page, page_ok = named("page")
    psz, psz_ok = named("psz")
    sub = page_ok & psz_ok & entry_ok & folio_ok & (page != 0)
    if sub.any():  # folio_put_swap(folio, page): the page's own entry, one page
        entry = np.where(sub, subpage_entry(entry, folio, page, np.maximum(psz, 1)), entry)
        nr = np.where(sub, np.uint64(1), nr)
        nr_ok = nr_ok | sub
    ci, ci_ok = named("ci")
    cinfo, cinfo_ok = named("cinfo")
    csize, csize_ok = named("ci_size")
    cl = ci_ok & cinfo_ok & csize_ok & (csize > 0)
    if cl.any():  # __swap_cluster_free_entries(si, ci, ci_start, nr): rebuild the entry from the cluster
        si_type, _ = named("si_type")
        ci_off, _ = named("ci_off")
        slots, slots_ok = named("ci_slots")
        rebuilt = entry_from_cluster(si_type & np.uint64(0xFF), ci, cinfo, ci_off, np.maximum(csize, 1),
                                     np.where(slots_ok, slots, np.uint64(512)))
        entry = np.where(cl, rebuilt, entry)
        entry_ok = entry_ok | cl
    ret_entry = is_ret_s & by_value[func_codes]
    if ret_entry.any():  # 6.1 folio_alloc_swap returns the entry: the call's folio size goes with it
        nr, nr_ok = _nr_to_returns(tid[pick], func_codes, call, ret_entry, nr, nr_ok)
    tid_s = tid[pick]
    chunk.events = event_frame(
        ts=ts[pick].astype(np.int64), cpu=rows.cpu[pick], pid=np.where(rows.tgid_known[pick], rows.tgid[pick], tid_s),
        tid=tid_s,
        comm=comms,
        func=(func_codes, func_names), role=(role_code_of_func[func_codes], role_names),
        phase=(is_ret_s.astype(np.int8), ["call", "return"]),
        entry=(entry, call & entry_ok), folio=(folio, call & folio_ok),
        retval=(first, is_ret_s & first_ok), nr=(nr, nr_ok & (call | ret_entry)))
    return chunk


#: Fetch-argument names the reader understands (swaprace's own probes write them; see
#: swaprace.probes.ftrace_backend.call_fetch_args). Any other name is kept only as the first (key) argument.
ARG_NAMES = ("entry", "folio", "ret", "nr", "page", "psz", "fhead", "forder", "si_type", "cinfo", "ci", "ci_off",
             "ci_size", "ci_slots")
MAX_ARGS = 12
_FIRST = "__first__"


def _named_args(buf: np.ndarray, eqs: np.ndarray, after: np.ndarray, limit: np.ndarray) -> dict:
    """Every ``name=value`` after each line's location: {name: (values, found)} for :data:`ARG_NAMES`, and
    ``_FIRST``: (value, found, name code or -1) of the first argument (the key or return value)."""
    n = len(after)
    out: Dict[str, Tuple[np.ndarray, ...]] = {name: (np.zeros(n, np.uint64), np.zeros(n, bool))
                                            for name in ARG_NAMES}
    first = (np.zeros(n, np.uint64), np.zeros(n, bool), np.full(n, -1, np.int16))
    out[_FIRST] = first
    if n == 0 or len(eqs) == 0:
        return out
    # All arguments of all rows at once, in (row, position) order: one number parse per argument.
    lo = np.searchsorted(eqs, after, side="right")
    count = np.clip(np.searchsorted(eqs, limit, side="left") - lo, 0, MAX_ARGS)
    total = int(count.sum())
    if total == 0:
        return out
    row_start = np.cumsum(count) - count
    row = np.repeat(np.arange(n), count)
    eq = eqs[np.repeat(lo - row_start, count) + np.arange(total)]
    value, ok = _number_fwd(buf, eq + 1)
    code = _arg_codes(buf, eq, np.ones(total, bool))
    rows = np.flatnonzero(count)
    head = row_start[rows]
    first[0][rows], first[1][rows], first[2][rows] = value[head], ok[head], code[head]
    ok &= code >= 0
    for c in np.flatnonzero(np.bincount(code[ok], minlength=len(ARG_NAMES))):
        values, found = out[ARG_NAMES[c]]
        at = np.flatnonzero(ok & (code == c))
        r = row[at]
        once = np.ones(len(r), bool)
        once[1:] = r[1:] != r[:-1]  # a name given twice: its first value counts
        values[r[once]] = value[at[once]]
        found[r[once]] = True
    return out


_NAME_WIDTH = 8  # the longest name in ARG_NAMES
_NAME_KEYS = [(len(name), int.from_bytes(name.encode(), "big")) for name in ARG_NAMES]


def _arg_codes(buf: np.ndarray, eq: np.ndarray, has: np.ndarray) -> np.ndarray:
    """Index in :data:`ARG_NAMES` of the argument name ending right before each ``=`` (``-1``: none or not
    ``has``). A name matches when the bytes before ``=`` are a space and the name: the 8 bytes before ``=`` are
    read as one big-endian word, so each name is one masked integer compare per row, not a byte matrix."""
    window = _window(buf, eq - _NAME_WIDTH - 1, _NAME_WIDTH + 1)
    word = np.ascontiguousarray(window[:, 1:]).view(">u8").ravel()
    code = np.full(len(eq), -1, np.int16)
    by_len: Dict[int, Tuple[np.ndarray, np.ndarray]] = {}
    for c, (n, key) in enumerate(_NAME_KEYS):
        if n not in by_len:
            space = window[:, _NAME_WIDTH - n]
            low = word & np.uint64((1 << (8 * n)) - 1) if n < _NAME_WIDTH else word
            by_len[n] = (low, has & (space == _SP))
        low, ok = by_len[n]
        code[ok & (low == np.uint64(key))] = c
    return code


def _nr_to_returns(tid, func_codes, call, ret_rows, nr, nr_ok):
    """Give each return in ``ret_rows`` the ``nr`` of the same thread's latest call of the same function."""
    n = len(tid)
    order = np.argsort(tid, kind="stable")  # by thread, then by row
    prev = np.empty(n, np.int64)
    prev[order[1:]] = order[:-1]
    prev[order[0]] = -1
    p = np.maximum(prev, 0)
    match = ret_rows & (prev >= 0) & (tid[p] == tid) & (func_codes[p] == func_codes) & call[p] & nr_ok[p]
    return np.where(match, nr[p], nr), nr_ok | match


def _anchor_lost_marks(chunk: "FtraceChunk", line_starts: np.ndarray, ts: np.ndarray) -> None:
    """Give each ``CPU:N [LOST M EVENTS]`` marker the time of the event line right after it (or before it)."""
    if not chunk.lost_marks:
        return
    marks: List[tuple] = []
    for cpu_no, count, at in chunk.lost_marks:
        i = int(np.searchsorted(line_starts, at))
        if i < len(ts):
            marks.append((cpu_no, count, int(ts[i]), True))
        elif len(ts):
            marks.append((cpu_no, count, int(ts[-1]), False))
        else:
            marks.append((cpu_no, count, None, False))
    chunk.lost_marks = marks


def place_lost(events: pd.DataFrame, marks) -> List[List[int]]:
    """``[start_ns, end_ns, count]`` per loss marker: the last event of the CPU before the loss and the next one
    after it (the capture's first/last event where the CPU has none on that side)."""
    if not marks or not len(events):
        return []
    ts = events["ts_ns"].to_numpy()
    cpus = events["cpu"].to_numpy()
    out = []
    for cpu_no, count, anchor, after in marks:
        mine = np.sort(ts[cpus == cpu_no])
        if anchor is None:
            out.append([int(ts.min()), int(ts.max()), int(count)])
            continue
        if after:
            i = int(np.searchsorted(mine, anchor, side="left"))
        else:
            i = int(np.searchsorted(mine, anchor, side="right"))
        end = int(mine[i]) if i < len(mine) else int(ts.max())
        start = int(mine[i - 1]) if i > 0 else int(ts.min())
        out.append([start, end, int(count)])
    return out


def event_frame(ts, cpu, pid, tid, comm, func, role, phase, entry, folio, retval, nr=None) -> pd.DataFrame:
    """A normalized event table built straight from columns, without :func:`events.normalize`'s string round
    trip (which costs more than the whole parse on millions of rows). Categorical columns come as (codes,
    names); nullable ones as (values, valid). The result has exactly the model's dtypes (tested against
    normalize) and is sorted by time, stably."""
    order = None if len(ts) < 2 or bool(np.all(ts[1:] >= ts[:-1])) else np.argsort(ts, kind="stable")

    def take(a):
        return a if order is None else a[order]

    def cat(codes_names):
        codes, names = codes_names
        return pd.Categorical.from_codes(take(codes), categories=pd.Index(names, dtype="string"))

    def u64(values_valid):
        values, valid = values_valid
        valid = take(valid)
        return pd.arrays.IntegerArray(np.where(valid, take(values), 0).astype(np.uint64), ~valid)

    entry_arr = u64(entry)
    frame = pd.DataFrame({
        "ts_ns": take(ts).astype(np.int64), "cpu": take(cpu).astype(np.int32), "pid": take(pid).astype(np.int32),
        "tid": take(tid).astype(np.int32), "comm": cat(comm), "func": cat(func), "role": cat(role),
        "phase": cat(phase), "entry": entry_arr, "folio": u64(folio), "retval": u64(retval),
    })
    if nr is not None:
        values, valid = nr
        valid = take(valid)
        frame["nr"] = pd.arrays.IntegerArray(np.where(valid, take(values), 0).astype(np.uint32), ~valid)
    else:
        frame["nr"] = pd.array([pd.NA] * len(frame), dtype="UInt32")
    frame["swap_type"], frame["swap_offset"] = _split_entries(frame["entry"])
    return frame


# --- comment and loss lines -----------------------------------------------------------------------------------


def _parse_side_lines(data: bytes, buf: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                      chunk: FtraceChunk) -> None:
    """Comments (header, ``# swaprace:`` metadata) and ``CPU:N [LOST M EVENTS]`` lines, in Python (few)."""
    first = buf[starts]
    comment = np.flatnonzero((first == _HASH) & (ends > starts))
    chunk.comment_lines = len(comment)
    for i in comment:
        line = data[starts[i]:ends[i]].decode("utf-8", "replace")
        if line.startswith(_META_PREFIX):
            try:
                chunk.meta = meta_from_json(line[len(_META_PREFIX):].strip(), "'# swaprace:' line")
            except SwapraceError as exc:
                chunk.meta_error = str(exc)  # not raised here: the live backend shares this parser
            continue
        m = _ENTRIES_RE.match(line)
        if m:
            chunk.entries_in_buffer, chunk.entries_written = int(m.group(1)), int(m.group(2))
    cpu_lines = np.flatnonzero((first == ord("C")) & (ends - starts >= 4))
    for i in cpu_lines:
        m = _LOST_RE.match(data[starts[i]:ends[i]].decode("utf-8", "replace"))
        if m:
            cpu_no, lost = int(m.group(1)), int(m.group(2))
            chunk.lost_reports[cpu_no] = chunk.lost_reports.get(cpu_no, 0) + lost
            chunk.lost_report_lines += 1
            chunk.lost_marks.append((cpu_no, lost, int(starts[i])))


# --- vectorized field helpers ---------------------------------------------------------------------------------


def _first_after(positions: np.ndarray, after: np.ndarray, limit: np.ndarray):
    """First position > ``after`` (and < ``limit``) of a sorted array; (position, found)."""
    idx = np.searchsorted(positions, after, side="right")
    found = idx < len(positions)
    p = positions[np.minimum(idx, max(len(positions) - 1, 0))] if len(positions) else np.zeros_like(after)
    found &= p < limit
    return np.where(found, p, limit), found


def _last_before(positions: np.ndarray, before: np.ndarray, floor: np.ndarray):
    """Last position < ``before`` (and >= ``floor``) of a sorted array; (position, found)."""
    idx = np.searchsorted(positions, before, side="left") - 1
    found = idx >= 0
    p = positions[np.maximum(idx, 0)] if len(positions) else np.zeros_like(before)
    found &= p >= floor
    return np.where(found, p, floor), found


def _window(buf: np.ndarray, start: np.ndarray, width: int, sentinel: Optional[str] = None) -> np.ndarray:
    """Bytes buf[start:start+width] for every start, as an (n, width) uint8 matrix (one row gather).

    The buffer is padded with newlines on both sides (see :func:`parse_ftrace_bytes`), so windows a few
    dozen bytes around a line never leave it; starts are clipped anyway. ``sentinel`` ("left"/"right")
    zeroes that edge column, so a run of digits/spaces/hex found with argmin always ends inside the row.
    """
    view = np.lib.stride_tricks.sliding_window_view(buf, width)
    w = view[np.clip(start, 0, len(buf) - width)]
    if sentinel == "left":
        w[:, 0] = 0
    elif sentinel == "right":
        w[:, -1] = 0
    return w


def _trailing_run(mask: np.ndarray) -> np.ndarray:
    """Length of the run of True at the right end of each row (the row's first column must be False)."""
    return np.argmin(mask[:, ::-1], axis=1)


def _leading_run(mask: np.ndarray) -> np.ndarray:
    """Length of the run of True at the left end of each row (the row's last column must be False)."""
    return np.argmin(mask, axis=1)


def _digits_back(buf: np.ndarray, end: np.ndarray, width: int):
    """Decimal number (at most ``width`` <= 18 digits) whose last digit is at ``end - 1``; (value, digits).

    The window is right-aligned on the number, so its value is one dot product with powers of ten.
    """
    width += 1  # a sentinel column on the left
    w = _window(buf, end - width, width, sentinel="left")
    ndig = _trailing_run(_DIGIT[w])
    digits = np.where(np.arange(width)[None, :] >= (width - ndig)[:, None], w - np.uint8(48), np.uint8(0))
    value = digits.astype(np.int64) @ _POW10[:width][::-1].astype(np.int64)
    return value.astype(np.uint64), ndig


def _hex_fwd(buf: np.ndarray, start: np.ndarray):
    """Hex digits starting at ``start`` (no prefix): (uint64, number of digits; > 16 means too long).

    Nibbles are packed pairwise into bytes and read as one big-endian 64-bit word per row, then shifted
    right by the unused digits: no per-digit arithmetic on 64-bit columns.
    """
    w = _window(buf, start, 18, sentinel="right")
    nib = _HEXVAL[w]
    ndig = _leading_run(nib < 16)
    nib = nib[:, :16] & np.uint8(15)  # a non-digit's nibble lands below the digits and is shifted out
    packed = np.ascontiguousarray((nib[:, 0::2] << np.uint8(4)) | nib[:, 1::2])
    word = packed.view(">u8").ravel().astype(np.uint64)
    shift = (np.uint64(4) * (np.uint64(16) - np.minimum(ndig, 16).astype(np.uint64))).astype(np.uint64)
    value = np.where(ndig > 0, word >> np.minimum(shift, np.uint64(63)), np.uint64(0))
    value = np.where(shift == 64, np.uint64(0), value)
    return value, ndig


def _number_fwd(buf: np.ndarray, start: np.ndarray, width: int = 22):
    """Hex (``0x..``) or decimal (optionally negative) number starting at ``start``; (uint64, ok)."""
    head = _window(buf, start, 2)
    hexa = (head[:, 0] == 48) & ((head[:, 1] == ord("x")) | (head[:, 1] == ord("X")))
    value = np.zeros(len(start), np.uint64)
    ok = np.zeros(len(start), bool)
    hx = np.flatnonzero(hexa)
    if len(hx):
        value[hx], ndig = _hex_fwd(buf, start[hx] + 2)
        ok[hx] = (ndig > 0) & (ndig <= 16)
    dec = np.flatnonzero(~hexa)
    if len(dec):
        dvalue, dok = _decimal_fwd(buf, start[dec])
        value[dec] = dvalue
        ok[dec] = dok
    return value, ok


def _decimal_fwd(buf: np.ndarray, start: np.ndarray, width: int = 22):
    """Decimal number, optionally negative, starting at ``start``; (uint64 two's complement, ok)."""
    w = _window(buf, start, width, sentinel="right")
    neg = w[:, 0] == _DASH
    skip = neg.astype(np.int64)
    digit = _DIGIT[w]
    digit[:, 0] |= neg  # the sign counts as part of the run; it is taken off below
    ndig = _leading_run(digit) - skip
    stop = skip + ndig
    value = np.zeros(len(w), np.uint64)
    for j in range(width):
        active = (j >= skip) & (j < stop)
        if j > 0 and not active.any():
            break  # past every row's last digit (column 0 may be a sign)
        value = np.where(active, value * np.uint64(10) + (w[:, j] - np.uint8(48)).astype(np.uint64), value)
    value = np.where(neg, (~value) + np.uint64(1), value)
    return value, (ndig > 0) & (ndig <= 20)


def _skip_spaces_back(buf: np.ndarray, end: np.ndarray, floor: np.ndarray, width: int = 16) -> np.ndarray:
    """Position just after the last non-space byte before ``end`` (not below ``floor``)."""
    nsp = _trailing_run(_window(buf, end - width - 1, width + 1, sentinel="left") == _SP)
    return np.maximum(end - nsp, floor)


def _skip_spaces_fwd(buf: np.ndarray, start: np.ndarray, limit: np.ndarray, width: int = 32) -> np.ndarray:
    """First non-space position at/after ``start`` (not beyond ``limit``)."""
    nsp = _leading_run(_window(buf, start, width + 1, sentinel="right") == _SP)
    return np.minimum(start + nsp, limit)


def _is_word_before(buf: np.ndarray, eq: np.ndarray, word: bytes) -> np.ndarray:
    """True where the bytes right before ``eq`` are `` word`` (a whole argument name)."""
    n = len(word)
    w = _window(buf, eq - n - 1, n + 1)
    return (w[:, 0] == _SP) & np.all(w[:, 1:] == np.frombuffer(word, np.uint8)[None, :], axis=1)


def _strings(buf: np.ndarray, start: np.ndarray, end: np.ndarray) -> pa.BinaryArray:
    """buf[start:end] for every row, as an Arrow binary array (one gather, no Python loop).

    Binary, not string: a task name is whatever bytes the task set (``prctl(PR_SET_NAME)`` takes any), so the
    few distinct values are decoded after dictionary encoding, by :func:`_decoded`."""
    lengths = np.maximum(end - start, 0).astype(np.int64)
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    idx = np.repeat(start - offsets[:-1], lengths) + np.arange(offsets[-1])
    data = buf[idx].tobytes()
    return pa.Array.from_buffers(pa.large_binary(), len(lengths),
                                 [None, pa.py_buffer(offsets), pa.py_buffer(data)]).cast(pa.binary())


def _decoded(values: List[bytes]) -> list[str]:
    """Distinct byte strings as text; bytes that are not UTF-8 are kept, escaped (``str\\xe9ss``)."""
    names = [v.decode("utf-8", "backslashreplace") for v in values]
    if len(set(names)) < len(names):  # "\\xe9" typed literally and a 0xe9 byte: keep the codes distinct
        names = [n if names.index(n) == i else f"{n}#{i}" for i, n in enumerate(names)]
    return names


def _dictionary(buf: np.ndarray, start: np.ndarray, end: np.ndarray,
                numbered: Optional[Tuple[np.ndarray, np.ndarray]], sel: Union[np.ndarray, slice]
                ) -> Tuple[np.ndarray, list]:
    """(codes, names) of the strings buf[start:end] of rows ``sel``, names in order of first appearance (Arrow's
    dictionary encoding). ``numbered``: the C scanner's codes over all rows and each code's first row; they are
    renumbered for ``sel`` in O(rows), with no per-row bytes gathered."""
    if numbered is None:
        encoded = _strings(buf, start[sel], end[sel]).dictionary_encode()
        return encoded.indices.to_numpy(zero_copy_only=False), _decoded(encoded.dictionary.to_pylist())
    codes, firsts = numbered
    codes = codes[sel]
    first_at = np.full(len(firsts), len(codes), np.int64)
    first_at[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)  # repeated indices: the last write (first row) wins
    used = np.flatnonzero(first_at < len(codes))
    used = used[np.argsort(first_at[used], kind="stable")]
    renumber = np.full(len(firsts), -1, np.int64)
    renumber[used] = np.arange(len(used))
    rows = firsts[used]
    return renumber[codes], _decoded([bytes(buf[start[r]:end[r]]) for r in rows])


# --- whole files -----------------------------------------------------------------------------------------------


def merge_chunk_meta(chunks: List[FtraceChunk], fallback_backend: str = "ftrace-text") -> CaptureMeta:
    """The capture metadata a set of chunks implies (see :func:`ftrace_meta`)."""
    meta = next((c.meta for c in chunks if c.meta is not None), None)
    lost_reports: Dict[int, int] = {}
    for c in chunks:
        for cpu, n in c.lost_reports.items():
            lost_reports[cpu] = lost_reports.get(cpu, 0) + n
    header = next((c for c in chunks if c.entries_written is not None), None)
    return ftrace_meta(meta, lost_reports, header.entries_in_buffer if header else None,
                       header.entries_written if header else None, fallback_backend)


def ftrace_meta(meta: Optional[CaptureMeta], lost_reports: Dict[int, int], in_buffer: Optional[int],
                written: Optional[int], fallback_backend: str = "ftrace-text") -> CaptureMeta:
    """Metadata of a text capture.

    A ``# swaprace: {...}`` line (written by swaprace's own ftrace recorder) is authoritative, losses included;
    the text's own loss reports are then only noted in ``extra``. Otherwise losses come from ftrace itself:
    ``entries-written - entries-in-buffer`` of the ``trace`` header (overwritten events) and ``CPU:N [LOST M
    EVENTS]`` lines (trace_pipe). When neither is present the text cannot say (``lost_events`` is None).
    """
    lost_lines = int(sum(lost_reports.values()))
    if meta is not None:
        if lost_reports:
            meta.extra["ftrace_lost_lines"] = lost_lines
        return meta
    meta = CaptureMeta(backend=fallback_backend)
    if written is not None and in_buffer is not None:
        meta.lost["ftrace_overrun"] = max(int(written) - int(in_buffer), 0)
        meta.lost_known = True
    if lost_reports:
        meta.lost["ftrace_lost_events"] = lost_lines
        meta.lost_known = True  # a lower bound at least, which beats "unknown"
        meta.extra["lost_by_cpu"] = {str(k): v for k, v in sorted(lost_reports.items())}
    return meta


def meta_line(meta: CaptureMeta) -> str:
    """The ``# swaprace: {...}`` comment line a text capture carries its metadata in."""
    return f"{_META_PREFIX} {json.dumps(json.loads(meta.to_json()), sort_keys=True)}"

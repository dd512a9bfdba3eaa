"""JSON Lines in bounded memory: parsed a block of lines at a time into the event table's compact columns.

The reader used to keep every decoded line as a dict and build object columns (about 2 KB per event). Here
each block of about :data:`BLOCK_BYTES` of text becomes numpy columns (ints, uint64 values with a null mask,
dictionary codes of the strings) right away, so memory is the table's size plus one block. A block whose
values are not plain well-typed ones goes through the previous object-column path (:func:`_checked_block`),
so every bad value is still one :class:`SwapraceError` line naming it, never a wrap.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any, BinaryIO, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import pandas as pd

from swaprace.errors import SwapraceError
from swaprace.events import (COLUMNS, INPUT_COLUMNS, PHASES, ROLES, SWP_OFFSET_MASK, SWP_TYPE_SHIFT, Capture,
                             CaptureMeta, empty_events, normalize)
from swaprace.kernel.symbols import role_of_symbol, symbol_overrides
from swaprace.readers.validate import I32_MAX, I64_MAX, check_events, meta_from_obj
from swaprace.readers.blocks import line_blocks

#: Text parsed per block: a block's decoded dicts (~2 KB a line) are the reader's only per-line overhead.
BLOCK_BYTES = 256 << 10
_INTS = {"ts_ns": (np.int64, I64_MAX), "cpu": (np.int32, I32_MAX), "pid": (np.int32, I32_MAX),
         "tid": (np.int32, I32_MAX)}
_U64 = ("entry", "folio", "retval")
_STRINGS = ("comm", "func", "role", "phase")
#: Columns every event needs; a file where none has one "lacks" it.
_REQUIRED = tuple(c for c in INPUT_COLUMNS if c not in ("pid", "comm", "cpu", "role") + _U64)
_SCAN: Callable[[str, int], Tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
# ^ what json.loads runs, without its per-call wrapper (~30% of a line)
_JSON_SPACE = " \t\n\r"


class _Slow(Exception):
    """A block needs the object-column path (a value that is not a plain, fitting one)."""


@dataclass
class _Block:
    """One block of events as compact columns; strings are codes into the block's own category list."""

    ints: Dict[str, np.ndarray]
    u64: Dict[str, Tuple[np.ndarray, np.ndarray]]  # values (0 where null), null mask
    codes: Dict[str, np.ndarray]
    cats: Dict[str, List[Any]]


@dataclass
class _State:
    path: Path
    meta: CaptureMeta = field(default_factory=lambda: CaptureMeta(backend="jsonl"))
    blocks: List[_Block] = field(default_factory=list)
    skipped: int = 0
    records: int = 0  # event lines (not meta), kept or skipped
    #: The first bad value found. It is raised at the end, as the reader before did after decoding every
    #: line: a line that is not JSON, or a file that lacks a column, is named first wherever it is.
    error: Optional[str] = None
    seen: set = field(default_factory=set)  # required columns some event had (for "lacks")


def read_jsonl_stream(raw: BinaryIO, path: Path) -> Capture:
    """Read JSON Lines from ``raw`` once, front to back (see :func:`swaprace.readers.read_jsonl`)."""
    state = _State(path)
    line_no = 0
    for text in _text_blocks(raw):
        records: List[dict] = []
        for line in text:
            line_no += 1
            if not line.strip():
                continue
            obj = _decode(line, path, line_no)
            if "meta" in obj and len(obj) == 1:
                state.meta = meta_from_obj(obj["meta"], f"{path}:{line_no}")
                continue
            records.append(obj)
        if records:
            _add_block(state, records)
    return _finish(state)


def _text_blocks(raw: BinaryIO) -> Iterator[List[str]]:
    """Lines of about BLOCK_BYTES at a time, decoded as the text reader did (UTF-8, bad bytes escaped,
    universal newlines)."""
    return map(_lines, line_blocks(raw, BLOCK_BYTES))


def _lines(block: bytes) -> List[str]:
    text = block.decode("utf-8", "backslashreplace").replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def _decode(line: str, path: Path, line_no: int) -> dict:
    """One line's JSON object, or the error json.loads would give for it."""
    text = line.strip(_JSON_SPACE)
    try:
        obj, end = _SCAN(text, 0)
        if end != len(text):
            obj = json.loads(line)  # trailing data: let json.loads say so
    except (StopIteration, ValueError, RecursionError):
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError) as exc:
            why = "nested too deeply" if isinstance(exc, RecursionError) else "not valid JSON"
            raise SwapraceError(f"{path}:{line_no}: {why} ({line.strip()[:60]!r})") from None
    if not isinstance(obj, dict):
        raise SwapraceError(f"{path}:{line_no}: expected a JSON object per line")
    return obj


# --- one block --------------------------------------------------------------------------------------------


def _add_block(state: _State, records: List[dict]) -> None:
    state.records += len(records)
    overrides = symbol_overrides(state.meta.symbols)  # a meta line's symbols apply to the events after it
    columns = {c: list(map(dict.get, records, repeat(c))) for c in INPUT_COLUMNS if c != "role"}
    state.seen.update(c for c in _REQUIRED if any(v is not None for v in columns[c]))
    # role: given, or derived from func; an unknown function is skipped, like a text reader's other events
    derived: Dict[str, Optional[str]] = {}
    roles = []
    keep = []
    for rec, func in zip(records, columns["func"]):
        if "role" in rec:
            roles.append(rec["role"])
            keep.append(True)
            continue
        name = func if type(func) is str else str(func)  # a list is not hashable; its text names it
        if name not in derived:
            derived[name] = role_of_symbol(name, overrides)
        roles.append(derived[name])
        keep.append(derived[name] is not None)
    columns["role"] = roles
    n_skip = keep.count(False)
    state.skipped += n_skip
    if n_skip:
        columns = {c: [v for v, k in zip(vals, keep) if k] for c, vals in columns.items()}
    if not columns["tid"] or state.error:
        return
    try:
        block = _fast_block(columns)
    except _Slow:
        try:
            block = _checked_block(columns, state.path)
        except SwapraceError as exc:
            state.error = str(exc)
            state.blocks.clear()  # only lines are decoded from here on
            return
    state.blocks.append(block)


def _fast_block(columns: Dict[str, list]) -> _Block:
    """The block's columns when every value is a plain one that fits; :class:`_Slow` otherwise."""
    if None in columns["cpu"]:
        columns["cpu"] = [0 if v is None else v for v in columns["cpu"]]
    if None in columns["pid"]:
        columns["pid"] = [t if p is None else p for p, t in zip(columns["pid"], columns["tid"])]
    ints = {c: _int_column(columns[c], dtype, high) for c, (dtype, high) in _INTS.items()}
    u64 = {c: _u64_column(columns[c]) for c in _U64}
    if None in columns["comm"]:
        columns["comm"] = ["" if v is None else v for v in columns["comm"]]
    codes, cats = {}, {}
    for c in _STRINGS:
        codes[c], cats[c] = _string_column(columns[c])
    if not set(cats["phase"]) <= set(PHASES) or not set(cats["role"]) <= set(ROLES):
        raise _Slow
    return _Block(ints, u64, codes, cats)


def _int_column(values: list, dtype: type, high: int) -> np.ndarray:
    if set(map(type, values)) != {int}:  # null, bool, float, str...: the checked path names it
        raise _Slow
    try:
        arr = np.array(values, dtype=np.int64)
    except OverflowError:
        raise _Slow from None
    if int(arr.min()) < 0 or int(arr.max()) > high:
        raise _Slow
    return arr.astype(dtype, copy=False)


def _u64_column(values: list) -> Tuple[np.ndarray, np.ndarray]:
    types = set(map(type, values))
    if not types <= {int, str, type(None)}:
        raise _Slow
    null = np.zeros(len(values), bool)
    if type(None) in types:
        null = np.fromiter((v is None for v in values), bool, len(values))
        values = [0 if v is None else v for v in values]
    if str in types:
        try:
            values = [int(v, 0) if type(v) is str else v for v in values]
        except ValueError:
            raise _Slow from None
    try:
        return np.array(values, dtype=np.uint64), null
    except OverflowError:  # negative, or beyond 64 bits
        raise _Slow from None


def _string_column(values: list) -> Tuple[np.ndarray, List[Any]]:
    try:
        names = list(dict.fromkeys(values))  # first-seen order, at C speed
    except TypeError:  # a list or dict: not hashable
        raise _Slow from None
    if not all(type(v) is str for v in names):
        raise _Slow
    index = {v: i for i, v in enumerate(names)}
    return np.fromiter(map(index.__getitem__, values), np.int32, len(values)), names


def _checked_block(columns: Dict[str, list], path: Path) -> _Block:
    """The previous object-column path: one error line for a value that does not fit, else the block."""
    columns = dict(columns)
    for col in _U64:
        columns[col] = [_u64_value(v, path, col) for v in columns[col]]
    columns["comm"] = ["" if v is None else v for v in columns["comm"]]
    columns["cpu"] = [0 if v is None else v for v in columns["cpu"]]
    columns["pid"] = [t if p is None else p for p, t in zip(columns["pid"], columns["tid"])]
    frame = pd.DataFrame({c: pd.Series(columns[c], dtype=object) for c in INPUT_COLUMNS})
    check_events(frame, str(path))
    try:
        events = normalize(frame)
    except (ValueError, TypeError, OverflowError) as exc:
        raise SwapraceError(f"{path}: JSON Lines events have bad values ({str(exc).splitlines()[0]})"
                            ) from None
    return _block_of_frame(events)


def _u64_value(v: object, path: Path, name: str) -> object:
    """A JSON entry/folio/retval: an integer, a ``"0x..."`` (or decimal) string, or null; range-checked later."""
    if isinstance(v, str):
        try:
            return int(v, 0)
        except ValueError:
            raise SwapraceError(f"{path}: bad {name} value {v[:40]!r} (an integer or a \"0x...\" string)") from None
    return v


def _block_of_frame(events: pd.DataFrame) -> _Block:
    """A normalized (time-sorted) frame as a block: sorting again at the end keeps the same order."""
    ints = {c: events[c].to_numpy(dtype=dtype) for c, (dtype, _) in _INTS.items()}
    u64 = {c: (events[c].to_numpy(dtype="uint64", na_value=0), events[c].isna().to_numpy()) for c in _U64}
    codes = {c: events[c].cat.codes.to_numpy().astype(np.int32) for c in _STRINGS}
    cats = {c: [str(x) for x in events[c].cat.categories] for c in _STRINGS}
    return _Block(ints, u64, codes, cats)


# --- the table ----------------------------------------------------------------------------------------------


def _finish(state: _State) -> Capture:
    missing = [c for c in _REQUIRED if c not in state.seen]
    if missing and state.records:
        raise SwapraceError(f"{state.path}: JSON Lines events lack {', '.join(missing)}")
    if state.error:
        raise SwapraceError(state.error)
    if not state.blocks:
        return Capture(events=empty_events(), meta=state.meta, source_format="jsonl", skipped_lines=state.skipped)
    events = _table(state.blocks)
    return Capture(events=events, meta=state.meta, source_format="jsonl", skipped_lines=state.skipped)


def _table(blocks: List[_Block]) -> pd.DataFrame:
    """The event table of :func:`swaprace.events.normalize` from the blocks, one column at a time (each
    column's block parts are freed once it is built, so the peak is the table plus one column)."""
    ts = _concat([b.ints.pop("ts_ns") for b in blocks])
    order: Optional[np.ndarray] = None
    if len(ts) > 1 and bool(np.any(ts[1:] < ts[:-1])):
        order = np.argsort(ts, kind="stable")
        ts = ts[order]
    data: Dict[str, Any] = {"ts_ns": ts}
    for c in ("cpu", "pid", "tid"):
        data[c] = _reorder(_concat([b.ints.pop(c) for b in blocks]), order)
    for c in _STRINGS:
        data[c] = _categorical(blocks, c, order)
    entry_raw: Optional[np.ndarray] = None
    entry_null: Optional[np.ndarray] = None
    for c in _U64:
        values = _reorder(_concat([b.u64[c][0] for b in blocks]), order)
        null = _reorder(_concat([b.u64.pop(c)[1] for b in blocks]), order)
        data[c] = pd.arrays.IntegerArray(values, null)
        if c == "entry":
            entry_raw, entry_null = values, null
    assert entry_raw is not None and entry_null is not None
    n = len(ts)
    data["nr"] = pd.arrays.IntegerArray(np.zeros(n, np.uint32), np.ones(n, bool))
    data["swap_type"] = pd.arrays.IntegerArray((entry_raw >> np.uint64(SWP_TYPE_SHIFT)).astype(np.uint8),
                                               entry_null.copy())
    data["swap_offset"] = pd.arrays.IntegerArray(entry_raw & np.uint64(SWP_OFFSET_MASK), entry_null.copy())
    return pd.DataFrame({c: data.pop(c) for c in COLUMNS}, copy=False)


def _concat(parts: List[np.ndarray]) -> np.ndarray:
    out = parts[0] if len(parts) == 1 else np.concatenate(parts)
    parts.clear()
    return out


def _reorder(values: np.ndarray, order: Optional[np.ndarray]) -> np.ndarray:
    return values if order is None else values[order]


def _categorical(blocks: List[_Block], column: str, order: Optional[np.ndarray]) -> pd.Categorical:
    """Codes into the sorted union of the blocks' categories (what ``astype("category")`` gives)."""
    names = sorted({x for b in blocks for x in b.cats[column]})
    position = {x: i for i, x in enumerate(names)}
    dtype = np.int8 if len(names) < 127 else np.int16 if len(names) < 32767 else np.int32
    parts = []
    for b in blocks:
        recode = np.array([position[x] for x in b.cats[column]] + [-1], dtype=dtype)  # [-1]: a null stays null
        parts.append(recode[b.codes.pop(column)])
    codes = _reorder(_concat(parts), order)
    categories = pd.Index(names, dtype="string")
    return pd.Categorical.from_codes(codes, dtype=pd.CategoricalDtype(categories))

"""Read any capture a user can hand swaprace: native Parquet, JSON Lines, ftrace text, perf script text.

:func:`read_any` detects the format from the file's first bytes (``--format`` overrides it) and turns every
way a file can be wrong -- empty, truncated, an image, text with no swap-path events -- into one
:class:`SwapraceError` line. Text files are read in blocks of whole lines, so a multi-gigabyte ``trace`` dump
is never held twice in memory.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Deque, Dict, Iterator, List, Optional, Union

import numpy as np

import pandas as pd
from pandas.api.types import union_categoricals

from swaprace.readers.ftrace_text import FtraceChunk, merge_chunk_meta, parse_ftrace_bytes, place_lost
from swaprace.readers.perf_script import looks_like_perf, parse_perf
from swaprace.kernel.symbols import role_of_symbol, symbol_overrides
from swaprace.capture import PARQUET_MAGIC, read_capture
from swaprace.errors import SwapraceError
from swaprace.events import INPUT_COLUMNS, ROLES, Capture, CaptureMeta, empty_events, normalize

FORMATS = ("parquet", "jsonl", "ftrace", "perf")
PathLike = Union[str, "os.PathLike[str]"]
_BLOCK = 8 << 20  # text is parsed in blocks of about this many bytes (whole lines)
_SNIFF = 64 << 10
_FTRACE_LINE = re.compile(rb"^\s*.+-\d+\s+(\(\s*[\d-]+\)\s+)?\[\d+\]\s+(\S+\s+)?\d+(\.\d+)?: ", re.M)
_MAGIC = {
    b"\x89PNG\r\n\x1a\n": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"%PDF": "a PDF document",
    b"\x1f\x8b": "gzip-compressed (decompress it first)",
    b"\x28\xb5\x2f\xfd": "zstd-compressed (decompress it first)",
    b"PK\x03\x04": "a zip archive",
    b"\x7fELF": "an ELF binary",
    b"PERFILE2": "a perf.data file (run `perf script -i FILE > FILE.txt` and analyze the text)",
}


def read_any(path: PathLike, fmt: Optional[str] = None) -> Capture:
    """Read a capture in any supported format; ``fmt`` in :data:`FORMATS` overrides detection."""
    path = Path(path)
    if fmt is not None and fmt not in FORMATS:
        raise SwapraceError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    if not path.exists():
        raise SwapraceError(f"{path}: no such file")
    if path.is_dir():
        raise SwapraceError(f"{path}: is a directory, not a capture")
    try:
        with open(path, "rb") as fh:
            head = fh.read(_SNIFF)
    except OSError as exc:
        raise SwapraceError(f"{path}: cannot read ({exc.strerror})") from None
    if not head.strip():
        raise SwapraceError(f"{path}: empty file, not a capture")
    fmt = fmt or detect_format(path, head)
    if fmt == "parquet":
        capture = read_capture(path)
    elif fmt == "jsonl":
        capture = read_jsonl(path)
    elif fmt == "ftrace":
        capture = read_ftrace(path)
    else:
        capture = read_perf(path)
    if fmt in ("ftrace", "perf", "jsonl") and len(capture.events) == 0:
        raise SwapraceError(
            f"{path}: no swap-path events found ({capture.skipped_lines} lines skipped"
            + "".join(f", {n} events of {name}" for name, n in sorted(capture.unknown_functions.items()))
            + "; expected kprobe events "
            "on do_swap_page, swap_cache_get_folio, ... -- see `swaprace analyze --help`)")
    return capture


def detect_format(path: Path, head: bytes) -> str:
    """The format of a file from its first bytes; a clear error when it is none of :data:`FORMATS`."""
    if head.startswith(PARQUET_MAGIC):
        return "parquet"
    for magic, what in _MAGIC.items():
        if head.startswith(magic):
            raise SwapraceError(f"{path}: {what}, not a capture")
    if b"\x00" in head:
        raise SwapraceError(f"{path}: binary data of unknown format, not a capture (formats: {', '.join(FORMATS)})")
    text = head.decode("utf-8", "replace")
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    if first.lstrip().startswith("{"):
        return "jsonl"
    if "# tracer:" in text or text.startswith("# swaprace:") or _FTRACE_LINE.search(head):
        return "ftrace"
    if any(looks_like_perf(ln) for ln in text.splitlines()[:200]):
        return "perf"
    raise SwapraceError(
        f"{path}: unknown capture format (not Parquet, JSON Lines, ftrace or perf script text); "
        f"pass --format to force one")


# --- text -------------------------------------------------------------------------------------------------


def _blocks(path: Path) -> Iterator[bytes]:
    """The file in blocks that end on a line boundary."""
    with open(path, "rb") as fh:
        rest = b""
        while True:
            data = fh.read(_BLOCK)
            if not data:
                if rest:
                    yield rest
                return
            data = rest + data
            cut = data.rfind(b"\n")
            if cut < 0:
                rest = data
                continue
            yield data[: cut + 1]
            rest = data[cut + 1:]


def read_ftrace(path: PathLike, symbols: Optional[dict] = None, workers: Optional[int] = None) -> Capture:
    """Read ftrace ``trace``/``trace_pipe`` text; see :mod:`swaprace.readers.ftrace_text`.

    Blocks are parsed on ``workers`` threads (default: one per CPU; numpy releases the GIL), with at most two
    blocks per worker in flight so memory stays bounded on multi-gigabyte dumps.
    """
    path = Path(path)
    overrides = dict(symbols or {})
    blocks = _blocks(path)
    first = next(blocks, b"")
    if first.startswith(b"# swaprace:"):
        meta_chunk = parse_ftrace_bytes(first[: first.find(b"\n") + 1])
        if meta_chunk.meta:
            overrides.update(symbol_overrides(meta_chunk.meta.symbols))
    workers = workers or min(os.cpu_count() or 1, 8)
    chunks: List[FtraceChunk] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: Deque = deque()
        for block in itertools.chain([first], blocks):
            pending.append(pool.submit(parse_ftrace_bytes, block, overrides))
            while len(pending) >= 2 * workers:
                chunks.append(pending.popleft().result())
        chunks.extend(f.result() for f in pending)
    frames = [c.events for c in chunks if len(c.events)]
    if len(frames) > 1:
        events = _concat_events(frames)
        order = np.argsort(events["ts_ns"].to_numpy(), kind="stable")
        if np.any(order[1:] < order[:-1]):
            events = events.take(order).reset_index(drop=True)
    else:
        events = frames[0] if frames else empty_events()
    meta = merge_chunk_meta(chunks)
    skipped = sum(c.skipped for c in chunks)
    meta.extra.setdefault("comment_lines", sum(c.comment_lines for c in chunks))
    if not meta.lost_intervals:
        meta.lost_intervals = place_lost(events, [m for c in chunks for m in c.lost_marks])
    unknown: Dict[str, int] = {}
    for c in chunks:
        for name, n in c.unknown_functions.items():
            unknown[name] = unknown.get(name, 0) + n
    return Capture(events=events, meta=meta, source_format="ftrace", skipped_lines=skipped,
                   unknown_functions=unknown)


def _concat_events(frames: List[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate event tables whose categorical columns have different categories (recoding, no strings)."""
    cats = {col: union_categoricals([f[col].array for f in frames]) for col in ("comm", "func", "role", "phase")}
    events = pd.concat([f.drop(columns=list(cats)) for f in frames], ignore_index=True)
    for col, values in cats.items():
        events[col] = values
    return events[list(frames[0].columns)]


def read_perf(path: PathLike) -> Capture:
    """Read ``perf script`` text of kprobe events."""
    path = Path(path)
    with open(path, "r", encoding="utf-8", errors="replace") as fh:
        parsed = parse_perf(fh)
    meta = CaptureMeta(backend="perf-script")
    if parsed.lost_marks:
        meta.lost = {"perf_lost": sum(m[1] for m in parsed.lost_marks)}
        meta.lost_known = True
        meta.lost_intervals = place_lost(parsed.events, parsed.lost_marks)
    return Capture(events=parsed.events, meta=meta, source_format="perf", skipped_lines=parsed.skipped,
                   unknown_functions=parsed.unknown_functions)


# --- JSON Lines -------------------------------------------------------------------------------------------


def read_jsonl(path: PathLike) -> Capture:
    """Read JSON Lines: one event object per line (the columns of :mod:`swaprace.events`), optionally a first
    line ``{"meta": {...CaptureMeta...}}``. ``role`` may be left out (derived from ``func``); ``entry``,
    ``folio`` and ``retval`` may be integers or ``"0x..."`` strings; ``pid`` defaults to ``tid``."""
    path = Path(path)
    meta = CaptureMeta(backend="jsonl")
    records = []
    skipped = 0
    with open(path, "r", encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                raise SwapraceError(f"{path}:{n}: not valid JSON ({line.strip()[:60]!r})") from None
            if not isinstance(obj, dict):
                raise SwapraceError(f"{path}:{n}: expected a JSON object per line")
            if "meta" in obj and len(obj) == 1:
                meta = CaptureMeta.from_json(json.dumps(obj["meta"]))
                continue
            records.append(obj)
    if not records:
        return Capture(events=empty_events(), meta=meta, source_format="jsonl", skipped_lines=skipped)
    u64 = {col: [rec.get(col) for rec in records] for col in ("entry", "folio", "retval")}
    frame = pd.DataFrame.from_records(
        [{k: v for k, v in rec.items() if k not in u64} for rec in records])
    overrides = symbol_overrides(meta.symbols)
    if "role" not in frame.columns and "func" in frame.columns:
        frame["role"] = [role_of_symbol(str(f), overrides) for f in frame["func"]]
    for col, default in (("comm", ""), ("cpu", 0)):
        frame[col] = frame[col].fillna(default) if col in frame.columns else default
    if "pid" in frame.columns and "tid" in frame.columns:
        frame["pid"] = frame["pid"].fillna(frame["tid"])  # pid defaults to tid, per record
    for col in ("entry", "folio", "retval"):
        frame[col] = _u64_column(u64[col], path, col)  # from the records: a float column would lose bits
    required = [c for c in INPUT_COLUMNS if c not in ("pid",)]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise SwapraceError(f"{path}: JSON Lines events lack {', '.join(missing)}")
    bad_role = frame["role"].notna() & ~frame["role"].isin(ROLES)
    if bad_role.any():
        raise SwapraceError(f"{path}: unknown role {frame['role'][bad_role].iloc[0]!r} (roles: {', '.join(ROLES)})")
    unknown = frame["role"].isna()
    skipped += int(unknown.sum())
    frame = frame[~unknown]
    bad_phase = ~frame["phase"].isin(["call", "return"])
    if bad_phase.any():
        raise SwapraceError(f"{path}: phase must be 'call' or 'return' (got {frame['phase'][bad_phase].iloc[0]!r})")
    try:
        events = normalize(frame)
    except (ValueError, TypeError) as exc:
        raise SwapraceError(f"{path}: JSON Lines events have bad values ({str(exc).splitlines()[0]})") from None
    return Capture(events=events, meta=meta, source_format="jsonl", skipped_lines=skipped)


def _u64_column(values: list, path: Path, name: str) -> pd.arrays.IntegerArray:
    out = []
    for v in values:
        if v is None or (isinstance(v, float) and v != v):
            out.append(None)
        elif isinstance(v, str):
            try:
                out.append(int(v, 0) & (2**64 - 1))
            except ValueError:
                raise SwapraceError(f"{path}: bad {name} value {v!r}") from None
        elif isinstance(v, bool) or not isinstance(v, int):
            raise SwapraceError(f"{path}: bad {name} value {v!r} (an integer or a \"0x...\" string)")
        else:
            out.append(v & (2**64 - 1))
    return pd.array(out, dtype="UInt64")

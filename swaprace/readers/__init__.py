"""Read any capture a user can hand swaprace: native Parquet, JSON Lines, ftrace text, perf script text, and
trace-cmd's ``trace.dat`` and perf's ``perf.data`` through those tools (:mod:`swaprace.readers.tools`).

:func:`read_any` detects the format from the file's first bytes (``--format`` overrides it) and turns every
way a file can be wrong -- empty, truncated, an image, text with no swap-path events -- into one
:class:`SwapraceError` line. Text files are read in blocks of whole lines, so a multi-gigabyte ``trace`` dump
is never held twice in memory.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import itertools
import os
import re
import stat
import sys
import tempfile
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Deque, Dict, Iterator, List, Optional, Tuple, Union, cast

import numpy as np

import pandas as pd
from pandas.api.types import union_categoricals

from swaprace.readers.ftrace_text import FtraceChunk, merge_chunk_meta, parse_ftrace_bytes, place_lost
from swaprace.readers.perf_script import looks_like_perf, parse_perf
from swaprace.kernel.symbols import symbol_overrides
from swaprace.capture import PARQUET_MAGIC, read_capture
from swaprace.errors import SwapraceError
from swaprace.events import Capture, CaptureMeta, empty_events
from swaprace.readers.blocks import line_blocks
from swaprace.readers.jsonl import read_jsonl_stream
from swaprace.readers.tools import (PERF_DATA_MAGIC, TRACE_DAT_MAGIC, BlockReader, KallsymsMap,
                                    has_raw_locations, tool_output, unpadded)

FORMATS = ("parquet", "jsonl", "ftrace", "perf", "tracedat", "perfdata")
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
}


def read_any(path: PathLike, fmt: Optional[str] = None) -> Capture:
    """Read a capture in any supported format; ``fmt`` in :data:`FORMATS` overrides detection.

    ``path`` may be ``-`` (standard input). The input is opened once and its first bytes are sniffed from that
    same handle, so a pipe or FIFO is read once, whole; a FIFO with no writer reads as empty (never a hang).
    """
    if fmt is not None and fmt not in FORMATS:
        raise SwapraceError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    with open_input(path) as source:
        name = source.name
        head = source.peek_head(_SNIFF)
        if not head.strip():
            raise SwapraceError(f"{name}: empty file, not a capture")
        fmt = fmt or detect_format(Path(name), head)
        if fmt == "parquet":
            capture = read_capture(source.seekable_file(), name=name)
        elif fmt == "jsonl":
            capture = read_jsonl(source.file, name=name)
        elif fmt == "ftrace":
            capture = read_ftrace(source.file, name=name)
        elif fmt in ("tracedat", "perfdata"):
            with source.tool_path() as (tool_path, fds):
                reader = read_trace_dat if fmt == "tracedat" else read_perf_data
                capture = reader(tool_path, name=name, pass_fds=fds)
        else:
            capture = read_perf(source.file, name=name)
    if fmt != "parquet" and len(capture.events) == 0:
        raise SwapraceError(
            f"{name}: no swap-path events found ({capture.skipped_lines} lines skipped"
            + "".join(f", {n} events of {fn}" for fn, n in sorted(capture.unknown_functions.items()))
            + "; expected kprobe events "
            "on do_swap_page, swap_cache_get_folio, ... -- see `swaprace analyze --help`)")
    return capture


class _Input:
    """One opened input: a binary file whose first bytes can be looked at without losing them."""

    def __init__(self, fh: BinaryIO, name: str, owned: bool):
        self.name, self._fh, self._owned = name, fh, owned
        self._head = b""
        self._seekable = _seekable(fh)
        self.file: BinaryIO = fh

    def peek_head(self, size: int) -> bytes:
        """Up to ``size`` first bytes; the readers still get them (seek back, or replayed for a pipe)."""
        try:
            head = _read_upto(self._fh, size)
        except OSError as exc:
            raise SwapraceError(f"{self.name}: cannot read ({exc.strerror or exc})") from None
        if self._seekable:
            self._fh.seek(0)
        else:
            self.file = io.BufferedReader(_Replay(head, self._fh), buffer_size=1 << 20)
        self._head = head
        return head

    @contextlib.contextmanager
    def tool_path(self) -> Iterator[Tuple[str, Tuple[int, ...]]]:
        """(path, fds to pass) a tool can open the whole input by: the open file itself as ``/dev/fd/N``
        (also right for ``/dev/stdin`` redirected from a file), or a temporary copy of a pipe."""
        if self._seekable:
            # a copy numbered 3 or above: standard input's own fd 0 is the tool's /dev/null
            fd = fcntl.fcntl(self._fh.fileno(), fcntl.F_DUPFD_CLOEXEC, 3)
            try:
                yield f"/dev/fd/{fd}", (fd,)
            finally:
                os.close(fd)
            return
        with tempfile.NamedTemporaryFile(prefix="swaprace-", suffix=".bin") as copy:
            for block in iter(lambda: self.file.read(1 << 20), b""):
                copy.write(block)
            copy.flush()
            yield copy.name, ()

    def seekable_file(self) -> BinaryIO:
        """The whole input as a seekable file (a pipe is read into memory: Parquet needs its footer)."""
        if self._seekable:
            return self._fh
        return io.BytesIO(self.file.read())

    def __enter__(self) -> _Input:  # noqa: PYI034
        return self

    def __exit__(self, *exc) -> None:
        if self._owned:
            self._fh.close()


def open_input(path: PathLike) -> _Input:
    """Open a capture for reading, or say in one line why it cannot be (never blocks on a FIFO)."""
    if str(path) == "-":
        return _Input(sys.stdin.buffer, "<stdin>", owned=False)
    name = str(path)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise SwapraceError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise SwapraceError(f"{name}: is a directory, not a capture") from None
    except OSError as exc:
        raise SwapraceError(f"{name}: cannot open ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise SwapraceError(f"{name}: is a directory, not a capture")
        # O_NONBLOCK only kept the open of a FIFO without a writer from waiting; reads may wait for data
        # (with no writer at all, a FIFO reads as end of file at once)
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
        fh = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    return _Input(fh, name, owned=True)


class _Replay(io.RawIOBase):
    """Bytes already read from a pipe, then the rest of the pipe."""

    def __init__(self, head: bytes, rest: BinaryIO):
        self._head, self._rest = memoryview(head), rest

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        if len(self._head):
            n = min(len(buf), len(self._head))
            buf[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read1(len(buf)) if hasattr(self._rest, "read1") else self._rest.read(len(buf))
        buf[: len(data)] = data
        return len(data)


def _seekable(fh: BinaryIO) -> bool:
    try:
        return fh.seekable() and stat.S_ISREG(os.fstat(fh.fileno()).st_mode)
    except (OSError, ValueError, io.UnsupportedOperation):
        return fh.seekable()


def _read_upto(fh: BinaryIO, size: int) -> bytes:
    parts, got = [], 0
    while got < size:
        data = fh.read(size - got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


def detect_format(path: Path, head: bytes) -> str:
    """The format of a file from its first bytes; a clear error when it is none of :data:`FORMATS`."""
    if head.startswith(PARQUET_MAGIC):
        return "parquet"
    if head.startswith(TRACE_DAT_MAGIC):
        return "tracedat"
    if head.startswith(PERF_DATA_MAGIC):
        return "perfdata"
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


def _blocks(fh: BinaryIO) -> Iterator[bytes]:
    """The file in blocks that end on a line boundary."""
    return line_blocks(fh, _BLOCK)


@contextlib.contextmanager
def _text(raw: BinaryIO) -> Iterator[io.TextIOWrapper]:
    """Text lines of a binary file; bytes that are not UTF-8 are kept, escaped. The file stays open."""
    fh = io.TextIOWrapper(raw, encoding="utf-8", errors="backslashreplace", newline=None)
    try:
        yield fh
    finally:
        fh.detach()


@contextlib.contextmanager
def _binary(source: PathLike | BinaryIO) -> Iterator[BinaryIO]:
    """A path opened for reading (closed after), or a file object used as it is."""
    if hasattr(source, "read"):
        yield cast(BinaryIO, source)  # a file object: anything with read()
        return
    with open_input(source) as inp:
        yield inp.file


def read_ftrace(path: PathLike | BinaryIO, symbols: dict | None = None, workers: int | None = None,
                name: str | None = None) -> Capture:
    """Read ftrace ``trace``/``trace_pipe`` text; see :mod:`swaprace.readers.ftrace_text`.

    Blocks are parsed on ``workers`` threads (default: one per CPU; numpy releases the GIL), with at most two
    blocks per worker in flight so memory stays bounded on multi-gigabyte dumps.
    """
    label: str
    if name:
        label = name
    elif hasattr(path, "read"):
        label = getattr(path, "name", "<input>")
    else:
        label = str(path)
    with _binary(path) as fh:
        return _read_ftrace(fh, symbols, workers, label)


def _read_ftrace(fh: BinaryIO, symbols: dict | None, workers: int | None, label: str) -> Capture:
    overrides = dict(symbols or {})
    blocks = _blocks(fh)
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
    for c in chunks:
        if c.meta_error:
            raise SwapraceError(f"{label}: {c.meta_error}")
        if c.bad_timestamps:
            raise SwapraceError(f"{label}: {sum(x.bad_timestamps for x in chunks)} event line(s) with a timestamp "
                                f"that is negative or does not fit 64-bit ns, e.g. {c.bad_timestamp_line!r}")
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


def read_perf(path: PathLike | BinaryIO, name: str | None = None) -> Capture:
    """Read ``perf script`` text of kprobe events (bytes that are not UTF-8 are kept, escaped)."""
    label = name or (getattr(path, "name", "<input>") if hasattr(path, "read") else str(path))
    with _binary(path) as raw, _text(raw) as text:
        try:
            parsed = parse_perf(text)
        except SwapraceError as exc:
            raise SwapraceError(f"{label}: {exc}") from None
    meta = CaptureMeta(backend="perf-script")
    if parsed.lost_marks:
        meta.lost = {"perf_lost": sum(m[1] for m in parsed.lost_marks)}
        meta.lost_known = True
        meta.lost_intervals = place_lost(parsed.events, parsed.lost_marks)
    return Capture(events=parsed.events, meta=meta, source_format="perf", skipped_lines=parsed.skipped,
                   unknown_functions=parsed.unknown_functions)


# --- trace.dat and perf.data, through their tools ----------------------------------------------------------


def read_trace_dat(path: PathLike, name: Optional[str] = None, pass_fds: Tuple[int, ...] = ()) -> Capture:
    """Read trace-cmd's ``trace.dat``: ``trace-cmd report`` text streamed into the ftrace-text reader, raw
    kprobe addresses turned into symbols with the file's own kernel symbol table."""
    label = name or str(path)
    # -t: full nanosecond timestamps (report truncates to microseconds otherwise)
    with tool_output(["trace-cmd", "report", "-t", "-i", str(path)], label, pass_fds) as out:
        symbols: List[KallsymsMap] = []
        printed = [0]

        def blocks() -> Iterator[bytes]:
            for block in map(unpadded, _blocks(out)):
                printed[0] += len(block)
                if not symbols and has_raw_locations(block):
                    symbols.append(_trace_dat_symbols(path, label, pass_fds))
                yield symbols[0].rewrite(block) if symbols else block

        capture = _read_ftrace(io.BufferedReader(BlockReader(blocks()), 1 << 20), None, None, label)
        if not printed[0]:  # report says nothing, not even "cpus=N", and exits 0 on a truncated file
            raise SwapraceError(f"{label}: `trace-cmd report` prints nothing from it: a truncated or damaged "
                                "trace.dat")
    if capture.meta.backend == "ftrace-text":
        capture.meta.backend = "trace-cmd"
        _trace_dat_meta(path, label, pass_fds, capture.meta)
    capture.source_format = "trace.dat"
    return capture


_STAT_LINE = re.compile(r"^(overrun|dropped events):\s*(\d+)\s*$", re.M)


def _trace_dat_meta(path: PathLike, label: str, pass_fds: Tuple[int, ...], meta: CaptureMeta) -> None:
    """The kernel release (``report --uname``) and the ring buffer's losses (``report --stat``: each CPU's
    overrun and dropped events when recording stopped) into ``meta``; left unknown where the file lacks them."""
    try:
        with tool_output(["trace-cmd", "report", "--uname", "-i", str(path)], label, pass_fds) as out:
            uname = out.read().decode("utf-8", "replace")
        with tool_output(["trace-cmd", "report", "--stat", "-i", str(path)], label, pass_fds) as out:
            stat_text = out.read().decode("utf-8", "replace")
    except SwapraceError:
        return  # the events were read: facts about the recording are a bonus
    release = next((ln.split()[2] for ln in uname.splitlines() if ln.startswith("Linux ") and len(ln.split()) > 2),
                   None)
    meta.kernel_release = meta.kernel_release or release
    counts = _STAT_LINE.findall(stat_text)
    if counts:
        meta.lost["ftrace_overrun"] = sum(int(n) for what, n in counts if what == "overrun")
        meta.lost["ftrace_dropped"] = sum(int(n) for what, n in counts if what == "dropped events")
        meta.lost_known = True


def _trace_dat_symbols(path: PathLike, label: str, pass_fds: Tuple[int, ...]) -> KallsymsMap:
    with tool_output(["trace-cmd", "report", "-f", "-i", str(path)], label, pass_fds) as out:
        symbols = KallsymsMap(iter(out))
    if not len(symbols):
        raise SwapraceError(f"{label}: its kprobe events carry raw addresses and the file stores no kernel "
                            "symbols to name them (`trace-cmd report -f` lists none)")
    return symbols


#: The fields the perf-script reader needs, for tracepoint (kprobe) samples; nanosecond times.
PERF_SCRIPT_FIELDS = "trace:comm,pid,tid,cpu,time,event,trace"


def read_perf_data(path: PathLike, name: Optional[str] = None, pass_fds: Tuple[int, ...] = ()) -> Capture:
    """Read perf's ``perf.data`` of kprobe events: ``perf script`` text streamed into the perf-script reader.
    The function comes from the event name (``probe:<func>``, ``probe:<func>__return``) as there."""
    label = name or str(path)
    # -f: read a file another user recorded (perf refuses one it does not own otherwise)
    argv = ["perf", "script", "-f", "--ns", "-F", PERF_SCRIPT_FIELDS, "-i", str(path)]
    with tool_output(argv, label, pass_fds) as out:
        capture = read_perf(out, name=label)
    capture.meta.backend = "perf"
    capture.source_format = "perf.data"
    return capture


# --- JSON Lines -------------------------------------------------------------------------------------------


def read_jsonl(source: PathLike | BinaryIO, name: str | None = None) -> Capture:
    """Read JSON Lines: one event object per line (the columns of :mod:`swaprace.events`), optionally a first
    line ``{"meta": {...CaptureMeta...}}``. ``role`` may be left out (derived from ``func``); ``entry``,
    ``folio`` and ``retval`` may be integers or ``"0x..."`` strings; ``pid`` defaults to ``tid``."""
    path = Path(name or (getattr(source, "name", None) if hasattr(source, "read") else source) or "<input>")
    with _binary(source) as raw:
        return read_jsonl_stream(raw, path)

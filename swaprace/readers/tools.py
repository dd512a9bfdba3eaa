"""Binary traces read through the tool that wrote them: trace-cmd's ``trace.dat`` and perf's ``perf.data``.

Neither binary format is parsed here. ``trace-cmd report`` and ``perf script`` print text the ftrace-text and
perf-script readers already understand; their stdout is streamed into those readers (never held whole), with
no shell, stdin closed and a timeout. A missing tool, a tool that fails (a truncated or damaged file) or one
that hangs becomes one :class:`SwapraceError` line naming the file and what the tool said.

``trace-cmd report`` prints a kprobe event's location as raw addresses (``(ffffffff812ab0c0)``, ``(ffffffff8..
<- ffffffff8..)``: the event format's ``%lx``), where the kernel's own ``trace`` prints ``(sym+0x0/0x9f0)``. The
ftrace-text reader takes the role from that symbol, so :class:`KallsymsMap` turns the addresses back into
symbols with the kernel symbol table trace-cmd stores in the file (``trace-cmd report -f``).
"""

from __future__ import annotations

import bisect
import contextlib
import io
import os
import re
import shutil
import subprocess
import tempfile
import threading
from typing import BinaryIO, Dict, Iterator, List, Optional, Sequence, Tuple, cast

from swaprace.errors import SwapraceError

TRACE_DAT_MAGIC = b"\x17\x08\x44tracing"
PERF_DATA_MAGIC = b"PERFILE2"
#: Seconds a tool may take for one file (``$SWAPRACE_TOOL_TIMEOUT`` overrides): generous, a report of a
#: multi-gigabyte trace.dat takes minutes, but a hung tool must not hang swaprace.
DEFAULT_TIMEOUT = 1800.0
#: Debian package of each tool, for the "not installed" message.
PACKAGES = {"trace-cmd": "trace-cmd", "perf": "linux-perf"}
_STDERR_TAIL = 4096
_MEMO_MAX = 1 << 16


def tool_timeout() -> float:
    try:
        value = float(os.environ.get("SWAPRACE_TOOL_TIMEOUT", DEFAULT_TIMEOUT))
    except ValueError:
        raise SwapraceError("SWAPRACE_TOOL_TIMEOUT: not a number of seconds") from None
    return value if value > 0 else DEFAULT_TIMEOUT


#: What a tool's terse complaint usually means.
_HINTS = {"incompatible file format": "a perf.data of a newer perf than this one, or a damaged file"}


def _why(stderr: bytes) -> str:
    """The tool's most telling stderr line (its last non-blank one), shortened, with a hint where one helps."""
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    why = lines[-1][:200] if lines else "no message"
    hint = next((h for text, h in _HINTS.items() if text in why), None)
    return f"{why} ({hint})" if hint else why


@contextlib.contextmanager
def tool_output(argv: Sequence[str], label: str, pass_fds: Tuple[int, ...] = (),
                timeout: Optional[float] = None) -> Iterator[BinaryIO]:
    """The stdout of ``argv`` (no shell), for the caller to stream.

    Leaving the block waits for the tool; a tool that exits non-zero, is killed by the timeout or cannot be
    started raises one :class:`SwapraceError`. The tool's failure wins over an error the caller raised while
    reading (a parser that found nothing in a truncated file's partial output says less than the tool).
    """
    tool = argv[0]
    exe = shutil.which(tool)
    if exe is None:
        raise SwapraceError(f"{label}: reading it needs `{tool}`, which is not installed "
                            f"(Debian package {PACKAGES.get(tool, tool)})")
    limit = timeout if timeout is not None else tool_timeout()
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen([exe, *argv[1:]], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=err, pass_fds=pass_fds, env=dict(os.environ, PAGER="cat", LC_ALL="C"))
        except OSError as exc:
            raise SwapraceError(f"{label}: cannot run `{tool}` ({exc.strerror or exc})") from None
        expired = threading.Event()

        def _kill() -> None:
            expired.set()
            proc.kill()

        timer = threading.Timer(limit, _kill)
        timer.daemon = True
        timer.start()
        assert proc.stdout is not None
        caught: Optional[BaseException] = None
        try:
            yield cast(BinaryIO, proc.stdout)
        except BaseException as exc:  # noqa: BLE001 -- re-raised below unless the tool's failure says more
            caught = exc
            if proc.poll() is None and not expired.is_set():  # stopped by us: its exit status says nothing
                proc.kill()
                proc.wait()
                raise
        finally:
            proc.stdout.close()
            code = proc.wait()
            timer.cancel()
        if expired.is_set():
            raise SwapraceError(f"{label}: `{tool}` did not finish within {limit:g} s "
                                f"(SWAPRACE_TOOL_TIMEOUT sets the limit)")
        if code != 0 and (caught is None or isinstance(caught, SwapraceError)):
            err.seek(max(0, err.seek(0, io.SEEK_END) - _STDERR_TAIL))
            status = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
            raise SwapraceError(f"{label}: `{' '.join(argv[:2])}` failed ({status}): {_why(err.read())}") from None
        if caught is not None:
            raise caught


# --- trace-cmd addresses -> symbols ---------------------------------------------------------------------

_FUNC_LINE = re.compile(rb"^\s*(?:0x)?([0-9a-fA-F]{8,16})\s+(\S+)")
#: A kprobe location of raw addresses: "(addr)" of a call, "(addr <- addr)" of a return.
_RAW_LOC = re.compile(rb": \((?:0x)?([0-9a-f]{8,16})(?: <- (?:0x)?([0-9a-f]{8,16}))?\)")
#: report pads event names to a column ("sr1_lookup:     (..."); the ftrace-text reader wants ": (".
_PADDED_LOC = re.compile(rb": {2,}\(")


class KallsymsMap:
    """Kernel address -> ``symbol+0xoff`` from a symbol list of ``ADDRESS NAME`` lines."""

    def __init__(self, lines: Iterator[bytes]):
        pairs: Dict[int, str] = {}
        for line in lines:
            m = _FUNC_LINE.match(line)
            if m:
                pairs.setdefault(int(m.group(1), 16), m.group(2).decode("utf-8", "replace"))
        self._addrs: List[int] = sorted(pairs)
        self._names = [pairs[a] for a in self._addrs]
        self._memo: Dict[bytes, bytes] = {}  # location text -> its rewrite: a trace has few distinct ones

    def __len__(self) -> int:
        return len(self._addrs)

    def lookup(self, addr: int) -> Optional[Tuple[str, int]]:
        """(symbol, offset) of the nearest symbol at or below ``addr``; None below the first."""
        i = bisect.bisect_right(self._addrs, addr) - 1
        if i < 0:
            return None
        return self._names[i], addr - self._addrs[i]

    def rewrite(self, block: bytes) -> bytes:
        """``block`` with every raw kprobe location written as the kernel's ``trace`` file writes it:
        ``(sym+0xoff/0x0)`` for a call, ``(caller+0xoff/0x0 <- sym)`` for a return (the size is not known)."""
        def loc(addr: bytes) -> bytes:
            found = self.lookup(int(addr, 16))
            return addr if found is None else f"{found[0]}+{found[1]:#x}/0x0".encode()

        def fresh(m: re.Match) -> bytes:
            if m.group(2) is None:
                return b": (" + loc(m.group(1)) + b")"
            probed = self.lookup(int(m.group(1), 16))
            name = m.group(1) if probed is None else probed[0].encode()
            return b": (" + loc(m.group(2)) + b" <- " + name + b")"

        def sub(m: re.Match) -> bytes:
            text = m.group(0)
            done = self._memo.get(text)
            if done is None:
                if len(self._memo) >= _MEMO_MAX:
                    self._memo.clear()
                done = self._memo[text] = fresh(m)
            return done

        return _RAW_LOC.sub(sub, block)


def unpadded(block: bytes) -> bytes:
    """``block`` with the event name's padding before a kprobe location taken out."""
    return _PADDED_LOC.sub(b": (", block)


def has_raw_locations(block: bytes) -> bool:
    """True when ``block`` (unpadded) has a kprobe location of raw addresses."""
    return _RAW_LOC.search(block) is not None


class BlockReader(io.RawIOBase):
    """A readable binary stream over an iterator of byte blocks."""

    def __init__(self, blocks: Iterator[bytes]):
        self._blocks, self._rest = blocks, memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        while not len(self._rest):
            block = next(self._blocks, None)
            if block is None:
                return 0
            self._rest = memoryview(block)
        n = min(len(buf), len(self._rest))
        buf[:n] = self._rest[:n]
        self._rest = self._rest[n:]
        return n

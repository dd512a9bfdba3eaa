"""Small OS helpers shared by the live tracer and the stress companion (stdlib only)."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import IO


def pid_alive(pid: int) -> bool:
    """True while a process with this pid exists (even one we may not signal)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class UnsafeOutput(OSError):
    """An output path swaprace refuses to write (symlink, device, another user's directory, an input)."""


def check_output_path(path: os.PathLike[str] | str, inputs: tuple | list = ()) -> None:
    """Refuse an output path that would redirect or destroy something (swaprace often runs as root).

    Refused: a final component that is a symlink (never followed for output), an existing target that is not
    a regular file (``/dev/null``, a FIFO, a directory), a target that is one of ``inputs`` (same file), and a
    directory owned by another user than us or root (someone else could plant links or swap files there).
    Raises :class:`UnsafeOutput` saying why.
    """
    name = os.fspath(path)
    directory = os.path.dirname(name) or "."
    try:
        dst = os.stat(directory)
    except FileNotFoundError:
        dst = None  # created by the writer, owned by us
    if dst is not None and dst.st_uid not in (os.geteuid(), 0):
        raise UnsafeOutput(f"not writing {name}: directory {directory} belongs to another user (uid {dst.st_uid})")
    try:
        st = os.lstat(name)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeOutput(f"not writing {name}: it is a symbolic link (outputs never follow links)")
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeOutput(f"not writing {name}: it exists and is not a regular file")
    for other in inputs:
        try:
            ost = os.stat(other)
        except OSError:
            continue
        if (ost.st_dev, ost.st_ino) == (st.st_dev, st.st_ino):
            raise UnsafeOutput(f"not writing {name}: it is the input {other} (refusing to overwrite an input)")


@contextlib.contextmanager
def atomic_write(path: os.PathLike[str] | str, mode: str = "wb", inputs: tuple | list = (),
                 file_mode: int | None = None) -> Iterator[IO]:
    """Write ``path`` atomically and safely: the one writer of the package (stdlib only, usable everywhere).

    :func:`check_output_path` first; then a temp file created exclusively (``mkstemp``: O_EXCL, a random
    name) in the target directory, fsync, rename over ``path`` (a rename replaces a link planted meanwhile, it
    never follows it). On any failure or signal the temp file is removed and ``path`` is untouched: a reader
    sees the old file or the whole new one, never a truncated one.
    """
    name = os.fspath(path)
    check_output_path(name, inputs)
    directory = os.path.dirname(name) or "."
    os.makedirs(directory, exist_ok=True)
    base = os.path.basename(name)
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, file_mode if file_mode is not None else 0o666 & ~_umask())  # mkstemp makes 0600
        os.replace(tmp, name)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: os.PathLike[str] | str, text: str, inputs: tuple | list = ()) -> None:
    with atomic_write(path, "w", inputs=inputs) as fh:
        fh.write(text)


def atomic_write_bytes(path: os.PathLike[str] | str, data: bytes, inputs: tuple | list = ()) -> None:
    with atomic_write(path, "wb", inputs=inputs) as fh:
        fh.write(data)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: The signals that mean "stop": Ctrl-C, kill, and the terminal going away (ssh dropped, window closed).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def signals_raise(make: Callable[[int], BaseException] | None = None,
                  signals: tuple = STOP_SIGNALS) -> Iterator[None]:
    """The package's one signal-to-exception helper: while inside, each of ``signals`` raises ``make(signum)``
    (default :class:`KeyboardInterrupt`) in the main thread, so clean-up runs as it does on Ctrl-C. The
    previous handlers come back on exit. Outside the main thread it does nothing (signals go to the main one).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: object) -> None:
        raise (make(signum) if make else KeyboardInterrupt(signal.Signals(signum).name))

    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def signals_deferred(signals: tuple = STOP_SIGNALS) -> Iterator[list]:
    """Hold ``signals`` back while inside (a capture being written must not be cut by a second Ctrl-C); yields
    the list of the signal numbers that arrived meanwhile, for the caller to act on afterwards."""
    arrived: list = []
    if threading.current_thread() is not threading.main_thread():
        yield arrived
        return
    previous = {sig: signal.signal(sig, lambda signum, _f: arrived.append(signum)) for sig in signals}
    try:
        yield arrived
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)

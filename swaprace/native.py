"""Build and load swaprace's small C helpers at run time, with the system C compiler.

Shared by the stress helper (:mod:`swaprace.stress.native`) and the ftrace text scanner
(:mod:`swaprace.readers.ftrace_scan`). A helper is compiled once per source version (and flags) into the
cache directory, into a temporary file renamed into place, so concurrent runs never load a half-written
object. swaprace runs as root: a shared object is only ever loaded from a path no other user can write
(:func:`untrusted`).
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence

from swaprace.errors import SwapraceError


def cache_dir() -> Path:
    base = os.environ.get("SWAPRACE_CACHE") or os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "swaprace"


def find_compiler() -> Optional[str]:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def build_shared(source: Path, stem: str, cflags: Sequence[str], what: str,
                 compiler: Optional[str] = None) -> Optional[Path]:
    """Compile ``source`` into ``<cache>/<stem>-<digest>.so`` (once per source and flags) and return its path;
    None when this machine has no C compiler. A failed compile raises :class:`SwapraceError` naming ``what``."""
    compiler = compiler or find_compiler()
    if compiler is None:
        return None
    flags: List[str] = list(cflags)
    digest = hashlib.sha256(source.read_bytes() + " ".join(flags).encode()).hexdigest()[:16]
    target = cache_dir() / f"{stem}-{digest}.so"
    if target.exists() and untrusted(target) is None:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if untrusted(target.parent) is not None or (target.exists() or target.is_symlink()):
        # e.g. root under `sudo -E` with the user's cache: never load (or build into) what another user can
        # write; build a private copy for this run instead
        private = Path(tempfile.mkdtemp(prefix=f"swaprace-{stem}-"))
        atexit.register(shutil.rmtree, private, ignore_errors=True)
        target = private / target.name
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}-", suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        proc = subprocess.run([compiler, *flags, "-o", tmp, str(source)], capture_output=True, text=True)
        if proc.returncode != 0:
            first = (proc.stderr.strip().splitlines() or ["no output"])[0]
            raise SwapraceError(f"building {what} with {compiler} failed: {first}")
        os.chmod(tmp, 0o755)  # not group- or world-writable, whatever the umask (see untrusted())
        os.replace(tmp, target)  # atomic: concurrent runs never load a half-written object
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


def untrusted(path: Path) -> str | None:
    """Why loading code from ``path`` (a file or directory) would let another user run code as us, or None.

    It must not be a symbolic link, must belong to us or root, and must not be writable by group or others;
    for a file, the same holds for its directory.
    """
    try:
        st = os.lstat(path)
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    if stat.S_ISLNK(st.st_mode):
        return f"{path} is a symbolic link"
    if st.st_uid not in (os.geteuid(), 0):
        return f"{path} belongs to uid {st.st_uid}"
    if st.st_mode & 0o022 and not (stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX and st.st_uid == 0):
        return f"{path} is writable by group or others (mode {stat.S_IMODE(st.st_mode):o})"
    if not stat.S_ISDIR(st.st_mode):
        return untrusted(path.parent)
    return None

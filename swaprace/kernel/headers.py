"""Where bcc finds the running kernel's headers, and making them available from the kernel's own copy.

bcc compiles its program against the running kernel's headers: ``/lib/modules/RELEASE/build`` (a
``linux-headers`` package) or ``$BCC_KERNEL_SOURCE``; failing both it unpacks ``/sys/kernel/kheaders.tar.xz``
(``CONFIG_IKHEADERS``) by running ``tar -xf``, which needs the ``xz`` program -- missing on a minimal system
such as the test box, where the lab kernels (built with CONFIG_IKHEADERS and no header package) then fail to
compile with "Unable to find kernel headers".

:func:`ensure_kernel_headers` unpacks the kheaders archive with Python's own lzma into a root-owned directory
of swaprace's (loading the ``kheaders`` module first when the archive is a module, and unloading it after)
and points ``BCC_KERNEL_SOURCE`` at it (the archive has the layout of a build tree:
``include/``, ``arch/<arch>/include/`` with the generated headers). A user's own ``BCC_KERNEL_SOURCE`` wins.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import tempfile
from pathlib import Path
from typing import Optional

from swaprace.errors import SwapraceError

KHEADERS = Path("/sys/kernel/kheaders.tar.xz")
CACHE_DIR = Path("/var/cache/swaprace")


def module_build_dir(release: Optional[str] = None) -> Path:
    return Path("/lib/modules") / (release or os.uname().release) / "build"


def headers_source(release: Optional[str] = None) -> str:
    """Where bcc will take the headers from, in its own order (for ``doctor`` and error messages)."""
    if os.environ.get("BCC_KERNEL_SOURCE"):
        return f"BCC_KERNEL_SOURCE={os.environ['BCC_KERNEL_SOURCE']}"
    build = module_build_dir(release)
    if build.is_dir():
        return str(build)
    if KHEADERS.exists():
        return f"{KHEADERS} (CONFIG_IKHEADERS)"
    return "none (install the linux-headers package of this kernel)"


def ensure_kernel_headers(release: Optional[str] = None, kheaders: Path = KHEADERS,
                          cache_dir: Path = CACHE_DIR) -> Optional[Path]:
    """Point bcc at unpacked kheaders when it has no other header source; returns that directory or None."""
    release = release or os.uname().release
    if os.environ.get("BCC_KERNEL_SOURCE") or module_build_dir(release).is_dir():
        return None
    target = cache_dir / f"kheaders-{release}"
    if not _is_ours(target):
        loaded = not kheaders.exists() and kheaders == KHEADERS and _modprobe(["kheaders"])
        try:
            if not kheaders.exists():
                return None
            _unpack(kheaders, target)
        finally:
            if loaded:  # as found: bcc too unloads the module it loaded
                _modprobe(["-r", "kheaders"])
    os.environ["BCC_KERNEL_SOURCE"] = str(target)
    return target


def _modprobe(args: list) -> bool:
    """CONFIG_IKHEADERS=m: the archive appears once the module is loaded (what bcc itself tries)."""
    import subprocess

    try:
        return subprocess.run(["modprobe", "-q", *args], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _is_ours(path: Path) -> bool:
    """A complete unpack of ours: a real directory (not a link) owned by us, with the marker file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise SwapraceError(f"{path} exists and is not a directory of swaprace's (remove it)")
    return (path / ".swaprace-complete").exists()


def _plain(member: tarfile.TarInfo) -> bool:
    parts = Path(member.name).parts
    return (member.isfile() or member.isdir()) and not member.name.startswith("/") and ".." not in parts


def _unpack(archive: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        with tarfile.open(archive, "r:xz") as tar:
            members = [m for m in tar.getmembers() if _plain(m)]  # regular files and directories only
            if hasattr(tarfile, "data_filter"):  # 3.11.4+: also refuses anything outside the tree
                tar.extractall(tmp, members=members, filter="data")
            else:
                tar.extractall(tmp, members=members)
        (tmp / ".swaprace-complete").touch()
        if target.exists():  # an incomplete unpack of ours (a crash mid-way): replace it
            shutil.rmtree(target)
        os.rename(tmp, target)
    except (OSError, tarfile.TarError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SwapraceError(f"cannot unpack the kernel's headers {archive} into {target}: {exc}") from None

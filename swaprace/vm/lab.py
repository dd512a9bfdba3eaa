"""The lab kernels: Debian's 6.1 with one swap-in race guard reverted, built on the host, on the bookworm disk.

``lab-2024`` undoes 13ddaf26be32 (the ``swapcache_prepare()`` guard of the SWP_SYNCHRONOUS_IO skip-swapcache
path), ``lab-2010`` the ``!folio_test_swapcache(folio) || page_private(page) != entry.val`` bail-out of
4969c1192d15/31c4a3d3a0f8; both carry the window widener (sysctl ``vm.swaprace_widen_us``). The patches,
the config fragment and the build script live in ``vm-setup/lab/``.

Build: ``vm-setup/lab/build-lab-kernel.sh`` extracts Debian's ``linux-source-6.1`` tarball once into a
shared tree (``<cache>/lab-build/``) and builds ``bzImage`` there; the two lab kernels differ only in
``mm/memory.c`` (and the release string), so the second one is an incremental rebuild. Kernel builds are
serialized by one lock (``lab-build/.lock``): never two at once on the shared tree (nor on 2 cores).

Cache: ``<cache>/<kernel>/vmlinuz-<key>`` with ``lab.json``; the key hashes the source tarball, the patches,
the config fragment and the build script. Superseded kernels are pruned like the images (after an hour).
The disk is the bookworm image's (built or reused first); everything the box needs is built in, so the lab
kernel boots without an initrd and loads no modules (the disk's modules belong to Debian's kernel).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

from swaprace.errors import SwapraceError

#: Debian's linux-source-6.1 (``apt-get install linux-source-6.1``); ``$SWAPRACE_LAB_SOURCE`` overrides.
DEFAULT_SOURCE = Path("/usr/src/linux-source-6.1.tar.xz")
WIDEN_PATCH = "lab-widen-window.patch"


@dataclass(frozen=True)
class LabKernel:
    name: str
    patch: str  # in vm-setup/lab/
    localversion: str
    reverts: str  # the upstream commit(s) the patch undoes
    base: str = "bookworm"  # whose disk (userland) it boots


LAB_KERNELS: Dict[str, LabKernel] = {
    "lab-2024": LabKernel("lab-2024", "lab-2024-revert-13ddaf26be32.patch", "-lab2024", "13ddaf26be32"),
    "lab-2010": LabKernel("lab-2010", "lab-2010-revert-4969c1192d15.patch", "-lab2010",
                          "4969c1192d15 + 31c4a3d3a0f8"),
}


def lab_dir() -> Path:
    from swaprace.vm.image import setup_dir

    return setup_dir() / "lab"


def source_tarball() -> Path:
    path = Path(os.environ.get("SWAPRACE_LAB_SOURCE") or DEFAULT_SOURCE)
    if not path.is_file():
        raise SwapraceError(
            f"no kernel source at {path}: the lab kernels build from Debian's linux-source-6.1 "
            "(apt-get install linux-source-6.1; $SWAPRACE_LAB_SOURCE names another tarball)"
        )
    return path


#: What a kernel build runs besides make and the compiler, and the Debian package of each. pahole is needed only
#: at the very end (BTF for vmlinux), so without this check a build fails after 20 minutes.
BUILD_TOOLS = {"flex": "flex", "bison": "bison", "bc": "bc", "cpio": "cpio", "pahole": "dwarves", "make": "make",
               "gcc": "gcc"}
BUILD_HEADERS = {"/usr/include/libelf.h": "libelf-dev", "/usr/include/openssl/ssl.h": "libssl-dev"}


def missing_build_packages() -> list:
    """The Debian packages a lab kernel build needs that this machine lacks (empty: it can build)."""
    import shutil

    missing = [pkg for tool, pkg in BUILD_TOOLS.items() if shutil.which(tool) is None]
    missing += [pkg for path, pkg in BUILD_HEADERS.items() if not Path(path).exists()]
    return sorted(set(missing))


def build_dir() -> Path:
    from swaprace.vm.image import cache_dir

    return cache_dir() / "lab-build"


def _tarball_digest(path: Path) -> str:
    """sha256 of the tarball, remembered by (path, size, mtime): hashing 139 MB on every vm run is waste."""
    st = path.stat()
    memo_path = build_dir() / "source-digest.json"
    stamp = f"{path} {st.st_size} {int(st.st_mtime)}"
    try:
        memo = json.loads(memo_path.read_text())
        if memo.get("stamp") == stamp:
            return str(memo["sha256"])
    except (OSError, ValueError, KeyError):
        pass
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    memo_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = memo_path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"stamp": stamp, "sha256": digest.hexdigest()}))
    os.replace(tmp, memo_path)
    return digest.hexdigest()


def lab_key(kernel: str) -> str:
    """Hash of what the lab kernel is made of: source tarball, its patch, the widener, config, build script."""
    from swaprace.vm.image import _digest

    spec = LAB_KERNELS[kernel]
    here = lab_dir()
    contents = {name: (here / name).read_bytes()
                for name in (spec.patch, WIDEN_PATCH, "lab.config", "build-lab-kernel.sh")}
    contents["source"] = _tarball_digest(source_tarball()).encode()
    contents["localversion"] = spec.localversion.encode()
    return _digest(contents)


def _read_json(path: Path) -> Dict[str, object]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _prune(kernel_dir: Path, key: str) -> None:
    from swaprace.vm.image import STALE_GRACE_SECONDS

    for stale in kernel_dir.iterdir():
        try:
            if (re.fullmatch(r"vmlinuz-[0-9a-f]{16}(\.tmp)?", stale.name) and key not in stale.name
                    and time.time() - stale.stat().st_mtime > STALE_GRACE_SECONDS):
                stale.unlink()
        except FileNotFoundError:
            pass


def cached_lab_kernel(kernel: str) -> Optional[Dict[str, object]]:
    """The lab kernel's cache record ({key, release, vmlinuz, build_seconds...}) when it is current, else None.
    Never builds (tests use it to decide whether the lab run is affordable)."""
    from swaprace.vm.image import cache_dir

    try:
        key = lab_key(kernel)
    except SwapraceError:
        return None
    kernel_dir = cache_dir() / kernel
    state = _read_json(kernel_dir / "lab.json")
    vmlinuz = kernel_dir / f"vmlinuz-{key}"
    if state.get("key") != key or not vmlinuz.is_file():
        return None
    return dict(state, vmlinuz=str(vmlinuz))


def build_lab_kernel(kernel: str, progress=None, rebuild: bool = False) -> Dict[str, object]:
    """Return the cache record of ``kernel``'s bzImage, building it first when it is missing or stale."""
    from swaprace.vm.image import build_lock, cache_dir, sigterm_as_interrupt

    spec = LAB_KERNELS[kernel]
    key = lab_key(kernel)
    kernel_dir = cache_dir() / kernel
    if not rebuild:
        cached = cached_lab_kernel(kernel)
        if cached:
            _prune(kernel_dir, key)
            return cached
    if os.geteuid() != 0:
        raise SwapraceError("building a lab kernel needs root (it shares the test box cache)")
    kernel_dir.mkdir(parents=True, exist_ok=True)
    # One lock for the shared build tree: the two lab kernels never build at the same time.
    with build_lock(build_dir(), progress):
        if not rebuild:
            cached = cached_lab_kernel(kernel)
            if cached:
                return cached
        missing = missing_build_packages()
        if missing:
            raise SwapraceError(f"building a lab kernel needs these packages: apt-get install {' '.join(missing)}")
        here = lab_dir()
        output = kernel_dir / f"vmlinuz-{key}"
        log_path = kernel_dir / "build.log"
        command = [str(here / "build-lab-kernel.sh"), str(source_tarball()), str(build_dir()), spec.localversion,
                   str(output), str(here / spec.patch), str(here / WIDEN_PATCH)]
        if progress:
            progress(f"building the {kernel} kernel (log: {log_path}); a cold build takes ~20 min on 2 cores")
        started = time.monotonic()
        release = ""
        with open(log_path, "w") as log:
            proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True)
            assert proc.stdout is not None
            try:
                with sigterm_as_interrupt():
                    for line in proc.stdout:
                        log.write(line)
                        log.flush()
                        if line.startswith("release="):
                            release = line.strip().partition("=")[2]
                        elif progress and line.startswith("build-lab-kernel["):
                            progress(line.rstrip())
                    status = proc.wait()
            except BaseException:
                try:
                    os.killpg(proc.pid, 9)
                except ProcessLookupError:
                    pass
                proc.wait()
                raise
        seconds = time.monotonic() - started
        if status != 0 or not output.is_file():
            tail = " | ".join(log_path.read_text(errors="replace").strip().splitlines()[-3:])
            raise SwapraceError(f"building the {kernel} kernel failed (exit {status}): {tail} (full log: {log_path})")
        state = {"key": key, "kernel": kernel, "release": release, "reverts": spec.reverts,
                 "build_seconds": round(seconds, 1), "made": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (kernel_dir / "lab.json").write_text(json.dumps(state, indent=2) + "\n")
        _prune(kernel_dir, key)
        return dict(state, vmlinuz=str(output), built=True)

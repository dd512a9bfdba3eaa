"""Build and cache the test box image of one kernel.

Two cached stages per kernel, each keyed by a hash of exactly what went into it and rebuilt only when that
changes:

1. the root filesystem tree (``rootfs/``): ``vm-setup/build-rootfs.sh`` runs debootstrap and apt-get/pip in a
   chroot (minutes, needs the network). Key: the build script, the package lists, the guest requirements, the
   kernel name and the Debian mirror.
2. the boot files: the guest's own files (``vm-setup/guest/``) are copied into the tree and an ext4 disk image
   is made from it with ``mkfs.ext4 -d`` (no loop mounts), next to the tree's kernel and a small initrd
   (``mkinitramfs`` with just the modules of ``vm-setup/initramfs-modules.txt``) (a minute). Key: stage 1's
   key plus the guest files and the initramfs module list.

Disk, kernel and initrd files carry their key in their name and are never modified once made: guests boot
from a per-run qcow2 overlay on top of them, so any number of guests can run at once, also during a rebuild.
Builds of one kernel are serialized by a lock file.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

from swaprace.errors import SwapraceError
from swaprace.osutil import signals_raise

#: The kernels a test box can be built with; each has a ``vm-setup/packages/<name>.txt``.
KERNELS = ("bookworm", "trixie-backports")
#: Lab kernels (swaprace/vm/lab.py): Debian's 6.1 built on the host with a race guard reverted, booted on
#: the bookworm disk. Not in KERNELS: the suite's per-kernel tests stay on the stock kernels.
LAB_KERNELS = ("lab-2024", "lab-2010")
DEFAULT_KERNEL = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
#: Free space left in the guest's root filesystem for captures, compiled helpers and test files.
ROOT_HEADROOM_MIB = 1024
#: Bump when the way the disk image is made changes (not covered by the hashed files).
DISK_FORMAT_VERSION = "2"
GUEST_INIT = "/opt/swaprace-testbox/init"
#: Superseded image files are deleted by the next build once they are this old.
STALE_GRACE_SECONDS = 3600

Progress = Optional[Callable[[str], None]]


@dataclass
class BuiltImage:
    """A ready test box image of one kernel (all paths absolute, files never modified in place)."""

    kernel: str
    key: str
    disk: Path
    vmlinuz: Path
    initrd: Optional[Path]  # None: the kernel boots without one (lab kernels: everything built in)
    suite: str
    release: str
    disk_bytes: int  # space the disk image takes in the cache (it is sparse)
    disk_size: int  # size the guest sees
    build_seconds: Optional[float]  # None when the cached image was reused
    rootfs_seconds: Optional[float]  # time of stage 1 when it ran in this call

    def to_json(self) -> Dict[str, object]:
        out = asdict(self)
        for name in ("disk", "vmlinuz", "initrd"):
            out[name] = None if out[name] is None else str(out[name])
        return out


def checkout_dir() -> Path:
    """The source checkout this swaprace runs from: it is what the guest gets as /mnt/swaprace."""
    return Path(__file__).resolve().parents[2]


def setup_dir() -> Path:
    path = checkout_dir() / "vm-setup"
    if not (path / "build-rootfs.sh").is_file():
        raise SwapraceError(
            f"no vm-setup/ next to this swaprace ({checkout_dir()}): the test box needs a source checkout"
        )
    return path


def cache_dir() -> Path:
    """``$SWAPRACE_VM_CACHE``, else ``$XDG_CACHE_HOME/swaprace/vm``, else ``~/.cache/swaprace/vm``."""
    if os.environ.get("SWAPRACE_VM_CACHE"):
        return Path(os.environ["SWAPRACE_VM_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "swaprace" / "vm"


def debian_mirror() -> str:
    """``$SWAPRACE_VM_MIRROR``, else the host's own Debian mirror (apt sources), else deb.debian.org."""
    if os.environ.get("SWAPRACE_VM_MIRROR"):
        return os.environ["SWAPRACE_VM_MIRROR"].rstrip("/")
    sources = [Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")]
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        for match in re.finditer(r"(?:^URIs:\s*|^deb\s+(?:\[[^\]]*\]\s+)?)(\S+)", text, re.M):
            uri = match.group(1).rstrip("/")
            if uri.endswith("/debian"):  # not debian-security or a third-party repository
                return uri
    return DEFAULT_MIRROR


def check_kernel(kernel: str) -> str:
    if kernel not in KERNELS + LAB_KERNELS:
        raise SwapraceError(f"unknown test box kernel {kernel!r}; known: {', '.join(KERNELS + LAB_KERNELS)}")
    return kernel


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into KeyboardInterrupt for a while, so clean-up code runs as it does on Ctrl-C
    (:func:`swaprace.osutil.signals_raise`)."""
    with signals_raise(signals=(signal.SIGTERM, signal.SIGHUP)):
        yield


def _digest(named_contents: Dict[str, bytes]) -> str:
    outer = hashlib.sha256()
    for name in sorted(named_contents):
        outer.update(name.encode() + b"\0" + hashlib.sha256(named_contents[name]).digest())
    return outer.hexdigest()[:16]


def rootfs_key(kernel: str) -> str:
    """Hash of everything stage 1 is made of."""
    setup = setup_dir()
    files = ["build-rootfs.sh", "packages/common.txt", f"packages/{kernel}.txt", "requirements-guest.txt"]
    contents = {name: (setup / name).read_bytes() for name in files}
    contents["kernel"] = kernel.encode()
    contents["mirror"] = debian_mirror().encode()
    return _digest(contents)


def guest_files() -> List[Path]:
    return sorted(p for p in (setup_dir() / "guest").iterdir() if p.is_file())


def image_key(kernel: str) -> str:
    """Hash of everything the bootable image is made of (stage 1 key + guest files + disk format)."""
    contents = {f"guest/{p.name}": p.read_bytes() for p in guest_files()}
    contents["initramfs-modules.txt"] = (setup_dir() / "initramfs-modules.txt").read_bytes()
    contents["rootfs"] = rootfs_key(kernel).encode()
    contents["format"] = f"{DISK_FORMAT_VERSION} {ROOT_HEADROOM_MIB}".encode()
    return _digest(contents)


@contextmanager
def build_lock(kernel_dir: Path, progress: Progress) -> Iterator[None]:
    """Exclusive lock of one kernel's cache: a second builder waits instead of building the same image twice."""
    kernel_dir.mkdir(parents=True, exist_ok=True)
    with open(kernel_dir / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if progress:
                progress(f"waiting for another build in {kernel_dir}")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _read_json(path: Path) -> Dict[str, object]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _allocated_bytes(path: Path) -> int:
    return path.stat().st_blocks * 512


def _tree_bytes(root: Path) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total


def _cached_image(kernel: str, kernel_dir: Path, key: str) -> Optional[BuiltImage]:
    state = _read_json(kernel_dir / "image.json")
    if state.get("key") != key:
        return None
    disk, vmlinuz, initrd = kernel_dir / f"disk-{key}.img", kernel_dir / f"vmlinuz-{key}", kernel_dir / f"initrd-{key}"
    image = BuiltImage(
        kernel=kernel,
        key=key,
        disk=disk,
        vmlinuz=vmlinuz,
        initrd=initrd,
        suite=str(state.get("suite", "")),
        release=str(state.get("release", "")),
        disk_bytes=0,
        disk_size=0,
        build_seconds=None,
        rootfs_seconds=None,
    )
    if not all(p.is_file() for p in (disk, vmlinuz, initrd)):
        return None
    image.disk_bytes = _allocated_bytes(image.disk)
    image.disk_size = image.disk.stat().st_size
    return image


def _require_build_tools() -> None:
    if os.geteuid() != 0:
        raise SwapraceError("building the test box image needs root (debootstrap, chroot, mkfs.ext4 -d)")
    missing = [tool for tool in ("debootstrap", "mkfs.ext4", "unshare", "chroot") if not shutil.which(tool)]
    if missing:
        raise SwapraceError(
            f"cannot build the test box image: {', '.join(missing)} not found "
            "(install the packages of vm-setup/host-packages.txt)"
        )


def _build_rootfs(kernel: str, kernel_dir: Path, progress: Progress) -> None:
    """Stage 1: run build-rootfs.sh in a private mount namespace; its full output goes to build.log."""
    tree = kernel_dir / "rootfs.new"
    log_path = kernel_dir / "build.log"
    script = setup_dir() / "build-rootfs.sh"
    command = ["unshare", "--mount", "--propagation", "private", str(script), kernel, str(tree), debian_mirror()]
    with open(log_path, "w") as log:
        # Own process group: an interrupted build takes debootstrap/apt/pip down with it.
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            errors="replace", start_new_session=True,
        )
        assert proc.stdout is not None
        try:
            with sigterm_as_interrupt():
                for line in proc.stdout:
                    log.write(line)
                    if progress and line.startswith("build-rootfs["):
                        progress(line.rstrip())
                status = proc.wait()
        except BaseException:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            shutil.rmtree(tree, ignore_errors=True)
            raise
    if status != 0:
        tail = " | ".join(log_path.read_text(errors="replace").strip().splitlines()[-3:])
        raise SwapraceError(
            f"building the {kernel} root filesystem failed (exit {status}): {tail} (full log: {log_path})"
        )
    old = kernel_dir / "rootfs"
    if old.exists():
        shutil.rmtree(old)
    tree.rename(old)


def _install_guest_files(tree: Path) -> None:
    """Copy vm-setup/guest/ into the tree (replacing an older copy) and put its tools on PATH."""
    target = tree / GUEST_INIT.lstrip("/")
    shutil.rmtree(target.parent, ignore_errors=True)
    target.parent.mkdir(parents=True)
    for source in guest_files():
        shutil.copy2(source, target.parent / source.name)
        os.chmod(target.parent / source.name, 0o755)
    tool = tree / "usr/local/sbin/swaprace-testbox"
    tool.unlink(missing_ok=True)
    tool.symlink_to(f"{GUEST_INIT.rsplit('/', 1)[0]}/swaprace-testbox")
    # `swaprace ...` inside the guest runs the shared checkout's code.
    launcher = tree / "usr/local/bin/swaprace"
    launcher.write_text('#!/bin/sh\nexec python3 -m swaprace "$@"\n')
    launcher.chmod(0o755)


def _make_small_initrd(tree: Path, release: str, target: Path, progress: Progress) -> bool:
    """Make an initramfs with only the modules of initramfs-modules.txt (mkinitramfs in the chroot).

    Returns False, leaving ``target`` alone, when mkinitramfs fails: the caller then uses Debian's own.
    """
    modules = [
        line.strip() for line in (setup_dir() / "initramfs-modules.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    work = tree / "tmp/swaprace-initramfs"
    output = tree / "tmp/swaprace-initrd"
    shutil.rmtree(work, ignore_errors=True)
    output.unlink(missing_ok=True)
    try:
        shutil.copytree(tree / "etc/initramfs-tools", work, symlinks=True)
        conf = work / "initramfs.conf"
        conf.write_text(re.sub(r"(?m)^MODULES=.*$", "MODULES=list", conf.read_text()))
        with open(work / "modules", "a") as listed:
            listed.write("\n" + "\n".join(modules) + "\n")
        done = subprocess.run(
            ["chroot", str(tree), "env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "mkinitramfs",
             "-d", "/tmp/swaprace-initramfs", "-o", "/tmp/swaprace-initrd", release],
            stdin=subprocess.DEVNULL, capture_output=True, text=True,
        )
        if done.returncode != 0 or not output.is_file():
            if progress:
                progress(f"mkinitramfs failed, using Debian's initrd: {done.stderr.strip()[-300:]}")
            return False
        shutil.move(str(output), target)
        return True
    finally:
        shutil.rmtree(work, ignore_errors=True)
        output.unlink(missing_ok=True)


def _testbox_facts(tree: Path) -> Dict[str, str]:
    facts: Dict[str, str] = {}
    for line in (tree / "etc/swaprace-testbox").read_text().splitlines():
        name, _, value = line.partition("=")
        facts[name.strip()] = value.strip()
    return facts


def _prune_stale(kernel_dir: Path, key: str) -> None:
    """Delete superseded image files, but only after a grace period: a guest starting right now may still be
    about to open the image it was handed a moment ago (once QEMU has it open, deleting it does no harm)."""
    for stale in kernel_dir.iterdir():
        try:
            if (
                re.fullmatch(r"(disk|vmlinuz|initrd)-[0-9a-f]{16}(\.img)?(\.tmp)?", stale.name)
                and key not in stale.name
                and time.time() - stale.stat().st_mtime > STALE_GRACE_SECONDS
            ):
                stale.unlink()
        except FileNotFoundError:  # another process pruned it first
            pass


def _make_boot_files(kernel: str, kernel_dir: Path, key: str, progress: Progress) -> None:
    """Stage 2: ext4 disk image of the tree plus its kernel and initrd, all named by ``key``."""
    tree = kernel_dir / "rootfs"
    _install_guest_files(tree)
    facts = _testbox_facts(tree)
    release = facts["release"]
    small_initrd = _make_small_initrd(tree, release, kernel_dir / f"initrd-{key}.tmp", progress)
    size_mib = _tree_bytes(tree) // (1 << 20) + ROOT_HEADROOM_MIB
    disk_tmp = kernel_dir / f"disk-{key}.img.tmp"
    disk_tmp.unlink(missing_ok=True)
    with open(disk_tmp, "wb") as disk:
        disk.truncate(size_mib << 20)
    # No journal: every boot writes to a throw-away overlay, so there is nothing to recover.
    mkfs = ["mkfs.ext4", "-q", "-F", "-L", "swaprace-root", "-O", "^has_journal", "-d", str(tree), str(disk_tmp)]
    done = subprocess.run(mkfs, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if done.returncode != 0:
        disk_tmp.unlink(missing_ok=True)
        raise SwapraceError(f"mkfs.ext4 -d failed for the {kernel} image: {done.stderr.strip()}")
    boot_files = [("vmlinuz", f"boot/vmlinuz-{release}")]
    if not small_initrd:
        boot_files.append(("initrd", f"boot/initrd.img-{release}"))
    for name, source in boot_files:
        if not (tree / source).is_file():
            raise SwapraceError(f"the {kernel} root filesystem has no /{source}")
        shutil.copyfile(tree / source, kernel_dir / f"{name}-{key}.tmp")
    for name in ("vmlinuz", "initrd"):
        os.replace(kernel_dir / f"{name}-{key}.tmp", kernel_dir / f"{name}-{key}")
    os.replace(disk_tmp, kernel_dir / f"disk-{key}.img")
    _prune_stale(kernel_dir, key)
    state = {"key": key, "rootfs_key": rootfs_key(kernel), "suite": facts.get("suite", ""), "release": release,
             "made": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (kernel_dir / "image.json").write_text(json.dumps(state, indent=2) + "\n")


def ensure_image(kernel: str = DEFAULT_KERNEL, progress: Progress = None, rebuild: bool = False) -> BuiltImage:
    """Return the cached image of ``kernel``, building what is missing or out of date first.

    ``rebuild=True`` redoes both stages even when the cache is current. ``progress`` receives one line per
    build step (the CLI passes one that prints on a TTY only).
    """
    check_kernel(kernel)
    if kernel in LAB_KERNELS:
        return ensure_lab_image(kernel, progress, rebuild)
    kernel_dir = cache_dir() / kernel
    key = image_key(kernel)
    if not rebuild:
        cached = _cached_image(kernel, kernel_dir, key)
        if cached:
            _prune_stale(kernel_dir, key)
            return cached
    _require_build_tools()
    with build_lock(kernel_dir, progress):
        if not rebuild:  # another process may have finished the same build while we waited
            cached = _cached_image(kernel, kernel_dir, key)
            if cached:
                return cached
        started = time.monotonic()
        rootfs_seconds = None
        current = _read_json(kernel_dir / "rootfs.json").get("key")
        if rebuild or current != rootfs_key(kernel) or not (kernel_dir / "rootfs").is_dir():
            _build_rootfs(kernel, kernel_dir, progress)
            (kernel_dir / "rootfs.json").write_text(json.dumps({"key": rootfs_key(kernel)}) + "\n")
            rootfs_seconds = time.monotonic() - started
        if progress:
            progress(f"making the {kernel} disk image (mkfs.ext4 -d)")
        _make_boot_files(kernel, kernel_dir, key, progress)
        image = _cached_image(kernel, kernel_dir, key)
        assert image is not None
        image.build_seconds = time.monotonic() - started
        image.rootfs_seconds = rootfs_seconds
        return image


def ensure_lab_image(kernel: str, progress: Progress = None, rebuild: bool = False) -> BuiltImage:
    """A lab kernel (built on the host, see swaprace/vm/lab.py) on its base kernel's disk, without initrd."""
    from swaprace.vm.lab import LAB_KERNELS as SPECS, build_lab_kernel

    base = ensure_image(SPECS[kernel].base, progress)  # the disk first: a failed kernel build wastes less
    started = time.monotonic()
    built = build_lab_kernel(kernel, progress, rebuild=rebuild)
    return BuiltImage(
        kernel=kernel, key=str(built["key"]), disk=base.disk, vmlinuz=Path(str(built["vmlinuz"])), initrd=None,
        suite=base.suite, release=str(built.get("release", "")), disk_bytes=base.disk_bytes,
        disk_size=base.disk_size, build_seconds=(time.monotonic() - started) if built.get("built") else None,
        rootfs_seconds=None,
    )

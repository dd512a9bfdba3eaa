"""tracefs access: find (or mount) it, read and write its control files, and list swaprace's leftovers.

Every kprobe event swaprace defines lives in a group named ``swaprace_<pid>`` (:func:`group_name`) so that a
concurrent run, another tool's probes and a leftover of a killed run can be told apart: :func:`leftover_groups`
lists groups whose owner process is gone.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from swaprace.errors import SwapraceError
from swaprace.osutil import pid_alive

TRACEFS_CANDIDATES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
GROUP_PREFIX = "swaprace_"
_GROUP_RE = re.compile(r"^[pr]\d*:(?P<group>[^/\s]+)/(?P<event>\S+)\s")


def group_name(pid: Optional[int] = None) -> str:
    """The kprobe event group of this process: ``swaprace_<pid>``."""
    return f"{GROUP_PREFIX}{os.getpid() if pid is None else pid}"


def mounted_tracefs() -> Optional[Path]:
    """Where tracefs (or debugfs/tracing) is mounted now, or None."""
    try:
        mounts = Path("/proc/mounts").read_text()
    except OSError:
        return None
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "tracefs":
            return Path(parts[1])
    for cand in TRACEFS_CANDIDATES:
        if Path(cand, "kprobe_events").exists() or Path(cand, "trace").exists():
            return Path(cand)
    return None


def mount_tracefs() -> Path:
    """Mount tracefs on /sys/kernel/tracing (root only). Returns the mount point."""
    target = Path(TRACEFS_CANDIDATES[0])
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"nodev", str(target).encode(), b"tracefs", 0, None) != 0:
        err = ctypes.get_errno()
        raise SwapraceError(f"cannot mount tracefs on {target}: {os.strerror(err)}")
    return target


def unmount(path: Path) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.umount2(str(path).encode(), 0)


def read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise SwapraceError(f"cannot read {path}: {exc.strerror or exc}") from None


def write_text(path: Path, text: str, append: bool = False) -> None:
    """Write a tracefs control file; the kernel's refusal becomes one SwapraceError naming the file."""
    flags = os.O_WRONLY | (os.O_APPEND if append else os.O_TRUNC)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise SwapraceError(f"cannot open {path}: {exc.strerror or exc}") from None
    try:
        os.write(fd, text.encode())
    except OSError as exc:
        hint = ""
        if exc.errno == errno.EBUSY:
            hint = " (events still enabled?)"
        elif exc.errno in (errno.EINVAL, errno.ENOENT, errno.EEXIST):
            hint = f" (the kernel refused {text.strip()!r}; see {path.parent}/error_log)"
        raise SwapraceError(f"writing {path.name} failed: {exc.strerror}{hint}") from None
    finally:
        os.close(fd)


@dataclass
class ProbeProfile:
    """One kprobe_profile line: event name, hits, misses."""

    event: str
    hits: int
    missed: int


def kprobe_profile(root: Path) -> Dict[str, ProbeProfile]:
    """``kprobe_profile`` as event name -> (hits, missed). Empty when the file does not exist."""
    out: Dict[str, ProbeProfile] = {}
    path = root / "kprobe_profile"
    if not path.exists():
        return out
    for line in read_text(path).splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[-1].isdigit() and parts[-2].isdigit():
            name = parts[0].split("/")[-1]
            out[name] = ProbeProfile(name, int(parts[-2]), int(parts[-1]))
    return out


def kprobe_event_groups(root: Path) -> Dict[str, List[str]]:
    """group -> event names currently defined in ``kprobe_events``."""
    groups: Dict[str, List[str]] = {}
    path = root / "kprobe_events"
    if not path.exists():
        return groups
    for line in read_text(path).splitlines():
        match = _GROUP_RE.match(line + " ")
        if match:
            groups.setdefault(match.group("group"), []).append(match.group("event"))
    return groups


def swaprace_groups(root: Path) -> List[dict]:
    """swaprace's kprobe groups and tracefs instances, each with its owner pid and whether it is alive."""
    found: List[dict] = []
    for group, names in kprobe_event_groups(root).items():
        if group.startswith(GROUP_PREFIX) and group[len(GROUP_PREFIX):].isdigit():
            pid = int(group[len(GROUP_PREFIX):])
            found.append({"kind": "kprobe_events", "name": group, "events": len(names), "pid": pid,
                          "alive": pid_alive(pid)})
    instances = root / "instances"
    if instances.is_dir():
        for inst in sorted(instances.iterdir()):
            name = inst.name
            if name.startswith(GROUP_PREFIX) and name[len(GROUP_PREFIX):].isdigit():
                pid = int(name[len(GROUP_PREFIX):])
                found.append({"kind": "instance", "name": name, "pid": pid, "alive": pid_alive(pid)})
    return found


def leftover_groups(root: Path) -> List[dict]:
    """swaprace groups/instances whose owner process no longer runs (a killed run's debris)."""
    return [g for g in swaprace_groups(root) if not g["alive"]]


def remove_group(root: Path, group: str) -> None:
    """Disable and delete every kprobe event of ``group`` and its tracefs instance (best effort, in order:
    events must be disabled everywhere before kprobe_events accepts their removal)."""
    instance = root / "instances" / group
    for base in (instance, root):
        enable = base / "events" / group / "enable"
        if enable.exists():
            try:
                write_text(enable, "0")
            except SwapraceError:
                pass
    if instance.is_dir():
        try:
            instance.rmdir()
        except OSError:
            pass
    for event in kprobe_event_groups(root).get(group, []):
        try:
            write_text(root / "kprobe_events", f"-:{group}/{event}\n", append=True)
        except SwapraceError:
            pass

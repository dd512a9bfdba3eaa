"""``--pid``, ``--comm`` and ``--cgroup``: which faulting threads' windows are traced, decided in the kernel.

A filter selects the *faulting threads*: only the events of :data:`~swaprace.kernel.catalog.THREAD_ROLES`
(do_swap_page's call and return, its lookup, KSM copy, swap read, swapcache_prepare and install) are
filtered. The slot lifecycle (allocations, frees, swap-cache adds and deletes, by kswapd, reclaim or any other
task) is always traced, because a race *is* another task freeing and reallocating the slot: filtering those
would blind the model and the detector.

Where each filter is applied:

* bcc: every one in the BPF program (``filtered_out()`` of ``swaprace.bpf.c``): ``FILTER_TGID``,
  ``FILTER_COMM_LO``/``_HI`` (the 16-byte comm as two words, compared with ``bpf_get_current_comm``'s),
  ``FILTER_CGROUP`` (``bpf_current_task_under_cgroup`` against a cgroup array holding the directory: the
  cgroup *and its descendants*, cgroup v2 only -- the helper sees only the v2 hierarchy).
* ftrace: ``--comm`` as each thread-role event's ``filter`` file (``comm == "NAME"``). ``--pid`` stays after
  the fact (the reader keeps the fault path of one thread group): a filter can test ``common_pid`` (the
  thread) but not the thread group, and ``set_event_pid`` would filter the slot lifecycle too. ``--cgroup`` is
  refused: kprobe events have no cgroup field, and a pid list seeded from ``cgroup.procs`` misses every task
  that joins the cgroup later.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from swaprace.errors import SwapraceError
from swaprace.kernel.catalog import THREAD_ROLES

#: The kernel keeps a task's name in TASK_COMM_LEN (16) bytes, NUL included.
COMM_BYTES = 15
#: Characters an ftrace ``==`` string match takes as a glob, or cannot quote.
_FTRACE_SPECIAL = set('*?["\\')


@dataclass(frozen=True)
class Cgroup:
    """A cgroup v2 directory, resolved: the path given, where it is, and its id (the directory's inode)."""

    path: str
    realpath: str
    cgroup_id: int


@dataclass(frozen=True)
class ThreadFilter:
    """Which faulting threads are traced (None: any). All given filters must match."""

    pid: Optional[int] = None
    comm: Optional[str] = None
    cgroup: Optional[Cgroup] = None

    @property
    def active(self) -> bool:
        return self.pid is not None or self.comm is not None or self.cgroup is not None

    def describe(self) -> str:
        """``pid=12 comm=postgres cgroup=/sys/fs/cgroup/db`` (empty when inactive)."""
        parts = []
        if self.pid is not None:
            parts.append(f"pid={self.pid}")
        if self.comm is not None:
            parts.append(f"comm={self.comm}")
        if self.cgroup is not None:
            parts.append(f"cgroup={self.cgroup.path}")
        return " ".join(parts)

    def to_meta(self, backend: str) -> Dict[str, Any]:
        """What ``CaptureMeta.extra["thread_filter"]`` records: the filter, the roles it applies to, and where
        it was applied (so the analysis knows other threads' windows are absent on purpose)."""
        meta: Dict[str, Any] = {"roles": list(THREAD_ROLES)}
        where: Dict[str, str] = {}
        if self.pid is not None:
            meta["pid"] = self.pid
            where["pid"] = "bpf" if backend == "bcc" else "reader"
        if self.comm is not None:
            meta["comm"] = self.comm
            where["comm"] = "bpf" if backend == "bcc" else "ftrace-filter"
        if self.cgroup is not None:
            meta["cgroup"] = self.cgroup.path
            meta["cgroup_id"] = self.cgroup.cgroup_id
            where["cgroup"] = "bpf"
        meta["applied"] = where
        return meta


def check_comm(name: str) -> str:
    """``--comm NAME`` as the kernel will compare it: at most 15 bytes (TASK_COMM_LEN - 1), not empty."""
    if not name or "\0" in name:
        raise SwapraceError("--comm needs a task name (as in /proc/PID/comm)")
    raw = name.encode()
    if len(raw) > COMM_BYTES:
        raise SwapraceError(f"--comm {name!r} is longer than the kernel's 15-byte task names: "
                            f"use {raw[:COMM_BYTES].decode('utf-8', 'replace')!r}, as /proc/PID/comm shows it")
    return name


def comm_words(name: str) -> Tuple[int, int]:
    """The comm as ``bpf_get_current_comm`` writes it into a zeroed 16-byte buffer, read as two u64 words."""
    raw = name.encode().ljust(16, b"\0")
    return int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:], "little")


def running_with_comm(name: str, proc: str = "/proc") -> int:
    """How many threads are named ``name`` now (for the "matches nothing yet" warning)."""
    found = 0
    for task in Path(proc).glob("[0-9]*/task/[0-9]*/comm"):
        try:
            if task.read_text().rstrip("\n") == name:
                found += 1
        except OSError:
            continue
    return found


def _mount_of(path: str, mountinfo: str) -> Tuple[str, str]:
    """(mount point, filesystem type) of the longest mount point that holds ``path``."""
    best = ("", "")
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields, after = left.split(), right.split()
        if not sep or len(fields) < 5 or not after:
            continue
        point = fields[4].replace("\\040", " ")
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best[0]):
            best = (point, after[0])
    return best


def resolve_cgroup(path: str, mountinfo: Optional[str] = None) -> Cgroup:
    """``--cgroup PATH``: a directory on a cgroup v2 mount; SwapraceError (one line) otherwise."""
    real = os.path.realpath(path)
    if not os.path.exists(real):
        raise SwapraceError(f"--cgroup {path}: no such cgroup directory")
    if not os.path.isdir(real):
        raise SwapraceError(f"--cgroup {path}: not a directory (give the cgroup's directory, e.g. "
                            "/sys/fs/cgroup/system.slice)")
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError as exc:
            raise SwapraceError(f"cannot read /proc/self/mountinfo: {exc.strerror}") from None
    point, fstype = _mount_of(real, mountinfo)
    if fstype == "cgroup":
        raise SwapraceError(f"--cgroup {path}: a cgroup v1 hierarchy ({point}); the BPF helpers see only cgroup "
                            "v2 (use a path under the cgroup2 mount, e.g. /sys/fs/cgroup/unified)")
    if fstype != "cgroup2":
        raise SwapraceError(f"--cgroup {path}: not a cgroup (it is on {fstype or 'an unknown filesystem'}"
                            f"{' at ' + point if point else ''}; cgroup v2 is usually mounted at /sys/fs/cgroup)")
    return Cgroup(path=path, realpath=real, cgroup_id=os.stat(real).st_ino)


def bpf_flags(flt: ThreadFilter) -> List[str]:
    """The ``-D`` defines of ``flt`` for ``swaprace.bpf.c`` (the cgroup itself goes into its array map)."""
    flags: List[str] = []
    if flt.pid is not None:
        flags.append(f"-DFILTER_TGID={int(flt.pid)}")
    if flt.comm is not None:
        lo, hi = comm_words(flt.comm)
        flags += [f"-DFILTER_COMM_LO={lo:#x}ULL", f"-DFILTER_COMM_HI={hi:#x}ULL"]
    if flt.cgroup is not None:
        # for --ebpf readers: which directory the array will hold
        flags += ["-DFILTER_CGROUP=1", f"-DFILTER_CGROUP_ID={flt.cgroup.cgroup_id}ULL"]
    return flags


def ftrace_filter(flt: ThreadFilter) -> Optional[str]:
    """The ``filter`` file text for every thread-role event (None: no in-kernel filter).

    SwapraceError for what an ftrace filter cannot express (see the module docstring)."""
    if flt.cgroup is not None:
        raise SwapraceError("--cgroup needs the bcc backend: ftrace's kprobe events have no cgroup field, and a "
                            "pid list taken from cgroup.procs would miss tasks that join the cgroup later")
    if flt.comm is None:
        return None
    special = sorted(set(flt.comm) & _FTRACE_SPECIAL)
    if special:
        raise SwapraceError(f"--comm {flt.comm!r}: an ftrace filter cannot match {' '.join(special)} literally "
                            "(it globs or cannot quote them); use --backend bcc")
    return f'comm == "{flt.comm}"'

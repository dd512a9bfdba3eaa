"""The machine set-up a stress run needs, and its exact undo.

A run changes three things: a small swap file (swapon at top priority), a memory cgroup with a limit below
the working set (cgroup v2, or the v1 memory controller where that is what the machine has), and the KSM
knobs (run, pages_to_scan, sleep_millisecs). Every change is appended to a state file *before* it is made,
so that a crashed run can be undone by ``swaprace stress --cleanup``; every undo step is idempotent.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from swaprace.errors import SwapraceError
from swaprace.osutil import atomic_write_text, pid_alive

KSM_DIR = Path("/sys/kernel/mm/ksm")
CGROUP_ROOT = Path("/sys/fs/cgroup")
#: Put in the guest image by vm-setup: on the swaprace test box a stress run needs no --yes.
TESTBOX_MARKER = Path("/etc/swaprace-testbox")
MiB = 1 << 20


def state_dir() -> Path:
    return Path(os.environ.get("SWAPRACE_STATE_DIR", "/var/lib/swaprace"))


def state_file() -> Path:
    return state_dir() / "stress-state.json"


def in_testbox() -> bool:
    return TESTBOX_MARKER.exists()


# --- what the machine offers ---------------------------------------------------------------------------

@dataclass
class CgroupLayout:
    version: int  # 2 or 1
    parent: Path  # where our cgroup is created


def detect_cgroup() -> CgroupLayout:
    """The memory controller's hierarchy: v2 when the unified root offers ``memory``, else v1's."""
    controllers = CGROUP_ROOT / "cgroup.controllers"
    if controllers.exists() and "memory" in controllers.read_text().split():
        return CgroupLayout(2, CGROUP_ROOT)
    if (CGROUP_ROOT / "memory" / "memory.limit_in_bytes").exists():
        return CgroupLayout(1, CGROUP_ROOT / "memory")
    raise SwapraceError("no memory cgroup controller found (neither cgroup v2 with 'memory' at "
                        f"{CGROUP_ROOT} nor cgroup v1 at {CGROUP_ROOT / 'memory'})")


def ksm_available() -> bool:
    return (KSM_DIR / "run").exists()


def sbin(tool: str) -> str:
    found = shutil.which(tool) or next((p for p in (f"/usr/sbin/{tool}", f"/sbin/{tool}")
                                        if os.access(p, os.X_OK)), None)
    if not found:
        raise SwapraceError(f"{tool} not found (util-linux): it is needed to set up the swap file")
    return found


def active_swaps() -> List[Dict[str, Any]]:
    """/proc/swaps as dicts: filename, size and used in KiB."""
    from swaprace.kernel.swaps import read_swaps

    return [{"filename": d.name, "size_kib": d.size_kib, "used_kib": d.used_kib} for d in read_swaps()]


# --- the plan ------------------------------------------------------------------------------------------

@dataclass
class Plan:
    swap_path: str
    swap_bytes: int
    cgroup_version: int
    cgroup_path: str
    limit_bytes: int
    ksm: Dict[str, str] = field(default_factory=dict)  # knob -> value to set (empty: KSM left alone)
    swap_device: str = "file"  # "file": a swap file at swap_path; "zram": /dev/zramN (swaprace/stress/zram.py)

    def describe(self) -> List[str]:
        if self.swap_device == "zram":
            from swaprace.stress import zram

            swap_line = zram.describe(self.swap_bytes)
        else:
            swap_line = (f"create swap file {self.swap_path} ({self.swap_bytes // MiB} MiB) and swapon it at "
                         "priority 32767")
        lines = [
            swap_line,
            f"create memory cgroup {self.cgroup_path} (v{self.cgroup_version}) kept at "
            f"{self.limit_bytes // MiB} MiB plus the workers' own charge and run the workload in it",
        ]
        for knob, value in self.ksm.items():
            old = _read(KSM_DIR / knob)
            lines.append(f"set {KSM_DIR / knob} = {value} (now {old})")
        if not self.ksm:
            lines.append("leave KSM as it is (--no-ksm)")
        return lines


def make_plan(swap_bytes: int, limit_bytes: int, ksm: bool, swap_path: Optional[str] = None,
              swap_device: str = "file") -> Plan:
    if not Path("/proc/swaps").exists():
        raise SwapraceError("this kernel has no swap support (no /proc/swaps: CONFIG_SWAP off)")
    layout = detect_cgroup()
    knobs: Dict[str, str] = {}
    if ksm:
        if not ksm_available():
            raise SwapraceError(f"KSM is not available ({KSM_DIR} missing; kernel without CONFIG_KSM?): "
                                "run with --no-ksm")
        # fast scan: a full pass over a few tens of MiB every fraction of a second
        knobs = {"run": "1", "pages_to_scan": "2000", "sleep_millisecs": "10"}
    cgroup = layout.parent / f"swaprace-stress-{os.getpid()}"
    return Plan(swap_path=swap_path or "/var/tmp/swaprace-stress.swap", swap_bytes=swap_bytes,
                cgroup_version=layout.version, cgroup_path=str(cgroup), limit_bytes=limit_bytes, ksm=knobs,
                swap_device=swap_device)


# --- state file: a write-ahead log of changes ----------------------------------------------------------

class StateLog:
    """Append-only record of the changes made, rewritten atomically after each append."""

    def __init__(self, path: Path):
        self.path = path
        self.changes: List[Dict[str, str]] = []

    def claim(self) -> None:
        """Refuse when another run's changes are recorded (live run, or a crashed one not cleaned up)."""
        if self.path.exists():
            try:
                pid = int(json.loads(self.path.read_text()).get("pid", 0))
            except (ValueError, OSError):
                pid = 0
            if pid and pid_alive(pid):
                raise SwapraceError(f"another swaprace stress run (pid {pid}) owns the machine set-up "
                                    f"({self.path})")
            raise SwapraceError(f"a previous stress run did not restore the machine ({self.path}): "
                                "run `swaprace stress --cleanup` first")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write()

    def add(self, **change: object) -> None:
        self.changes.append({k: str(v) for k, v in change.items()})
        self._write()

    def _write(self) -> None:
        try:  # a random O_EXCL temp name: no fixed stress-state.tmp for a planted link to redirect
            atomic_write_text(self.path, json.dumps({"pid": os.getpid(), "changes": self.changes}, indent=1))
        except OSError as exc:
            raise SwapraceError(f"cannot write the stress state file {self.path}: {exc}") from None

    @classmethod
    def load(cls, path: Path) -> "StateLog":
        log = cls(path)
        try:
            log.changes = json.loads(path.read_text())["changes"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SwapraceError(f"{path}: unreadable stress state file ({exc})") from None
        return log


# --- applying and undoing ------------------------------------------------------------------------------

class Machine:
    """Context manager: applies a :class:`Plan`, and restores everything on exit (also on exceptions)."""

    def __init__(self, plan: Plan, log: Optional[StateLog] = None):
        self.plan = plan
        self.log = log or StateLog(state_file())
        self.cgroup = Path(plan.cgroup_path)

    def __enter__(self) -> "Machine":
        self.log.claim()
        try:
            self._apply()
        except BaseException:
            restore(self.log)
            raise
        return self

    def __exit__(self, *exc) -> None:
        restore(self.log)

    def apply_limit(self, hard_bytes: int, working_set: int) -> None:
        """Bring the group down to the planned limit once the workload has filled its memory (the write
        itself reclaims; filling under the limit instead races swap writeback), then keep it there without
        ever giving the kernel a reason to OOM-kill or freeze a worker.

        Why not a plain hard limit: with eight threads and forked readers faulting at once, a charge's own
        reclaim loses the pages it frees to the other faulting tasks, and after MAX_RECLAIM_RETRIES the
        memcg declares OOM -- at 24, 32, 40 and even 48 MiB of a 64 MiB working set on a 2-CPU host. v1 then
        OOM-kills, or with ``oom_kill_disable`` parks every faulting task in mem_cgroup_oom_synchronize
        until something uncharges (nothing does: the old deadlock), and faults taken inside the kernel fail
        meanwhile (a futex on the helper's swapped-out barrier: SIGSEGV). So the planned limit is a *high*
        mark -- v2 ``memory.high`` (reclaim and throttling, never an OOM), v1 :class:`LimitKeeper`, which
        lowers the hard limit only for the instant of its own reclaim -- and the hard limit is
        ``hard_bytes``, far above.

        The planned limit is for the workload's region. The oracle's bookkeeping (window records, tags, the
        threads' barriers) is allocated and touched before a worker joins the group (sr_reserve): pages are
        charged where they are first touched, so it stays with the parent group like the interpreter's
        imports, is never swapped by the run's pressure and never competes with the region for the swap file.
        What the workers allocate after joining (the interpreter's heap) comes on top: measured now, with every
        region page resident, as the group's *anonymous* memory beyond ``working_set`` (0 when KSM merged region
        pages already). Not its whole charge: page cache and kernel memory charged to the group are reclaimable
        or not the workload's, and counted in they doubled the mark in the test box (15-19 MiB on a 6 MiB
        limit: almost no pressure).
        """
        anon = _anon_bytes(self.cgroup, self.plan.cgroup_version)
        self.interpreter_bytes = max(0, anon - working_set) if anon is not None else 0
        high = self.plan.limit_bytes + self.interpreter_bytes
        if self.plan.cgroup_version == 2:
            _write(self.cgroup / "memory.max", str(hard_bytes))
            _write(self.cgroup / "memory.high", str(high))  # reclaims down to it now
            return
        # A v1 limit write that succeeds holds the whole group at ``high`` until the hard limit is written back:
        # in that window a worker's own reclaim can fail MAX_RECLAIM_RETRIES times (eight threads and forked
        # readers reclaiming at once, pages under swap writeback) and the memcg OOM-kills it. With the OOM
        # killer off the fault parks instead (memcg1_oom_prepare: only user faults, which retry) and writing
        # the larger hard limit back wakes it (mem_cgroup_resize_max -> memcg1_oom_recover on enlarge).
        _write(self.cgroup / "memory.oom_control", "1")
        name = self.cgroup / "memory.limit_in_bytes"
        for attempt in range(50):
            try:
                _write(name, str(high))
                break
            except SwapraceError:
                if attempt == 49:  # v1 answers EBUSY while it cannot reclaim enough yet
                    raise
                time.sleep(0.2)
        _write(name, str(hard_bytes))
        self.keeper = LimitKeeper(self.cgroup, high, hard_bytes)
        self.keeper.start()

    def lift_limit(self) -> None:
        """End the high mark (v2 ``memory.high`` back to max, v1 keeper stopped); the hard limit stays. For the
        final sweep: it re-reads every page to check it, which under the mark was throttled in
        mem_cgroup_handle_over_high on every page -- about as long as the rounds themselves, and past the
        run's deadline on a loaded machine."""
        if self.plan.cgroup_version == 2:
            _write(self.cgroup / "memory.high", "max")
        else:
            self.stop_keeper()

    def stop_keeper(self) -> None:
        keeper = getattr(self, "keeper", None)
        if keeper is not None:
            keeper.stop()

    @property
    def procs_file(self) -> str:
        return str(self.cgroup / "cgroup.procs")

    def _apply(self) -> None:
        if self.plan.swap_device == "zram":  # instead of the swap file (swaprace/stress/zram.py)
            from swaprace.stress import zram

            self.plan.swap_path = zram.set_up(self.log, self.plan.swap_bytes)
            return self._apply_cgroup_and_ksm()
        plan = self.plan
        # logged once swaprace itself created the file (O_EXCL), with its inode: undo removes only that file
        _create_swap_file(Path(plan.swap_path), plan.swap_bytes,
                          created=lambda st: self.log.add(kind="swapfile", path=plan.swap_path,
                                                          dev=st.st_dev, ino=st.st_ino))
        self.log.add(kind="swapon", path=plan.swap_path)
        _run([sbin("swapon"), "--priority", "32767", plan.swap_path], "swapon")
        self._apply_cgroup_and_ksm()

    def _apply_cgroup_and_ksm(self) -> None:
        plan = self.plan
        if plan.cgroup_version == 2:
            control = self.cgroup.parent / "cgroup.subtree_control"
            if "memory" not in control.read_text().split():
                self.log.add(kind="subtree_control", path=str(control), controller="memory")
                _write(control, "+memory")
        self.log.add(kind="cgroup", path=str(self.cgroup), version=plan.cgroup_version)
        try:
            self.cgroup.mkdir()
        except OSError as exc:
            raise SwapraceError(f"cannot create cgroup {self.cgroup}: {exc.strerror}") from None
        if plan.ksm and _read(KSM_DIR / "run") == "0" and _read(KSM_DIR / "pages_sharing") == "0":
            # KSM was off with nothing merged: restoring "as found" means unmerging what our scan merged
            # (on a host, that includes the memory of any QEMU guest running there), not just stopping it.
            self.log.add(kind="ksm_unmerge", path=str(KSM_DIR / "run"))
        for knob, value in plan.ksm.items():
            path = KSM_DIR / knob
            self.log.add(kind="ksm", path=str(path), old=_read(path))
            _write(path, value)


class LimitKeeper:
    """cgroup v1 has no ``memory.high``: this thread plays it. The hard limit stays high; whenever the group
    is above ``target`` the thread writes ``target`` to ``memory.limit_in_bytes`` -- the kernel reclaims in
    *this* thread until the group fits (or answers EBUSY), and only then sets the limit -- and puts the hard
    limit straight back. The workers never wait on a limit for longer than that, and never die of it: the
    group's OOM killer is off (:meth:`Machine.apply_limit`), so a fault that could not charge in that window
    parks until the hard limit is back. Writing it back is an enlarge, which wakes the parked faults; a fault
    that parks just after that (the kernel does not look at the limit again before it sleeps) is woken on the
    next poll (``wakes``)."""

    POLL_S = 0.01

    def __init__(self, cgroup: Path, target: int, hard: int):
        import threading

        self.cgroup, self.target, self.hard = cgroup, target, hard
        self.slack = max(target // 32, MiB)
        self.passes = 0  # times it pushed the group back under the target
        self.wakes = 0  # times it found faults parked after a pass and woke them
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="swaprace-limit-keeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:  # a daemon: if still reclaiming, restore() ends it
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        limit = self.cgroup / "memory.limit_in_bytes"
        usage = self.cgroup / "memory.usage_in_bytes"
        oom_control = self.cgroup / "memory.oom_control"
        while not self._stop.wait(self.POLL_S):
            try:
                if _under_oom(oom_control):
                    # shrink the hard limit by a page (usage is far below it: no reclaim) and enlarge it back
                    _write(limit, str(self.hard - 4096))
                    _write(limit, str(self.hard))
                    self.wakes += 1
                if int(_read(usage)) <= self.target + self.slack:
                    continue
                try:
                    _write(limit, str(self.target))  # reclaim here, in this thread
                    self.passes += 1
                except SwapraceError:
                    pass  # EBUSY: could not get there this time; the workers still have the hard limit
                finally:
                    _write(limit, str(self.hard))
            except (OSError, ValueError, SwapraceError):
                return  # the cgroup is gone (restore ran)


def _under_oom(oom_control: Path) -> bool:
    """v1 ``memory.oom_control``: ``under_oom 1`` while a fault is parked in mem_cgroup_oom_synchronize."""
    return any(line.split() == ["under_oom", "1"] for line in oom_control.read_text().splitlines())


def restore(log: StateLog) -> None:
    """Undo every recorded change, newest first; remove the state file only when all succeeded."""
    problems: List[str] = []
    for change in reversed(log.changes):
        try:
            _undo(change)
        except (OSError, SwapraceError, subprocess.SubprocessError) as exc:
            problems.append(f"{change.get('kind')} {change.get('path')}: {exc}")
    if problems:
        raise SwapraceError("could not restore: " + "; ".join(problems) +
                            f" (state kept in {log.path}; retry with `swaprace stress --cleanup`)")
    log.path.unlink(missing_ok=True)


def leftovers(path: Path | None = None) -> list[str]:
    """What killed stress runs left on this machine: a state file whose run is gone, memory cgroups of dead
    runs, an active swaprace swap file no run owns. Empty when the machine is clean (``doctor`` says it)."""
    path = path or state_file()
    found: list[str] = []
    owner = None
    if path.exists():
        try:
            owner = int(json.loads(path.read_text()).get("pid", 0))
        except (OSError, ValueError, TypeError, AttributeError):
            owner = 0
        if not (owner and pid_alive(owner)):
            found.append(f"state file {path} of stress run pid {owner or '?'} (not running): its changes are not undone")
    for parent in (CGROUP_ROOT, CGROUP_ROOT / "memory"):
        for cgroup in sorted(parent.glob("swaprace-stress-*")) if parent.is_dir() else []:
            pid = cgroup.name.rsplit("-", 1)[-1]
            if pid.isdigit() and not pid_alive(int(pid)):
                found.append(f"memory cgroup {cgroup} of stress run pid {pid} (not running)")
    if not (owner and pid_alive(owner)):
        for row in active_swaps() if Path("/proc/swaps").exists() else []:
            if "swaprace-stress" in row["filename"]:
                found.append(f"swap file {row['filename']} is still active")
    return found


def clean_leftovers(path: Path | None = None) -> list[str]:
    """Undo what :func:`leftovers` finds: the recorded changes (as ``stress --cleanup``), then cgroups of dead
    runs no state file recorded. An active swap file is only undone through the state file (it may be the
    user's own). Returns what was undone."""
    done = [f"{c['kind']} {c['path']}" for c in cleanup(path)]
    for parent in (CGROUP_ROOT, CGROUP_ROOT / "memory"):
        for cgroup in sorted(parent.glob("swaprace-stress-*")) if parent.is_dir() else []:
            pid = cgroup.name.rsplit("-", 1)[-1]
            if pid.isdigit() and not pid_alive(int(pid)):
                _remove_cgroup(cgroup)
                done.append(f"cgroup {cgroup}")
    return done


def cleanup(path: Optional[Path] = None) -> List[Dict[str, str]]:
    """Undo what a crashed run recorded. Returns the changes undone (empty when nothing was left)."""
    path = path or state_file()
    if not path.exists():
        return []
    log = StateLog.load(path)
    pid = json.loads(path.read_text()).get("pid")
    if pid and int(pid) != os.getpid() and pid_alive(int(pid)):
        raise SwapraceError(f"stress run pid {pid} is still running: stop it (it restores on SIGTERM)")
    restore(log)
    return log.changes


def _undo(change: Dict[str, str]) -> None:
    kind, path = change["kind"], Path(change["path"])
    if kind == "ksm":
        _write(path, change["old"])
    elif kind == "ksm_unmerge":
        _write(path, "2")  # KSM_RUN_UNMERGE: break every merged page back into private copies
        _write(path, "0")
    elif kind == "cgroup":
        _remove_cgroup(path)
    elif kind == "subtree_control":
        _write(path, "-" + change["controller"])
    elif kind == "swapon":
        if any(row["filename"] == str(path) for row in active_swaps()):
            _run([sbin("swapoff"), str(path)], "swapoff")
    elif kind == "swapfile":
        _remove_own_file(path, change)
    elif kind.startswith("zram-"):
        from swaprace.stress import zram

        zram.undo(change)
    elif kind == "sysctl":
        _write(path, change["old"])


def _remove_own_file(path: Path, change: dict[str, str]) -> None:
    """Unlink ``path`` only when it is still the regular file swaprace created (same device and inode)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if "ino" not in change or "dev" not in change:
        raise SwapraceError(f"not removing {path}: the state file does not say swaprace created it")
    if not stat.S_ISREG(st.st_mode) or (str(st.st_dev), str(st.st_ino)) != (change["dev"], change["ino"]):
        raise SwapraceError(f"not removing {path}: it is no longer the swap file swaprace created")
    path.unlink()


def _remove_cgroup(path: Path) -> None:
    """Stop the stress processes left inside (they are all ours), move anything else out, rmdir."""
    if not path.exists():
        return
    procs = path / "cgroup.procs"
    for pid in _pids(procs):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while _pids(procs) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in _pids(procs):  # survivors (e.g. stuck in D state): out of the way of rmdir
        try:
            _write(path.parent / "cgroup.procs", str(pid))
        except OSError:
            pass
    for _ in range(100):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.05)
    path.rmdir()


def _create_swap_file(path: Path, size: int, created: Callable[[os.stat_result], None] | None = None) -> None:
    """Zero-filled (no holes: swapon refuses sparse files), mode 0600, mkswap'd. ``created`` is called with
    the new file's stat right after the exclusive create, before anything else can fail."""
    path.parent.mkdir(parents=True, exist_ok=True)
    chunk = bytes(MiB)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SwapraceError(f"{path} already exists: not overwriting it (remove it or pass --swap-file)") from None
    except OSError as exc:
        raise SwapraceError(f"cannot create swap file {path}: {exc.strerror}") from None
    try:
        if created is not None:
            created(os.fstat(fd))
        written = 0
        while written < size:
            written += os.write(fd, chunk[: min(MiB, size - written)])
        os.fsync(fd)
    except OSError as exc:
        raise SwapraceError(f"cannot write swap file {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    _run([sbin("mkswap"), str(path)], "mkswap")


def _run(argv: List[str], what: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        message = (proc.stderr.strip() or proc.stdout.strip() or f"exit {proc.returncode}").splitlines()[-1]
        raise SwapraceError(f"{what} failed: {message}")


def _pids(procs: Path) -> List[int]:
    try:
        return [int(x) for x in procs.read_text().split()]
    except OSError:
        return []


def _anon_bytes(cgroup: Path, version: int) -> Optional[int]:
    """The group's anonymous memory from ``memory.stat`` (v2 ``anon``; v1 ``rss``, which is anon and swap cache)."""
    key = "anon" if version == 2 else "rss"
    try:
        for line in (cgroup / "memory.stat").read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value)
    except OSError:
        pass
    return None


def _read(path: Path) -> str:
    return path.read_text().strip()


def _write(path: Path, value: str) -> None:
    try:
        with open(path, "w") as fh:
            fh.write(value)
    except OSError as exc:
        raise SwapraceError(f"cannot write {value!r} to {path}: {exc.strerror}") from None

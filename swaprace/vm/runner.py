"""Boot the test box, run one command in it, stream its output back, return its exit status.

Each run gets a private directory (under ``$TMPDIR``) holding

* ``overlay.qcow2`` -- the guest's writable root disk, a qcow2 overlay on the cached (read-only) image,
* ``swap.img``      -- a 256 MiB second disk the guest can use as swap (``swaprace-testbox swap-on``),
* ``console.log``   -- the serial console (kernel messages, init's markers),
* ``share/``        -- shared into the guest (9p) as /mnt/swaprace-run: ``cmd.sh``, ``env``, ``mode`` go in,
  ``stdout``, ``stderr``, ``status`` come out.

The checkout itself is shared read-write as /mnt/swaprace, the command's working directory, so captures and
logs a command writes there are on the host when it ends. QEMU runs in its own process group and dies with
this process (PR_SET_PDEATHSIG): on timeout, Ctrl-C, SIGTERM, a kernel panic or a guest that never boots, the
whole group is killed and the run directory removed; only the console log is kept (cache dir) for diagnosis.
"""

from __future__ import annotations

import ctypes
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, List, Mapping, Optional, Sequence

from swaprace.errors import SwapraceError
from swaprace.vm.accel import (
    KVM_TRIAL_SECONDS,
    Accel,
    cached_verdict,
    forced_accel,
    kvm_unusable_reason,
    qemu_binary,
    store_verdict,
)
from swaprace.vm.image import (
    DEFAULT_KERNEL,
    GUEST_INIT,
    BuiltImage,
    Progress,
    cache_dir,
    checkout_dir,
    ensure_image,
    sigterm_as_interrupt,
)

SWAP_DISK_MIB = 256
GUEST_MEMORY_MIB = 2048
GUEST_CPUS = 2
DEFAULT_TIMEOUT = 900.0
#: Time a guest may take to reach its init's "booted" marker. TCG boots were measured at 58 s to over 300 s
#: while 5-12 guests shared the 2-core project host (~12 s was reported for an idle one): a generous limit.
BOOT_TIMEOUT = {"kvm": 60.0, "tcg": 600.0}
BOOTED = re.compile(rb"SWAPRACE-BOOTED ([0-9.]+)")
EXITED = re.compile(rb"SWAPRACE-EXIT -?[0-9]+")
PANIC = re.compile(rb"Kernel panic - not syncing[^\r\n]*")
POLL_SECONDS = 0.05


@dataclass
class GuestResult:
    """What one guest run produced (``stdout``/``stderr`` are empty when they were streamed to sinks)."""

    argv: List[str]
    returncode: int
    stdout: bytes
    stderr: bytes
    kernel: str
    release: str
    accel: str
    accel_reason: str
    boot_seconds: float  # QEMU start to the guest's init being ready (host clock)
    total_seconds: float  # QEMU start to QEMU gone
    console_tail: str = ""


@dataclass(frozen=True)
class GuestOptions:
    """How one guest run goes: its time limits, what the command gets, and the guest kernel's command line."""

    timeout: float = DEFAULT_TIMEOUT  # seconds from QEMU's start to the command's end
    boot_timeout: Optional[float] = None  # seconds from QEMU's start to init's "booted"; None: by accelerator
    env: Mapping[str, str] = field(default_factory=dict)  # set in the guest for the command
    out_dir: Optional[Path] = None  # a host directory shared read-write at /mnt/out (captures, logs)
    cmdline_extra: str = ""  # appended to the guest kernel's command line
    init: str = GUEST_INIT


@dataclass(frozen=True)
class GuestStreams:
    """Where the guest's output goes as it comes; None: kept in the :class:`GuestResult` (console: dropped)."""

    stdout: Optional[IO[bytes]] = None
    stderr: Optional[IO[bytes]] = None
    console: Optional[IO[bytes]] = None


def default_boot_timeout(accel: Accel) -> float:
    """``$SWAPRACE_VM_BOOT_TIMEOUT`` seconds, else :data:`BOOT_TIMEOUT` of the accelerator."""
    value = os.environ.get("SWAPRACE_VM_BOOT_TIMEOUT")
    if not value:
        return BOOT_TIMEOUT[accel.name]
    try:
        return float(value)
    except ValueError:
        raise SwapraceError(f"SWAPRACE_VM_BOOT_TIMEOUT={value!r} is not a number of seconds")


def _die_with_parent() -> None:
    """In the QEMU child: get SIGKILL when the Python process that started it dies, however it dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except OSError:
        pass


def kernel_cmdline(extra: str = "", init: str = GUEST_INIT) -> str:
    # panic=-1 + QEMU -no-reboot: a panicking guest stops at once instead of hanging in a 'panic loop';
    # mitigations=off only makes TCG faster, it does not touch the swap code.
    parts = [
        "console=ttyS0", "root=/dev/vda", "rootfstype=ext4", "rw", f"init={init}", "panic=-1",
        "quiet", "loglevel=4", "mitigations=off", "8250.nr_uarts=1",
    ]
    return " ".join(parts + ([extra] if extra else []))


def _opt(path: Path) -> str:
    """A path inside a QEMU -drive/-virtfs option: commas must be doubled there."""
    return str(path).replace(",", ",,")


def qemu_command(
    image: BuiltImage, accel: Accel, rundir: Path, cmdline: str, interactive: bool, out_dir: Optional[Path] = None
) -> List[str]:
    share = rundir / "share"
    command = [
        qemu_binary(), "-name", f"swaprace-{image.kernel}", "-nodefaults", "-no-reboot",
        *accel.qemu_args(), "-smp", str(GUEST_CPUS), "-m", str(GUEST_MEMORY_MIB),
        "-kernel", str(image.vmlinuz), *(["-initrd", str(image.initrd)] if image.initrd else []),
        "-append", cmdline,
        # Throw-away disks: cache=unsafe skips host flushes, nothing on them outlives the run.
        "-drive", f"file={_opt(rundir / 'overlay.qcow2')},if=virtio,format=qcow2,cache=unsafe",
        "-drive", f"file={_opt(rundir / 'swap.img')},if=virtio,format=raw,cache=unsafe",
        "-virtfs", f"local,path={_opt(checkout_dir())},mount_tag=swaprace,security_model=none,id=checkout",
        "-virtfs", f"local,path={_opt(share)},mount_tag=swaprace-run,security_model=none,id=run",
        "-device", "virtio-rng-pci", "-nic", "none",
    ]
    if out_dir is not None:  # mounted at /mnt/out by the guest's init when present
        command += ["-virtfs", f"local,path={_opt(out_dir)},mount_tag=swaprace-out,security_model=none,id=out"]
    if interactive:
        command += ["-display", "none", "-serial", "mon:stdio"]
    else:
        command += ["-display", "none", "-monitor", "none", "-serial", f"file:{rundir / 'console.log'}"]
    return command


def _prepare_rundir(image: BuiltImage, argv: Sequence[str], env: Mapping[str, str], mode: str) -> Path:
    rundir = Path(tempfile.mkdtemp(prefix=f"swaprace-vm-{image.kernel}-"))
    share = rundir / "share"
    share.mkdir()
    overlay = subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(image.disk), str(rundir / "overlay.qcow2")],
        capture_output=True, text=True,
    )
    if overlay.returncode != 0:
        shutil.rmtree(rundir, ignore_errors=True)
        raise SwapraceError(f"qemu-img cannot make the run's overlay disk: {overlay.stderr.strip()}")
    with open(rundir / "swap.img", "wb") as swap:
        swap.truncate(SWAP_DISK_MIB << 20)
    (share / "cmd.sh").write_text("exec " + " ".join(shlex.quote(arg) for arg in argv) + "\n")
    (share / "env").write_text("".join(f"export {name}={shlex.quote(value)}\n" for name, value in env.items()))
    (share / "mode").write_text(mode + "\n")
    return rundir


def _kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


class _Tail:
    """Follow a file another process writes, from the start; hand new bytes to a sink or keep them."""

    def __init__(self, path: Path, sink: Optional[IO[bytes]]):
        self.path, self.sink = path, sink
        self.handle: Optional[IO[bytes]] = None
        self.kept = bytearray()

    def pump(self) -> bytes:
        if self.handle is None:
            try:
                self.handle = open(self.path, "rb")
            except FileNotFoundError:
                return b""
        data = self.handle.read()
        if data:
            if self.sink is not None:
                self.sink.write(data)
                self.sink.flush()
            else:
                self.kept += data
        return data

    def close(self) -> None:
        if self.handle:
            self.handle.close()


KEPT_CONSOLES = 20


def _read_status(path: Path) -> int:
    text = path.read_text(errors="replace").strip()
    if not text.isdigit():
        raise SwapraceError(f"the guest reported a garbled exit status {text[:40]!r}")
    return int(text)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:  # pruned by another run meanwhile
        return 0.0


def _keep_console(kernel: str, rundir: Path) -> Path:
    """Keep a failed run's console log (one file per run: guests of several processes fail independently)."""
    folder = cache_dir() / "failed-consoles"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    kept = folder / f"{kernel}-{stamp}-{os.getpid()}-{rundir.name.rsplit('-', 1)[-1]}.log"
    try:
        shutil.copyfile(rundir / "console.log", kept)
    except OSError:
        kept.write_text("")
    for old in sorted(folder.glob("*.log"), key=_mtime)[:-KEPT_CONSOLES]:
        old.unlink(missing_ok=True)
    return kept


def _console_tail(console: bytes | bytearray, lines: int = 5) -> str:
    text = console.decode(errors="replace").replace("\r", "")
    tail = " | ".join(line for line in text.strip().splitlines()[-lines:])
    return tail or "(nothing yet: the kernel boots with 'quiet')"


def boot_and_run(
    image: BuiltImage,
    accel: Accel,
    argv: Sequence[str],
    options: GuestOptions = GuestOptions(),
    streams: GuestStreams = GuestStreams(),
) -> GuestResult:
    """Boot ``image`` under ``accel``, run ``argv`` as root in the shared checkout, return its status.

    Raises SwapraceError (and leaves no QEMU behind) when the guest panics, does not boot within
    ``options.boot_timeout``, the command does not finish within ``options.timeout`` (both counted from QEMU's
    start), or the guest stops without reporting a status.
    """
    timeout, out_dir = options.timeout, options.out_dir
    boot_timeout = options.boot_timeout if options.boot_timeout is not None else default_boot_timeout(accel)
    boot_timeout = min(boot_timeout, timeout)
    if out_dir is not None and not Path(out_dir).is_dir():
        raise SwapraceError(f"output directory {out_dir} does not exist")
    rundir = _prepare_rundir(image, argv, options.env, "run")
    command = qemu_command(
        image, accel, rundir, kernel_cmdline(options.cmdline_extra, options.init), interactive=False,
        out_dir=Path(out_dir).resolve() if out_dir is not None else None,
    )
    tails = [_Tail(rundir / "share" / "stdout", streams.stdout), _Tail(rundir / "share" / "stderr", streams.stderr)]
    console_tail = _Tail(rundir / "console.log", streams.console)
    console_seen = bytearray()
    started = time.monotonic()
    booted_at: Optional[float] = None
    failure: Optional[str] = None
    try:
        with sigterm_as_interrupt(), open(rundir / "qemu.log", "wb") as qemu_log:
            proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=qemu_log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_die_with_parent,
            )
            try:
                while True:
                    exited = proc.poll() is not None
                    for tail in tails:
                        tail.pump()
                    console_seen += console_tail.pump()
                    now = time.monotonic() - started
                    if booted_at is None and BOOTED.search(console_seen):
                        booted_at = now
                    panic = PANIC.search(console_seen)
                    exit_line = EXITED.search(console_seen)
                    if panic and exit_line and exit_line.start() < panic.start():
                        # The command had finished and init was powering off: init paging in code from a disk
                        # the power-off already stopped ("I/O error, dev vda") dies, and PID 1 dying panics.
                        # The command's status is already on the share; the panic says nothing about it.
                        break
                    if panic:
                        time.sleep(0.5)  # let the panic's last lines reach the console log
                        console_seen += console_tail.pump()
                        failure = f"guest kernel panic: {panic.group(0).decode(errors='replace').strip()}"
                        break
                    if exited:
                        break
                    if booted_at is None and now > boot_timeout:
                        failure = f"guest did not boot within {boot_timeout:.0f} s"
                        break
                    if now > timeout:
                        failure = f"guest command did not finish within {timeout:.0f} s"
                        break
                    time.sleep(POLL_SECONDS)
            finally:
                _kill_group(proc)
                for tail in tails:
                    tail.pump()
                    tail.close()
                console_seen += console_tail.pump()
                console_tail.close()
        total = time.monotonic() - started
        status_file = rundir / "share" / "status"
        if failure is None and not status_file.is_file():
            qemu_said = (rundir / "qemu.log").read_text(errors="replace").strip()
            if proc.returncode not in (0, None) and qemu_said:
                failure = f"QEMU failed (exit {proc.returncode}): {qemu_said.splitlines()[-1]}"
            else:
                failure = "guest stopped without reporting an exit status"
        if failure is not None:
            kept = _keep_console(image.kernel, rundir)
            raise SwapraceError(
                f"{failure} [{image.kernel}, {accel.name}]; console: {_console_tail(console_seen)} "
                f"(full console log: {kept})"
            )
        returncode = _read_status(status_file)
        return GuestResult(
            argv=list(argv), returncode=returncode, stdout=bytes(tails[0].kept), stderr=bytes(tails[1].kept),
            kernel=image.kernel, release=image.release, accel=accel.name, accel_reason=accel.reason,
            boot_seconds=booted_at if booted_at is not None else float("nan"), total_seconds=total,
            console_tail=_console_tail(console_seen),
        )
    finally:
        shutil.rmtree(rundir, ignore_errors=True)


def choose_accel(image: BuiltImage, progress: Progress = None) -> Accel:
    """KVM when a trial boot under KVM works on this host (verdict cached), else multi-threaded TCG."""
    forced = forced_accel()
    if forced:
        return forced
    unusable = kvm_unusable_reason()
    if unusable:
        return Accel("tcg", unusable)
    verdict_path = cache_dir() / "accel.json"
    cached = cached_verdict(verdict_path)
    if cached:
        return cached
    if progress:
        progress(f"trial boot under KVM (at most {KVM_TRIAL_SECONDS:.0f} s) to see whether KVM works here")
    trial = Accel("kvm", "trial")
    try:
        trial_options = GuestOptions(timeout=KVM_TRIAL_SECONDS, boot_timeout=KVM_TRIAL_SECONDS)
        result = boot_and_run(image, trial, ["true"], trial_options)
        works = result.returncode == 0
        why = f"a trial boot under KVM reached the guest's init in {result.boot_seconds:.1f} s"
    except SwapraceError as exc:
        works = False
        why = str(exc).split(";")[0].rsplit(" [", 1)[0]
    verdict = Accel("kvm", why) if works else Accel("tcg", f"/dev/kvm exists but KVM is unusable here: {why}")
    store_verdict(verdict_path, verdict)
    return verdict


def run_in_guest(
    argv: Sequence[str],
    kernel: str = DEFAULT_KERNEL,
    options: GuestOptions = GuestOptions(),
    streams: GuestStreams = GuestStreams(),
    progress: Progress = None,
) -> GuestResult:
    """Build (or reuse) the ``kernel`` image, pick KVM/TCG, boot, run ``argv``; see :func:`boot_and_run`."""
    if not argv:
        raise SwapraceError("no command to run in the guest")
    image = ensure_image(kernel, progress)
    accel = choose_accel(image, progress)
    if progress:
        progress(f"booting {kernel} ({image.release}) under {accel.name.upper()}: {accel.reason}")
    return boot_and_run(image, accel, argv, options, streams)


def shell_in_guest(kernel: str = DEFAULT_KERNEL, progress: Progress = None) -> int:
    """Boot the box with an interactive root shell on the serial console (this terminal). Returns its status.

    QEMU's console keys work: Ctrl-A X quits at once.
    """
    image = ensure_image(kernel, progress)
    accel = choose_accel(image, progress)
    if progress:
        progress(f"booting {kernel} ({image.release}) under {accel.name.upper()}: {accel.reason}")
        progress("interactive shell on the serial console; `exit` powers the guest off, Ctrl-A X kills it")
    rundir = _prepare_rundir(image, ["true"], {"TERM": os.environ.get("TERM", "vt100")}, "shell")
    command = qemu_command(image, accel, rundir, kernel_cmdline(), interactive=True)
    try:
        proc = subprocess.Popen(command, preexec_fn=_die_with_parent)
        try:
            with sigterm_as_interrupt():
                proc.wait()
        except KeyboardInterrupt:
            proc.kill()
            proc.wait()
            raise
        status_file = rundir / "share" / "status"
        return _read_status(status_file) if status_file.is_file() else 1
    finally:
        shutil.rmtree(rundir, ignore_errors=True)

"""The test box on real kernels (``pytest -m vm``): build or reuse both images, boot them under QEMU, probe.

Each test boots one fresh guest (about 15-30 s under TCG on 2 cores once the images are cached). They are
skipped, with the reason, only when QEMU cannot run here at all (see vm_support.qemu_unavailable_reason).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from swaprace.cli import main
from swaprace.errors import SwapraceError
from swaprace.vm import ensure_image
from vm_support import KERNELS, require_qemu, vm_run

pytestmark = pytest.mark.vm


def _qemu_processes_with(marker: str) -> list:
    """PIDs of live processes whose command line contains ``marker`` (our QEMU carries it in -append)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return [pid for pid in found if pid != os.getpid()]


@pytest.mark.parametrize("kernel", KERNELS)
def test_roles_resolve_kprobes_attach_and_swap_faults_are_counted(kernel: str) -> None:
    done = vm_run(kernel, ["python3", "vm-setup/checks/kprobe_swap_check.py"], timeout=900)
    assert done.stdout.strip(), done.stderr
    report = json.loads(done.stdout)
    assert done.returncode == 0 and report["ok"], report.get("error") or done.stderr

    facts = report["facilities"]
    assert f"kernel={kernel}" in facts["testbox"] and f"release={facts['release']}" in facts["testbox"]
    assert facts["release"] == done.guest.release
    for facility in ("btf", "tracefs", "cgroup2_memory", "ksm", "bpftrace", "gcc", "headers", "swap_disk"):
        assert facts[facility] is True, facility
    for module in ("swaprace", "bcc", "pandas", "pyarrow", "click", "matplotlib", "pytest", "hypothesis"):
        assert facts[f"import_{module}"] is True, facts[f"import_{module}"]
    assert facts["cpus"] == 2

    # The four roles resolve on both kernels (names measured in kernel-history.md).
    assert report["roles"]["fault"] == "do_swap_page"
    assert report["roles"]["lookup"] == "swap_cache_get_folio"
    assert report["roles"]["ksm_copy"] == "ksm_might_need_to_copy"
    assert report["roles"]["free_cache"] == "folio_free_swap"

    # 96 MiB touched twice under a 32 MiB limit: thousands of swap-ins, seen alike by bcc and ftrace.
    faults = report["bcc_hits"]["fault"]
    assert faults > 5000, report
    assert report["ftrace_fault_hits"] == faults, report
    assert report["ftrace_fault_misses"] == 0
    assert report["bcc_hits"]["lookup"] >= faults  # every fault looks its entry up in the swap cache


def test_cli_run_streams_output_and_returns_the_guest_status(tmp_path: Path) -> None:
    require_qemu()
    command = "echo to-stdout; echo to-stderr >&2; cat /etc/swaprace-testbox > /mnt/out/box.txt; exit 3"
    result = CliRunner().invoke(main, ["vm", "run", "--out", str(tmp_path), "--", "sh", "-c", command])
    assert result.exit_code == 3, result.output
    assert "to-stdout" in result.stdout
    assert "to-stderr" in result.stderr
    assert "under TCG" in result.stderr or "under KVM" in result.stderr  # which accelerator, and why
    assert "kernel=bookworm" in (tmp_path / "box.txt").read_text()


def test_guest_kernel_panic_is_reported_and_qemu_is_gone() -> None:
    marker = f"swaprace.test={uuid.uuid4().hex}"
    with pytest.raises(SwapraceError, match="guest kernel panic: Kernel panic - not syncing: sysrq"):
        vm_run("bookworm", ["sh", "-c", "echo c > /proc/sysrq-trigger"], timeout=300, cmdline_extra=marker)
    assert _qemu_processes_with(marker) == []


def test_unbootable_kernel_command_line_panics_and_is_reported() -> None:
    # No initramfs init: the kernel mounts root= itself, but virtio_blk is a module -> VFS panic at boot.
    marker = f"swaprace.test={uuid.uuid4().hex}"
    with pytest.raises(SwapraceError, match="guest kernel panic: Kernel panic - not syncing: VFS"):
        vm_run("bookworm", ["true"], timeout=300, cmdline_extra=f"rdinit=/nonexistent {marker}")
    assert _qemu_processes_with(marker) == []


def test_impossible_init_hangs_and_is_stopped_at_the_boot_limit() -> None:
    # The initramfs falls back to /bin/sh on the console, which waits for input forever: a hung boot.
    marker = f"swaprace.test={uuid.uuid4().hex}"
    with pytest.raises(SwapraceError, match=r"did not boot within 30 s \[bookworm, (tcg|kvm)\]; console: .*log"):
        vm_run("bookworm", ["true"], timeout=300, boot_timeout=30, init="/nonexistent", cmdline_extra=marker)
    assert _qemu_processes_with(marker) == []


def test_hung_guest_command_is_killed_at_the_time_limit() -> None:
    marker = f"swaprace.test={uuid.uuid4().hex}"
    # (on a loaded host the 40 s may run out while the guest still boots: also a hung run, also stopped)
    with pytest.raises(SwapraceError, match="did not (finish|boot) within 40 s"):
        vm_run("bookworm", ["sleep", "3600"], timeout=40, cmdline_extra=marker)
    assert _qemu_processes_with(marker) == []


def _children_named(parent: int, prefix: str) -> list:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            comm = stat[stat.index("(") + 1 : stat.rindex(")")]
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            if ppid == parent and comm.startswith(prefix):
                found.append(int(entry.name))
    return found


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_ctrl_c_kill_qemu(signum: int) -> None:
    require_qemu()
    ensure_image("bookworm")  # so that the command below is booting, not building
    # A shell starts background jobs with SIGINT ignored and a child inherits that (a CI runner in the
    # background): give the command Ctrl-C's default, as a terminal would.
    cli = subprocess.Popen(
        [sys.executable, "-m", "swaprace", "vm", "run", "--", "sleep", "3600"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    qemu: list = []
    try:
        while not qemu and time.monotonic() < deadline and cli.poll() is None:
            time.sleep(0.2)
            qemu = _children_named(cli.pid, "qemu-system")
        assert qemu, "QEMU did not start"
        cli.send_signal(signum)
        _, stderr = cli.communicate(timeout=30)
    finally:  # a failure must not leave an hour-long guest behind
        if cli.poll() is None:
            cli.kill()
            cli.wait()
        for pid in qemu:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert cli.returncode == 130, stderr
    assert b"swaprace: interrupted" in stderr and b"Traceback" not in stderr
    assert not Path(f"/proc/{qemu[0]}").exists()

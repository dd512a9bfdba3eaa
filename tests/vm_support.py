"""Run commands inside the swaprace test box from tests (the QEMU guest of vm-setup/).

Every test that needs a real kernel with kprobes uses this module::

    import pytest
    from vm_support import KERNELS, vm_run

    pytestmark = pytest.mark.vm

    @pytest.mark.parametrize("kernel", KERNELS)
    def test_imports_in_guest(kernel):
        done = vm_run(kernel, ["python3", "-c", "import swaprace"], timeout=600)
        assert done.returncode == 0, done.stderr

:func:`vm_run` builds the kernel's image on first use (or reuses the cached one; a lock file makes concurrent
test processes share one build), boots a fresh throw-away overlay of it (so tests may run in parallel and
change anything in the guest), runs ``cmd`` as root in the shared checkout (/mnt/swaprace, the host's
checkout, read-write), and returns a :class:`subprocess.CompletedProcess` with ``stdout``/``stderr`` as text
and the guest's exit status. Pass ``out_dir=tmp_path`` to get a host directory of your own mounted
read-write at ``/mnt/out`` in the guest: write captures there and read them on the host after the run.
``done.guest`` is the full :class:`swaprace.vm.GuestResult` (accel, boot and total seconds, kernel release).

Inside the guest: python3 with swaprace (PYTHONPATH=/mnt/swaprace), pandas, pyarrow, click, matplotlib,
pytest, hypothesis; python3-bpfcc, bpftrace, gcc; tracefs at /sys/kernel/tracing, debugfs, BTF, KSM,
cgroup v2 at /sys/fs/cgroup; 2 vCPUs, 2 GiB; ``swaprace-testbox swap-on`` enables a 256 MiB swap disk and
``swaprace-testbox cgroup NAME 48M`` makes a memory-limited cgroup (see vm-setup/guest/swaprace-testbox);
/etc/swaprace-testbox names the suite and kernel. The environment variable SWAPRACE_TESTBOX=1 is set.

A guest that panics, never boots, or outlives ``timeout`` raises :class:`swaprace.errors.SwapraceError`
(QEMU is killed first). The test is skipped -- with the reason -- only when QEMU cannot run on this host at
all (see :func:`qemu_unavailable_reason`); any other problem (a failed image build...) fails the test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import List, Mapping, Optional, Sequence

import pytest

from swaprace.errors import SwapraceError
from swaprace.vm import KERNELS, GuestOptions, ensure_image, run_in_guest
from swaprace.vm.accel import qemu_version

__all__ = ["KERNELS", "vm_run", "qemu_unavailable_reason", "require_qemu"]


def qemu_unavailable_reason() -> Optional[str]:
    """Why the test box cannot run on this host at all, or None when it can."""
    try:
        qemu_version()
    except SwapraceError as exc:
        return str(exc)
    if shutil.which("qemu-img") is None:
        return "qemu-img not found (install qemu-utils)"
    if os.geteuid() != 0:
        return "the test box needs root (image build with debootstrap, 9p share of root-owned files)"
    return None


def require_qemu() -> None:
    """pytest.skip the calling test, with the reason, when QEMU cannot run here."""
    reason = qemu_unavailable_reason()
    if reason:
        pytest.skip(f"swaprace test box unavailable: {reason}")


def _progress(message: str) -> None:
    print(f"[vm] {message}", file=sys.stderr, flush=True)


_images_checked = threading.Event()


def ensure_all_images() -> None:
    """Build (or find cached) the images of every kernel, in parallel: once per test session.

    A cold build is mostly download and dpkg; two at once take little longer than one. Called by the first
    :func:`vm_run` of a session, so a fresh machine pays for both builds at once, not one after the other.
    """
    if _images_checked.is_set():
        return
    with ThreadPoolExecutor(max_workers=len(KERNELS)) as pool:
        for image in pool.map(lambda kernel: ensure_image(kernel, _progress), KERNELS):
            how = "cached" if image.build_seconds is None else f"built in {image.build_seconds:.0f} s"
            _progress(f"image {image.kernel} ({image.release}): {how}")
    _images_checked.set()


def vm_run(
    kernel: str,
    cmd: Sequence[str],
    timeout: float = 900.0,
    env: Optional[Mapping[str, str]] = None,
    check: bool = False,
    **options,
) -> subprocess.CompletedProcess:
    """Run ``cmd`` (a list, no shell: wrap in ``["sh", "-c", ...]`` for one) as root in a fresh ``kernel`` guest.

    ``check=True`` raises :class:`subprocess.CalledProcessError` on a non-zero status, like subprocess.run.
    Extra keyword options are fields of :class:`swaprace.vm.GuestOptions` (``out_dir``, ``cmdline_extra``,
    ``init``, ``boot_timeout``).
    """
    require_qemu()
    ensure_all_images()
    result = run_in_guest(list(cmd), kernel, GuestOptions(timeout=timeout, env=env or {}, **options), progress=_progress)
    done = subprocess.CompletedProcess(
        args=list(cmd),
        returncode=result.returncode,
        stdout=result.stdout.decode(errors="replace"),
        stderr=result.stderr.decode(errors="replace"),
    )
    done.guest = result  # type: ignore[attr-defined]
    _progress(
        f"{kernel} ({result.release}, {result.accel}): exit {result.returncode}, boot {result.boot_seconds:.1f} s,"
        f" total {result.total_seconds:.1f} s"
    )
    if check:
        done.check_returncode()
    return done


def guest_python(code: str) -> List[str]:
    """The argv that runs a Python snippet with the guest's python3."""
    return ["python3", "-c", code]

"""KVM or TCG: which QEMU accelerator the test box uses on this host, and why.

``/dev/kvm`` existing is not enough: on some hosts (e.g. nested PVM) stock kernels hang or assert while
booting under KVM. So KVM is chosen only after a short trial boot under KVM reached the guest's init; the
verdict is cached per host kernel release and QEMU version (``accel.json`` in the cache directory), so only
the first run on a host pays for the trial. ``SWAPRACE_VM_ACCEL=kvm|tcg`` forces a choice.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from swaprace.errors import SwapraceError
from swaprace.osutil import atomic_write_text

ACCELS = ("kvm", "tcg")
#: A trial boot under KVM that has not reached the guest's init by then counts as failed.
KVM_TRIAL_SECONDS = 25.0


@dataclass(frozen=True)
class Accel:
    name: str  # "kvm" or "tcg"
    reason: str  # one sentence for the user: why this one

    def qemu_args(self) -> List[str]:
        if self.name == "kvm":
            return ["-accel", "kvm", "-cpu", "host"]
        # Single-threaded TCG by default: under multi-threaded TCG (QEMU 7.2) the guest's own code patching
        # (static keys, kprobes: int3-based text_poke_bp) raced with the other vCPU's translated code -- seen
        # as an "Oops: int3" in a 7.3 boot and a return to address 0 from do_swap_page while kretprobes were
        # attached in 6.1. One thread running both vCPUs in turn cannot race; their fault windows still
        # interleave. SWAPRACE_VM_TCG_THREAD=multi opts back in (faster, on a quiet host).
        # "max" gives the guest every feature TCG emulates.
        thread = os.environ.get("SWAPRACE_VM_TCG_THREAD", "single")
        if thread not in ("single", "multi"):
            raise SwapraceError(f"SWAPRACE_VM_TCG_THREAD={thread!r}: expected single or multi")
        return ["-accel", f"tcg,thread={thread}", "-cpu", "max"]


def qemu_binary() -> str:
    return os.environ.get("SWAPRACE_VM_QEMU", "qemu-system-x86_64")


def qemu_version() -> str:
    """First line of ``qemu-system-x86_64 --version``; SwapraceError when QEMU cannot run at all."""
    try:
        done = subprocess.run([qemu_binary(), "--version"], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise SwapraceError(f"{qemu_binary()} not found: install qemu-system-x86 (vm-setup/host-packages.txt)")
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SwapraceError(f"{qemu_binary()} cannot run: {exc}")
    if done.returncode != 0 or not done.stdout.strip():
        raise SwapraceError(f"{qemu_binary()} --version failed: {done.stderr.strip()}")
    return done.stdout.strip().splitlines()[0]


def forced_accel() -> Optional[Accel]:
    value = os.environ.get("SWAPRACE_VM_ACCEL", "").strip().lower()
    if not value:
        return None
    if value not in ACCELS:
        raise SwapraceError(f"SWAPRACE_VM_ACCEL={value!r}: expected one of {', '.join(ACCELS)}")
    return Accel(value, f"forced by SWAPRACE_VM_ACCEL={value}")


def kvm_unusable_reason() -> Optional[str]:
    """Why KVM cannot even be tried here, or None."""
    if not os.path.exists("/dev/kvm"):
        return "no /dev/kvm on this host"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "/dev/kvm is not accessible to this user"
    return None


def verdict_key() -> str:
    return f"{os.uname().release} | {qemu_version()}"


def cached_verdict(path: Path) -> Optional[Accel]:
    try:
        state: Dict[str, str] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if state.get("key") != verdict_key() or state.get("accel") not in ACCELS:
        return None
    return Accel(state["accel"], f"{state['reason']} (cached verdict in {path})")


def store_verdict(path: Path, accel: Accel) -> None:
    atomic_write_text(path, json.dumps({"key": verdict_key(), "accel": accel.name, "reason": accel.reason},
                                       indent=2) + "\n")

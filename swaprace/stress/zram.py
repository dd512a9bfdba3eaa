"""Swap on zram for ``swaprace stress --swap-device zram``: the SWP_SYNCHRONOUS_IO path of do_swap_page.

A zram device is a block device that completes reads synchronously, so the kernel marks its swap area
SWP_SYNCHRONOUS_IO and ``do_swap_page`` skips the swap cache for an entry whose swap count is 1 (the path
of the 2024 race, 13ddaf26be32). A disk swap file never takes that path.

Set-up, each step appended to the stress state log *before* it is made (like the swap file's), so the
normal exit, a signal, or ``swaprace stress --cleanup`` after a crash undoes exactly what was done:

1. ``zram-module``: ``modprobe zram`` when no zram device exists (logged only when we loaded it: undone by
   ``modprobe -r zram``; a built-in zram, as in the lab kernels, needs nothing).
2. ``zram-device``: /dev/zram0, or a new device from /sys/class/zram-control/hot_add when zram0 is in use;
   ``disksize`` set, then ``mkswap``. Undone by ``reset`` (and ``hot_remove`` when we added it).
3. ``swapon`` of /dev/zramN at top priority (the same record, and undo, as the swap file's swapon).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Dict, List

from swaprace.errors import SwapraceError
from swaprace.stress.machine import _write  # one sysfs writer with one error line

SYS_BLOCK = Path("/sys/block")
ZRAM_CONTROL = Path("/sys/class/zram-control")


def _run(argv: List[str], what: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        message = (proc.stderr.strip() or proc.stdout.strip() or f"exit {proc.returncode}").splitlines()[-1]
        raise SwapraceError(f"{what} failed: {message}")
    return proc


def _device_free(name: str) -> bool:
    try:
        return int((SYS_BLOCK / name / "disksize").read_text()) == 0
    except (OSError, ValueError):
        return False


def describe(size: int) -> str:
    shown = f"{size >> 20} MiB" if size >= 1 << 20 else f"{size >> 10} KiB"
    return f"set up /dev/zram0 (or a hot-added zram device) of {shown} and swapon it at priority 32767"


def set_up(log, size: int) -> str:
    """Make a zram swap device of ``size`` bytes and swapon it; every step is logged in ``log`` (a
    :class:`swaprace.stress.machine.StateLog`) before it is made. Returns the device path."""
    from swaprace.stress.machine import sbin

    if not (SYS_BLOCK / "zram0").exists():
        log.add(kind="zram-module", path="zram")
        _run([sbin("modprobe"), "zram"], "modprobe zram (kernel without CONFIG_ZRAM?)")
        for _ in range(100):  # udev-less guests: the sysfs node appears a moment after the module loads
            if (SYS_BLOCK / "zram0").exists():
                break
            time.sleep(0.02)
    if _device_free("zram0"):
        name, hot_added = "zram0", 0
    else:
        if not (ZRAM_CONTROL / "hot_add").exists():
            raise SwapraceError("/dev/zram0 is in use and this kernel cannot hot-add zram devices")
        name = "zram" + (ZRAM_CONTROL / "hot_add").read_text().strip()
        hot_added = 1
    device = f"/dev/{name}"
    log.add(kind="zram-device", path=device, hot_added=hot_added)
    for _ in range(100):  # devtmpfs creates the node asynchronously after hot_add
        if Path(device).exists():
            break
        time.sleep(0.02)
    _write(SYS_BLOCK / name / "disksize", str(size))
    _run([sbin("mkswap"), device], "mkswap")
    log.add(kind="swapon", path=device)
    _run([sbin("swapon"), "--priority", "32767", device], "swapon")
    return device


def undo(change: Dict[str, str]) -> None:
    """Undo one ``zram-*`` record (idempotent: a device already reset or removed is fine)."""
    from swaprace.stress.machine import sbin

    kind, path = change["kind"], change["path"]
    if kind == "zram-device":
        name = Path(path).name
        if (SYS_BLOCK / name).exists():
            if not _device_free(name):
                _write(SYS_BLOCK / name / "reset", "1")
            if int(change.get("hot_added", 0)) and (ZRAM_CONTROL / "hot_remove").exists():
                _write(ZRAM_CONTROL / "hot_remove", name.removeprefix("zram"))
    elif kind == "zram-module":
        if Path("/sys/module/zram").exists():
            subprocess.run([sbin("modprobe"), "-r", "zram"], capture_output=True)

#!/usr/bin/env python3
"""Figures of the swaprace test box: build, warm start and boot time per kernel, image size, KVM or TCG.

    python3 benchmarks/vm_boot.py                       # warm figures of both kernels (builds if needed)
    python3 benchmarks/vm_boot.py --cold --kernel bookworm   # + a cold build into a scratch cache (minutes)
    python3 benchmarks/vm_boot.py --runs 3 --json

"warm start" = wall time of `swaprace vm run -- true` with a current cache (image check + overlay + boot +
power-off); "boot" = QEMU start to the guest init's ready marker; "image" = space the sparse disk image takes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from swaprace.vm import KERNELS, GuestOptions, ensure_image, run_in_guest  # noqa: E402


def measure(kernel: str, runs: int, cold: bool) -> dict:
    figures: dict = {"kernel": kernel}
    if cold:
        with tempfile.TemporaryDirectory(prefix="swaprace-cold-cache-") as scratch:
            previous = os.environ.get("SWAPRACE_VM_CACHE")
            os.environ["SWAPRACE_VM_CACHE"] = scratch
            try:
                started = time.monotonic()
                image = ensure_image(kernel)
                figures["cold_build_s"] = round(time.monotonic() - started, 1)
                figures["cold_rootfs_s"] = round(image.rootfs_seconds or 0.0, 1)
            finally:
                if previous is None:
                    del os.environ["SWAPRACE_VM_CACHE"]
                else:
                    os.environ["SWAPRACE_VM_CACHE"] = previous
    image = ensure_image(kernel)
    started = time.monotonic()
    ensure_image(kernel)
    figures["cache_check_s"] = round(time.monotonic() - started, 3)
    figures["release"] = image.release
    figures["image_used_mib"] = round(image.disk_bytes / 2**20)
    figures["image_size_mib"] = round(image.disk_size / 2**20)
    boots, starts = [], []
    for _ in range(runs):
        started = time.monotonic()
        result = run_in_guest(["true"], kernel, GuestOptions(timeout=600))
        starts.append(time.monotonic() - started)
        boots.append(result.boot_seconds)
        figures["accel"], figures["accel_reason"] = result.accel, result.accel_reason
    figures["boot_s"] = round(statistics.median(boots), 1)
    figures["warm_start_s"] = round(statistics.median(starts), 1)
    figures["runs"] = runs
    figures["host_load_1min"] = round(os.getloadavg()[0], 1)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kernel", choices=KERNELS, action="append", help="default: all kernels")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--cold", action="store_true", help="also time a full build into a scratch cache")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [measure(kernel, args.runs, args.cold) for kernel in (args.kernel or KERNELS)]
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for figures in results:
        print(
            f"{figures['kernel']:17} {figures['release']:22} accel={figures['accel']}"
            f"  boot={figures['boot_s']}s  warm_start={figures['warm_start_s']}s"
            f"  image={figures['image_used_mib']} MiB used / {figures['image_size_mib']} MiB"
            + (f"  cold_build={figures['cold_build_s']}s" if "cold_build_s" in figures else "")
            + f"  (load {figures['host_load_1min']})"
        )
    print(f"accel reason: {results[-1]['accel_reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

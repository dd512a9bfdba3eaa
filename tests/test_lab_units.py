"""Host-side units of the race lab: lab kernel cache keys, boots without initrd, zram and scenario plumbing."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from swaprace.errors import SwapraceError
from swaprace.stress import machine, scenarios, zram
from swaprace.stress.run import StressOptions, plan_sizes
from swaprace.vm import accel, image, lab, runner


@pytest.fixture
def lab_env(tmp_path: Path, monkeypatch):
    tarball = tmp_path / "linux-source-6.1.tar.xz"
    tarball.write_bytes(b"not really a kernel")
    monkeypatch.setenv("SWAPRACE_LAB_SOURCE", str(tarball))
    monkeypatch.setenv("SWAPRACE_VM_CACHE", str(tmp_path / "cache"))
    return tarball


def test_lab_keys_differ_per_kernel_and_follow_the_source(lab_env: Path) -> None:
    k2024, k2010 = lab.lab_key("lab-2024"), lab.lab_key("lab-2010")
    assert k2024 != k2010 and len(k2024) == 16
    assert lab.lab_key("lab-2024") == k2024  # memoized digest, same answer
    lab_env.write_bytes(b"another source version, longer")
    assert lab.lab_key("lab-2024") != k2024
    assert lab.cached_lab_kernel("lab-2024") is None  # nothing built in this cache


def test_lab_kernel_needs_the_source(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SWAPRACE_LAB_SOURCE", str(tmp_path / "missing.tar.xz"))
    with pytest.raises(SwapraceError, match="linux-source-6.1"):
        lab.source_tarball()
    assert lab.cached_lab_kernel("lab-2024") is None


def test_lab_patches_name_what_they_undo() -> None:
    here = lab.lab_dir()
    for spec in lab.LAB_KERNELS.values():
        text = (here / spec.patch).read_text()
        assert spec.reverts.split()[0] in text.split("--- a/")[0]  # the header names the upstream commit
        assert "+++ b/mm/memory.c" in text
    assert "swaprace_widen_us" in (here / lab.WIDEN_PATCH).read_text()
    assert set(lab.LAB_KERNELS) == set(image.LAB_KERNELS)
    assert not set(image.LAB_KERNELS) & set(image.KERNELS)  # per-kernel suites stay on the stock kernels
    assert image.check_kernel("lab-2010") == "lab-2010"


def test_a_kernel_without_initrd_boots_without_one(tmp_path: Path) -> None:
    built = image.BuiltImage(kernel="lab-2024", key="0" * 16, disk=tmp_path / "disk.img", vmlinuz=tmp_path / "bz",
                             initrd=None, suite="bookworm", release="6.1.192-lab2024", disk_bytes=0, disk_size=0,
                             build_seconds=None, rootfs_seconds=None)
    command = runner.qemu_command(built, accel.Accel("tcg", "test"), tmp_path, runner.kernel_cmdline(), False)
    assert "-initrd" not in command and str(tmp_path / "bz") in command
    assert built.to_json()["initrd"] is None


def test_scenario_preset_keeps_explicit_options() -> None:
    opts = StressOptions()
    scenarios.apply_preset(opts, "skip-swapcache-2024", {"threads"})
    assert opts.threads == 4 and opts.processes == 1 and opts.swap_device == "zram" and not opts.ksm
    opts = StressOptions(threads=8, swap_device="file")
    scenarios.apply_preset(opts, "skip-swapcache-2024", {"threads", "swap_device"})
    assert opts.threads == 8 and opts.swap_device == "file"
    opts.scenario = "skip-swapcache-2024"
    sizes = plan_sizes(opts)  # a limit above the working set is fine for a scenario
    assert sizes.limit > sizes.working_set and sizes.swap == 64 * 1024  # 15 slots for 64 pages (scenarios.py)
    with pytest.raises(SwapraceError, match="unknown scenario"):
        scenarios.get("nope")


def test_zram_plan_and_undo_dispatch(monkeypatch) -> None:
    plan = machine.Plan(swap_path="/var/tmp/x.swap", swap_bytes=4 << 20, cgroup_version=2, cgroup_path="/sys/fs/cgroup/t",
                        limit_bytes=1 << 20, swap_device="zram")
    assert "zram" in plan.describe()[0] and "4 MiB" in plan.describe()[0]
    assert "swap file" in dataclasses.replace(plan, swap_device="file").describe()[0]
    seen = []
    monkeypatch.setattr(zram, "undo", seen.append)
    machine._undo({"kind": "zram-device", "path": "/dev/zram0", "hot_added": "0"})
    assert seen == [{"kind": "zram-device", "path": "/dev/zram0", "hot_added": "0"}]


def test_sysctl_records_are_restored(tmp_path: Path) -> None:
    knob = tmp_path / "swaprace_widen_us"
    knob.write_text("20000\n")
    machine._undo({"kind": "sysctl", "path": str(knob), "old": "0"})
    assert knob.read_text() == "0"


def test_widener_is_reported_absent_on_stock_kernels(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(scenarios, "WIDEN_US", tmp_path / "absent")
    assert not scenarios.widener_available()
    assert scenarios.set_widener(None, 20000, 1) == {"available": False, "widen_us": 0}


def test_a_build_without_its_tools_fails_at_once_naming_the_packages(lab_env: Path, monkeypatch) -> None:
    """pahole runs only at the end of a kernel build (BTF): without this check the build failed after 20 min."""
    import shutil

    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name in ("pahole", "flex") else real_which(name))
    assert {"dwarves", "flex"} <= set(lab.missing_build_packages())
    with pytest.raises(SwapraceError, match=r"apt-get install .*dwarves"):
        lab.build_lab_kernel("lab-2024")

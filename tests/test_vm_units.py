"""Fast checks of the test box plumbing that need no guest: cache keys, QEMU command, CLI errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from swaprace.cli import main
from swaprace.errors import SwapraceError
from swaprace.vm import accel, image, runner


def test_cache_keys_follow_their_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    bookworm, trixie = image.image_key("bookworm"), image.image_key("trixie-backports")
    assert bookworm != trixie and len(bookworm) == 16
    assert image.image_key("bookworm") == bookworm  # stable
    rootfs = image.rootfs_key("bookworm")
    monkeypatch.setenv("SWAPRACE_VM_MIRROR", "http://mirror.invalid/debian")
    assert image.rootfs_key("bookworm") != rootfs  # another mirror may serve other packages
    assert image.image_key("bookworm") != bookworm


def test_rootfs_key_covers_package_lists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    setup = tmp_path / "vm-setup"
    (setup / "packages").mkdir(parents=True)
    (setup / "guest").mkdir()
    real = image.setup_dir()
    for name in (
        "build-rootfs.sh", "packages/common.txt", "packages/bookworm.txt", "requirements-guest.txt",
        "initramfs-modules.txt",
    ):
        (setup / name).write_bytes((real / name).read_bytes())
    (setup / "guest" / "init").write_text("#!/bin/sh\n")
    monkeypatch.setattr(image, "setup_dir", lambda: setup)
    before_rootfs, before_image = image.rootfs_key("bookworm"), image.image_key("bookworm")
    (setup / "guest" / "init").write_text("#!/bin/sh\n# changed\n")
    assert image.rootfs_key("bookworm") == before_rootfs  # guest files only remake the disk image
    assert image.image_key("bookworm") != before_image
    with open(setup / "packages" / "common.txt", "a") as packages:
        packages.write("htop\n")
    assert image.rootfs_key("bookworm") != before_rootfs


def test_mirror_comes_from_the_environment_or_apt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWAPRACE_VM_MIRROR", "http://example.org/debian/")
    assert image.debian_mirror() == "http://example.org/debian"
    monkeypatch.delenv("SWAPRACE_VM_MIRROR")
    assert image.debian_mirror().startswith("http") and image.debian_mirror().endswith("/debian")


def test_cache_dir_is_the_only_host_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SWAPRACE_VM_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert image.cache_dir() == tmp_path / "swaprace" / "vm"
    monkeypatch.setenv("SWAPRACE_VM_CACHE", str(tmp_path / "elsewhere"))
    assert image.cache_dir() == tmp_path / "elsewhere"


def _fake_image(tmp_path: Path) -> image.BuiltImage:
    return image.BuiltImage(
        kernel="bookworm", key="0" * 16, disk=tmp_path / "disk.img", vmlinuz=tmp_path / "vmlinuz",
        initrd=tmp_path / "initrd", suite="bookworm", release="6.1.0-test", disk_bytes=0, disk_size=0,
        build_seconds=None, rootfs_seconds=None,
    )


def test_qemu_command_boots_an_overlay_with_both_shares(tmp_path: Path) -> None:
    tcg = accel.Accel("tcg", "test")
    command = runner.qemu_command(_fake_image(tmp_path), tcg, tmp_path, runner.kernel_cmdline(), False, tmp_path)
    text = " ".join(command)
    assert "-accel tcg,thread=single -cpu max" in text
    assert f"file={tmp_path / 'overlay.qcow2'},if=virtio,format=qcow2" in text
    assert str(tmp_path / "disk.img") not in text  # the cached image is only the overlay's backing file
    assert "mount_tag=swaprace," in text and "mount_tag=swaprace-run," in text and "mount_tag=swaprace-out," in text
    assert "-no-reboot" in command and "-smp" in command
    cmdline = command[command.index("-append") + 1]
    assert "panic=-1" in cmdline and f"init={image.GUEST_INIT}" in cmdline and "console=ttyS0" in cmdline
    assert accel.Accel("kvm", "x").qemu_args() == ["-accel", "kvm", "-cpu", "host"]


def test_accel_can_be_forced_and_a_bad_value_is_one_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWAPRACE_VM_ACCEL", "tcg")
    assert accel.forced_accel() == accel.Accel("tcg", "forced by SWAPRACE_VM_ACCEL=tcg")
    monkeypatch.setenv("SWAPRACE_VM_ACCEL", "hvf")
    with pytest.raises(SwapraceError, match="expected one of kvm, tcg"):
        accel.forced_accel()


def test_accel_verdict_is_cached_per_host_and_qemu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accel, "qemu_version", lambda: "QEMU emulator version 7.2.0")
    path = tmp_path / "accel.json"
    accel.store_verdict(path, accel.Accel("tcg", "KVM trial failed"))
    cached = accel.cached_verdict(path)
    assert cached is not None and cached.name == "tcg" and "KVM trial failed" in cached.reason
    monkeypatch.setattr(accel, "qemu_version", lambda: "QEMU emulator version 9.0.0")
    assert accel.cached_verdict(path) is None  # another QEMU: try again
    path.write_text("{not json")
    assert accel.cached_verdict(path) is None


def test_cli_rejects_bad_input_with_one_line() -> None:
    result = CliRunner().invoke(main, ["vm", "run", "--kernel", "sid", "--", "true"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    result = CliRunner().invoke(main, ["vm", "run", "--env", "no-equals", "--", "true"])
    assert result.exit_code != 0 and "expected NAME=VALUE" in result.output
    assert "Example" in CliRunner().invoke(main, ["vm", "run", "--help"]).output


def test_missing_qemu_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWAPRACE_VM_QEMU", "/nonexistent/qemu-system-x86_64")
    with pytest.raises(SwapraceError, match="not found: install qemu-system-x86"):
        accel.qemu_version()


def test_image_facts_serialize(tmp_path: Path) -> None:
    facts = _fake_image(tmp_path).to_json()
    assert json.loads(json.dumps(facts))["disk"] == str(tmp_path / "disk.img")


def test_superseded_images_are_pruned_after_the_grace_period(tmp_path: Path) -> None:
    import os
    import time

    current, old, recent = "a" * 16, "b" * 16, "c" * 16
    names = [f"disk-{current}.img", f"initrd-{current}", f"disk-{old}.img", f"vmlinuz-{old}", f"disk-{recent}.img",
             "rootfs.json"]
    for name in names:
        (tmp_path / name).write_text("x")
    hours_ago = time.time() - 2 * image.STALE_GRACE_SECONDS
    for name in (f"disk-{current}.img", f"disk-{old}.img", f"vmlinuz-{old}", "rootfs.json"):
        os.utime(tmp_path / name, (hours_ago, hours_ago))
    image._prune_stale(tmp_path, current)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"disk-{current}.img", f"initrd-{current}", f"disk-{recent}.img", "rootfs.json"]
    )


def test_guest_options_are_checked_before_qemu_starts(tmp_path):
    tcg = accel.Accel("tcg", "test")
    with pytest.raises(SwapraceError, match="output directory .* does not exist"):
        runner.boot_and_run(_fake_image(tmp_path), tcg, ["true"], runner.GuestOptions(out_dir=tmp_path / "absent"))
    with pytest.raises(SwapraceError, match="no command to run"):
        runner.run_in_guest([], "bookworm", runner.GuestOptions(timeout=1))

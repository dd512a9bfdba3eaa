"""bcc's headers from the kernel's own kheaders.tar.xz (swaprace/kernel/headers.py), on a synthetic archive."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from swaprace.errors import SwapraceError
from swaprace.kernel import headers


def _archive(path, extra=()):
    with tarfile.open(path, "w:xz") as tar:
        for name, data in (("include/linux/types.h", b"/* types */\n"),
                           ("arch/x86/include/generated/asm/foo.h", b"/* gen */\n"), *extra):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv("BCC_KERNEL_SOURCE", raising=False)
    monkeypatch.setattr(headers, "module_build_dir", lambda release=None: headers.Path("/nonexistent/build"))


def test_unpacks_once_and_points_bcc_at_it(tmp_path, clean_env):
    _archive(tmp_path / "kheaders.tar.xz")
    target = headers.ensure_kernel_headers("6.1.192-lab2024", tmp_path / "kheaders.tar.xz", tmp_path / "cache")
    assert target == tmp_path / "cache" / "kheaders-6.1.192-lab2024"
    assert os.environ["BCC_KERNEL_SOURCE"] == str(target)
    assert (target / "include/linux/types.h").read_bytes() == b"/* types */\n"
    (target / "include/linux/types.h").write_bytes(b"kept")
    del os.environ["BCC_KERNEL_SOURCE"]
    headers.ensure_kernel_headers("6.1.192-lab2024", tmp_path / "kheaders.tar.xz", tmp_path / "cache")
    assert (target / "include/linux/types.h").read_bytes() == b"kept"  # a complete unpack is reused


def test_user_setting_wins_and_no_archive_is_no_op(tmp_path, clean_env, monkeypatch):
    assert headers.ensure_kernel_headers("r", tmp_path / "missing.tar.xz", tmp_path / "cache") is None
    monkeypatch.setenv("BCC_KERNEL_SOURCE", "/usr/src/mine")
    _archive(tmp_path / "k.tar.xz")
    assert headers.ensure_kernel_headers("r", tmp_path / "k.tar.xz", tmp_path / "cache") is None
    assert os.environ["BCC_KERNEL_SOURCE"] == "/usr/src/mine"


def test_links_and_escapes_in_the_archive_are_not_extracted(tmp_path, clean_env):
    _archive(tmp_path / "k.tar.xz", extra=(("../escape.h", b"x"),))
    target = headers.ensure_kernel_headers("r", tmp_path / "k.tar.xz", tmp_path / "cache")
    assert not (tmp_path / "escape.h").exists() and (target / "include/linux/types.h").exists()


def test_a_planted_link_is_refused(tmp_path, clean_env):
    _archive(tmp_path / "k.tar.xz")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "kheaders-r").symlink_to(tmp_path)
    with pytest.raises(SwapraceError, match="not a directory of swaprace's"):
        headers.ensure_kernel_headers("r", tmp_path / "k.tar.xz", tmp_path / "cache")

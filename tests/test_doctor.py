"""`swaprace doctor` and the host-side parts of `swaprace record`, in-process through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from swaprace.cli import main
from swaprace.events import ROLES
from swaprace.probes.doctor import kernel_features

FIXTURES = Path(__file__).parent / "fixtures"
HOST_KALLSYMS = FIXTURES / "kallsyms-host-6.18.txt"


def live_has_kprobes() -> bool:
    with open("/proc/kallsyms") as fh:
        return any(line.rstrip().endswith(" register_kprobe") for line in fh)


def run(*args):
    try:
        runner = CliRunner(mix_stderr=False)  # click < 8.2 mixes stderr into stdout by default
    except TypeError:
        runner = CliRunner()  # click >= 8.2 keeps them apart
    return runner.invoke(main, list(args), catch_exceptions=False)


def test_doctor_saved_kallsyms_json():
    result = run("doctor", "--kallsyms", str(HOST_KALLSYMS), "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report["roles"]) == set(ROLES)
    assert report["roles"]["fault"] == "do_swap_page"
    assert report["roles"]["lookup"] == "swap_cache_get_folio"
    # 6.18 has no swap_cache_del_folio wrapper yet: a role is null or a symbol, never missing
    for role, symbol in report["roles"].items():
        res = report["resolution"][role]
        assert (symbol is None) == (res["reason"] is not None)
    # this host kernel was built without kprobes: the saved copy says so
    assert report["kernel"]["features"]["kprobes"] is False
    assert any("no kprobes" in p for p in report["problems"])
    assert report["kernel"]["release"] is None  # a saved file, not the live kernel


@pytest.mark.parametrize("name", ["kallsyms-bookworm-6.1.txt", "kallsyms-trixie-bpo-7.3.txt"])
def test_doctor_guest_kallsyms_human(name):
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"{name} not recorded yet")
    result = run("doctor", "--kallsyms", str(path))
    assert result.exit_code == 0
    assert "do_swap_page" in result.stdout
    assert "kprobes yes" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_doctor_live_host():
    result = run("doctor")
    assert result.exit_code == 0, result.stderr
    if not live_has_kprobes():
        lines = [line for line in result.stdout.splitlines() if line.startswith("problem: no kprobes")]
        assert len(lines) == 1, result.stdout
        assert "backend ftrace: this kernel has no kprobes" in result.stdout
    report = json.loads(run("doctor", "--json").stdout)
    assert report["kernel"]["release"]
    assert report["host"]["root"] in (True, False)
    assert isinstance(report["swap"]["devices"], list)


def test_doctor_bad_kallsyms_is_one_line(tmp_path):
    png = tmp_path / "x.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200))
    result = run("doctor", "--kallsyms", str(png))
    assert result.exit_code == 1
    assert result.stderr.startswith("swaprace: error:") and result.stderr.count("\n") == 1
    assert "not a kallsyms file" in result.stderr


def test_kernel_features_by_symbol():
    assert kernel_features({"register_kprobe", "bpf_ringbuf_output"})["kprobes"] is True
    assert kernel_features({"do_swap_page"}) == {"kprobes": False, "kretprobes": False, "bpf": False,
                                                  "ringbuf": False}


@pytest.mark.skipif(live_has_kprobes(), reason="this host can trace")
def test_record_without_kprobes_is_one_line(tmp_path):
    out = tmp_path / "c.parquet"
    result = run("record", "-o", str(out), "--duration", "1", "--backend", "ftrace")
    assert result.exit_code == 1
    assert result.stderr.startswith("swaprace: error:") and result.stderr.count("\n") == 1
    assert "no kprobes" in result.stderr
    assert not out.exists()
    result = run("record", "--dry-run")
    assert result.exit_code == 1 and "no tracing backend works here" in result.stderr


def test_record_ebpf_prints_kprobe_events():
    result = run("record", "--ebpf", "--backend", "ftrace")
    assert result.exit_code == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if not line.startswith("#")]
    assert any(line.startswith("p:swaprace_") and " do_swap_page" in line for line in lines)
    assert any(line.startswith("r64:swaprace_") and "$retval:x64" in line for line in lines)


def test_record_ebpf_auto_prints_a_program_without_a_usable_backend():
    # --ebpf needs no root or kprobes: auto falls back to the last backend that imports (ftrace at least)
    result = run("record", "--ebpf")
    assert result.exit_code == 0, result.stderr
    # the ftrace backend's kprobe_events lines, or bcc's C program with its attachments
    assert "do_swap_page" in result.stdout


def test_get_backend_program_only_refuses_an_unknown_backend():
    from swaprace.errors import SwapraceError
    from swaprace.probes.backend import get_backend

    with pytest.raises(SwapraceError, match="unknown backend 'perf'"):
        get_backend("perf", program_only=True)


def test_record_rejects_unknown_role():
    result = run("record", "--roles", "fault,bogus", "--ebpf")
    assert result.exit_code == 1 and "unknown role(s) bogus" in result.stderr


def test_help_has_examples():
    for cmd in ("doctor", "record"):
        result = run(cmd, "--help")
        assert result.exit_code == 0 and "Example" in result.stdout

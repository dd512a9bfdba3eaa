"""`swaprace analyze` in-process (CliRunner): readable summary, --json contract, filters, one-line errors."""

from __future__ import annotations

import json

from click.testing import CliRunner

from swaprace.cli import main

BOOKWORM = "tests/fixtures/aba-bookworm.trace"


def run(*args):
    return CliRunner().invoke(main, ["analyze", *args])


def test_json_summary():
    result = run(BOOKWORM, "--json")
    assert result.exit_code == 0, result.output
    s = json.loads(result.output)
    for key in ("events", "skipped_lines", "by_function", "windows", "windows_with_entry", "lookup_hits",
                "entries", "ksm_copies", "reuses", "races", "lost_events"):
        assert key in s
    assert [r["class"] for r in s["races"]] == ["stale-install", "recovered"]
    assert set(s["races"][0]) >= {"entry", "tid", "window_start_ns", "window_end_ns", "release_ns", "rebind_ns",
                                  "class"}


def test_readable_summary():
    result = run(BOOKWORM)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "35 events" in out and "do_swap_page" in out
    assert "races          2: 1 stale-install, 1 recovered" in out
    assert "0x3a5" in out and "stale-install" in out
    assert "lost      0 events" in out


def test_filters_and_format_override():
    s = json.loads(run(BOOKWORM, "--json", "--entry", "0x3b0").output)
    assert [(r["entry"], r["class"]) for r in s["races"]] == [("0x3b0", "recovered")]  # 64-bit: hex strings
    s = json.loads(run(BOOKWORM, "--json", "--tid", "2001").output)
    assert [r["tid"] for r in s["races"]] == [2001] and s["windows"] == 1
    s = json.loads(run(BOOKWORM, "--json", "--since", "5170.1002", "--until", "5170.2").output)
    assert s["windows"] == 1 and s["races"] == []  # only T2004's window starts after 5170.1002
    s = json.loads(run("tests/fixtures/aba-bookworm.perf", "--json", "--format", "perf").output)
    assert len(s["races"]) == 2


def test_bad_inputs_give_one_line_and_nonzero_exit(tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("")
    png = tmp_path / "x.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    trunc = tmp_path / "t.parquet"
    trunc.write_bytes(b"PAR1" + b"\x00" * 10)
    cases = [(empty, "empty file"), (png, "PNG image"), (trunc, "not a readable Parquet capture"),
             (tmp_path / "missing", "no such file")]
    for path, words in cases:
        result = run(str(path))
        assert result.exit_code != 0
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("swaprace: error:") and words in lines[0], result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)


def test_bad_entry_option():
    result = run(BOOKWORM, "--entry", "zz")
    assert result.exit_code == 2 and "not a swap entry value" in result.output


def test_help_has_an_example():
    result = CliRunner().invoke(main, ["analyze", "--help"])
    assert result.exit_code == 0 and "swaprace analyze capture.parquet" in result.output

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
    for key in ("events", "skipped_lines", "by_function", "unknown_functions", "windows", "windows_with_entry",
                "windows_with_page", "lookup_hits", "entries", "ksm_copies", "generations", "reuses",
                "history_gaps", "residency", "prepare", "races", "race_classes", "uncertain_races", "lost_events"):
        assert key in s
    assert [r["class"] for r in s["races"]] == ["stale-install", "recovered"]
    assert set(s["races"][0]) >= {"entry", "tid", "window_start_ns", "window_end_ns", "obtain_ns", "obtain_kind",
                                  "release_ns", "release_tid", "realloc_ns", "realloc_tid", "install_ns",
                                  "installed_folio", "class", "uncertain", "reason"}
    assert "rebind_ns" not in s["races"][0]
    # the slot life of the fixture: 0x3a5 and 0x3b0 freed by kswapd and allocated again (2 reuses), 0x3c1 freed
    assert (s["generations"], s["reuses"], s["history_gaps"]) == (5, 2, 0)
    assert s["residency"] == {"cache_adds": 3, "cache_deletes": 3, "evictions": 0, "rereads": 0,
                              "unresolved_deletes": 0}
    assert s["race_classes"] == {"recovered": 1, "benign": 0, "stale-install": 1} and s["uncertain_races"] == 0
    first = s["races"][0]
    assert (first["entry"], first["tid"], first["release_tid"], first["realloc_tid"]) == ("0x3a5", 2001, 44, 77)


def test_readable_summary():
    result = run(BOOKWORM)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "37 events" in out and "do_swap_page" in out and "free_swap_slot" in out
    assert "slots          5 generations, 2 reuses" in out
    assert "swap cache     3 adds, 3 deletes: 0 evictions, 0 re-reads" in out
    assert "races          2: 1 stale-install, 0 benign, 1 recovered" in out
    assert "free tid 44, realloc tid 77" in out
    assert "0x3a5" in out and "stale-install" in out
    assert "lost      0 events" in out


def test_filters_and_format_override():
    s = json.loads(run(BOOKWORM, "--json", "--entry", "0x3b0").output)
    assert [(r["entry"], r["class"]) for r in s["races"]] == [("0x3b0", "recovered")]  # 64-bit: hex strings
    assert json.loads(run(BOOKWORM, "--json", "--entry", "0:0x3b0").output)["races"] == s["races"]  # TYPE:OFFSET
    assert json.loads(run(BOOKWORM, "--json", "--entry", str(0x3B0)).output)["races"] == s["races"]
    s = json.loads(run(BOOKWORM, "--json", "--tid", "2001").output)
    assert [r["tid"] for r in s["races"]] == [2001] and s["windows"] == 1
    s = json.loads(run(BOOKWORM, "--json", "--since", "5170.1002", "--until", "5170.2").output)
    assert s["windows"] == 1 and s["races"] == []  # only T2004's window starts after 5170.1002
    s = json.loads(run("tests/fixtures/aba-bookworm.perf", "--json", "--format", "perf").output)
    # the perf fixture has not been given the 0x3b0 slot events of the ftrace one yet: its stale-install is there
    assert ("stale-install", "0x3a5") in [(r["class"], r["entry"]) for r in s["races"]]


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
    for bad in ("zz", "40:1", "0"):
        result = run(BOOKWORM, "--entry", bad)
        assert result.exit_code == 2 and "not a swap entry" in result.output, result.output


def test_help_has_an_example():
    result = CliRunner().invoke(main, ["analyze", "--help"])
    assert result.exit_code == 0 and "swaprace analyze capture.parquet" in result.output

"""`swaprace report` and `swaprace plot` in-process (CliRunner), on real-format captures and on bad input.

Also renders the report of every capture found under tests/fixtures/real/ (recorded by the live tracer in the
test box) and of the hand-written real-format ftrace fixtures next to it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from swaprace.analysis.report import style
from swaprace.cli import main

from report_support import (
    BENIGN_ENTRY,
    RECOVERED_ENTRY,
    STALE_ENTRY,
    UNCERTAIN_ENTRY,
)

FIXTURES = Path(__file__).parent / "fixtures"
REAL = FIXTURES / "real"
CAPTURE_SUFFIXES = (".parquet", ".trace", ".txt", ".jsonl", ".perf")


def _captures(directory: Path):
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix in CAPTURE_SUFFIXES and p.stat().st_size > 0)


def _real_captures():
    """Every capture under fixtures/real/; when none is there yet, one visible skip says so."""
    found = _captures(REAL)
    return [pytest.param(p, id=p.name) for p in found] or [
        pytest.param(None, marks=pytest.mark.skip(reason="no real captures in tests/fixtures/real/ yet"))]


def _handwritten_ftrace():
    return [pytest.param(p, id=p.name) for p in sorted([*FIXTURES.glob("*.trace"), *FIXTURES.glob("*.perf")])]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _size(path) -> tuple:
    with Image.open(path) as img:
        return img.size


def _check_report(directory: Path, index: dict) -> None:
    page = (directory / "report.html").read_text()
    for fig in index["figures"]:
        assert _size(directory / fig["file"]) == (fig["width"], fig["height"])
        assert f'data-file="{fig["file"]}"' in page
    assert {f["file"] for f in index["figures"]} >= {"events-per-second.png", "window-durations.png",
                                                     "reuse-distance.png"}


def test_report_command_on_planted_capture(planted_path, tmp_path):
    result = run("report", planted_path, "-o", tmp_path / "out", "--busiest", "1", "--json")
    assert result.exit_code == 0, result.output
    index = json.loads(result.stdout)
    assert sorted((r["class"], int(r["entry"], 16), r["uncertain"]) for r in index["races"]) == [
        ("benign", BENIGN_ENTRY, False), ("recovered", RECOVERED_ENTRY, False), ("stale-install", STALE_ENTRY, False),
        ("stale-install", UNCERTAIN_ENTRY, True)]
    stale = next(r for r in index["races"] if int(r["entry"], 16) == STALE_ENTRY)
    assert (stale["release_tid"], stale["realloc_tid"], stale["obtain_kind"]) == (44, 102, "lookup")
    busiest = next(f for f in index["figures"] if f["kind"] == "busiest")
    assert busiest["data"]["layers"] == ["slot generations", "swap-cache residency"]
    assert busiest["data"]["generations"] and busiest["data"]["residency"]
    _check_report(tmp_path / "out", index)
    assert result.stderr == ""  # not a terminal: no progress output


def test_report_command_human_line(planted_path, tmp_path):
    result = run("report", planted_path, "-o", tmp_path / "o", "--max-timelines", "0", "--busiest", "0")
    assert result.exit_code == 0
    assert result.stdout.startswith(f"wrote {tmp_path / 'o' / 'report.html'} (3 pictures; 4 races, 2 stale-install, "
                                    "1 benign, 1 uncertain;")
    page = (tmp_path / "o" / "report.html").read_text()
    assert "4 further races are listed above but not drawn" in page


@pytest.mark.parametrize("capture", _handwritten_ftrace() + _real_captures())
def test_report_renders_real_format_captures(capture, tmp_path):
    result = run("report", capture, "-o", tmp_path / "r", "--busiest", "1", "--max-timelines", "3", "--json")
    assert result.exit_code == 0, result.output
    index = json.loads(result.stdout)
    _check_report(tmp_path / "r", index)
    analysed = json.loads(run("analyze", capture, "--json").stdout)
    assert len(index["races"]) == len(analysed["races"])
    drawn = [f for f in index["figures"] if f["kind"] == "race"]
    assert len(drawn) == min(3, len(analysed["races"]))
    for fig in drawn:  # each race picture shows its race, with the analysis' class
        assert fig["data"]["focus"]["class"] in {r["class"] for r in analysed["races"]}


def test_plot_entry_by_value_and_type_offset(planted_path, tmp_path):
    result = run("plot", "entry", f"{STALE_ENTRY:#x}", planted_path, "-o", tmp_path / "a.png", "--race", "0", "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert (shown["width"], shown["height"]) == style.TIMELINE_PX == _size(tmp_path / "a.png")
    assert shown["focus"] == {"tid": 101, "class": "stale-install", "uncertain": False, "window_start_ns": 6_000_000}
    assert shown["layers"] == ["slot generations", "swap-cache residency"]
    assert [(g["alloc_tid"], g["free_tid"]) for g in shown["generations"]] == [(77, 44), (102, None)]
    result = run("plot", "entry", "0:0x2b0", planted_path, "-o", tmp_path / "b.png")
    assert result.exit_code == 0 and result.stdout.strip() == f"wrote {tmp_path / 'b.png'} (1400x760)"
    # the same entry in every spelling draws the same thing
    spelled = [json.loads(run("plot", "entry", text, planted_path, "-o", tmp_path / "c.png", "--json").stdout)
               for text in ("0:0x4d0", f"{UNCERTAIN_ENTRY:#x}", str(UNCERTAIN_ENTRY))]
    assert all(s["entry"] == hex(UNCERTAIN_ENTRY) and s == spelled[0] for s in spelled)
    assert [r["uncertain"] for r in spelled[0]["races"]] == [True]


def test_analyze_entry_takes_the_plot_entry_spellings(planted_path):
    races = [json.loads(run("analyze", planted_path, "--json", "--entry", text).stdout)["races"]
             for text in ("0:0x3c0", f"{BENIGN_ENTRY:#x}", str(BENIGN_ENTRY))]
    assert all(r == races[0] for r in races) and [r["class"] for r in races[0]] == ["benign"]


@pytest.mark.parametrize("kind,size", [("windows", style.DISTRIBUTION_PX), ("reuse", style.DISTRIBUTION_PX),
                                       ("rate", style.RATE_PX)])
def test_plot_overviews(planted_path, tmp_path, kind, size):
    result = run("plot", kind, planted_path, "-o", tmp_path / f"{kind}.png", "--json")
    assert result.exit_code == 0, result.output
    assert _size(tmp_path / f"{kind}.png") == size
    if kind == "reuse":  # slot free -> reallocation, and evictions as their own series, never as reuses
        shown = json.loads(result.stdout)
        assert shown["sizes"] == {"slot_free": 364, "eviction → re-read": 50} and shown["reallocations"] == 364


@pytest.mark.parametrize("args,message", [
    (["plot", "entry", "banana", "{planted}", "-o", "{tmp}/x.png"], "not a swap entry: 'banana'"),
    (["plot", "entry", "7:0x99", "{planted}", "-o", "{tmp}/x.png"], "does not appear in this capture"),
    (["plot", "entry", "0:0x12a", "{planted}", "-o", "{tmp}/x.png", "--race", "3"], "--race 3 does not exist"),
    (["plot", "windows", "{planted}", "-o", "{tmp}/no/such/dir/x.png"], "cannot write"),
    (["report", "{garbage}", "-o", "{tmp}/r"], ""),
    (["report", "{tmp}/missing.parquet", "-o", "{tmp}/r"], ""),
    (["report", "{planted}", "-o", "{file}/sub"], "cannot create report directory"),
])
def test_bad_input_is_one_error_line(planted_path, tmp_path, args, message):
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"PAR1 this is not parquet at all" * 10)
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    args = [a.format(planted=planted_path, tmp=tmp_path, garbage=garbage, file=a_file) for a in args]
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("swaprace: error: ") and message in lines[0]
    assert not (tmp_path / "r" / "report.html").exists()


def test_help_has_examples():
    for args in (["report"], ["plot"], ["plot", "entry"], ["plot", "windows"], ["plot", "reuse"], ["plot", "rate"]):
        result = run(*args, "--help")
        assert result.exit_code == 0 and "Example:" in result.stdout and "swaprace " in result.stdout

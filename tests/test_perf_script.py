"""perf script reader: function from the event name, pid/tid, returns, junk lines."""

from __future__ import annotations

import pandas as pd

from swaprace.analysis.model import analyze
from swaprace.readers.perf_script import event_function, parse_perf_lines
from swaprace.readers import read_any


def test_call_and_return_lines_from_the_brief():
    frame, skipped = parse_perf_lines([
        "  stress  1234/1235 [001]  5170.262360: probe:swap_cache_get_folio: (ffffffff812c3a40) entry=0x4000000000012a",
        "  stress  1234/1235 [001]  5170.262901: probe:do_swap_page__return: (ffffffff812ab0c0 <- ffffffff812b1234) "
        "arg1=0x4",
    ])
    assert skipped == 0
    call, ret = frame.iloc[0], frame.iloc[1]
    assert (call.pid, call.tid, call.cpu, call.ts_ns) == (1234, 1235, 1, 5170262360000)
    assert (call.func, call.role, call.phase, call.entry) == ("swap_cache_get_folio", "lookup", "call", 0x4000000000012A)
    assert (ret.func, ret.role, ret.phase, ret.retval) == ("do_swap_page", "fault", "return", 4)


def test_tid_only_layout_and_decimal_values():
    # perf's default layout prints one number (the thread id); 7.x prints $retval in decimal.
    frame, skipped = parse_perf_lines([
        "     migration/0    18 [000]   832.028208: probe:folio_free_swap__return: (ffffffff812d0c00 <- ffffffff81) "
        "arg1=1",
    ])
    ev = frame.iloc[0]
    assert skipped == 0 and (ev.comm, ev.tid, ev.pid, ev.retval, ev.role) == ("migration/0", 18, 18, 1, "free_cache")


def test_event_names():
    assert event_function("probe:do_swap_page__return") == ("do_swap_page", True)
    assert event_function("probe:swap_free_1") == ("swap_free", False)  # perf's duplicate-name suffix
    assert event_function("mygroup:folio_free_swap") == ("folio_free_swap", False)
    assert event_function("probe:something_else") == (None, False)


def test_junk_is_counted():
    frame, skipped = parse_perf_lines([
        "# ========", "# captured on    : Thu Nov 26 06:03:19 2026", "",
        "            perf 27170 [000]   832.028184: sched:sched_switch: prev_comm=perf prev_pid=27170",
        "  stress  1234/1235 [001]  5170.262360: probe:swap_free: (ffffffff812c3a40) entry=0x5",
    ])
    assert len(frame) == 1 and skipped == 3


def test_perf_fixture_matches_the_ftrace_fixture():
    perf = analyze(read_any("tests/fixtures/aba-bookworm.perf"))
    ftrace = analyze(read_any("tests/fixtures/aba-bookworm.trace"))
    assert perf.capture.source_format == "perf"
    assert perf.summary["races"] == ftrace.summary["races"]
    assert [r["class"] for r in perf.summary["races"]] == ["stale-install", "recovered"]
    pd.testing.assert_frame_equal(perf.windows, ftrace.windows, check_categorical=False)

"""The committed real ftrace captures (tests/fixtures/real/ftrace-*.trace, recorded in the test box by
`swaprace record --backend ftrace --raw-trace`, see tests/fixtures/real/README.md) read back offline
with the counts the kernel itself reported for the same run (kprobe_profile, kept in the trace's
`# swaprace:` header), and their analysis has one window per do_swap_page return."""

from __future__ import annotations

from pathlib import Path

import pytest

from swaprace.analysis.model import analyze
from swaprace.readers import read_any

REAL = Path(__file__).parent / "fixtures" / "real"
TRACES = sorted(REAL.glob("ftrace-*.trace"))


def test_fixtures_exist():
    kernels = {p.name for p in TRACES}
    assert any("6.1" in k for k in kernels) and any("7.3" in k for k in kernels), kernels


@pytest.mark.parametrize("path", TRACES, ids=[p.stem for p in TRACES])
def test_trace_counts_equal_the_kernels_counts(path):
    capture = read_any(path)
    meta = capture.meta
    assert meta.backend == "ftrace" and meta.lost_known and meta.lost_events == 0
    assert 1000 <= len(capture.events) <= 20000
    ev = capture.events
    counts = ev.groupby([ev["func"].astype(str), ev["phase"].astype(str)], observed=True).size()
    counted = {f"{f}:{p}": int(n) for (f, p), n in counts.items()}
    hits = meta.extra["kernel_hits"]
    assert {k: v for k, v in hits.items() if v} == counted


@pytest.mark.parametrize("path", TRACES, ids=[p.stem for p in TRACES])
def test_trace_windows_equal_fault_returns(path):
    capture = read_any(path)
    ev = capture.events
    returns = int(((ev["role"] == "fault") & (ev["phase"] == "return")).sum())
    summary = analyze(capture).summary
    assert summary["windows"] == returns > 100
    assert summary["windows_with_entry"] == summary["windows"]
    assert summary["lookup_hits"] > 0 and summary["entries"] > 0

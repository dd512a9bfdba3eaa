"""The ftrace backend on real kernels (both test-box guests): a recorded swap workload's capture agrees with
the kernel's own probe counts, and the offline analysis of it sees one window per do_swap_page return."""

from __future__ import annotations

import json

import pytest

from live_ftrace_support import guest_run
from swaprace.analysis.model import analyze
from swaprace.readers import read_any
from swaprace.capture import read_capture
from vm_support import KERNELS

pytestmark = pytest.mark.vm


@pytest.fixture(scope="module", params=KERNELS)
def run(request):
    run = guest_run(request.param)
    assert run.returncode == 0, run.stderr[-3000:]
    step = run.result["steps"]["record"]
    assert step["rc"] == 0, step["stderr"]
    return run


def by_function(capture):
    ev = capture.events
    counts = ev.groupby([ev["func"].astype(str), ev["phase"].astype(str)]).size()
    return {f"{func}:{phase}": int(n) for (func, phase), n in counts.items()}


def test_capture_counts_equal_kprobe_profile(run):
    capture = read_capture(run.out / "record.parquet")
    meta = capture.meta
    assert meta.backend == "ftrace" and meta.lost_known
    hits = meta.extra["kernel_hits"]
    counts = by_function(capture)
    lost = meta.lost_events
    assert hits["do_swap_page:call"] > 100, hits  # the workload really swapped in
    for key, kernel_count in hits.items():
        # every event the kernel counted is in the capture, unless ftrace reported it lost
        assert abs(counts.get(key, 0) - kernel_count) <= lost, (key, counts.get(key, 0), kernel_count, meta.lost)
    assert set(counts) <= set(hits)
    assert meta.symbols["fault"] == "do_swap_page" and meta.symbols["lookup"] == "swap_cache_get_folio"


def test_windows_equal_do_swap_page_returns(run):
    capture = read_capture(run.out / "record.parquet")
    result = analyze(capture)
    ev = capture.events
    returns = int(((ev["func"] == "do_swap_page") & (ev["phase"] == "return")).sum())
    calls = int(((ev["func"] == "do_swap_page") & (ev["phase"] == "call")).sum())
    windows = result.summary["windows"]
    # a window needs its call and its return: only faults in flight when tracing started/stopped can differ,
    # at most one per CPU at each end
    assert returns - 4 <= windows <= returns, (windows, returns, calls)
    assert result.summary["windows_with_entry"] > 0
    assert result.summary["lost_events"] == capture.meta.lost_events


def test_ksm_copies_equal_the_kernels_ksm_swpin_copy(run):
    capture = read_capture(run.out / "record.parquet")
    assert int((capture.events["role"] == "ksm_copy").sum()) > 0
    # ksm_might_need_to_copy returning a new folio is exactly what /proc/vmstat counts as ksm_swpin_copy
    assert analyze(capture).summary["ksm_copies"] == run.result["vmstat"]["ksm_swpin_copy"]
    workload = json.loads((run.out / "workload.json").read_text())
    assert workload["corrupt"] == []


def test_raw_trace_reads_back_like_the_capture(run):
    parquet = read_capture(run.out / "record.parquet")
    text = read_any(run.out / "record.trace")
    assert len(text.events) == len(parquet.events)
    assert text.meta.symbols == parquet.meta.symbols

"""`swaprace stress --record` in the test box, on both kernels: a short run (20 s of workload) that swaps KSM
pages in (ksm_swpin_copy rises), shows fault windows of the trace overlapping on different CPUs, finds no
corruption and no stale-install race, and leaves swap, cgroups, KSM and kprobes as they were; and the default
run a user runs (`swaprace stress --yes --duration 60`), with the same checks.

One guest boot per kernel: 9-12 minutes each under TCG on the shared 2-core host (boot 70-160 s, bcc
compile, 20 s of rounds, final sweep), more when other guests load the host."""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path

import pytest

from swaprace.capture import read_capture
from vm_support import KERNELS, vm_run

pytestmark = pytest.mark.vm

STRESS_OPTIONS = ["--duration", "20", "--mem", "8M", "--threads", "4", "--processes", "2"]


@functools.lru_cache(maxsize=None)
def _guest(kernel: str):
    out = Path(tempfile.mkdtemp(prefix=f"swaprace-stress-{kernel}-"))
    done = vm_run(kernel, ["python3", "tests/guest/stress_check.py", "/mnt/out", *STRESS_OPTIONS],
                  timeout=1500, out_dir=out)  # generous: TCG on a loaded 2-core host
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    summary = json.loads((out / "stress.json").read_text() or "{}")
    return out, result, summary


@pytest.fixture(scope="module", params=KERNELS)
def guest(request):
    return _guest(request.param)


def test_run_is_clean(guest):
    _, result, summary = guest
    assert result["rc"] == 0, result["stderr"][-2000:]
    assert "Traceback" not in result["stderr"]
    assert summary["corruptions"] == 0 and summary["mismatches"] == []
    assert summary["trace"]["race_classes"]["stale-install"] == 0
    assert summary["join"]["verdict"].startswith(("verdict: clean", "verdict: no corruption"))
    assert summary["workload"]["children_failed"] == 0 and summary["workload"]["forks"] > 0


def test_paths_exercised(guest):
    _, _, summary = guest
    vm = summary["vmstat"]
    assert vm["pswpin"]["delta"] > 0 and vm["pswpout"]["delta"] > 0
    assert vm["ksm_swpin_copy"]["delta"] > 0, "no KSM page was copied on swap-in"
    # The default sizes keep swap more than half full most of the time on 6.1 and on the host; on the 7.3 guest
    # under single-threaded TCG only about a third of the samples were (mean fill 0.497, 2026-11-26), and a
    # smaller file got a worker OOM-killed. Asserted here: the run spends real time in that state.
    assert summary["swap_fill"]["share_above_half"] > 0.25


def test_fault_windows_overlap_on_different_cpus(guest):
    _, _, summary = guest
    trace = summary["trace"]
    assert trace["windows"] > 100
    assert trace["overlapping_windows"] > 0, trace
    assert summary["fault_windows"]["same_page_overlapping_pairs"] > 0


def test_capture_is_readable_on_the_host(guest):
    out, _, summary = guest
    capture = read_capture(out / "stress.parquet")
    assert len(capture.events) == summary["trace"]["events"] > 0
    assert capture.meta.lost_known


def test_machine_left_as_found(guest):
    _, result, _ = guest
    before, after = result["before"], result["after"]
    assert after == before
    assert after["cgroups"] == [] and after["kprobe_events"] == [] and not after["stress_state_file"]


@functools.lru_cache(maxsize=None)
def _default_run(kernel: str):
    out = Path(tempfile.mkdtemp(prefix=f"swaprace-stress-default-{kernel}-"))
    done = vm_run(kernel, ["python3", "tests/guest/stress_check.py", "/mnt/out", "--as-a-user-runs-it"],
                  timeout=1500, out_dir=out)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "result.json").read_text()), json.loads((out / "stress.json").read_text() or "{}")


@pytest.mark.parametrize("kernel", KERNELS)
def test_the_default_run_a_user_runs(kernel):
    """`swaprace stress --yes --duration 60` with every other default (64 MiB working set, 24 MiB limit, 72 MiB
    swap file, 2 processes x 4 threads): it exits 0 with no corruption, nothing OOM-killed, swap more than half
    full most of the time, and the box as it was found (measured 2026-12-05: 1,332 rounds on 6.1 and 1,010 on
    7.3, swap above half full in 91 % of the samples on both)."""
    result, summary = _default_run(kernel)
    assert result["rc"] == 0 and "Traceback" not in result["stderr"], result["stderr"][-2000:]
    assert summary["ok"] and summary["corruptions"] == 0 and summary["mismatches"] == []
    assert summary["machine"]["limit_mib"] == 24 and summary["machine"]["working_set_mib"] == 64
    assert summary["machine"]["cgroup_events"].get("oom_kill", 0) == 0
    assert summary["rounds_s"] >= 60 and summary["workload"]["rounds"] > 0
    assert summary["swap_fill"]["share_above_half"] > 0.5
    assert result["after"] == result["before"]

"""``record --comm`` (and bcc's ``--cgroup``) in the test box: two workloads swap at once, the filter selects
one. The fault windows (and every thread-role event) come from that one only; slot frees, allocations and
swap-cache changes by the other workload and by kswapd are still there, because a race is made of them.
``--ready-file`` is how the guest knows the probes are armed (tests/guest/filter_check.py)."""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path

import pytest

from swaprace.analysis.model import analyze
from swaprace.capture import read_capture
from swaprace.kernel.catalog import THREAD_ROLES
from vm_support import vm_run

pytestmark = pytest.mark.vm

KERNEL = "bookworm"
LIFECYCLE_ROLES = ("slot_alloc", "slot_free", "free_cache", "cache_add", "cache_delete")


@functools.lru_cache(maxsize=None)
def guest() -> tuple:
    out = Path(tempfile.mkdtemp(prefix="swaprace-filters-"))
    done = vm_run(KERNEL, ["python3", "tests/guest/filter_check.py", "/mnt/out", "ftrace", "bcc"], timeout=2400,
                  out_dir=out)
    result_file = out / "result.json"
    result = json.loads(result_file.read_text()) if result_file.exists() else {}
    return out, done, result


@pytest.mark.parametrize("backend", ["ftrace", "bcc"])
def test_comm_filter_keeps_one_workloads_windows_and_everyones_slots(backend):
    out, done, result = guest()
    step = result.get(backend)
    assert step, (done.returncode, done.stderr[-3000:])
    assert step["rc"] == 0, step["stderr"]
    assert step["ready"] and step["ready"]["backend"] == backend and "fault" in step["ready"]["roles"]
    capture = read_capture(out / f"{backend}.parquet")
    events = capture.events
    comm = events["comm"].astype(str)
    role = events["role"].astype(str)
    own = role.isin(THREAD_ROLES)
    assert (role == "fault").sum() > 50, events["role"].value_counts()
    assert set(comm[own]) == {"srwl_a"}, comm[own].value_counts()
    lifecycle = comm[role.isin(LIFECYCLE_ROLES)]
    others = set(lifecycle) - {"srwl_a"}
    assert "srwl_b" in others, lifecycle.value_counts()  # the other workload's reclaim and frees are kept
    windows = analyze(capture).windows
    assert len(windows) > 0 and set(windows["comm"].astype(str)) == {"srwl_a"}
    recorded = capture.meta.extra["thread_filter"]
    assert recorded["comm"] == "srwl_a"
    if backend == "bcc":
        assert recorded["cgroup"] == step["cgroup"] and recorded["applied"] == {"comm": "bpf", "cgroup": "bpf"}
    else:
        assert recorded["applied"] == {"comm": "ftrace-filter"}

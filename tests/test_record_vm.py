"""`swaprace record` in the test box: doctor resolves every kernel's roles, SIGTERM mid-record leaves no
kprobe event, instance or workload behind, and the interrupted capture is readable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from live_ftrace_support import guest_run
from swaprace.capture import read_capture
from swaprace.kernel.catalog import load_symbols, resolve_roles
from vm_support import KERNELS

pytestmark = pytest.mark.vm

FIXTURES = Path(__file__).parent / "fixtures"
FIXTURE_NAME = {"bookworm": "kallsyms-bookworm-6.1.txt", "trixie-backports": "kallsyms-trixie-bpo-7.3.txt"}


@pytest.fixture(scope="module", params=KERNELS)
def run(request):
    run = guest_run(request.param)
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def test_doctor_in_guest(run):
    doctor = run.result["doctor"]
    assert "error" not in doctor, doctor
    assert doctor["kernel"]["features"]["kprobes"] is True
    assert doctor["backends"]["status"]["ftrace"] is None
    for role in ("fault", "lookup", "ksm_copy", "free_cache"):
        assert doctor["roles"][role], (role, doctor["resolution"][role])


def test_committed_kallsyms_fixture_resolves_like_the_guest(run):
    fixture = FIXTURES / FIXTURE_NAME[run.kernel]
    if not fixture.exists():
        pytest.skip(f"{fixture.name} not committed")
    live = resolve_roles(load_symbols(str(run.out / "kallsyms.txt"), str(run.out / "traceable.txt")))
    saved = resolve_roles(load_symbols(str(fixture)))
    assert {r: x.symbol for r, x in live.items()} == {r: x.symbol for r, x in saved.items()}
    assert {r: x.symbol for r, x in live.items()} == run.result["doctor"]["roles"]


def test_sigterm_mid_record_leaves_nothing_and_keeps_the_capture(run):
    assert run.result["ready"]["backend"] == "ftrace", "the ready file never came"
    assert run.result["during_record"]["kprobe_events"], "the probes never attached"
    assert run.result["during_record"]["instances"]
    step = run.result["steps"]["record"]
    assert step["rc"] == 0, step["stderr"]
    assert "Traceback" not in step["stderr"]
    assert run.result["after_record"] == {"kprobe_events": [], "instances": []}
    # the recorder stopped its command, which restored what it had changed
    assert run.result["stray_workloads"] == []
    assert run.result["cgroups_left"] == []
    assert run.result["ksm_run_after"] == run.result["ksm_run_before"]
    capture = read_capture(run.out / "record.parquet")
    assert capture.meta.extra["stopped_by"] == "SIGTERM"
    assert capture.meta.extra["command_finished"] is False
    assert capture.meta.lost_known
    assert len(capture.events) > 1000
    summary = json.loads((run.out / "record.json").read_text())
    assert summary["events"] == len(capture.events) and summary["stopped_by"] == "SIGTERM"

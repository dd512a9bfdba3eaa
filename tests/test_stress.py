"""swaprace stress on this machine (root, swap and KSM work; no kprobes, so no --record): a short clean run,
the oracle catching corruption planted behind its back, SIGTERM and crash recovery. Every test checks that
swap, cgroups and the KSM knobs are exactly as they were, and restores them itself if the tool did not.
About 45 s in all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from swaprace.cli import main
from swaprace.stress import machine

KSM_KNOBS = ("run", "pages_to_scan", "sleep_millisecs", "merge_across_nodes")


def _why_not() -> str:
    if os.geteuid() != 0:
        return "needs root"
    if not Path("/proc/swaps").exists():
        return "kernel without swap"
    try:
        machine.detect_cgroup()
    except Exception as exc:  # no memory controller
        return str(exc)
    return ""


pytestmark = pytest.mark.skipif(bool(_why_not()), reason=_why_not() or "ok")


def _machine_state():
    cgroups = []
    for layout_root in (machine.CGROUP_ROOT, machine.CGROUP_ROOT / "memory"):
        if layout_root.exists():
            cgroups += sorted(p.name for p in layout_root.glob("swaprace-stress-*"))
    ksm = {k: (machine.KSM_DIR / k).read_text().strip() for k in KSM_KNOBS if (machine.KSM_DIR / k).exists()}
    if machine.ksm_available():
        ksm["pages_sharing_zero"] = (machine.KSM_DIR / "pages_sharing").read_text().strip() == "0"
    return {"swaps": [s["filename"] for s in machine.active_swaps()], "cgroups": cgroups, "ksm": ksm}


@pytest.fixture
def restored(tmp_path, monkeypatch):
    """Run the test with its own state dir; afterwards the machine must be as before (undo if not)."""
    state_dir = tmp_path / "state"
    monkeypatch.setenv("SWAPRACE_STATE_DIR", str(state_dir))
    before = _machine_state()
    yield state_dir
    leftover = machine.state_file().exists()
    if leftover:
        machine.cleanup()
    after = _machine_state()
    assert not leftover, "the run left its state file: it did not restore the machine itself"
    assert after == before


#: The default limit: the group is kept at it by memory.high (v2) or the limit keeper (v1), so the 8 thrashing
#: threads of this 2-core host are never OOM-killed or frozen (they were at 24, 32, 40 and 48 MiB).
HOST_LIMIT: list = []


def _run_cli(args):
    result = CliRunner().invoke(main, ["stress", "--yes", "--json", *HOST_LIMIT, *args])
    assert "Traceback" not in result.output, result.output
    return result


def test_short_run_is_clean_and_exercises_the_paths(restored):
    result = _run_cli(["--duration", "10"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["ok"] is True and summary["corruptions"] == 0 and summary["mismatches"] == []
    assert summary["verdict"] == "verdict: clean (0 corruptions; no tracer ran)"
    work = summary["workload"]
    assert work["pages_read"] > 1000 and work["pages_written"] > 0
    assert work["forks"] > 0 and work["children_failed"] == 0 and work["child_pages_read"] > 0
    assert work["final_pages_checked"] == 2 * (32 << 20) // os.sysconf("SC_PAGE_SIZE")
    vm = summary["vmstat"]
    assert vm["pswpout"]["delta"] > 1000 and vm["pswpin"]["delta"] > 1000
    # GIL-free: fault windows of different threads overlapped on different CPUs, also on the same page
    windows = summary["fault_windows"]
    if os.cpu_count() and os.cpu_count() > 1:
        assert windows["overlapping_windows"] > 0 and windows["same_page_overlapping_pairs"] > 0
    assert summary["swap_fill"]["share_above_half"] > 0.5
    assert summary["machine"]["cgroup_events"].get("oom_kill", 0) == 0


def test_oracle_catches_pages_changed_behind_its_back(restored):
    result = _run_cli(["--duration", "6", "--no-ksm", "--inject-corruption", "4"])
    assert result.exit_code == 1, result.output
    summary = json.loads(result.stdout)
    assert summary["ok"] is False
    injected = {i["page_index"] for i in summary["injected"]}
    assert len(injected) == 4 and {i["proc_index"] for i in summary["injected"]} == {0}
    # found by worker 0 or by a reader it forked after the damage (same proc_index, another pid); a page
    # rewritten whole by a writer before anyone read it is no longer corrupt; all others are caught
    found = {m["page_index"] for m in summary["mismatches"]}
    assert {m["proc_index"] for m in summary["mismatches"]} == {0}
    assert found and found <= injected
    for m in summary["mismatches"]:
        assert m["first_bad_offset"] == 1024 and m["got_magic_ok"] == 1
        assert m["got_gen"] == m["expected_gen"]  # the header is intact, the body is not
    assert summary["verdict"].startswith("verdict: CORRUPTION")


def test_refuses_without_yes_outside_the_test_box(restored):
    if machine.in_testbox():
        pytest.skip("inside the test box no --yes is needed")
    result = CliRunner().invoke(main, ["stress", "--duration", "1"])
    assert result.exit_code == 1
    assert "refusing to change this machine without --yes" in result.output
    assert "create swap file" in result.output and "memory cgroup" in result.output


def _start(state_dir, *args):
    env = dict(os.environ, SWAPRACE_STATE_DIR=str(state_dir))
    return subprocess.Popen([sys.executable, "-m", "swaprace", "stress", "--yes", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_running(state_dir, proc, timeout=120):
    """Until this run's workers are in its cgroup (read from its own state file), plus a little."""
    deadline = time.monotonic() + timeout
    state = state_dir / "stress-state.json"
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        changes = json.loads(state.read_text())["changes"] if state.exists() else []
        cgroup = next((Path(c["path"]) for c in changes if c["kind"] == "cgroup"), None)
        if cgroup and cgroup.exists() and len((cgroup / "cgroup.procs").read_text().split()) >= 2:
            time.sleep(3)  # filling or already in the rounds
            return
        time.sleep(0.1)
    raise AssertionError("stress run never started")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_stops_restores_and_says_so(restored, sig):
    proc = _start(restored, "--duration", "60", "--no-ksm")
    _wait_running(restored, proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig
    assert err.strip().splitlines()[-1] == (f"swaprace: error: interrupted by {sig.name}: workload stopped, "
                                            "machine restored")
    assert "Traceback" not in err


def test_cleanup_after_a_crashed_run(restored):
    proc = _start(restored, "--duration", "60", "--no-ksm")
    _wait_running(restored, proc)
    proc.kill()  # no chance to restore: swap, cgroup and workers are left behind
    proc.communicate()
    assert machine.state_file().exists()
    result = CliRunner().invoke(main, ["stress", "--cleanup"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("stress: undid ")
    assert not machine.state_file().exists()


@pytest.mark.slow
def test_the_default_run_a_user_runs(restored):
    """`swaprace stress --yes --duration 60` with every other default, as a user runs it (about 70 s): it
    exits 0, nothing is killed or frozen, swap stays more than half full, and the machine is restored."""
    env = dict(os.environ, SWAPRACE_STATE_DIR=str(restored), PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    done = subprocess.run([sys.executable, "-m", "swaprace", "stress", "--yes", "--duration", "60", "--json"],
                          capture_output=True, text=True, timeout=240, env=env, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert summary["ok"] and summary["machine"]["limit_mib"] == 24 and summary["machine"]["working_set_mib"] == 64
    assert summary["machine"]["cgroup_events"].get("oom_kill", 0) == 0
    assert summary["swap_fill"]["share_above_half"] > 0.5
    assert summary["rounds_s"] >= 60 and summary["workload"]["rounds"] > 0


def test_a_fault_parked_by_the_keepers_window_is_woken(tmp_path):
    """cgroup v1 only (the keeper plays ``memory.high`` there). The kernel's side of the bargain the keeper
    relies on, on this kernel: with the group's OOM killer off, a fault that cannot charge parks instead of
    being killed (``under_oom 1``), and the keeper, seeing it, wakes it by enlarging the hard limit
    (mem_cgroup_resize_max -> memcg1_oom_recover): the process finishes, nothing is killed."""
    layout = machine.detect_cgroup()
    if layout.version != 1:
        pytest.skip("cgroup v2 has memory.high: no keeper")
    group = layout.parent / f"swaprace-test-park-{os.getpid()}"
    group.mkdir()
    keeper = None
    child = None
    try:
        (group / "memory.swappiness").write_text("0")  # nothing to reclaim: the charge must fail
        (group / "memory.oom_control").write_text("1")
        (group / "memory.limit_in_bytes").write_text(str(8 * machine.MiB))
        code = (f"import os; open({str(group / 'cgroup.procs')!r}, 'w').write(str(os.getpid())); "
                "b = bytearray(32 << 20); print(sum(b[::4096]))")
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while not machine._under_oom(group / "memory.oom_control"):
            assert child.poll() is None, "the allocation did not park: it finished or died"
            assert time.monotonic() < deadline, "the allocation never parked"
            time.sleep(0.05)
        time.sleep(0.3)
        assert child.poll() is None  # parked, not killed: it stays until something wakes it
        keeper = machine.LimitKeeper(group, target=256 * machine.MiB, hard=256 * machine.MiB)
        keeper.start()
        out, _ = child.communicate(timeout=30)
        assert child.returncode == 0 and out.strip() == "0"
        assert keeper.wakes >= 1 and keeper.passes == 0
        assert "oom_kill 0" in (group / "memory.oom_control").read_text()
    finally:
        if keeper is not None:
            keeper.stop()
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
        group.rmdir()

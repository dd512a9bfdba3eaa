"""swaprace stress without touching the machine: sizes, the state log's undo, the oracle-vs-detector join,
window overlaps, and the native helper's oracle on an unswapped region (no root needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from swaprace.cli import main
from swaprace.errors import SwapraceError
from swaprace.stress import join, machine, native, oracle, run

MiB = 1 << 20


def test_parse_size():
    assert run.parse_size("64M") == 64 * MiB
    assert run.parse_size("1g") == 1 << 30
    assert run.parse_size("512KiB") == 512 << 10
    assert run.parse_size("4096") == 4096
    for bad in ("lots", "-1M", "0"):
        with pytest.raises(SwapraceError):
            run.parse_size(bad)


def test_cli_options_parse_sizes_and_let_explicit_ones_win_over_a_scenario():
    args = {"mem": "16M", "limit": None, "swap": "", "threads": 8, "ksm": True, "record_path": "r.parquet",
            "scenario": "skip-swapcache-2024"}
    opts = run.options_from_cli(args, explicit=["threads", "ksm"])
    assert opts.threads == 8 and opts.ksm and opts.record == "r.parquet"
    assert opts.processes == 1 and opts.swap_device == "zram" and opts.mem_bytes == 64 * 4096  # the preset's
    assert opts.limit_bytes == 512 * MiB and opts.swap_bytes == 64 * 1024
    plain = run.options_from_cli({"mem": "16M", "limit": "4M", "swap": None})
    assert (plain.mem_bytes, plain.limit_bytes, plain.swap_bytes) == (16 * MiB, 4 * MiB, None)


def test_summarize_one_worker():
    window = np.zeros(2, dtype=run.WINDOW_DTYPE)
    window["start_ns"], window["end_ns"], window["tid"] = [10, 20], [15, 30], [1, 2]
    result = {"pid": 7, "counters": {"start_mono_ns": 0, "mismatches": 0, "pages_read": 5}, "mismatches": [],
              "windows": window}
    measured = run.Measured(results=[result], vmstat={"pswpin": {"delta": 60}}, ksm={}, swap_samples=[0.4, 0.8],
                            injections=[], rounds_s=60.0, cgroup_events={})
    plan = machine.Plan(swap_path="/x.swap", swap_bytes=4 * MiB, cgroup_version=2, cgroup_path="/sys/fs/cgroup/t",
                        limit_bytes=MiB)
    summary = run.summarize(run.StressOptions(), run.plan_sizes(run.StressOptions()), plan, measured)
    assert summary["ok"] and summary["workload"] == {"mismatches": 0, "pages_read": 5}
    assert summary["per_minute"] == {"pswpin": 60.0} and summary["swap_fill"]["share_above_half"] == 0.5
    assert summary["fault_windows"]["windows"] == 2 and summary["machine"]["swap_file"] == "/x.swap"


def test_default_sizes_keep_swap_more_than_half_full():
    sizes = run.plan_sizes(run.StressOptions(processes=2, mem_bytes=32 * MiB))
    assert sizes.limit < sizes.working_set
    # what cannot be resident must be in swap: that alone fills more than half the swap file
    assert (sizes.working_set - sizes.limit) / sizes.swap > 0.5
    with pytest.raises(SwapraceError, match="below the working set"):
        run.plan_sizes(run.StressOptions(processes=1, mem_bytes=16 * MiB, limit_bytes=16 * MiB))


def test_state_log_undoes_in_reverse_and_survives_a_crash(tmp_path):
    knob = tmp_path / "pages_to_scan"
    knob.write_text("100\n")
    swapfile = tmp_path / "stress.swap"
    log = machine.StateLog(tmp_path / "state.json")
    log.claim()
    swapfile.write_bytes(b"\0" * 4096)
    st = swapfile.stat()
    log.add(kind="swapfile", path=str(swapfile), dev=st.st_dev, ino=st.st_ino)
    log.add(kind="ksm", path=str(knob), old="100")
    knob.write_text("2000")
    # a new run refuses while the record is there (this process is alive: "another run")
    with pytest.raises(SwapraceError, match="owns the machine"):
        machine.StateLog(tmp_path / "state.json").claim()
    undone = machine.cleanup(tmp_path / "state.json")
    assert [c["kind"] for c in undone] == ["swapfile", "ksm"]
    assert knob.read_text() == "100"
    assert not swapfile.exists()
    assert not (tmp_path / "state.json").exists()


def test_cleanup_refuses_garbage_state(tmp_path):
    state = tmp_path / "state.json"
    state.write_text("{not json")
    with pytest.raises(SwapraceError, match="unreadable stress state file"):
        machine.cleanup(state)


def test_cli_cleanup_with_nothing_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("SWAPRACE_STATE_DIR", str(tmp_path))
    result = CliRunner().invoke(main, ["stress", "--cleanup", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"undone": []}


def test_cli_rejects_bad_options():
    result = CliRunner().invoke(main, ["stress", "--mem", "huge"])
    assert result.exit_code != 0
    assert "not a size" in result.output and "Traceback" not in result.output


def test_overlaps_counts_only_other_cpus():
    # (start, end, cpu, tid, key): 0 and 1 overlap on different CPUs on the same key; 2 overlaps 1 on the
    # same CPU only; 3 is alone
    start = np.array([0, 5, 8, 100])
    end = np.array([10, 15, 12, 110])
    stats = oracle.overlaps(start, end, np.array([0, 1, 1, 0]), np.array([1, 2, 3, 1]),
                            np.array([7, 7, 9, 7]))
    assert stats == {"overlapping_windows": 3, "overlapping_pairs": 2, "same_page_overlapping_pairs": 1}


def _races(rows):
    return pd.DataFrame(rows, columns=["entry", "tid", "window_start_ns", "window_end_ns", "release_ns",
                                       "rebind_ns", "class", "install_ns"])


WINDOWS = pd.DataFrame({"tid": [11, 12, 21], "pid": [10, 10, 20], "cpu": [0, 1, 0],
                        "start_ns": [1000, 1500, 5000], "end_ns": [2000, 2500, 6000],
                        "entry": pd.array([5, 5, 6], dtype="UInt64")})


def _mismatch(pid, tid, t, page=3):
    return {"pid": pid, "tid": tid, "mono_ns": t, "addr": 0x1000 * page, "page_index": page,
            "phase_name": "read"}


def test_join_verdicts():
    none = _races([])
    assert join.join(none, WINDOWS, [], 0)["verdict"] == "verdict: clean (0 races, 0 corruptions)"
    stale = _races([(5, 11, 1000, 2000, 1200, 1300, "stale-install", 1900)])
    same_thread = join.join(stale, WINDOWS, [_mismatch(10, 11, 2100)], 0)
    assert same_thread["matched"] == 1 and same_thread["matches"][0]["matched_by"] == "thread+time"
    assert same_thread["verdict"].startswith("verdict: CORRUPTION matched to race")
    later = join.join(stale, WINDOWS, [_mismatch(10, 12, 9_000_000_000)], 0)
    assert later["matches"][0]["matched_by"] == "process+time"
    missed = join.join(stale, WINDOWS, [_mismatch(20, 21, 5500)], 3)
    assert missed["verdict"].startswith("verdict: corruption with no flagged race (detector missed it")
    assert "lost 3 events" in missed["verdict"]
    flagged_only = join.join(stale, WINDOWS, [], None)
    assert "1 stale-install flagged but no page held wrong data" in flagged_only["verdict"]
    assert "losses unknown" in flagged_only["verdict"]


def test_trace_window_stats_overlap_on_the_same_entry():
    stats = join.trace_window_stats(WINDOWS, 2.0)
    assert stats["windows"] == 3 and stats["per_second"] == 1.5
    assert stats["overlapping_windows"] == 2 and stats["same_entry_overlapping_pairs"] == 1


def test_helper_oracle_in_process(tmp_path):
    """The native helper on a region that is never swapped: threads and forked readers find no mismatch,
    and a page changed behind the oracle's back is reported with its index (the oracle can fail)."""
    if native.find_compiler() is None:
        pytest.skip("no C compiler")
    so = native.build()
    code = f"""
import ctypes, json, sys
from pathlib import Path
from swaprace.stress import native
h = native.Helper(Path({str(so)!r}))
c = native.Config(npages=1024, seed=7, duration_ns=300_000_000, slow_ns=1, max_windows=10000,
                  max_mismatches=100, proc_index=0, threads=4, batch=32, shared_permille=250, group_size=4,
                  write_permille=100, fork_every=4, pageout=0, mergeable=0)
h.reserve(c)
res = h.prepare()
bad = 100  # a private page: overwrite 8 bytes in its body without telling the oracle
ctypes.memset(res.region_addr + bad * res.page_size + 512, 0xAB, 8)
h.run()
h.sweep()
print(json.dumps({{"rounds": res.rounds, "forks": res.forks, "children_failed": res.children_failed,
                  "reads": res.pages_read, "writes": res.pages_written, "child": res.child_pages_read,
                  "mismatches": [(m.page_index, m.first_bad_offset, m.phase) for m in h.mismatches()]}}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["rounds"] > 0 and out["reads"] > 0 and out["writes"] > 0 and out["forks"] > 0
    assert out["children_failed"] == 0
    pages = {m[0] for m in out["mismatches"]}
    # page 100 is corrupt unless a writer rewrote it whole before anyone read it; then only it may appear
    assert pages <= {100}
    for page, offset, _phase in out["mismatches"]:
        assert offset == 512


def test_python_fallback_helper_oracle():
    """Without a C compiler the Python helper runs the same rounds through GIL-releasing libc calls; its
    oracle catches a page changed behind its back too."""
    import ctypes

    from swaprace.stress.pyhelper import PyHelper

    helper = PyHelper()
    config = native.Config(npages=512, seed=3, duration_ns=400_000_000, slow_ns=1, max_windows=10000,
                           max_mismatches=100, proc_index=0, threads=3, batch=16, shared_permille=250,
                           group_size=4, write_permille=0, fork_every=0, pageout=0, mergeable=0)
    helper.reserve(config)
    res = helper.prepare()
    ctypes.memset(res.region_addr + 50 * res.page_size + 700, 0x5A, 4)
    helper.run()
    helper.sweep()
    assert res.rounds > 0 and res.pages_read > 0
    assert res.final_pages_checked == 512
    found = {(m.page_index, m.first_bad_offset) for m in helper.mismatches()}
    # no writers here, so nothing can repair the page: the final sweep at least must report it
    assert found == {(50, 700)}


def test_cli_forced_python_helper_is_reported(monkeypatch):
    monkeypatch.setenv("SWAPRACE_STRESS_HELPER", "python")
    assert native.build() is None


def test_existing_swap_file_is_never_removed(tmp_path):
    """--swap-file naming a file that exists: the run refuses, and its undo does not unlink the file."""
    precious = tmp_path / "swapfile"
    precious.write_bytes(b"user data")
    plan = machine.Plan(swap_path=str(precious), swap_bytes=MiB, cgroup_version=2,
                        cgroup_path=str(tmp_path / "cg"), limit_bytes=MiB)
    log = machine.StateLog(tmp_path / "state.json")
    with pytest.raises(SwapraceError, match="already exists"), machine.Machine(plan, log):
        pass
    assert precious.read_bytes() == b"user data"
    assert not (tmp_path / "state.json").exists()


def test_undo_never_removes_a_file_it_did_not_create(tmp_path):
    """A state file naming a path whose file was replaced (or an old log without the inode): kept."""
    other = tmp_path / "swapfile"
    other.write_bytes(b"not ours")
    for change in ({"kind": "swapfile", "path": str(other)},
                   {"kind": "swapfile", "path": str(other), "dev": "1", "ino": "1"}):
        with pytest.raises(SwapraceError, match="not removing"):
            machine._undo(change)
    assert other.read_bytes() == b"not ours"


def test_limit_keeper_pushes_back_under_the_target_and_restores_the_hard_limit(tmp_path):
    """v1 has no memory.high: the keeper writes the target (the kernel reclaims in its thread) and puts the
    hard limit straight back, so the workers never charge against a tight limit (no OOM, no freeze)."""
    import time

    (tmp_path / "memory.usage_in_bytes").write_text(str(40 * MiB))
    (tmp_path / "memory.limit_in_bytes").write_text(str(192 * MiB))
    (tmp_path / "memory.oom_control").write_text("oom_kill_disable 1\nunder_oom 0\noom_kill 0\n")
    keeper = machine.LimitKeeper(tmp_path, 24 * MiB, 192 * MiB)
    keeper.start()
    deadline = time.monotonic() + 10
    while keeper.passes < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    keeper.stop()
    assert keeper.passes >= 2
    assert (tmp_path / "memory.limit_in_bytes").read_text() == str(192 * MiB)


def test_default_sizes_have_a_hard_limit_no_workload_reaches():
    sizes = run.plan_sizes(run.StressOptions())
    assert sizes.limit == 24 * MiB and sizes.hard_limit > 2 * sizes.working_set


def test_native_helper_from_a_cache_another_user_can_write_is_not_loaded(tmp_path, monkeypatch):
    """`sudo -E`: root's cache is the user's. A helper there that the user could have replaced is not loaded;
    a private copy is built for the run instead."""
    if native.find_compiler() is None:
        pytest.skip("no C compiler")
    cache = tmp_path / "cache"
    monkeypatch.setenv("SWAPRACE_CACHE", str(cache))
    good = native.build()
    assert good is not None and native.untrusted(good) is None
    good.chmod(0o777)  # anyone may now replace the code root would load
    assert "writable" in native.untrusted(good)
    with pytest.raises(SwapraceError, match="not loading"):
        native.Helper(good)
    rebuilt = native.build()
    assert rebuilt != good and native.untrusted(rebuilt) is None
    if os.geteuid() == 0:
        good.chmod(0o755)
        os.chown(cache / "swaprace", 65534, 65534)  # the directory of another user
        assert "belongs to uid" in native.untrusted(good)
        assert native.build() != good


def test_state_file_write_follows_no_planted_link(tmp_path):
    """The state file used a fixed stress-state.tmp name: a link planted there redirected root's write."""
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "stress-state.tmp").symlink_to(victim)
    log = machine.StateLog(tmp_path / "stress-state.json")
    log.claim()
    log.add(kind="ksm", path="/nonexistent", old="0")
    assert victim.read_text() == "precious"
    assert json.loads((tmp_path / "stress-state.json").read_text())["changes"][0]["kind"] == "ksm"


def test_cgroup_v2_limit_is_memory_high_with_a_far_hard_limit(tmp_path):
    """v2: memory.high (reclaim and throttle, never an OOM kill) at the planned limit, memory.max far above."""
    plan = machine.Plan(swap_path=str(tmp_path / "s"), swap_bytes=MiB, cgroup_version=2, cgroup_path=str(tmp_path),
                        limit_bytes=24 * MiB)
    # the region + two interpreters' heaps (anon) + page cache, which is reclaimable: not counted
    (tmp_path / "memory.current").write_text(str(64 * MiB + 20 * MiB + 15 * MiB))
    (tmp_path / "memory.stat").write_text(f"anon {84 * MiB}\nfile {15 * MiB}\n")
    box = machine.Machine(plan, machine.StateLog(tmp_path / "state.json"))
    box.apply_limit(192 * MiB, 64 * MiB)
    assert box.interpreter_bytes == 20 * MiB  # the interpreters' own anon comes on top of the planned limit
    assert (tmp_path / "memory.high").read_text() == str(44 * MiB)
    assert (tmp_path / "memory.max").read_text() == str(192 * MiB)
    assert getattr(box, "keeper", None) is None
    box.stop_keeper()


def test_cgroup_v1_limit_is_kept_by_the_keeper_with_the_groups_oom_killer_off(tmp_path):
    """The OOM killer is off before the first limit write: a fault that cannot charge in the keeper's instant
    at the target parks instead of dying (tests/test_stress.py checks the kernel wakes it)."""
    plan = machine.Plan(swap_path=str(tmp_path / "s"), swap_bytes=MiB, cgroup_version=1, cgroup_path=str(tmp_path),
                        limit_bytes=24 * MiB)
    (tmp_path / "memory.usage_in_bytes").write_text(str(10 * MiB))
    box = machine.Machine(plan, machine.StateLog(tmp_path / "state.json"))
    box.apply_limit(192 * MiB, 64 * MiB)
    try:
        assert box.interpreter_bytes == 0 and box.keeper.target == 24 * MiB  # charge below the region: none
        assert (tmp_path / "memory.limit_in_bytes").read_text() == str(192 * MiB)
        assert box.keeper is not None and (tmp_path / "memory.oom_control").read_text() == "1"
    finally:
        box.stop_keeper()


def test_join_table_pairs_each_corruption_with_both_sides_and_says_why_not():
    """One row per corruption with its offline and detector partner; every stale-install without a corruption
    is listed with its reason; a corruption with no partner while nothing was lost is a detector defect."""
    offline = _races([(5, 11, 1000, 2000, 1200, 1300, "stale-install", 1900),
                      (6, 21, 5000, 6000, 5200, 5300, "stale-install", 5900),
                      (9, 31, 7000, 8000, 7200, 7300, "stale-install", 7900)])
    detector = [{"entry": 5, "tid": 11, "pid": 10, "window_start_ns": 1000, "window_end_ns": None,
                 "install_ns": 1900, "class": "stale-install", "uncertain": False}]
    mismatches = [_mismatch(10, 11, 2100) | {"got_gen": 4, "expected_gen": 5}, _mismatch(40, 41, 9000)]
    joined = join.join(offline, WINDOWS, mismatches, 0, detector_races=detector, workload_pids={10, 20, 40})
    first, second = joined["table"]
    assert first["offline"]["entry"] == 5 and first["detector"]["entry"] == 5 and first["why_unpartnered"] is None
    assert first["detector"]["end"] == 1900  # reported at its install: the window's end is not known yet
    assert second["offline"] is None and second["detector"] is None
    assert "no race flagged by offline and detector" in second["why_unpartnered"]
    assert "a detector defect" in second["why_unpartnered"]
    why = {(u["source"], u["entry"]): u["why"] for u in joined["unpartnered"]}
    assert set(why) == {("offline", 6), ("offline", 9)}
    assert why[("offline", 6)].startswith("no oracle mismatch followed")
    assert why[("offline", 9)].startswith("not a workload process")  # tid 31 has no window: pid unknown
    assert joined["agreement"] | {} == {
        "corruptions": 2, "with_offline_stale_install": 1, "with_detector_stale_install": 1,
        "offline_stale_installs": 3, "offline_stale_installs_with_corruption": 1,
        "detector_stale_installs": 1, "detector_stale_installs_with_corruption": 1, "detector_ran": True}
    lines = run.join_table_lines(joined)
    assert lines[0].startswith("join: 2 corruptions: 1 follow an offline stale-install, 1 a detector")
    assert any("4<5" in line and "stale-install 0x5 tid 11 (thread+time)" in line for line in lines)


def test_join_by_page_pairs_a_lost_write_found_by_another_thread():
    """Seen on lab-2024: thread 12 installs the stale copy of page 3, thread 11 takes the page's lock first and
    finds the lost write. By thread, 11's own (recovered) race was taken; by page, 12's stale-install is."""
    races = pd.DataFrame({"entry": [5, 7], "tid": [11, 12], "window_start_ns": [1000, 1100],
                          "window_end_ns": [2000, 1900], "install_ns": pd.array([None, 1800], dtype="Int64"),
                          "class": ["recovered", "stale-install"]})
    touches = pd.DataFrame({"tid": [11, 12, 11], "start_ns": [990, 1090, 5000], "end_ns": [2010, 1910, 5100],
                            "page_index": [3, 3, 4]})
    mismatch = [_mismatch(10, 11, 2100, page=3)]
    by_thread = join.join(races, WINDOWS, mismatch, 0)["table"][0]["offline"]
    assert by_thread["tid"] == 11 and by_thread["class"] == "recovered"
    by_page = join.join(races, WINDOWS, mismatch, 0, touches=touches)
    row = by_page["table"][0]["offline"]
    assert (row["tid"], row["entry"], row["class"], row["matched_by"]) == (12, 7, "stale-install", "page+time")
    assert by_page["unpartnered"] == [] and by_page["table"][0]["why_unpartnered"] is None


def test_the_oracles_bookkeeping_is_not_charged_to_the_workloads_group(tmp_path):
    """The kernel's own counter says what the workload's memory cgroup holds: the region, not the oracle's
    window records (16 MiB per process at the defaults). Charged to the group, they were swapped out with the
    region and filled the swap file: the default run's OOM kill."""
    import ctypes

    from swaprace.stress import machine

    if not native.find_compiler():
        pytest.skip("no C compiler")
    if os.geteuid() != 0:
        pytest.skip("creating a memory cgroup needs root")
    try:
        layout = machine.detect_cgroup()
    except Exception as exc:  # noqa: BLE001 - any reason there is no memory controller: nothing to measure
        pytest.skip(str(exc))
    group = layout.parent / f"swaprace-test-charge-{os.getpid()}"
    if layout.version == 2 and "memory" not in (layout.parent / "cgroup.subtree_control").read_text().split():
        pytest.skip("the memory controller is not enabled for the root's children")
    so = native.build()
    threads, max_windows, npages = 4, 100_000, 1024  # the run's defaults for the records; a 4 MiB region
    usage = "memory.current" if layout.version == 2 else "memory.usage_in_bytes"
    code = f"""
import os
from pathlib import Path
from swaprace.stress import native
h = native.Helper(Path({str(so)!r}))
h.reserve(native.Config(npages={npages}, seed=1, duration_ns=1, slow_ns=1, max_windows={max_windows},
                        max_mismatches=1000, proc_index=0, threads={threads}, batch=32, shared_permille=250,
                        group_size=4, write_permille=0, fork_every=0, pageout=0, mergeable=0))
Path({str(group / "cgroup.procs")!r}).write_text(str(os.getpid()))
h.prepare()
print(int(Path({str(group / usage)!r}).read_text()))
"""
    group.mkdir()
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        charged = int(done.stdout)
    finally:
        group.rmdir()
    region = npages * os.sysconf("SC_PAGE_SIZE")
    records = threads * (max_windows + 1) * ctypes.sizeof(native.Window)
    assert records > 3 * region  # the test means something: the records alone would dwarf the region
    assert region <= charged < region + 2 * 1024 * 1024, (charged, region, records)



def test_the_helpers_structs_match_their_ctypes_mirrors():
    """One layout, checked: the compiled helper reports its struct sizes and the loader compares them with the
    ctypes mirrors; a mirror that differs is refused with one line (here: a Window without its last two fields)."""
    import ctypes

    if not native.find_compiler():
        pytest.skip("no C compiler")
    lib = ctypes.CDLL(str(native.build()))
    native.check_struct_sizes(lib)  # the real ones match

    class Short(ctypes.Structure):
        _fields_ = native.Window._fields_[:-2]

    real = native.Window
    try:
        native.Window = Short
        with pytest.raises(SwapraceError, match="sr_window 40 B in C, 32 B here"):
            native.check_struct_sizes(lib)
    finally:
        native.Window = real

"""``--comm``/``--cgroup``/``--pid`` on this host: the -D defines of the BPF program, the ftrace filter files,
the cgroup checks, what the capture records, ``record --ready-file`` and ``watch -T`` (no kprobes needed).
The filters in a live kernel: tests/test_filters_vm.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from swaprace.analysis.summary_text import recorded_filter_text
from swaprace.capture import read_capture
from swaprace.cli import main
from swaprace.errors import SwapraceError
from swaprace.kernel.catalog import THREAD_ROLES, SymbolTable, load_symbols, resolve_roles
from swaprace.probes.backend import ProbePlan
from swaprace.probes.bcc_backend import compile_flags
from swaprace.probes.filters import (
    Cgroup,
    ThreadFilter,
    bpf_flags,
    check_comm,
    comm_words,
    ftrace_filter,
    resolve_cgroup,
    running_with_comm,
)
from swaprace.probes.ftrace_backend import FtraceBackend, event_filters, event_names
from swaprace.probes.record import record
from swaprace.probes.watch import WatchOptions, format_header, format_interval

from replay_support import TRACES, ReplayBackend, plan_for as replay_plan

FIXTURES = Path(__file__).parent / "fixtures"
BOOKWORM = ["do_swap_page", "swap_cache_get_folio", "ksm_might_need_to_copy", "folio_free_swap", "swap_free",
            "put_swap_folio", "folio_alloc_swap", "add_to_swap", "delete_from_swap_cache",
            "free_swap_and_cache", "swapcache_prepare", "add_to_swap_cache", "__delete_from_swap_cache",
            "swap_readpage", "free_swap_slot"]


def bookworm_plan(**filters) -> ProbePlan:
    plan = ProbePlan(resolutions=resolve_roles(SymbolTable(names=set(BOOKWORM), traceable=None, source="test")))
    for key, value in filters.items():
        setattr(plan, key, value)
    return plan


def mountinfo_for(point: Path, fstype: str) -> str:
    return (f"22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n"
            f"35 22 0:30 / {point} rw,nosuid shared:9 - {fstype} {fstype} rw\n")


# --- the comm ----------------------------------------------------------------------------------------------

def test_comm_words_are_the_zero_padded_task_name():
    assert comm_words("kswapd0") == (int.from_bytes(b"kswapd0\0", "little"), 0)
    lo, hi = comm_words("swap_workload_a")  # 15 bytes: the longest a task name is
    assert lo.to_bytes(8, "little") + hi.to_bytes(8, "little") == b"swap_workload_a\0"


@pytest.mark.parametrize("name, why", [("", "needs a task name"), ("a-very-long-task-name", "15-byte")])
def test_comm_the_kernel_cannot_hold_is_refused(name, why):
    with pytest.raises(SwapraceError, match=why):
        check_comm(name)


def test_running_with_comm_counts_threads(tmp_path):
    for pid, tid, comm in ((10, 10, "db"), (10, 11, "db"), (12, 12, "kswapd0")):
        task = tmp_path / str(pid) / "task" / str(tid)
        task.mkdir(parents=True)
        (task / "comm").write_text(comm + "\n")
    assert running_with_comm("db", str(tmp_path)) == 2
    assert running_with_comm("nobody", str(tmp_path)) == 0


# --- bcc: -D defines ----------------------------------------------------------------------------------------

def test_bpf_flags_of_each_filter():
    cg = Cgroup(path="/sys/fs/cgroup/db", realpath="/sys/fs/cgroup/db", cgroup_id=4711)
    flags = bpf_flags(ThreadFilter(pid=42, comm="db", cgroup=cg))
    lo, _ = comm_words("db")
    assert flags == ["-DFILTER_TGID=42", f"-DFILTER_COMM_LO={lo:#x}ULL", "-DFILTER_COMM_HI=0x0ULL",
                     "-DFILTER_CGROUP=1", "-DFILTER_CGROUP_ID=4711ULL"]
    assert bpf_flags(ThreadFilter()) == []


def test_compile_flags_filter_thread_roles_only():
    flags = compile_flags(bookworm_plan(comm="db"), ringbuf=True)
    assert any(f.startswith("-DFILTER_COMM_LO=") for f in flags)
    assert not any(f.startswith(("-DFILTER_TGID", "-DFILTER_CGROUP")) for f in flags)
    thread = {f.split("=")[0][2:-len("_THREAD")].lower() for f in flags if f.endswith("_THREAD=1")}
    assert thread == set(THREAD_ROLES) & {"fault", "lookup", "ksm_copy", "swap_put", "prepare", "swap_read"}
    for role in ("slot_free", "slot_alloc", "free_cache", "cache_add", "cache_delete"):
        assert f"-D{role.upper()}_THREAD=0" in flags, role  # the slot lifecycle stays unfiltered


def test_the_program_tests_every_filter_define():
    from swaprace.probes.bcc_backend import BPF_SOURCE

    source = BPF_SOURCE.read_text()
    for define in ("FILTER_TGID", "FILTER_COMM_LO", "FILTER_COMM_HI", "FILTER_CGROUP"):
        assert define in source.split("static __always_inline int filtered_out(void)")[1].split("\n}\n")[0]
    assert "BPF_CGROUP_ARRAY(filter_cgroup, 1)" in source


# --- ftrace: filter files -----------------------------------------------------------------------------------

def test_ftrace_filters_go_on_thread_role_events_only():
    plan = bookworm_plan(comm="db")
    group = "swaprace_77"
    filters = event_filters(plan, group)
    assert set(filters.values()) == {'comm == "db"'}
    expected = set()
    for role in plan.probed:
        if role in THREAD_ROLES:
            call, ret = event_names(group, role)
            expected.add(call)
            if role in ("fault", "lookup", "ksm_copy", "prepare"):
                expected.add(ret)
    assert set(filters) == expected
    assert event_names(group, "fault")[1] in filters  # do_swap_page's return too
    for role in ("slot_free", "free_cache", "cache_add", "cache_delete", "slot_alloc"):
        assert event_names(group, role)[0] not in filters, role
    text = FtraceBackend().program_text(plan)
    assert '# filter ' in text and 'comm == "db"' in text


def test_ftrace_without_comm_has_no_filter_and_pid_stays_in_the_reader():
    assert event_filters(bookworm_plan(), "g") == {}
    assert event_filters(bookworm_plan(pid=42), "g") == {}  # a filter sees the thread, not its group
    assert ThreadFilter(pid=42).to_meta("ftrace")["applied"] == {"pid": "reader"}
    assert ThreadFilter(pid=42).to_meta("bcc")["applied"] == {"pid": "bpf"}


@pytest.mark.parametrize("comm", ["db*", "a?b", 'x"y', "a[0]"])
def test_ftrace_refuses_a_comm_it_would_glob(comm):
    with pytest.raises(SwapraceError, match="--backend bcc"):
        ftrace_filter(ThreadFilter(comm=comm))


def test_ftrace_refuses_cgroup_with_one_reason():
    cg = Cgroup(path="/sys/fs/cgroup/x", realpath="/sys/fs/cgroup/x", cgroup_id=1)
    with pytest.raises(SwapraceError, match="--cgroup needs the bcc backend"):
        ftrace_filter(ThreadFilter(cgroup=cg))


# --- cgroups ------------------------------------------------------------------------------------------------

def test_cgroup_v2_directory_resolves_to_its_inode(tmp_path):
    group = tmp_path / "db"
    group.mkdir()
    cg = resolve_cgroup(str(group), mountinfo_for(tmp_path, "cgroup2"))
    assert cg.cgroup_id == os.stat(group).st_ino and cg.realpath == str(group)


@pytest.mark.parametrize("fstype, why", [("cgroup", "cgroup v1"), ("tmpfs", "not a cgroup")])
def test_cgroup_elsewhere_is_refused(tmp_path, fstype, why):
    with pytest.raises(SwapraceError, match=why):
        resolve_cgroup(str(tmp_path), mountinfo_for(tmp_path, fstype))


def test_cgroup_missing_or_a_file_is_refused(tmp_path):
    with pytest.raises(SwapraceError, match="no such cgroup"):
        resolve_cgroup(str(tmp_path / "nope"), mountinfo_for(tmp_path, "cgroup2"))
    (tmp_path / "f").write_text("")
    with pytest.raises(SwapraceError, match="not a directory"):
        resolve_cgroup(str(tmp_path / "f"), mountinfo_for(tmp_path, "cgroup2"))


def _kernel_symbols_or_skip() -> None:
    if "do_swap_page" not in load_symbols().names:
        pytest.skip("this kernel has no do_swap_page symbol")


@pytest.mark.parametrize("args, message", [
    (["--cgroup", "/nonexistent/cg"], "swaprace: error: --cgroup /nonexistent/cg: no such cgroup directory"),
    (["--cgroup", "/proc"], "swaprace: error: --cgroup /proc: not a cgroup"),
    (["--comm", "x" * 20], "swaprace: error: --comm"),
])
def test_bad_filters_are_one_error_line(args, message):
    _kernel_symbols_or_skip()
    for command in (["record", "--ebpf", "--backend", "ftrace"], ["watch", "--ebpf"]):
        result = CliRunner().invoke(main, command + args)
        assert result.exit_code != 0, result.output
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith(message), result.output


def test_record_ebpf_prints_the_filters():
    _kernel_symbols_or_skip()
    result = CliRunner().invoke(main, ["record", "--ebpf", "--backend", "ftrace", "--comm", "db"])
    assert result.exit_code == 0, result.output
    assert '# filter ' in result.output and 'comm == "db"' in result.output
    result = CliRunner().invoke(main, ["watch", "--ebpf", "--comm", "db"])
    assert result.exit_code == 0, result.output
    assert "#define FILTER_COMM_LO 0x6264ULL" in result.output


# --- what the capture records; the ready file ----------------------------------------------------------------

@pytest.mark.skipif(not TRACES, reason="no recorded ftrace fixture")
def test_capture_records_the_filter_and_analyze_prints_it(tmp_path):
    trace = TRACES[0]
    backend = ReplayBackend(trace, lines_per_poll=2000)
    plan = replay_plan(trace)
    plan.comm = "python3"
    ready = tmp_path / "ready"
    ready.write_text("stale")
    seen = {}

    def stop() -> bool:
        seen.setdefault("ready", json.loads(ready.read_text()))
        return backend.remaining == 0

    out = tmp_path / "c.parquet"
    record(str(out), backend, plan, stop=stop, ready_file=str(ready))
    assert seen["ready"]["backend"] == "ftrace" and seen["ready"]["pid"] == os.getpid()
    assert "fault" in seen["ready"]["roles"]
    meta = read_capture(out).meta
    assert meta.extra["thread_filter"]["comm"] == "python3"
    assert meta.extra["thread_filter"]["applied"] == {"comm": "ftrace-filter"}
    assert meta.extra["thread_filter"]["roles"] == list(THREAD_ROLES)
    result = CliRunner().invoke(main, ["analyze", str(out)])
    assert result.exit_code == 0, result.output
    assert "recorded  fault windows of comm=python3 only (comm in ftrace-filter)" in result.output
    result = CliRunner().invoke(main, ["analyze", str(out), "--json"])
    assert json.loads(result.output)["thread_filter"]["comm"] == "python3"


def test_recorded_filter_text_of_an_old_pid_capture():
    assert recorded_filter_text({"pid": 7}).startswith("fault windows of pid=7 only")


# --- watch -T -------------------------------------------------------------------------------------------------

def test_watch_timestamps():
    assert WatchOptions().interval_time and not WatchOptions().race_time  # the default: intervals only
    assert WatchOptions(timestamp=True).race_time
    assert not WatchOptions(timestamp=False).interval_time
    assert format_header(False).split()[0] == "FAULTS" and format_header().split()[0] == "TIME"
    delta = {"faults": 1, "windows": 2, "lookups": 3, "releases": 4, "reuses": 5, "races": 6, "lost": 7}
    assert format_interval(None, delta).split() == ["1", "2", "3", "4", "5", "6", "7"]
    assert format_interval("12:00:00", delta).split()[0] == "12:00:00"


def test_shell_completion_as_the_readme_says():
    result = CliRunner().invoke(main, [], prog_name="swaprace", env={"_SWAPRACE_COMPLETE": "bash_source"})
    assert result.exit_code == 0 and "_swaprace_completion()" in result.output
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert '_SWAPRACE_COMPLETE=bash_source swaprace' in readme

"""The recorder loop on this host (no kprobes here): a replay backend feeds a real ftrace capture from the test
box, chunk by chunk, through the ftrace backend's own parsing path, so the loop, signal handling, atomic
write and failure paths run for real. The live path itself is covered in the guest (test_record_vm.py)."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from swaprace.capture import read_capture
from swaprace.errors import SwapraceError
from swaprace.probes.record import record

from replay_support import TRACES, ReplayBackend, plan_for


@pytest.fixture(params=TRACES[:1], ids=[p.stem for p in TRACES[:1]])
def trace(request):
    return request.param


def expected_events(backend: ReplayBackend) -> int:
    return sum(v for v in backend.meta.extra["kernel_hits"].values())


def test_replayed_capture_is_complete(trace, tmp_path):
    backend = ReplayBackend(trace, lines_per_poll=2000)
    out = tmp_path / "c.parquet"
    capture = record(str(out), backend, plan_for(trace), stop=lambda: backend.remaining == 0)
    assert backend.remaining == 0 and backend.stops >= 1
    assert len(capture.events) == expected_events(backend)
    saved = read_capture(out)
    assert len(saved.events) == len(capture.events)
    meta = saved.meta
    assert meta.backend == "ftrace" and meta.lost_known and meta.lost_events == 0
    assert meta.start_time_ns and meta.start_ts_ns and meta.duration_s > 0
    assert meta.symbols["fault"] == "do_swap_page"
    assert meta.extra["kernel_hits"] == backend.meta.extra["kernel_hits"]


def test_sigterm_stops_and_writes_what_was_captured(trace, tmp_path):
    backend = ReplayBackend(trace, lines_per_poll=50)
    out = tmp_path / "t.parquet"
    timer = threading.Timer(0.7, os.kill, (os.getpid(), signal.SIGTERM))
    before = signal.getsignal(signal.SIGTERM)
    timer.start()
    try:
        capture = record(str(out), backend, plan_for(trace), duration=60)
    finally:
        timer.cancel()
    assert signal.getsignal(signal.SIGTERM) == before  # handlers restored
    assert capture.meta.extra["stopped_by"] == "SIGTERM"
    assert backend.remaining > 0  # stopped early...
    assert 0 < len(read_capture(out).events) < expected_events(backend)  # ...and kept what it had


def test_backend_failure_midway_keeps_the_data(trace, tmp_path):
    backend = ReplayBackend(trace, lines_per_poll=100, fail_after_polls=4)
    out = tmp_path / "f.parquet"
    with pytest.raises(SwapraceError, match="tracing failed midway.*trace_pipe vanished"):
        record(str(out), backend, plan_for(trace), duration=60)
    saved = read_capture(out)
    assert len(saved.events) > 0
    assert "trace_pipe vanished" in saved.meta.extra["backend_failure"]
    assert backend.stops >= 1


def test_raw_trace_of_the_plan_is_written_and_reads_back_like_the_capture(trace, tmp_path):
    from swaprace.readers import read_any

    backend = ReplayBackend(trace, lines_per_poll=2000)
    plan = plan_for(trace)
    plan.raw_trace = str(tmp_path / "raw.trace")
    capture = record(str(tmp_path / "r.parquet"), backend, plan, stop=lambda: backend.remaining == 0)
    raw = Path(plan.raw_trace).read_text()
    assert raw.startswith("# swaprace: ")
    assert len(read_any(plan.raw_trace).events) == len(capture.events)


def test_command_status_is_kept(trace, tmp_path):
    backend = ReplayBackend(trace, lines_per_poll=100)
    capture = record(str(tmp_path / "x.parquet"), backend, plan_for(trace), cmd=["sh", "-c", "sleep 0.5; exit 3"])
    assert capture.meta.extra["command_status"] == 3
    assert capture.meta.extra["command_finished"] is True
    assert capture.meta.command == ["sh", "-c", "sleep 0.5; exit 3"]


def test_missing_pid_is_one_error(trace, tmp_path):
    backend = ReplayBackend(trace)
    with pytest.raises(SwapraceError, match="no process with pid"):
        record(str(tmp_path / "p.parquet"), backend, plan_for(trace), pid=2**22 + 12345, duration=1)
    assert not (tmp_path / "p.parquet").exists()


def test_second_ctrl_c_while_the_capture_is_written_does_not_lose_it(trace, tmp_path, monkeypatch):
    """Ctrl-C stopped the recording; a second one arrives during the (atomic) write: the capture is kept."""
    import swaprace.probes.record as record_module

    real_write = record_module.write_capture

    def write_interrupted(capture, path):
        os.kill(os.getpid(), signal.SIGINT)  # the impatient second Ctrl-C, mid-write
        return real_write(capture, path)

    monkeypatch.setattr(record_module, "write_capture", write_interrupted)
    backend = ReplayBackend(trace, lines_per_poll=2000)
    out = tmp_path / "c.parquet"
    capture = record(str(out), backend, plan_for(trace), stop=lambda: backend.remaining == 0)
    assert len(read_capture(out).events) == len(capture.events) > 0


def test_record_command_does_not_outlive_a_killed_swaprace(tmp_path):
    """`record -- CMD` and swaprace is SIGKILLed (no clean-up runs): CMD gets SIGTERM from the kernel."""
    import subprocess
    import sys
    import time

    code = ("import sys; from swaprace.probes.record import _spawn; p = _spawn(['sleep', '300']); "
            "print(p.pid, flush=True); import time; time.sleep(300)")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[1])
    child = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{child}").exists() and \
            "Z" not in Path(f"/proc/{child}/stat").read_text().split()[2]:
        time.sleep(0.05)
    alive = Path(f"/proc/{child}").exists() and "Z" not in Path(f"/proc/{child}/stat").read_text().split()[2]
    if alive:
        os.kill(child, signal.SIGKILL)
    assert not alive, "CMD kept running after swaprace was killed"


def test_live_ftrace_keeps_a_non_utf8_task_name_and_goes_on(trace, tmp_path):
    """One process named b"str\\xe9ss" must not end a recording; its name is kept, escaped, in both outputs."""
    backend = ReplayBackend(trace, lines_per_poll=2000)
    first = next(i for i, ln in enumerate(backend._lines) if b": (" in ln and not ln.startswith(b"#"))
    comm = backend._lines[first].split(b"-")[0].strip()
    backend._lines[first] = backend._lines[first].replace(comm, b"str\xe9ss", 1)
    backend.raw_trace = str(tmp_path / "raw.trace")
    out = tmp_path / "c.parquet"
    capture = record(str(out), backend, plan_for(trace), stop=lambda: backend.remaining == 0)
    assert len(capture.events) == expected_events(backend)
    assert "str\\xe9ss" in set(capture.events["comm"].astype(str))
    assert any("str\\xe9ss" in line for line in backend.raw_lines())

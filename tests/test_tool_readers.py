"""trace-cmd's trace.dat and perf's perf.data, read through `trace-cmd report` and `perf script`.

The real files (tests/fixtures/real/tracecmd-bookworm-6.1.dat, perf-bookworm-6.1.data) were recorded in the
bookworm test box in one run, together with swaprace's own ftrace text of that run (tracecmd-bookworm-6.1.trace):
three recorders, each on its own kprobes on the same functions (record_tracecmd_perf.sh, README.md there). The
analysis of each must be the same. Tests of the real files skip only where the tool is not installed (CI
installs both: vm-setup/host-packages.txt); tests with stand-in tools run everywhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from swaprace.analysis.model import analyze
from swaprace.errors import SwapraceError
from swaprace.readers import detect_format, read_any
from swaprace.readers.tools import KallsymsMap, unpadded

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
REAL = FIXTURES / "real"
TRACE_DAT = REAL / "tracecmd-bookworm-6.1.dat"
PERF_DATA = REAL / "perf-bookworm-6.1.data"
SAME_RUN_TEXT = REAL / "tracecmd-bookworm-6.1.trace"

needs_trace_cmd = pytest.mark.skipif(shutil.which("trace-cmd") is None, reason="trace-cmd not installed")
needs_perf = pytest.mark.skipif(shutil.which("perf") is None, reason="perf not installed")

#: Summary keys that describe the file and its recorder, not the analysis.
RECORDER_KEYS = {"backend", "source_format", "kernel_release", "symbols", "lost", "lost_events", "skipped_lines",
                 "time_range_ns"}


def swaprace(*args, env=None, stdin=None):
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([sys.executable, "-m", "swaprace", *map(str, args)], capture_output=True, timeout=300,
                          env=full_env, cwd=ROOT, check=False, stdin=stdin)


def one_error_line(done) -> str:
    err = done.stderr.decode()
    assert done.returncode != 0 and "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("swaprace: error: "), lines
    return lines[0]


def analysis(path: Path) -> dict:
    summary = analyze(read_any(path)).summary
    return {k: v for k, v in summary.items() if k not in RECORDER_KEYS}


# --- detection and address resolution (no tool needed) ------------------------------------------------------


def test_magics_are_detected():
    assert detect_format(Path("x"), TRACE_DAT.read_bytes()[:64]) == "tracedat"
    assert detect_format(Path("x"), PERF_DATA.read_bytes()[:64]) == "perfdata"


def test_raw_kprobe_locations_become_symbols():
    symbols = KallsymsMap(iter([b"ffffffff81000000 T _text\n", b"ffffffff812ab0c0 do_swap_page\n",
                                b"ffffffff812b0000 handle_mm_fault\n"]))
    text = (b"  a-7  [001]  1.000000001: sr1_fault:     (ffffffff812ab0c0)\n"
            b"  a-7  [001]  1.000000002: sr1_fault_ret: (ffffffff812ab0c0 <- ffffffff812b0010) ret=0x4\n"
            b"  a-7  [001]  1.000000003: sched_switch: prev_comm=a (x)\n")
    out = symbols.rewrite(unpadded(text)).splitlines()
    assert out[0].endswith(b"sr1_fault: (do_swap_page+0x0/0x0)")
    assert out[1].endswith(b"sr1_fault_ret: (handle_mm_fault+0x10/0x0 <- do_swap_page) ret=0x4")
    assert out[2] == text.splitlines()[2]
    assert symbols.lookup(0x1000) is None


# --- the real files -----------------------------------------------------------------------------------------


@needs_trace_cmd
def test_trace_dat_gives_the_analysis_of_the_same_runs_ftrace_text():
    text, dat = read_any(SAME_RUN_TEXT), read_any(TRACE_DAT)
    assert dat.source_format == "trace.dat" and dat.meta.backend == "trace-cmd"
    # the file's own facts: the recording kernel (report --uname), the ring buffer's losses (report --stat)
    assert dat.meta.kernel_release == text.meta.kernel_release == "6.1.0-50-amd64"
    assert dat.meta.lost == {"ftrace_overrun": 0, "ftrace_dropped": 0} and dat.meta.lost_events == 0
    assert len(dat.events) == len(text.events) > 3000 and not dat.unknown_functions
    # the same events, bar their times (two kprobes on one function fire one after the other)
    columns = ["tid", "func", "phase", "entry", "folio", "retval", "nr"]
    rows = [sorted(map(str, c.events[columns].astype(object).itertuples(index=False))) for c in (text, dat)]
    assert rows[0] == rows[1]
    assert analysis(TRACE_DAT) == analysis(SAME_RUN_TEXT)


@needs_perf
def test_perf_data_gives_the_analysis_of_the_same_runs_ftrace_text():
    perf = read_any(PERF_DATA)
    assert perf.source_format == "perf.data" and perf.meta.backend == "perf"
    assert len(perf.events) > 3000 and not perf.unknown_functions and perf.skipped_lines == 0
    assert perf.events["pid"].ne(perf.events["tid"]).any()  # perf script gave pid/tid, not the tid alone
    assert analysis(PERF_DATA) == analysis(SAME_RUN_TEXT)


@needs_trace_cmd
@needs_perf
@pytest.mark.parametrize("path", [TRACE_DAT, PERF_DATA], ids=["trace.dat", "perf.data"])
def test_command_line_and_standard_input(path):
    done = swaprace("analyze", path, "--json")
    assert done.returncode == 0 and b'"windows": 193' in done.stdout, done.stderr.decode()
    with open(path, "rb") as fh:
        cat = subprocess.Popen(["cat"], stdin=fh, stdout=subprocess.PIPE)
        piped = swaprace("analyze", "-", "--json", stdin=cat.stdout)
        cat.wait()
    assert piped.returncode == 0 and piped.stdout == done.stdout.replace(str(path).encode(), b"<stdin>")
    with open(path, "rb") as fh:  # standard input redirected from the file itself: seekable, fd 0
        redirected = swaprace("analyze", "-", "--json", stdin=fh)
    assert redirected.returncode == 0 and redirected.stdout == piped.stdout, redirected.stderr.decode()


# --- bad input: one error line ------------------------------------------------------------------------------


@needs_trace_cmd
@pytest.mark.parametrize("cut", [2000, 500_000, -700], ids=["header", "middle", "tail"])
def test_truncated_trace_dat(tmp_path, cut):
    bad = tmp_path / "trace.dat"
    bad.write_bytes(TRACE_DAT.read_bytes()[:cut])
    assert "truncated or damaged" in one_error_line(swaprace("analyze", bad))


@needs_perf
@pytest.mark.parametrize("cut", [100, 200_000], ids=["header", "data"])
def test_truncated_perf_data(tmp_path, cut):
    bad = tmp_path / "perf.data"
    bad.write_bytes(PERF_DATA.read_bytes()[:cut])
    assert "`perf script` failed" in one_error_line(swaprace("analyze", bad))


@needs_trace_cmd
@needs_perf
@pytest.mark.parametrize("magic", [b"\x17\x08\x44tracing", b"PERFILE2"])
def test_garbage_after_the_magic(tmp_path, magic):
    bad = tmp_path / "capture"
    bad.write_bytes(magic + bytes(range(256)) * 8)
    line = one_error_line(swaprace("analyze", bad))
    assert "failed" in line or "truncated or damaged" in line


@pytest.mark.parametrize("path, tool", [(TRACE_DAT, "trace-cmd"), (PERF_DATA, "perf")])
def test_tool_not_installed(tmp_path, path, tool):
    line = one_error_line(swaprace("analyze", path, env={"PATH": str(tmp_path)}))
    assert f"needs `{tool}`, which is not installed" in line


def _stand_in(directory: Path, name: str, body: str) -> None:
    """A fake tool: a Python script named ``name`` first on PATH."""
    tool = directory / name
    tool.write_text(f"#!{sys.executable}\nimport sys, time\n{body}\n")
    tool.chmod(0o755)


def test_a_hung_tool_is_stopped_by_the_timeout(tmp_path):
    _stand_in(tmp_path, "trace-cmd", "time.sleep(60)")
    done = swaprace("analyze", TRACE_DAT, env={"PATH": str(tmp_path), "SWAPRACE_TOOL_TIMEOUT": "1"})
    assert "`trace-cmd` did not finish within 1 s" in one_error_line(done)


def test_a_failing_tool_says_why(tmp_path):
    _stand_in(tmp_path, "perf", "print('a warning', file=sys.stderr); print('the reason', file=sys.stderr); "
                                "sys.exit(3)")
    line = one_error_line(swaprace("analyze", PERF_DATA, env={"PATH": str(tmp_path)}))
    assert line.endswith("`perf script` failed (exit status 3): the reason")


def test_perf_script_text_is_streamed_into_the_perf_reader(tmp_path, monkeypatch):
    """A stand-in perf prints the synthetic perf-script fixture: the arguments asked for are the fields the
    reader needs, and the result equals reading that text directly."""
    text = FIXTURES / "aba-bookworm.perf"
    _stand_in(tmp_path, "perf", "args = sys.argv[1:]\n"
                                "assert args[:2] == ['script', '-f'] and '--ns' in args, args\n"
                                "assert 'trace:comm,pid,tid,cpu,time,event,trace' in args, args\n"
                                f"sys.stdout.write(open({str(text)!r}).read())")
    monkeypatch.setenv("PATH", str(tmp_path))
    via_perf = read_any(PERF_DATA)
    direct = read_any(text)
    assert via_perf.events.equals(direct.events) and via_perf.source_format == "perf.data"


def test_a_tool_error_is_a_swaprace_error(tmp_path, monkeypatch):
    _stand_in(tmp_path, "trace-cmd", "sys.exit(1)")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SwapraceError, match=r"`trace-cmd report` failed \(exit status 1\): no message"):
        read_any(TRACE_DAT)

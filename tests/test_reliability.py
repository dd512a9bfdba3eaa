"""Issue 11: nothing a user owns is lost, no input gets a traceback or a silently wrong answer, no hang.

Inputs go through the real command line (a subprocess where pipes, FIFOs and other users matter, click's
CliRunner elsewhere): each bad input must end in exactly one ``swaprace: error: ...`` line and a non-zero exit.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REAL = ROOT / "tests" / "fixtures" / "real"
TRACE = REAL / "ftrace-bookworm-6.1.trace"
PARQUET = REAL / "bcc-bookworm-6.1.parquet"


def swaprace(*args, stdin=None, timeout=120, **kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "swaprace", *map(str, args)], stdin=stdin, capture_output=True,
                          timeout=timeout, env=env, cwd=ROOT, check=False, **kw)


def one_error_line(result, *, code=None) -> str:
    """The single 'swaprace: error:' line of a failed run (and no traceback)."""
    err = result.stderr if isinstance(result.stderr, str) else result.stderr.decode()
    out = result.output if hasattr(result, "output") else err
    assert "Traceback" not in out + err, out + err
    assert result.returncode != 0 if hasattr(result, "returncode") else result.exit_code != 0
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("swaprace: error: "), lines
    return lines[0]


def analyze_json(*args, stdin=None):
    done = swaprace("analyze", *args, "--json", stdin=stdin)
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


# --- pipes ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", [TRACE, PARQUET], ids=["ftrace", "parquet"])
@pytest.mark.parametrize("name", ["-", "/dev/stdin"])
def test_a_pipe_is_read_whole(fixture, name):
    """`cat capture | swaprace analyze -`: same events and metadata as the file itself (the sniffer used to
    eat the first 64 KiB of a pipe)."""
    direct = analyze_json(fixture)
    with open(fixture, "rb") as fh:
        cat = subprocess.Popen(["cat"], stdin=fh, stdout=subprocess.PIPE)
        piped = analyze_json(name, stdin=cat.stdout)
        cat.wait()
    assert piped["events"] == direct["events"] and piped["lost_events"] == direct["lost_events"]
    assert piped == direct


def test_a_fifo_without_writer_does_not_hang(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    done = swaprace("analyze", fifo, timeout=60)
    assert "empty file" in one_error_line(done)


def test_a_fifo_with_a_writer_is_read(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    reader = subprocess.Popen([sys.executable, "-m", "swaprace", "analyze", str(fifo), "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    with open(fifo, "wb") as fh:  # blocks until the reader opened it
        fh.write(TRACE.read_bytes())
    out, err = reader.communicate(timeout=120)
    assert reader.returncode == 0, err.decode()
    assert json.loads(out)["events"] == analyze_json(TRACE)["events"]


# --- one clear line instead of a traceback ------------------------------------------------------------------


def cli(*args):
    """In-process run; returns an object with returncode/stderr like subprocess.run's."""
    from click.testing import CliRunner

    from swaprace.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args])

    class Done:
        returncode = result.exit_code
        stderr = result.stderr
        stdout = result.stdout
        output = result.output + (repr(result.exception) if result.exception and
                                  not isinstance(result.exception, SystemExit) else "")
    return Done()


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e300"])
@pytest.mark.parametrize("option", ["--since", "--until"])
def test_since_until_that_are_not_times(option, value):
    line = one_error_line(cli("analyze", TRACE, option, value))
    assert option in line


def jsonl(tmp_path, *lines, name="cap.jsonl"):
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines))
    return path


GOOD = {"ts_ns": 1, "tid": 1, "func": "swap_free", "phase": "call", "entry": 5}


def event(**change):
    return json.dumps({**GOOD, **change})


@pytest.mark.parametrize("change, words", [
    ({"ts_ns": 2**63}, "ts_ns"), ({"ts_ns": 10**30}, "ts_ns"), ({"ts_ns": -1}, "ts_ns"), ({"ts_ns": True}, "boolean"),
    ({"tid": 2**31}, "tid"), ({"pid": 2**40}, "pid"), ({"cpu": -3}, "cpu"),
    ({"entry": 2**64}, "entry"), ({"entry": -1}, "entry"), ({"entry": "0x1" + "0" * 16}, "entry"),
    ({"entry": 1.0}, "float"), ({"folio": False}, "boolean"),
    ({"role": None}, "role"), ({"role": "bogus"}, "role"), ({"phase": None}, "phase"),
], ids=lambda v: str(v)[:30])
def test_jsonl_values_that_do_not_fit_are_errors_not_wraps(tmp_path, change, words):
    line = one_error_line(cli("analyze", jsonl(tmp_path, event(**change))))
    assert words in line


def test_jsonl_hex_string_entries_are_accepted(tmp_path):
    done = cli("analyze", "--json", jsonl(tmp_path, event(entry="0x3a5"), event(entry="0xffffffffffffffff", ts_ns=2)))
    assert done.returncode == 0, done.output


@pytest.mark.parametrize("meta", ['"text"', "[1, 2]", '{"symbols": 5}', '{"lost": {"x": "many"}}',
                                  '{"lost_known": "yes"}', '{"duration_s": [1]}'])
def test_bad_jsonl_meta_line(tmp_path, meta):
    line = one_error_line(cli("analyze", jsonl(tmp_path, f'{{"meta": {meta}}}', event())))
    assert "metadata" in line


def test_deeply_nested_jsonl(tmp_path):
    line = one_error_line(cli("analyze", jsonl(tmp_path, '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")))
    assert "nested too deeply" in line or "not valid JSON" in line


def perf_line(tid="1235", sec="5170", value="0x4000000000012a"):
    return (f"stress  {tid} [001]  {sec}.262360: probe:swap_cache_get_folio: (ffffffff812c3a40) "
            f"entry={value}")


@pytest.mark.parametrize("kw, words", [({"value": "0x1" + "0" * 16}, "64 bits"), ({"value": "9" * 30}, "64 bits"),
                                       ({"tid": "99999999999"}, "tid"), ({"sec": "99999999999999"}, "ts_ns")])
def test_perf_values_that_do_not_fit(tmp_path, kw, words):
    path = tmp_path / "cap.perf"
    path.write_text(perf_line() + "\n" + perf_line(**kw) + "\n")
    line = one_error_line(cli("analyze", "--format", "perf", path))
    assert words in line


def test_ftrace_timestamps_that_do_not_fit_or_are_negative(tmp_path):
    good = "  stress-1234  [001] ..... 5170.262360: sr: (swap_cache_get_folio+0x4/0x1a0) entry=0x3a5"
    for bad in (good.replace("5170.262360", "99999999999.262360"), good.replace(" 5170.262360", " -5170.262360")):
        path = tmp_path / "cap.trace"
        path.write_text(good + "\n" + bad + "\n")
        assert "timestamp" in one_error_line(cli("analyze", path))


@pytest.mark.parametrize("header", ["[1, 2]", '"x"', '{"symbols": ["a"]}', "{not json"])
def test_swaprace_header_of_the_wrong_type(tmp_path, header):
    path = tmp_path / "cap.trace"
    path.write_text(f"# swaprace: {header}\n" + TRACE.read_text().split("\n", 1)[1])
    assert "metadata" in one_error_line(cli("analyze", path))


def _parquet_with(tmp_path, frame_change=None, footer=None):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(PARQUET)
    if frame_change:
        df = table.to_pandas()
        frame_change(df)
        table = pa.Table.from_pandas(df, preserve_index=False).replace_schema_metadata(
            {b"swaprace": table.schema.metadata[b"swaprace"]})
    if footer is not None:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"swaprace": footer})
    path = tmp_path / "cap.parquet"
    pq.write_table(table, path)
    return path


@pytest.mark.parametrize("footer", [b"not json", b"[]", b'{"symbols": 3}', b'"str"', b"[" * 50000])
def test_parquet_footer_metadata_that_is_not_ours(tmp_path, footer):
    assert "metadata" in one_error_line(cli("analyze", _parquet_with(tmp_path, footer=footer)))


def _set(column, value):
    def change(df):
        df[column] = df[column].astype(object)
        df.loc[0, column] = value
    return change


@pytest.mark.parametrize("column, value", [("role", None), ("role", "bogus"), ("phase", None), ("phase", "enter")])
def test_parquet_unknown_or_null_roles_and_phases_are_rejected(tmp_path, column, value):
    assert column in one_error_line(cli("analyze", _parquet_with(tmp_path, _set(column, value))))


def test_parquet_float_entries_are_rejected(tmp_path):
    def floats(df):
        df["entry"] = df["entry"].astype("float64")
    assert "entry" in one_error_line(cli("analyze", _parquet_with(tmp_path, floats)))
    import pyarrow.parquet as pq  # and with the pandas metadata that would cast the floats back on reading

    path = tmp_path / "cap.parquet"
    table = pq.read_table(PARQUET)
    pq.write_table(table.set_column(table.schema.get_field_index("entry"), "entry",
                                    table.column("entry").cast("float64")), path)
    assert "entry" in one_error_line(cli("analyze", path))


def test_unreadable_directory_is_one_line(tmp_path):
    """A capture inside a directory this user may not enter (root: run without its DAC capabilities)."""
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "cap.trace").write_bytes(TRACE.read_bytes())
    locked.chmod(0o700)
    prefix = []
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("root without setpriv: cannot drop CAP_DAC_OVERRIDE")
        os.chown(locked, 65534, 65534)
        prefix = ["setpriv", "--inh-caps=-all", "--bounding-set=-all", "--"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([*prefix, sys.executable, "-m", "swaprace", "analyze", str(locked / "cap.trace")],
                          capture_output=True, timeout=120, env=env, cwd=ROOT, check=False)
    assert "Permission denied" in one_error_line(done)


# --- files and security: one safe, atomic writer ------------------------------------------------------------


def _planted(tmp_path):
    from report_support import planted_capture

    from swaprace.capture import write_capture

    return write_capture(planted_capture(), tmp_path / "planted.parquet")


def test_report_refuses_another_users_directory(tmp_path):
    cap = _planted(tmp_path)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534) if os.geteuid() == 0 else pytest.skip("needs root to chown")
    line = one_error_line(cli("report", cap, "-o", theirs))
    assert "another user" in line and not list(theirs.iterdir())


def test_report_never_follows_a_planted_link(tmp_path):
    """A link planted under the old fixed temp name, or as report.html itself: the linked file is untouched."""
    cap = _planted(tmp_path)
    victim = tmp_path / "victim"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".report.html.tmp").symlink_to(victim)
    done = cli("report", cap, "-o", out)
    assert done.returncode == 0, done.output
    assert victim.read_text() == "precious" and (out / ".report.html.tmp").is_symlink()
    (out / "report.html").unlink()
    (out / "report.html").symlink_to(victim)
    assert "symbolic link" in one_error_line(cli("report", cap, "-o", out))
    assert victim.read_text() == "precious"


def test_a_failed_png_write_leaves_the_old_picture_and_no_temp(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from swaprace.analysis.report import style
    from swaprace.errors import SwapraceError

    png = tmp_path / "old.png"
    png.write_bytes(b"good old picture")

    def full_disk(self, fh, **kw):
        fh.write(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", full_disk)
    with pytest.raises(SwapraceError, match="No space left"):
        style.save_png(style.new_figure((100, 100)), png)
    assert png.read_bytes() == b"good old picture"
    assert [p.name for p in tmp_path.iterdir()] == ["old.png"]


def test_report_rerun_clears_its_stale_pictures(tmp_path):
    cap = _planted(tmp_path)
    out = tmp_path / "out"
    assert cli("report", cap, "-o", out).returncode == 0
    races = sorted(p.name for p in out.glob("race-*.png"))
    assert races
    (out / "mine.png").write_bytes(b"not the report's")
    assert cli("report", cap, "-o", out, "--max-timelines", "0").returncode == 0
    assert not list(out.glob("race-*.png"))
    assert (out / "mine.png").exists()  # only what the previous report listed is removed


@pytest.mark.parametrize("kind", ["windows", "rate", "reuse"])
def test_plot_refuses_to_overwrite_its_input(tmp_path, kind):
    cap = _planted(tmp_path)
    before = cap.read_bytes()
    assert "input" in one_error_line(cli("plot", kind, cap, "-o", cap))
    assert cap.read_bytes() == before


def test_plot_entry_refuses_to_overwrite_its_input(tmp_path):
    cap = _planted(tmp_path)
    assert "input" in one_error_line(cli("plot", "entry", "0x12a", cap, "-o", cap))


def test_plot_to_dev_null_is_one_line(tmp_path):
    cap = _planted(tmp_path)
    assert "not a regular file" in one_error_line(cli("plot", "windows", cap, "-o", "/dev/null"))
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")


# --- JSON: 64-bit values as hex strings ------------------------------------------------------------------


def test_json_entries_are_hex_strings_in_analyze_and_report(tmp_path):
    """Swap entries (type in the top bits) and folio pointers exceed 2**53: jq and JavaScript would round
    them; --json and report.json print them as "0x..." strings, and a JSONL reader takes them back."""
    cap = _planted(tmp_path)
    done = cli("analyze", cap, "--json")
    summary = json.loads(done.stdout)
    assert summary["races"] and all(isinstance(r["entry"], str) and r["entry"].startswith("0x")
                                    for r in summary["races"])
    assert cli("report", cap, "-o", tmp_path / "out").returncode == 0
    index = json.loads((tmp_path / "out" / "report.json").read_text())
    for race in index["races"]:
        assert race["entry"].startswith("0x")
    folios = [r["folio"] for fig in index["figures"] for r in fig["data"].get("residency", []) if r["folio"]]
    assert folios and all(isinstance(f, str) and int(f, 16) >= 0 for f in folios)
    big = (31 << 58) | 0x12A  # swap type 31 in the top bits: not exact as a double
    done = cli("analyze", "--entry", hex(big), cap, "--json")  # hex on input, exact on output
    assert done.returncode == 0 and json.loads(done.stdout)["filters"]["entry"] == hex(big)


def test_hexify_leaves_counts_alone():
    from swaprace.jsonout import dumps

    out = json.loads(dumps({"entries": 4, "entry": 2**64 - 1, "folios": [1, 2], "races": [{"entry": 5}]}))
    assert out == {"entries": 4, "entry": "0xffffffffffffffff", "folios": ["0x1", "0x2"], "races": [{"entry": "0x5"}]}


# --- signals ------------------------------------------------------------------------------------------------


class _FakeDetector:
    """Just enough of the bcc backend for `watch`: counters, races that arrive, a record of what was called."""

    def __init__(self):
        self.stopped = False
        self.on_race = None
        self.kept = []  # race records the backend holds until drained (as BccBackend._race_chunks)

    def check(self):
        return None

    def start(self, plan):
        pass

    def stop(self):
        self.stopped = True

    def counters(self):
        return {"hits": {}, "windows": 0, "releases": 0, "reuses": 0, "races_recovered": len(self.kept),
                "races_stale_install": 0}

    def losses(self):
        return {}

    def poll(self, timeout_ms=0):
        import time

        self.kept.append(b"race")
        time.sleep(timeout_ms / 1000)

    def drain_races(self):
        drained, self.kept = self.kept, []
        return drained


def test_watch_drains_its_race_records():
    from swaprace.probes.backend import ProbePlan
    from swaprace.probes.watch import WatchOptions, watch

    backend = _FakeDetector()
    watch(ProbePlan(resolutions={}), WatchOptions(interval=0.05, count=5), lambda _line: None, backend=backend)
    assert len(backend.kept) <= 2  # what arrived since the last interval, not the whole run


@pytest.mark.parametrize("sig", ["SIGHUP", "SIGTERM"])
def test_watch_stops_cleanly_on_sighup_like_sigterm(sig):
    import signal
    import threading

    from swaprace.probes.backend import ProbePlan
    from swaprace.probes.watch import WatchOptions, watch

    backend = _FakeDetector()
    before = signal.getsignal(getattr(signal, sig))
    timer = threading.Timer(0.3, os.kill, (os.getpid(), getattr(signal, sig)))
    timer.start()
    try:
        watch(ProbePlan(resolutions={}), WatchOptions(interval=0.05), lambda _line: None, backend=backend)
    finally:
        timer.cancel()
    assert backend.stopped and signal.getsignal(getattr(signal, sig)) == before


def test_doctor_finds_and_cleans_a_killed_stress_runs_state(tmp_path, monkeypatch):
    dead = subprocess.Popen(["true"])
    dead.wait()
    knob = tmp_path / "pages_to_scan"
    knob.write_text("2000")
    state = tmp_path / "state"
    state.mkdir()
    (state / "stress-state.json").write_text(json.dumps(
        {"pid": dead.pid, "changes": [{"kind": "ksm", "path": str(knob), "old": "100"}]}))
    monkeypatch.setenv("SWAPRACE_STATE_DIR", str(state))
    report = json.loads(cli("doctor", "--json").stdout)
    assert any("stress-state.json" in s for s in report["stress_leftovers"])
    assert any("swaprace stress" in p for p in report["problems"])
    done = cli("doctor", "--clean", "--json")
    assert done.returncode == 0, done.output
    cleaned = json.loads(done.stdout)
    assert knob.read_text() == "100" and not (state / "stress-state.json").exists()
    assert any("ksm" in c for c in cleaned["cleaned"]) and cleaned["stress_leftovers"] == []


@pytest.mark.parametrize("comm", ["pay$", "a$b$c", r"$\frac{1}{0}$", "x$^$"])
def test_plot_entry_with_a_dollar_in_a_task_name(tmp_path, comm):
    """Task names are any bytes a process chose: a "$" must not be read as mathtext."""
    import re

    text = (ROOT / "tests" / "fixtures" / "aba-bookworm.trace").read_text()
    path = tmp_path / "cap.trace"
    path.write_text(re.sub(r"(?m)^(\s*)(\S+)-(\d+)(\s+\[)", lambda m: f"{m[1]}{comm}-{m[3]}{m[4]}", text))
    done = cli("plot", "entry", "0x3a5", path, "-o", tmp_path / "e.png")
    assert done.returncode == 0, done.output


# --- say it when the answer is empty for a reason ------------------------------------------------------------

ABA = ROOT / "tests" / "fixtures" / "aba-bookworm.trace"


def warned(*args):
    done = cli("analyze", *args, "--json")
    assert done.returncode == 0, done.output
    listed = json.loads(done.stdout)["warnings"]
    printed = [ln.removeprefix("swaprace: warning: ") for ln in done.stderr.splitlines()
               if ln.startswith("swaprace: warning: ")]
    assert printed == listed
    return listed


def test_no_warnings_on_a_sound_capture():
    assert warned(ABA) == []


@pytest.mark.parametrize("args, words", [
    (["--entry", "0x1"], "--entry matches nothing"), (["--tid", "99999"], "--tid matches nothing"),
    (["--since", "6000", "--until", "5000"], "after --until"), (["--since", "9000"], "no event between"),
])
def test_filters_that_match_nothing_say_so(args, words):
    assert any(words in w for w in warned(ABA, *args))


def test_calls_without_returns_say_so(tmp_path):
    path = tmp_path / "calls.trace"
    path.write_text("".join(ln + "\n" for ln in ABA.read_text().splitlines() if " <- " not in ln))
    assert any("no return events" in w for w in warned(path))


def test_duplicated_lines_say_so(tmp_path):
    text = ABA.read_text()
    body = [ln for ln in text.splitlines() if not ln.startswith("#")]
    path = tmp_path / "twice.trace"
    path.write_text(text + "\n".join(body[:5]) + "\n")
    assert any("appear twice" in w for w in warned(path))


def test_a_mostly_unparseable_file_says_so(tmp_path):
    path = tmp_path / "junk.trace"
    path.write_text(ABA.read_text() + "".join(f"   junk-{i} [000] ..... 1.0: not a probe line\n" for i in range(200)))
    assert any("were not swap-path events" in w for w in warned(path))

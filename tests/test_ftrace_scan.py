"""The C field scanner of the ftrace text reader (swaprace/readers/ftrace_scan.c) against the numpy path.

Both paths must give identical event tables, counts and metadata on every committed ftrace capture, on synthetic
text, on odd hand-written lines and on damaged captures; a missing compiler falls back to numpy silently; and a
scanner library another user could have replaced is never loaded.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swaprace import native
from swaprace.errors import SwapraceError
from swaprace.readers import _blocks, ftrace_scan, read_any
from swaprace.readers.ftrace_text import ARG_NAMES, parse_ftrace_bytes

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from test_ftrace_reference import _EDIT, _SOURCE, ODD, _mutate  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
TRACES = sorted(FIXTURES.glob("**/*.trace"))
EXAMPLES = int(os.environ.get("SWAPRACE_FUZZ_EXAMPLES", "40"))

needs_compiler = pytest.mark.skipif(native.find_compiler() is None, reason="no C compiler")


def parse(data: bytes, scanner: str, symbols=None):
    os.environ[ftrace_scan.ENV] = scanner
    try:
        return parse_ftrace_bytes(data, symbols)
    finally:
        del os.environ[ftrace_scan.ENV]


def assert_same(data: bytes, symbols=None) -> None:
    old, got = parse(data, "numpy", symbols), parse(data, "c", symbols)
    pd.testing.assert_frame_equal(old.events, got.events)
    assert {k: v for k, v in vars(got).items() if k != "events"} == \
        {k: v for k, v in vars(old).items() if k != "events"}


def scanned(data: bytes) -> bool:
    """Whether the C scanner reads ``data`` itself (not handing the block to numpy)."""
    return ftrace_scan.scan(data if data.endswith(b"\n") else data + b"\n", ARG_NAMES) is not None


def test_every_fixture_is_covered():
    names = {p.name for p in TRACES}
    assert {"aba-bookworm.trace", "ftrace-bookworm-6.1.trace", "ftrace-trixie-bpo-7.3.trace"} <= names


@needs_compiler
@pytest.mark.parametrize("path", TRACES, ids=[p.stem for p in TRACES])
def test_fixtures_scan_identically(path):
    data = path.read_bytes()
    assert scanned(data)  # the fast path really ran
    assert_same(data)
    for block in _blocks(io.BytesIO(data)):
        assert_same(block)
    for cut in (1000, 77_777):
        at = data.rfind(b"\n", 0, cut) + 1
        assert_same(data[:at])
        assert_same(data[at:])


@needs_compiler
@pytest.mark.parametrize("path", TRACES, ids=[p.stem for p in TRACES])
def test_fixtures_read_end_to_end_identically(path, monkeypatch):
    monkeypatch.setenv(ftrace_scan.ENV, "numpy")
    old = read_any(path)
    monkeypatch.setenv(ftrace_scan.ENV, "c")
    got = read_any(path)
    pd.testing.assert_frame_equal(old.events, got.events)
    assert (old.skipped_lines, old.unknown_functions, old.meta.to_json()) == \
        (got.skipped_lines, got.unknown_functions, got.meta.to_json())


@needs_compiler
def test_synthetic_text_scans_identically():
    from synth import synthetic_events, to_ftrace_text

    data = to_ftrace_text(synthetic_events(20_000, seed=5))
    assert scanned(data)
    assert_same(data)


@needs_compiler
def test_odd_lines_scan_identically():
    data = "\n".join(ODD).encode("utf-8", "surrogateescape")
    assert_same(data)
    assert_same(data, {"some_other_fn": "swap_put"})
    for line in ODD:
        assert_same(line.encode("utf-8", "surrogateescape"))


@needs_compiler
@pytest.mark.parametrize("line", [
    b" a-1 [000] ..... 1000000000001.5: p: (swap_free+0x0/0x40) entry=0x1",  # seconds beyond numpy's window
    b" a-1 (123456789) [000] ..... 1.5: p: (swap_free+0x0/0x40) entry=0x1",  # tgid beyond numpy's window
])
def test_numbers_the_numpy_path_truncates_go_to_numpy(line):
    assert not scanned(line)
    assert_same(line)


@needs_compiler
@pytest.mark.parametrize("line", [
    b"-1[0]1:: (swap_free)",  # the shortest event line: the row capacity's bound
    b"-1[0]1:: (swap_free) entry=0x1 " + b"x=1 " * 40,  # more arguments than are read
    b" \x00a\xff-1 [0] 1.000000001: p: (swap_free+0x0/0x40) entry=" + b"9" * 40,  # NUL, non-UTF-8, huge
    b" a-1 [000] ..... 1.5: p: (" + b" " * 40 + b"x <-" + b" " * 40 + b"swap_free) ret=0x" + b"f" * 17,
    b"C" * 3 + b"#" * 5,
    b"#",
    b"",
])
def test_edge_lines_scan_identically(line):
    for data in (line, (line + b"\n") * 997, (line + b"\r\n") * 3, b"#\n" * 501 + line):
        assert_same(data)


@needs_compiler
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(edits=st.lists(_EDIT, min_size=1, max_size=12))
def test_damaged_captures_scan_identically(edits):
    assert_same(_mutate(_SOURCE, edits))


# --- building and loading ------------------------------------------------------------------------------------


@pytest.fixture
def fresh_scanner(monkeypatch, tmp_path):
    """A scanner built and loaded anew, into a private cache."""
    monkeypatch.setenv("SWAPRACE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(ftrace_scan, "_loaded", {})
    return tmp_path / "cache"


def test_no_compiler_falls_back_to_numpy(monkeypatch, fresh_scanner):
    monkeypatch.setattr(ftrace_scan, "build_shared", lambda *a, **k: None)
    data = (FIXTURES / "aba-bookworm.trace").read_bytes()
    assert ftrace_scan.scan(data, ARG_NAMES) is None
    got = parse_ftrace_bytes(data)
    assert len(got.events) == 37
    monkeypatch.setenv(ftrace_scan.ENV, "c")
    with pytest.raises(SwapraceError, match="not available: no C compiler"):
        parse_ftrace_bytes(data)


def test_failed_build_falls_back_to_numpy(monkeypatch, fresh_scanner, tmp_path):
    bad = tmp_path / "cc"
    bad.write_text("#!/bin/sh\necho 'cc: broken' >&2\nexit 1\n")
    bad.chmod(0o755)
    monkeypatch.setenv("CC", str(bad))
    data = (FIXTURES / "aba-bookworm.trace").read_bytes()
    assert ftrace_scan.scan(data, ARG_NAMES) is None
    assert len(parse_ftrace_bytes(data).events) == 37


def test_unknown_scanner_setting_is_an_error(monkeypatch):
    monkeypatch.setenv(ftrace_scan.ENV, "fortran")
    with pytest.raises(SwapraceError, match="expected c, numpy or auto"):
        parse_ftrace_bytes(b"")


@needs_compiler
def test_scanner_writable_by_another_user_is_not_loaded(monkeypatch, fresh_scanner):
    path = native.build_shared(ftrace_scan.SOURCE, "ftrace_scan", ftrace_scan.CFLAGS, "the ftrace scanner")
    assert path is not None and native.untrusted(path) is None
    ftrace_scan._Lib(path, ARG_NAMES)  # loads
    path.chmod(0o777)  # anyone may now replace the code root would load
    with pytest.raises(SwapraceError, match="not loading the ftrace scanner: .* writable by group or others"):
        ftrace_scan._Lib(path, ARG_NAMES)
    # the reader builds a private copy instead, and still scans
    lib = ftrace_scan.load(ARG_NAMES)
    assert lib is not None
    assert ftrace_scan.scan((FIXTURES / "aba-bookworm.trace").read_bytes(), ARG_NAMES) is not None
    if os.geteuid() == 0:
        path.chmod(0o755)
        os.chown(path, 65534, 65534)
        assert "belongs to uid" in (native.untrusted(path) or "")
        with pytest.raises(SwapraceError, match="not loading"):
            ftrace_scan._Lib(path, ARG_NAMES)


@needs_compiler
def test_layout_mismatch_is_refused(fresh_scanner):
    path = native.build_shared(ftrace_scan.SOURCE, "ftrace_scan", ftrace_scan.CFLAGS, "the ftrace scanner")
    assert path is not None
    with pytest.raises(SwapraceError, match="layout"):
        ftrace_scan._Lib(path, ARG_NAMES[:-1])


_TOKENS = [b" ", b"  ", b" " * 17, b" " * 33, b"-", b"1", b"42", b"0", b"9" * 7, b"9" * 9, b"9" * 13, b"9" * 21,
           b"[", b"]", b"(", b")", b":", b": (", b".", b"<-", b"<", b"+", b"=", b"0x", b"ff", b"f" * 17, b"$",
           b"entry", b" entry=", b" nr=", b" ci_slots=", b"swap_free", b"do_swap_page", b"#", b"C", b"\r", b"\n",
           b"\x00", b"\xff", b"\xe9", b"a-1 [000] ..... 1.5: p: (swap_free+0x0/0x40) entry=0x1\n",
           b"a-1 (  7) [001] 2.25: r: (x+0x1/0x2 <- folio_alloc_swap) ret=0x400\n"]


@needs_compiler
@settings(max_examples=EXAMPLES * 5, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(pieces=st.lists(st.sampled_from(_TOKENS), max_size=80))
def test_token_soup_scans_identically(pieces):
    """Lines assembled from the delimiters, digits and names the scanner looks at, in any order."""
    assert_same(b"".join(pieces))

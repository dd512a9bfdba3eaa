"""The ftrace text parser gives exactly what the implementation before the speed work gave.

The old parser is kept as the reference in benchmarks/ftrace_text_ref.py (the benchmark times both). Every
committed real capture, a synthetic one, hand-written odd lines and damaged real captures (the fuzz mutations)
must parse to an identical event table (``assert_frame_equal``) and identical counts, losses and metadata.
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

from swaprace.readers import _blocks, read_ftrace
from swaprace.readers import ftrace_text as new

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import ftrace_text_ref as ref  # noqa: E402

REAL = Path(__file__).parent / "fixtures" / "real"
TRACES = sorted(REAL.glob("*.trace"))
EXAMPLES = int(os.environ.get("SWAPRACE_FUZZ_EXAMPLES", "40"))


def assert_same(data: bytes, symbols=None) -> None:
    old, got = ref.parse_ftrace_bytes(data, symbols), new.parse_ftrace_bytes(data, symbols)
    pd.testing.assert_frame_equal(old.events, got.events)
    rest = {k: v for k, v in vars(old).items() if k != "events"}
    assert {k: v for k, v in vars(got).items() if k != "events"} == rest


@pytest.mark.parametrize("path", TRACES, ids=[p.stem for p in TRACES])
def test_real_captures_parse_identically(path):
    data = path.read_bytes()
    assert_same(data)
    for block in _blocks(io.BytesIO(data)):
        assert_same(block)
    for cut in (1000, 77_777):  # blocks of whole lines, as read_any and the live backend give them
        at = data.rfind(b"\n", 0, cut) + 1
        assert_same(data[:at])
        assert_same(data[at:])


def test_real_capture_read_end_to_end_identically(monkeypatch):
    import swaprace.readers as readers

    path = REAL / "ftrace-bookworm-6.1.trace"
    got = read_ftrace(path, workers=2)
    monkeypatch.setattr(readers, "parse_ftrace_bytes", ref.parse_ftrace_bytes)
    old = read_ftrace(path, workers=2)
    pd.testing.assert_frame_equal(old.events, got.events)
    assert (old.skipped_lines, old.unknown_functions, old.meta.to_json()) == \
        (got.skipped_lines, got.unknown_functions, got.meta.to_json())


def test_synthetic_capture_parses_identically():
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from synth import synthetic_events, to_ftrace_text

    assert_same(to_ftrace_text(synthetic_events(20_000, seed=3)))


ODD = [
    " a-1 [000] ..... 1.000001: p: (swap_free+0x0/0x40) entry=0x3 entry=0x4 entry=5",  # a name twice
    " a-1 [000] ..... 1.000002: p: (swap_free+0x0/0x40) xentry=0x3 arg1=0x9",  # names that only end alike
    " a-1 [000] ..... 1.000003: p: (swap_free+0x0/0x40) arg1=0x7 nr=-3 psz=18446744073709551615",
    " a-1 [000] ..... 1.000004: p: (swap_free+0x0/0x40) entry=0x12345678123456789",  # too long
    " a-1 [000] ..... 1.000005: p: (swap_free+0x0/0x40) entry=",
    " a-1 [000] ..... 1.000006: p: (swap_free+0x0/0x40) " + " ".join(f"a{i}=0x{i}" for i in range(15)),
    " a-1 [000] ..... 1.000007: p: (__swap_cluster_free_entries+0x4/0x200) si_type=1 cinfo=0xffff1000 "
    "ci=0xffff1090 ci_off=5 ci_size=48 ci_slots=512 nr=4",
    " t-1 [000] ..... 1.000008: p: (folio_put_swap+0x4/0x80) entry=0x100 folio=0xffffea0000001000 "
    "page=0xffffea0000001080 psz=64 fhead=1 forder=2",
    " r-3 [000] ..... 1.000009: p: (folio_alloc_swap+0x4/0x80) folio=0xffffea0000003000 fhead=1 forder=9",
    " r-3 [000] ..... 1.000010: r: (add_to_swap+0x20/0x80 <- folio_alloc_swap) ret=0x400",
    " r-3 [000] ..... 1.000011: r: (add_to_swap+0x20/0x80 <- folio_alloc_swap) ret=-12",
    " my task-with-dashes-77   (  70) [001] d..1.  2.5: p: (do_swap_page+0x0/0x9) ",
    "qemu-system-x86-25801   [001]   2203.759914: p: (swap_free.cold+0x0/0x40) ci_slots=0x9",
    " odd\xe9name-5 [000] ..... 1.000012: p: (swap_free+0x0/0x40) entry=0x1",
    " a-1 [000] ..... 99999999999.000013: p: (swap_free+0x0/0x40) entry=0x1",
    " a-1 [000] ..... -1.000014: p: (swap_free+0x0/0x40) entry=0x1",
    " a-1 [000] ..... 1.0000000001: p: (swap_free+0x0/0x40) entry=0x1",
    " a-1 [000] ..... 123456: p: (swap_free+0x0/0x40) entry=0x1",
    " a-1 [000] ..... 1.000015: p: (some_other_fn+0x0/0x40) entry=0x1",
    "CPU:1 [LOST 12 EVENTS]",
    "# entries-in-buffer/entries-written: 10/30   #P:2",
    "garbage (: ( ) = = [0] -",
    "",
    " a-1 [000] ..... 1.000016: p: (swap_free+0x0/0x40) entry=0x2\r",
]


def test_odd_lines_parse_identically():
    data = "\n".join(ODD).encode("utf-8", "surrogateescape")
    assert_same(data)
    assert_same(data, {"some_other_fn": "swap_put"})
    for line in ODD:
        assert_same(line.encode("utf-8", "surrogateescape"))


_PIECES = [b"\x00", b"\xff\xfe", b"\xe9", b"\n", b"\r\n", b" ", b"-", b":", b"(", b")", b"[", b"]", b"<-", b"=",
           b"0x", b"99999999999999999999999", b"-1", b"entry=", b" nr=", b"ci_slots=", b"# swaprace: []",
           b"CPU:0 [LOST 99 EVENTS]", b": (", b"+0x0/0x1)"]
_EDIT = st.tuples(st.sampled_from(["flip", "insert", "delete", "dup_line"]), st.floats(0, 1, allow_nan=False),
                  st.one_of(st.sampled_from(_PIECES), st.binary(min_size=1, max_size=12)), st.integers(1, 64))
_SOURCE = b"".join(b"".join(p.read_bytes().splitlines(keepends=True)[:300]) for p in TRACES)


def _mutate(data: bytes, edits) -> bytes:
    buf = bytearray(data)
    for kind, where, payload, size in edits:
        at = int(where * len(buf)) if buf else 0
        if kind == "flip" and buf:
            buf[at % len(buf)] ^= payload[0] or 1
        elif kind == "insert":
            buf[at:at] = payload
        elif kind == "delete":
            del buf[at:at + size]
        else:
            start = buf.rfind(b"\n", 0, at) + 1
            end = buf.find(b"\n", at)
            end = len(buf) if end < 0 else end + 1
            buf[end:end] = buf[start:end] * min(size, 8)
    return bytes(buf)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(edits=st.lists(_EDIT, min_size=1, max_size=12))
def test_damaged_real_captures_parse_identically(edits):
    assert_same(_mutate(_SOURCE, edits))

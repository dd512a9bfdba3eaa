"""Fuzzing every reader with mutations of real captures: any input ends in a capture or one SwapraceError.

Each test takes a real capture (tests/fixtures/real/, the perf excerpt beside them), damages it the way files
get damaged -- bytes flipped, inserted, deleted, lines duplicated or cut, numbers blown up, metadata replaced
-- and reads it. Anything but a result or a :class:`SwapraceError` (a traceback for the user) fails, and so does
memory that grows beyond a bound. The CI budget is a few seconds per reader; for a longer hunt::

    SWAPRACE_FUZZ_EXAMPLES=5000 python3 -m pytest tests/test_fuzz_readers.py -p no:cacheprovider
"""

from __future__ import annotations

import io
import json
import os
import resource
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from swaprace.events import COLUMNS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swaprace.errors import SwapraceError
from swaprace.native import find_compiler
from swaprace.readers import ftrace_scan, read_any

FIXTURES = Path(__file__).parent / "fixtures"
REAL = FIXTURES / "real"
EXAMPLES = int(os.environ.get("SWAPRACE_FUZZ_EXAMPLES", "25"))
MAX_RSS_MIB = 3072  # a damaged file must not make a reader balloon

FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 25, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


def _excerpt(path: Path, lines: int) -> bytes:
    """The header and the first ``lines`` lines: small inputs keep each example fast."""
    return b"".join(path.read_bytes().splitlines(keepends=True)[:lines])


FTRACE = _excerpt(REAL / "ftrace-trixie-bpo-7.3.trace", 600)
PERF = (FIXTURES / "aba-bookworm.perf").read_bytes()


def _jsonl_fixture() -> bytes:
    from swaprace.capture import read_capture
    from swaprace.jsonout import dumps

    cap = read_capture(REAL / "bcc-bookworm-6.1.parquet")
    rows = cap.events.head(300).astype(object).where(cap.events.head(300).notna(), None)
    lines = [json.dumps({"meta": json.loads(cap.meta.to_json())})]
    lines += [dumps({k: v for k, v in rec.items() if k not in ("swap_type", "swap_offset")})
              for rec in rows.to_dict("records")]
    return ("\n".join(lines) + "\n").encode()


JSONL = _jsonl_fixture()

_INTERESTING = [b"\x00", b"\xff\xfe", b"\xe9", b"\n", b"\r\n", b" ", b"-", b":", b"(", b")", b"[", b"]", b"<-",
                b"=", b"0x", b"99999999999999999999999", b"-1", b"1e308", b"nan", b"true", b"null", b"{", b"}",
                b"\"", b"$", b"# swaprace: []", b"# swaprace: {\"symbols\": 1}", b"CPU:0 [LOST 99999999999 EVENTS]"]

_edit = st.tuples(
    st.sampled_from(["flip", "insert", "delete", "dup_line", "cut"]),
    st.floats(0, 1, allow_nan=False),
    st.one_of(st.sampled_from(_INTERESTING), st.binary(min_size=1, max_size=12)),
    st.integers(1, 64),
)


def mutate(data: bytes, edits) -> bytes:
    buf = bytearray(data)
    for kind, where, payload, size in edits:
        at = int(where * len(buf)) if buf else 0
        if kind == "flip" and buf:
            buf[at % len(buf)] ^= payload[0] or 1
        elif kind == "insert":
            buf[at:at] = payload
        elif kind == "delete":
            del buf[at:at + size]
        elif kind == "dup_line":
            start = buf.rfind(b"\n", 0, at) + 1
            end = buf.find(b"\n", at)
            end = len(buf) if end < 0 else end + 1
            buf[end:end] = buf[start:end] * min(size, 8)
        elif kind == "cut":
            del buf[at:]
    return bytes(buf)


def read_or_error(path: Path, fmt: str | None = None):
    """The capture, or the SwapraceError's message."""
    try:
        capture = read_any(path, fmt)
    except SwapraceError as exc:
        assert str(exc).strip() and "\n" not in str(exc).strip(), repr(str(exc))
        return str(exc)
    assert len(capture.events.columns) == len(COLUMNS)  # a result: the model's table
    return capture


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.fixture(autouse=True)
def bounded_memory():
    yield
    assert _rss_mib() < MAX_RSS_MIB, f"reader memory grew to {_rss_mib():.0f} MiB"


def _with_scanner(scanner: str, path: Path, fmt: str | None):
    os.environ[ftrace_scan.ENV] = scanner
    try:
        return read_or_error(path, fmt)
    finally:
        del os.environ[ftrace_scan.ENV]


@FUZZ
@given(edits=st.lists(_edit, max_size=6), fmt=st.sampled_from([None, "ftrace"]))
def test_ftrace_text_reader(tmp_path_factory, edits, fmt):
    """On both field scanners (C where a compiler is, and numpy), with the same result or the same error."""
    path = tmp_path_factory.mktemp("f") / "cap.trace"
    path.write_bytes(mutate(FTRACE, edits))
    numpy_way = _with_scanner("numpy", path, fmt)
    if find_compiler() is None:
        return
    c_way = _with_scanner("c", path, fmt)
    assert type(c_way) is type(numpy_way), (c_way, numpy_way)
    if isinstance(numpy_way, str):
        assert c_way == numpy_way
        return
    pd.testing.assert_frame_equal(numpy_way.events, c_way.events)
    assert (numpy_way.skipped_lines, numpy_way.unknown_functions, numpy_way.meta.to_json()) == \
        (c_way.skipped_lines, c_way.unknown_functions, c_way.meta.to_json())


@FUZZ
@given(edits=st.lists(_edit, max_size=6), fmt=st.sampled_from([None, "perf"]))
def test_perf_script_reader(tmp_path_factory, edits, fmt):
    path = tmp_path_factory.mktemp("p") / "cap.perf"
    path.write_bytes(mutate(PERF, edits))
    read_or_error(path, fmt)


#: trace.dat and perf.data go through their tools (one process per example, two for trace.dat): fewer examples,
#: and a tool that a damaged file sends into a loop must not hold CI for the default half hour.
TOOL_FUZZ = settings(FUZZ, max_examples=max(EXAMPLES // 5, 4))
_binary_edit = st.tuples(st.sampled_from(["flip", "insert", "delete", "cut"]), st.floats(0, 1, allow_nan=False),
                         st.binary(min_size=1, max_size=12), st.integers(1, 4096))


@pytest.mark.parametrize("tool,fixture,name", [("trace-cmd", "tracecmd-bookworm-6.1.dat", "trace.dat"),
                                               ("perf", "perf-bookworm-6.1.data", "perf.data")])
@TOOL_FUZZ
@given(edits=st.lists(_binary_edit, min_size=1, max_size=4))
def test_tool_format_reader(tmp_path_factory, monkeypatch, tool, fixture, name, edits):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} not installed")
    monkeypatch.setenv("SWAPRACE_TOOL_TIMEOUT", "60")
    path = tmp_path_factory.mktemp("d") / name
    path.write_bytes(mutate((REAL / fixture).read_bytes(), edits))
    read_or_error(path)


_json_value = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(),
                        st.text(max_size=8), st.sampled_from(["0x3a5", "0xffffffffffffffffff", "-0x1", "call",
                                                               "return", "lookup", "fault"]),
                        st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(),
                                                                             max_size=2))


@FUZZ
@given(edits=st.lists(_edit, max_size=4),
       fields=st.lists(st.tuples(st.integers(1, 300), st.sampled_from(
           ["ts_ns", "cpu", "pid", "tid", "comm", "func", "role", "phase", "entry", "folio", "retval", "meta",
            "symbols", "lost"]), _json_value), max_size=4))
def test_jsonl_reader(tmp_path_factory, edits, fields):
    lines = JSONL.decode().splitlines()
    for row, key, value in fields:  # values of the wrong type, size or sign in real records
        obj = json.loads(lines[row % len(lines)])
        target = obj["meta"] if isinstance(obj.get("meta"), dict) else obj
        target[key] = value
        lines[row % len(lines)] = json.dumps(obj)
    path = tmp_path_factory.mktemp("j") / "cap.jsonl"
    path.write_bytes(mutate(("\n".join(lines) + "\n").encode(), edits))
    read_or_error(path, "jsonl" if edits else None)


_arrow_column = st.sampled_from(["ts_ns", "cpu", "pid", "tid", "comm", "func", "role", "phase", "entry", "folio",
                                 "retval"])
_arrow_values = st.sampled_from(["float", "negative", "huge", "null", "bool", "string", "drop"])


def _damage_table(table: pa.Table, column: str, how: str) -> pa.Table:
    i = table.schema.get_field_index(column)
    n = len(table)
    if how == "drop":
        return table.remove_column(i)
    values = {"float": pa.array([1.5] * n), "negative": pa.array([-1] * n, pa.int64()),
              "huge": pa.array([2**64 - 1] * n, pa.uint64()), "null": pa.nulls(n, table.schema.field(i).type),
              "bool": pa.array([True] * n), "string": pa.array(["bogus"] * n)}[how]
    return table.set_column(i, column, values)


@FUZZ
@given(meta=st.one_of(st.none(), st.binary(max_size=40), st.sampled_from(
           [b"[]", b"{}", b'{"symbols": 5}', b'{"lost": {"x": -1}}', b'{"lost_known": "no"}', b"null", b"\xff",
            b'{"format_version": 1e400}', b"[" * 10000])),
       damage=st.lists(st.tuples(_arrow_column, _arrow_values), max_size=2),
       edits=st.lists(_edit, max_size=2))
def test_parquet_reader_and_its_metadata(tmp_path_factory, meta, damage, edits):
    table = pq.read_table(REAL / "bcc-bookworm-6.1.parquet").slice(0, 400)
    for column, how in damage:
        if column in table.schema.names:
            table = _damage_table(table, column, how)
    if meta is not None:
        table = table.replace_schema_metadata({b"swaprace": meta})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    path = tmp_path_factory.mktemp("q") / "cap.parquet"
    path.write_bytes(mutate(sink.getvalue(), edits))
    read_or_error(path, "parquet" if edits else None)

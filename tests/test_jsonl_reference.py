"""The streaming JSON Lines reader gives what the reader before the speed work gave, in bounded memory.

The old reader is kept as the reference in benchmarks/jsonl_ref.py (the benchmark times both). Real records,
damaged the way the fuzz tests damage them, must read to an identical event table, metadata and skip count,
or fail with the identical error line. Memory is measured with tracemalloc (numpy's buffers included).
"""

from __future__ import annotations

import io
import json
import sys
import tracemalloc
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

import swaprace.readers.jsonl as jsonl
from swaprace.errors import SwapraceError
from swaprace.readers import read_jsonl
from test_fuzz_readers import FUZZ, JSONL, _edit, _json_value, mutate

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import jsonl_ref as ref  # noqa: E402

GOAL_BYTES_PER_EVENT = 200  # the speed goal for streamed JSON Lines


def _outcome(read, path: Path):
    try:
        return read(path)
    except SwapraceError as exc:
        return str(exc)


def assert_same(path: Path) -> None:
    old, new = _outcome(ref.read_jsonl, path), _outcome(read_jsonl, path)
    if isinstance(old, str) or isinstance(new, str):
        assert old == new
        return
    pd.testing.assert_frame_equal(new.events, old.events)
    assert (new.meta, new.skipped_lines) == (old.meta, old.skipped_lines)


@FUZZ
@given(edits=st.lists(_edit, max_size=4),
       fields=st.lists(st.tuples(st.integers(1, 300), st.sampled_from(
           ["ts_ns", "cpu", "pid", "tid", "comm", "func", "role", "phase", "entry", "folio", "retval"]),
           _json_value), max_size=4),
       drop=st.lists(st.sampled_from(["pid", "comm", "cpu", "role", "entry", "folio", "retval"]), max_size=2))
def test_same_as_the_reader_before(tmp_path_factory, edits, fields, drop):
    lines = JSONL.decode().splitlines()
    for i in range(1, len(lines), 7):  # keys left out (pid from tid, role from func, ...) on some lines
        obj = json.loads(lines[i])
        lines[i] = json.dumps({k: v for k, v in obj.items() if k not in drop})
    for row, key, value in fields:
        obj = json.loads(lines[row % len(lines)])
        obj[key] = value
        lines[row % len(lines)] = json.dumps(obj)
    path = tmp_path_factory.mktemp("j") / "cap.jsonl"
    path.write_bytes(mutate(("\n".join(lines) + "\n").encode(), edits))
    assert_same(path)


def test_many_blocks_same_table(tmp_path, monkeypatch):
    """Blocks of a few lines: categories met in different blocks, out-of-order times across blocks."""
    monkeypatch.setattr(jsonl, "BLOCK_BYTES", 2000)
    lines = JSONL.decode().splitlines()
    path = tmp_path / "cap.jsonl"
    path.write_text("\n".join(lines[:1] + lines[150:] + lines[1:150]) + "\n")
    assert_same(path)
    new = read_jsonl(io.BufferedReader(io.BytesIO(path.read_bytes())))  # a stream: read once, not sought
    assert len(new.events) == len(lines) - 1


def _synthetic_lines(n: int) -> bytes:
    head = json.dumps({"meta": {"backend": "synthetic"}}) + "\n"
    body = "".join(
        f'{{"ts_ns": {5170000000000 + 1000 * i}, "cpu": {i % 2}, "pid": 1000, "tid": {1000 + i % 8}, '
        f'"comm": "stress", "func": "swap_cache_get_folio", "phase": "{("call", "return")[i % 2]}", '
        f'"entry": "0x{(1 << 58) | (i % 50000):x}", "folio": null, "retval": {"null" if i % 2 == 0 else i}}}\n'
        for i in range(n))
    return (head + body).encode()


def test_peak_memory_per_event_under_the_goal(tmp_path):
    n = 200_000
    path = tmp_path / "big.jsonl"
    path.write_bytes(_synthetic_lines(n))
    tracemalloc.start()
    try:
        capture = read_jsonl(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(capture.events) == n
    assert peak / n <= GOAL_BYTES_PER_EVENT, f"{peak / n:.0f} B/event"


@pytest.mark.parametrize("late", [False, True])
def test_errors_in_a_later_block_are_one_line(tmp_path, monkeypatch, late):
    monkeypatch.setattr(jsonl, "BLOCK_BYTES", 4000)
    lines = _synthetic_lines(200).decode().splitlines()
    lines[150 if late else 2] = lines[150 if late else 2].replace('"tid": ', '"tid": 2147483648')
    path = tmp_path / "cap.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SwapraceError, match="bad tid value"):
        read_jsonl(path)

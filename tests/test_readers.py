"""read_any: format detection, every format's round trip, and every bad input -> one SwapraceError."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import swaprace.readers as readers
from swaprace.readers import detect_format, read_any
from swaprace.capture import write_capture
from swaprace.errors import SwapraceError
from swaprace.events import Capture, CaptureMeta

BOOKWORM = "tests/fixtures/aba-bookworm.trace"
PERF = "tests/fixtures/aba-bookworm.perf"


def test_detects_every_format(tmp_path):
    cap = read_any(BOOKWORM)
    assert cap.source_format == "ftrace" and len(cap.events) == 37 and cap.skipped_lines == 12
    assert cap.unknown_functions == {"finish_task_switch": 1}  # a kprobe event swaprace does not know: counted
    assert read_any(PERF).source_format == "perf"
    pq = tmp_path / "c.parquet"
    write_capture(cap, pq)
    assert read_any(pq).source_format == "parquet"
    jl = tmp_path / "c.jsonl"
    jl.write_text('{"ts_ns": 1, "tid": 5, "func": "swap_free", "phase": "call", "entry": "0x3a5"}\n')
    assert read_any(jl).source_format == "jsonl"


def test_parquet_round_trip_keeps_events_and_meta(tmp_path):
    cap = read_any(BOOKWORM)
    cap.meta.kernel_release = "6.1.0-56-amd64"
    path = write_capture(cap, tmp_path / "c.parquet")
    back = read_any(path)
    assert back.meta.kernel_release == "6.1.0-56-amd64"
    assert back.meta.lost_events == 0  # the trace header said entries-written == entries-in-buffer
    pd.testing.assert_frame_equal(back.events.astype({c: str for c in ("comm", "func", "role", "phase")}),
                                  cap.events.astype({c: str for c in ("comm", "func", "role", "phase")}))


def test_jsonl_meta_hex_strings_and_full_64_bit_values(tmp_path):
    path = tmp_path / "hand.jsonl"
    lines = [
        {"meta": {"kernel_release": "7.3.4", "backend": "bcc", "lost": {"ringbuf": 2}, "lost_known": True}},
        {"ts_ns": 10, "tid": 7, "pid": 6, "comm": "t", "func": "swap_cache_get_folio", "phase": "call",
         "entry": "0x3a5"},
        {"ts_ns": 11, "tid": 7, "func": "swap_cache_get_folio", "phase": "return", "retval": 18446719884531446464},
        {"ts_ns": 12, "tid": 7, "func": "not_a_swap_function", "phase": "call"},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    cap = read_any(path)
    assert cap.meta.kernel_release == "7.3.4" and cap.meta.lost_events == 2
    assert len(cap.events) == 2 and cap.skipped_lines == 1
    assert cap.events.entry.iloc[0] == 0x3A5
    assert cap.events.retval.iloc[1] == 18446719884531446464  # no float round trip
    assert cap.events.role.iloc[0] == "lookup" and cap.events.pid.iloc[1] == 7


def test_text_metadata_and_losses(tmp_path):
    trace = tmp_path / "t.trace"
    trace.write_text("# tracer: nop\n# entries-in-buffer/entries-written: 1/9   #P:2\nCPU:1 [LOST 4 EVENTS]\n"
                     " a-1 [000] ..... 1.0: p: (do_swap_page+0x0/0x9f0)\n")
    meta = read_any(trace).meta
    assert meta.lost == {"ftrace_overrun": 8, "ftrace_lost_events": 4} and meta.lost_events == 12
    bare = tmp_path / "pipe.txt"
    bare.write_text(" a-1 [000] ..... 1.0: p: (do_swap_page+0x0/0x9f0)\n")
    assert read_any(bare).meta.lost_events is None  # a trace_pipe paste cannot say


def test_swaprace_meta_line_is_authoritative(tmp_path):
    from swaprace.readers.ftrace_text import meta_line
    meta = CaptureMeta(kernel_release="6.1", backend="ftrace", lost={"ftrace_overrun": 0}, lost_known=True,
                       symbols={"free_cache": "folio_free_swap.isra.0"})
    path = tmp_path / "rec.trace"
    path.write_text(meta_line(meta) + "\nCPU:0 [LOST 3 EVENTS]\n"
                    " a-1 [000] ..... 1.0: p: (folio_free_swap.isra.0+0x0/0x9f0) folio=0x10\n")
    cap = read_any(path)
    assert cap.meta.backend == "ftrace" and cap.meta.lost_events == 0
    assert cap.meta.extra["ftrace_lost_lines"] == 3
    assert cap.events.role.iloc[0] == "free_cache"


def test_text_read_in_blocks_equals_whole(tmp_path, monkeypatch):
    whole = read_any(BOOKWORM)
    monkeypatch.setattr(readers, "_BLOCK", 300)  # force many blocks with cut lines
    parts = read_any(BOOKWORM)
    assert parts.skipped_lines == whole.skipped_lines
    pd.testing.assert_frame_equal(parts.events.astype({c: str for c in ("comm", "func", "role", "phase")}),
                                  whole.events.astype({c: str for c in ("comm", "func", "role", "phase")}))


def test_format_override(tmp_path):
    with pytest.raises(SwapraceError, match="no swap-path events"):
        read_any(BOOKWORM, fmt="perf")
    with pytest.raises(SwapraceError, match="unknown format 'xml'"):
        read_any(BOOKWORM, fmt="xml")


# --- bad inputs: one clear error each ---------------------------------------------------------------------


def test_empty_and_blank_files(tmp_path):
    for content in (b"", b"\n\n  \n"):
        path = tmp_path / "empty.trace"
        path.write_bytes(content)
        with pytest.raises(SwapraceError, match="empty file"):
            read_any(path)


def test_truncated_parquet(tmp_path):
    path = write_capture(read_any(BOOKWORM), tmp_path / "c.parquet")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SwapraceError, match="not a readable Parquet capture"):
        read_any(path)


def test_real_png(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1], [0, 1])
    png = tmp_path / "plot.png"
    fig.savefig(png)
    plt.close(fig)
    assert png.read_bytes().startswith(b"\x89PNG")
    with pytest.raises(SwapraceError, match="a PNG image, not a capture"):
        read_any(png)


def test_trace_without_swap_path_events(tmp_path):
    path = tmp_path / "sched.trace"
    path.write_text("# tracer: nop\n"
                    " qemu-system-x86-21666   (  21658) [000] dN.4.  2203.757947: sched_wakeup: comm=q pid=1\n"
                    "  bash-5 [000] ..... 1.0: p: (vfs_read+0x0/0x10) fd=3\n")
    with pytest.raises(SwapraceError, match=r"no swap-path events found \(2 lines skipped, 1 events of vfs_read"):
        read_any(path)


def test_unknown_formats(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello\nthis is not a trace\n")
    with pytest.raises(SwapraceError, match="unknown capture format"):
        read_any(text)
    binary = tmp_path / "blob.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(SwapraceError, match="binary data of unknown format"):
        read_any(binary)
    gz = tmp_path / "t.gz"
    gz.write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 20)
    with pytest.raises(SwapraceError, match="gzip"):
        read_any(gz)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(SwapraceError, match="no such file"):
        read_any(tmp_path / "nope.parquet")
    with pytest.raises(SwapraceError, match="is a directory"):
        read_any(tmp_path)


def test_bad_jsonl(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"ts_ns": 1, "tid": 1, "func": "swap_free", "phase": "call"}\n{oops\n')
    with pytest.raises(SwapraceError, match=r"bad.jsonl:2: not valid JSON"):
        read_any(path)
    path.write_text('{"ts_ns": 1, "tid": 1, "func": "swap_free", "phase": "enter"}\n')
    with pytest.raises(SwapraceError, match="phase must be"):
        read_any(path)
    path.write_text('{"tid": 1, "func": "swap_free", "phase": "call"}\n')
    with pytest.raises(SwapraceError, match="lack ts_ns"):
        read_any(path)
    path.write_text('{"ts_ns": 1, "tid": 1, "func": "swap_free", "phase": "call", "entry": 1.5}\n')
    with pytest.raises(SwapraceError, match="bad entry value"):
        read_any(path)


def test_parquet_without_swaprace_metadata_still_reads(tmp_path):
    cap = read_any(BOOKWORM)
    path = write_capture(Capture(cap.events, CaptureMeta()), tmp_path / "plain.parquet")
    assert detect_format(path, path.read_bytes()[:64]) == "parquet"
    assert len(read_any(path).events) == 37


def test_metadata_validation_knows_every_capture_meta_field():
    import dataclasses

    from swaprace.events import CaptureMeta
    from swaprace.readers.validate import _META_TYPES

    assert {f.name for f in dataclasses.fields(CaptureMeta)} == set(_META_TYPES)


def test_loss_intervals_survive_a_parquet_round_trip(tmp_path):
    meta = CaptureMeta(lost={"ringbuf": 3}, lost_known=True, lost_intervals=[[10, 20, 3]])
    path = tmp_path / "c.parquet"
    write_capture(Capture(read_any("tests/fixtures/aba-bookworm.trace").events, meta), path)
    assert read_any(str(path)).meta.lost_intervals == [[10, 20, 3]]

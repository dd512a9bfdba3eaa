"""ftrace text reader: every layout ftrace prints (record-tgid, no irq-info, counter clocks), values in hex and
decimal, symbols with offsets and clones, junk lines, loss reports, chunked input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from swaprace.readers.ftrace_text import meta_line, parse_ftrace_bytes, parse_ftrace_lines, place_lost
from swaprace.events import COLUMNS, CaptureMeta

# Header layouts copied from this host's tracefs (a sched_wakeup trace with record-tgid on, then irq-info off);
# the event part is the kprobe format ("<event>: (<sym>+off/size) args").
REAL_TGID = " qemu-system-x86-21666   (  21658) [000] dN.4.  2203.757947: "
REAL_NO_IRQ = " qemu-system-x86-25801   [001]   2203.759914: "


def one(line: str) -> pd.Series:
    frame, skipped = parse_ftrace_lines([line])
    assert skipped == 0 and len(frame) == 1, (line, skipped)
    return frame.iloc[0]


def test_call_line_from_the_brief():
    ev = one("     stress-1234    [001] ..... 5170.262360: sr_lookup: (swap_cache_get_folio+0x4/0x1a0) "
             "entry=0x4000000000012a")
    assert (ev.ts_ns, ev.cpu, ev.tid, ev.pid, ev.comm) == (5170262360000, 1, 1234, 1234, "stress")
    assert (ev.func, ev.role, ev.phase) == ("swap_cache_get_folio", "lookup", "call")
    assert ev.entry == 0x4000000000012A and pd.isna(ev.folio) and pd.isna(ev.retval)


def test_return_line_takes_the_symbol_after_the_arrow():
    ev = one("     stress-1234    [001] ..... 5170.262901: r_do_swap_page: "
             "(__handle_mm_fault+0x86b/0xfa0 <- do_swap_page) arg1=0x4")
    assert (ev.func, ev.role, ev.phase, ev.retval) == ("do_swap_page", "fault", "return", 4)
    assert pd.isna(ev.entry)


def test_record_tgid_and_comm_with_spaces_and_dashes():
    ev = one("  kswapd0-44      (     44) [000] ..... 5170.262500: sr_free_cache: (folio_free_swap+0x0/0xa0) "
             "folio=0xffffea0004a1b2c0")
    assert (ev.tid, ev.pid, ev.comm, ev.folio) == (44, 44, "kswapd0", 0xFFFFEA0004A1B2C0)
    ev = one(REAL_TGID + "p: (do_swap_page+0x0/0x9f0)")
    assert (ev.comm, ev.tid, ev.pid, ev.cpu, ev.ts_ns) == ("qemu-system-x86", 21666, 21658, 0, 2203757947000)
    ev = one(" my comm-x-77 (-------) [000] ..... 5170.262600: a: (do_swap_page+0x0/0x9f0)")
    assert (ev.comm, ev.tid, ev.pid) == ("my comm-x", 77, 77)  # unknown tgid: pid falls back to tid


def test_layout_without_irq_info_flags():
    ev = one(REAL_NO_IRQ + "p: (swap_free+0x0/0x40) entry=0x3a5")
    assert (ev.tid, ev.cpu, ev.role, ev.entry) == (25801, 1, "swap_put", 0x3A5)


def test_decimal_values_negative_and_large():
    assert one(" a-1 [000] ..... 1.000001: r: (x+0x1/0x2 <- do_swap_page) ret=1028").retval == 1028
    assert one(" a-1 [000] ..... 1.000001: r: (x+0x1/0x2 <- swap_cache_get_folio) $retval=-12").retval == 2**64 - 12
    big = one(" a-1 [000] ..... 1.000001: r: (x+0x1/0x2 <- swap_cache_get_folio) ret=18446719884531446464")
    assert big.retval == 18446719884531446464
    assert one(" a-1 [000] ..... 1.000001: p: (swap_free+0x0/0x40) entry=0xFFFFFFFFFFFFFFFF").entry == 2**64 - 1


def test_fault_value_is_null_not_zero():
    ev = one(" a-1 [000] ..... 1.000001: p: (folio_free_swap+0x0/0x40) folio=(fault)")
    assert pd.isna(ev.folio)


def test_second_argument_named_entry_is_kept_for_folio_keyed_roles():
    ev = one(" a-1 [000] ..... 1.0: p: (add_to_swap_cache+0x0/0x2a0) folio=0xffffea0004c3d000 entry=0x3a5 g=1")
    assert (ev.folio, ev.entry, ev.role) == (0xFFFFEA0004C3D000, 0x3A5, "cache_add")
    ev = one(" a-1 [000] ..... 1.0: p: (add_to_swap_cache+0x0/0x2a0) folio=0xffffea0004c3d000 nentry=0x3a5")
    assert pd.isna(ev.entry)


def test_clone_symbols_and_offsets():
    ev = one(" a-1 [000] ..... 1.0: p: (folio_free_swap.isra.0+0x4/0x40) folio=0x10")
    assert (ev.func, ev.role) == ("folio_free_swap.isra.0", "free_cache")


def test_counter_clock_timestamps_are_raw_integers():
    ev = one(" a-1 [000] ..... 123456789: p: (do_swap_page+0x0/0x9f0)")
    assert ev.ts_ns == 123456789


def test_junk_is_skipped_and_counted():
    lines = ["# tracer: nop", "garbage", "", "  bash-5 [000] ..... 1.0: sched_switch: prev=1",
             "  bash-5 [000] ..... 1.0: p: (unrelated_function+0x0/0x10) x=1",
             "  bash-5 [000] ..... 1.0: p: (do_swap_page+0x0/0x9f0)", "CPU:1 [LOST 12 EVENTS]"]
    frame, skipped = parse_ftrace_lines(lines)
    assert len(frame) == 1
    assert skipped == 3  # comment, garbage, tracepoint; blank and LOST lines are not, nor a kprobe event:
    chunk = parse_ftrace_bytes("\n".join(lines).encode())
    assert chunk.unknown_functions == {"unrelated_function": 1}  # counted by name, never dropped silently


def test_lost_marker_becomes_an_interval_between_the_cpus_events():
    lines = [" a-1 [001] ..... 1.000001: p: (swap_free+0x0/0x40) entry=0x1",
             " b-2 [000] ..... 1.000002: p: (swap_free+0x0/0x40) entry=0x2",
             "CPU:1 [LOST 7 EVENTS]",
             " b-2 [000] ..... 1.000003: p: (swap_free+0x0/0x40) entry=0x3",
             " a-1 [001] ..... 1.000009: p: (swap_free+0x0/0x40) entry=0x4"]
    chunk = parse_ftrace_bytes("\n".join(lines).encode())
    assert place_lost(chunk.events, chunk.lost_marks) == [[1000001000, 1000009000, 7]]


def test_new_probe_arguments_give_nr_and_rebuilt_entries():
    lines = [
        # 7.x __swap_cluster_free_entries: cluster 3 of device 1, slots 5..8
        " k-9 [000] ..... 1.000001: p: (__swap_cluster_free_entries+0x4/0x200) si_type=1 cinfo=0xffff1000 "
        "ci=0xffff1090 ci_off=5 ci_size=48 ci_slots=512 nr=4",
        # 7.x folio_put_swap(folio, page): page 2 of the folio
        " t-1 [000] ..... 1.000002: p: (folio_put_swap+0x4/0x80) entry=0x100 folio=0xffffea0000001000 "
        "page=0xffffea0000001080 psz=64 fhead=1 forder=2",
        # folio_put_swap(folio, NULL): every page of an order-2 folio
        " t-1 [000] ..... 1.000003: p: (folio_put_swap+0x4/0x80) entry=0x100 folio=0xffffea0000001000 "
        "page=0x0 psz=64 fhead=1 forder=2",
        # a small folio added to the cache
        " t-1 [000] ..... 1.000004: p: (add_to_swap_cache+0x4/0x80) folio=0xffffea0000002000 entry=0x200 "
        "fhead=0 forder=0",
        # 6.1 folio_alloc_swap: a THP's call carries the size, its return the entry
        " r-3 [000] ..... 1.000005: p: (folio_alloc_swap+0x4/0x80) folio=0xffffea0000003000 fhead=1 forder=9",
        " r-3 [000] ..... 1.000006: r: (add_to_swap+0x20/0x80 <- folio_alloc_swap) ret=0x400",
    ]
    ev = parse_ftrace_bytes("\n".join(lines).encode()).events
    assert ev.entry.iloc[0] == (1 << 58) | (3 * 512 + 5) and ev.nr.iloc[0] == 4
    assert ev.entry.iloc[1] == 0x102 and ev.nr.iloc[1] == 1
    assert ev.entry.iloc[2] == 0x100 and ev.nr.iloc[2] == 4
    assert ev.entry.iloc[3] == 0x200 and ev.nr.iloc[3] == 1
    assert ev.retval.iloc[5] == 0x400 and ev.nr.iloc[5] == 512


def test_crlf_lines():
    frame, skipped = parse_ftrace_lines([" a-1 [000] ..... 1.000002: p: (swap_free+0x0/0x40) entry=0x3a5\r"])
    assert skipped == 0 and frame.entry.iloc[0] == 0x3A5


def test_out_of_order_lines_are_sorted_by_time_stably():
    lines = [" b-2 [001] ..... 1.000005: p: (swap_free+0x0/0x40) entry=0x2",
             " a-1 [000] ..... 1.000001: p: (swap_free+0x0/0x40) entry=0x1",
             " c-3 [000] ..... 1.000005: p: (swap_free+0x0/0x40) entry=0x3"]
    frame, _ = parse_ftrace_lines(lines)
    assert list(frame.entry) == [1, 2, 3]  # equal timestamps keep input order


def test_losses_header_and_meta_line():
    meta = CaptureMeta(kernel_release="6.1.0-56-amd64", backend="ftrace", lost={"ftrace_overrun": 3},
                       lost_known=True, symbols={"fault": "do_swap_page"})
    text = "\n".join(["# tracer: nop", "# entries-in-buffer/entries-written: 10/15   #P:2", meta_line(meta),
                      "CPU:0 [LOST 7 EVENTS]", "CPU:0 [LOST 1 EVENTS]",
                      " a-1 [000] ..... 1.0: p: (do_swap_page+0x0/0x9f0)"]).encode()
    chunk = parse_ftrace_bytes(text)
    assert (chunk.entries_in_buffer, chunk.entries_written) == (10, 15)
    assert chunk.lost_reports == {0: 8}
    assert chunk.meta.kernel_release == "6.1.0-56-amd64" and chunk.meta.lost == {"ftrace_overrun": 3}


def test_chunks_parse_like_the_whole(tmp_path):
    from swaprace.readers import read_any
    path = tmp_path / "aba.trace"
    lines = open("tests/fixtures/aba-bookworm.trace").read().splitlines()
    whole, skipped = parse_ftrace_lines(lines)
    parts = [parse_ftrace_lines(lines[i:i + 7]) for i in range(0, len(lines), 7)]
    joined = pd.concat([p[0] for p in parts], ignore_index=True)
    assert sum(p[1] for p in parts) == skipped
    pd.testing.assert_frame_equal(whole.astype({"comm": str, "func": str, "role": str, "phase": str}),
                                  joined.astype({"comm": str, "func": str, "role": str, "phase": str}))
    path.write_text("\n".join(lines))
    assert len(read_any(path).events) == len(whole)


def test_output_has_the_event_model_columns():
    frame, _ = parse_ftrace_lines([" a-1 [000] ..... 1.0: p: (swap_free+0x0/0x40) entry=0x0400000000000005"])
    assert tuple(frame.columns) == COLUMNS
    assert frame.swap_type.iloc[0] == 1 and frame.swap_offset.iloc[0] == 5


def test_many_lines_vectorized_matches_expectations():
    rng = np.random.default_rng(3)
    values = rng.integers(0, 2**63, 500, dtype=np.int64).astype(np.uint64)
    lines = [f" t-{i % 7 + 1} [{i % 2:03d}] d.... {5000 + i}.{i % 10**6:06d}: p: (swap_free+0x0/0x40) "
             f"entry={'0x%x' % v if i % 2 else v}" for i, v in enumerate(values)]
    frame, skipped = parse_ftrace_lines(lines)
    assert skipped == 0
    assert list(frame.entry.astype("uint64")) == list(values)


@pytest.mark.parametrize("line", [
    " a-1 [000] ..... 1.0: p: (do_swap_page+0x0/0x9f0",  # no closing parenthesis
    " a-x [000] ..... 1.0: p: (do_swap_page+0x0/0x9f0)",  # no pid
    " a-1 [0x0] ..... 1.0: p: (do_swap_page+0x0/0x9f0)",  # bad cpu
    " a-1 [000] ..... .: p: (do_swap_page+0x0/0x9f0)",  # no timestamp
])
def test_malformed_lines_are_skipped(line):
    frame, skipped = parse_ftrace_lines([line])
    assert (len(frame), skipped) == (0, 1)


def test_fast_frame_equals_the_model_normalize():
    from swaprace.events import normalize
    lines = open("tests/fixtures/aba-trixie.trace").read().splitlines()
    frame, _ = parse_ftrace_lines(lines[::-1])  # reversed: the parser must sort
    again = normalize(frame.astype({c: str for c in ("comm", "func", "role", "phase")}))
    assert frame.dtypes.astype(str).tolist() == again.dtypes.astype(str).tolist()
    for col in ("comm", "func", "role", "phase"):
        assert frame[col].cat.categories.dtype == again[col].cat.categories.dtype
    pd.testing.assert_frame_equal(frame, again, check_categorical=False)


def test_non_utf8_task_name_is_kept_escaped_and_parsing_goes_on():
    """prctl(PR_SET_NAME, b"str\\xe9ss"): any process may name itself so; the live backend uses this parser."""
    data = (b"        str\xe9ss-2001    [001] d..1.  5170.262360: sr_lookup: (swap_cache_get_folio+0x0/0x9f0) "
            b"entry=0x3a5\n"
            b"        stress-2002    [000] d..1.  5170.262361: sr_lookup: (swap_cache_get_folio+0x0/0x9f0) "
            b"entry=0x3a6\n")
    chunk = parse_ftrace_bytes(data)
    assert list(chunk.events["comm"].astype(str)) == ["str\\xe9ss", "stress"]
    assert list(chunk.events["entry"]) == [0x3A5, 0x3A6]
    events, skipped = parse_ftrace_lines([data.decode("utf-8", "surrogateescape")])
    assert list(events["comm"].astype(str)) == ["str\\xe9ss", "stress"] and skipped == 0

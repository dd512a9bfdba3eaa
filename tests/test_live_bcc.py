"""The bcc backend: program configuration and record decoding on any host; the live backend in the test box.

Host tests need no bcc: they check that the Python side and swaprace.bpf.c agree (role ids, counter slots,
record layout), how a plan becomes -D defines, and the CLI's one-line errors. The ``vm`` tests boot each test
box once (tests/bcc_vm.py runs tests/guest/live_bcc_check.py there) and assert on what the guest measured.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from swaprace.capture import read_capture, write_capture
from swaprace.cli import main
from swaprace.events import ROLES, Capture, CaptureMeta, swp_entry
from swaprace.probes.backend import ProbePlan
from swaprace.probes.bpf_layout import NR_STATS, STAT_BASE
from swaprace.probes.bcc_backend import (
    BPF_SOURCE,
    EVENT_DTYPE,
    RACE_DTYPE,
    STAT_NAMES,
    BccBackend,
    attachments,
    compile_flags,
    decode_events,
    decode_races,
    render_program,
    summarize_stats,
)
from swaprace.kernel.catalog import SymbolTable, load_symbols, resolve_roles

FIXTURES = Path(__file__).parent / "fixtures"
C_SOURCE = BPF_SOURCE.read_text()


def plan_for(names) -> ProbePlan:
    table = SymbolTable(names=set(names), traceable=None, source="test")
    return ProbePlan(resolutions=resolve_roles(table))


# Symbol sets as measured in the two guests (kernel-history.md).
BOOKWORM = ["do_swap_page", "swap_cache_get_folio", "ksm_might_need_to_copy", "folio_free_swap", "swap_free",
            "put_swap_folio", "folio_alloc_swap", "add_to_swap", "delete_from_swap_cache",
            "free_swap_and_cache", "swapcache_prepare", "add_to_swap_cache", "__delete_from_swap_cache"]
TRIXIE_BPO = ["do_swap_page", "swap_cache_get_folio", "ksm_might_need_to_copy", "folio_free_swap",
              "folio_alloc_swap", "swap_cache_del_folio", "__swap_cache_add_folio", "__swap_cache_del_folio",
              "swap_put_entries_direct", "folio_put_swap", "folio_dup_swap", "swap_cache_alloc_folio"]


def test_the_program_uses_the_generated_layout_only():
    from swaprace.probes.bpf_layout import RACE_CLASSES as BPF_CLASSES, OBTAIN_KINDS as BPF_KINDS, c_header, defines
    from swaprace.analysis.model import OBTAIN_KINDS, RACE_CLASSES

    # nothing the loader decodes is written by hand in the C file
    assert not re.search(r"^#define (ROLE|STAT|RACE|OBTAIN|VALID|PHASE)_", C_SOURCE, flags=re.M)
    assert "struct sr_event {" not in C_SOURCE and "struct sr_race {" not in C_SOURCE
    header = c_header()
    d = defines()
    assert {k[5:].lower(): v for k, v in d.items() if k.startswith("ROLE_")} == {r: i for i, r in enumerate(ROLES)}
    assert d["STAT_EVENT_DROPS"] == 2 * len(ROLES) and d["NR_STATS"] == max(STAT_NAMES) + 1
    assert BPF_CLASSES == RACE_CLASSES and BPF_KINDS == OBTAIN_KINDS
    event = re.search(r"struct sr_event \{(.*?)\};", header, flags=re.S).group(1)
    assert re.findall(r"\b(?:u64|u32|u16|u8|char)\s+(\w+)", event) == list(EVENT_DTYPE.names)
    race = re.search(r"struct sr_race \{(.*?)\};", header, flags=re.S).group(1)
    assert re.findall(r"\b(?:u64|u32)\s+(\w+)", race) == list(RACE_DTYPE.names)
    assert EVENT_DTYPE.itemsize == 72 and RACE_DTYPE.itemsize == 112


def test_layout_check_refuses_a_different_compiled_layout():
    import ctypes

    from swaprace.errors import SwapraceError
    from swaprace.probes.bpf_layout import check_compiled

    def leaf(fields):
        return type("Leaf", (ctypes.Structure,), {"_fields_": fields})

    good_event = leaf([(n, ctypes.c_uint8 * EVENT_DTYPE.fields[n][0].itemsize) for n in EVENT_DTYPE.names])
    good_race = leaf([(n, ctypes.c_uint8 * RACE_DTYPE.fields[n][0].itemsize) for n in RACE_DTYPE.names])

    def bpf(event, race):
        return {"layout_event": type("T", (), {"Leaf": event}), "layout_race": type("T", (), {"Leaf": race})}

    check_compiled(bpf(good_event, good_race))
    shifted = leaf([("x", ctypes.c_uint32)] + list(good_event._fields_))
    with pytest.raises(SwapraceError, match="sr_event"):
        check_compiled(bpf(shifted, good_race))


def test_flags_bookworm_layout():
    plan = plan_for(BOOKWORM)
    flags = compile_flags(plan, ringbuf=True)
    assert "-DHAVE_FAULT=1" in flags and "-DFAULT_RETURN=1" in flags
    assert "-DLOOKUP_ENTRY_SRC=1" in flags and "-DLOOKUP_ENTRY_ARG=0" in flags
    assert "-DFREE_CACHE_RET_BOOL=1" in flags  # folio_free_swap returns bool
    assert "-DSWAP_PUT_ENTRY_ARG=0" in flags  # swap_free(entry)
    assert "-DSLOT_ALLOC_ENTRY_SRC=3" in flags and "-DSLOT_ALLOC_NR_SRC=2" in flags  # returns the entry
    assert "-DUSE_RINGBUF=1" in flags and "-DEMIT_EVENTS=1" in flags
    assert "-DFOLIO_SWAP_OFF=40" in flags
    assert not any(f.startswith("-DFILTER_TGID") for f in flags)
    # void functions get no return probe, nor roles whose return the analysis does not read
    kinds = {(k, s) for k, s, _ in attachments(plan)}
    assert ("kretprobe", "swap_free") not in kinds and ("kretprobe", "add_to_swap_cache") not in kinds
    assert ("kretprobe", "do_swap_page") in kinds and ("kretprobe", "folio_free_swap") in kinds


def test_flags_trixie_rebuilds_entries():
    plan = plan_for(TRIXIE_BPO + ["__swap_cluster_free_entries", "__swap_cache_do_add_folio"])
    plan.pid = 4242
    plan.stream_events = False
    flags = compile_flags(plan, ringbuf=False)
    assert "-DSWAP_PUT_ENTRY_SRC=5" in flags and "-DSWAP_PUT_PAGE_ARG=1" in flags  # folio_put_swap(folio, page)
    assert "-DSLOT_FREE_ENTRY_SRC=4" in flags and "-DSLOT_FREE_NR_ARG=3" in flags  # cluster-relative free
    assert "-DCACHE_DELETE_FOLIO_ARG=1" in flags and "-DCACHE_DELETE_ENTRY_ARG=2" in flags
    assert "-DFILTER_TGID=4242" in flags and "-DEMIT_EVENTS=0" in flags
    assert "-DUSE_RINGBUF=1" not in flags
    assert "-DHAVE_PREPARE=1" not in flags  # swapcache_prepare is gone on 7.x


def test_rendered_program_starts_with_its_defines():
    text = render_program(["-DHAVE_FAULT=1", "-DEMIT_EVENTS=0"])
    assert text.splitlines()[1:3] == ["#define HAVE_FAULT 1", "#define EMIT_EVENTS 0"]
    assert "struct sr_event {" in text and "DEFINE_CALL_PROBE(fault, FAULT" in text


def _records(rows) -> bytes:
    rec = np.zeros(len(rows), dtype=EVENT_DTYPE)
    for i, row in enumerate(rows):
        for key, value in row.items():
            rec[i][key] = value
    return rec.tobytes()


def test_decode_events_to_the_event_model(tmp_path):
    entry = swp_entry(1, 0x12A)
    raw = _records([
        dict(ts=200, tid=11, pid=10, cpu=1, role=ROLES.index("lookup"), phase=0, valid=1, entry=entry,
             comm=b"stress"),
        dict(ts=100, tid=11, pid=10, cpu=1, role=ROLES.index("fault"), phase=0, valid=0, comm=b"stress"),
        dict(ts=300, tid=11, pid=10, cpu=0, role=ROLES.index("lookup"), phase=1, valid=4,
             retval=0xFFFFEA0004A1B2C0, comm=b"stress"),
    ])
    symbols = {"fault": "do_swap_page", "lookup": "swap_cache_get_folio"}
    df = decode_events(raw + b"\x00" * 7, symbols)  # a torn tail record is ignored
    assert list(df["ts_ns"]) == [100, 200, 300]  # sorted by time
    assert list(df["func"].astype(str)) == ["do_swap_page", "swap_cache_get_folio", "swap_cache_get_folio"]
    assert list(df["phase"].astype(str)) == ["call", "call", "return"]
    assert df["entry"].isna().tolist() == [True, False, True]
    assert int(df["entry"][1]) == entry and int(df["swap_offset"][1]) == 0x12A
    assert int(df["retval"][2]) == 0xFFFFEA0004A1B2C0 and df["retval"][:2].isna().all()
    assert set(df["comm"].astype(str)) == {"stress"}
    path = write_capture(Capture(df, CaptureMeta(backend="bcc")), tmp_path / "c.parquet")
    assert len(read_capture(path).events) == 3


def test_decode_events_comm_ends_at_the_nul_and_keeps_odd_bytes_escaped():
    """bpf_get_current_comm() leaves the record's buffer past the NUL as it was: "python3\\0ed" was recorded."""
    raw = _records([
        dict(ts=100, tid=11, pid=10, role=ROLES.index("fault"), phase=0, comm=b"python3\x00ed"),
        dict(ts=200, tid=12, pid=10, role=ROLES.index("fault"), phase=0, comm=b"python3\x00zz"),
        dict(ts=300, tid=13, pid=10, role=ROLES.index("fault"), phase=0, comm=b"str\xe9ss"),
    ])
    df = decode_events(raw, {"fault": "do_swap_page"})
    assert list(df["comm"].astype(str)) == ["python3", "python3", "str\\xe9ss"]


def test_decode_races_and_counters():
    rec = np.zeros(1, dtype=RACE_DTYPE)
    rec[0]["entry"], rec[0]["window_start"], rec[0]["obtain"] = swp_entry(0, 7), 1000, 1100
    rec[0]["release"], rec[0]["realloc"], rec[0]["install"] = 1500, 1700, 1800
    rec[0]["tid"], rec[0]["pid"], rec[0]["release_tid"], rec[0]["realloc_tid"] = 42, 40, 9, 8
    rec[0]["klass"], rec[0]["obtain_kind"] = 2, 2
    (race,) = decode_races(rec.tobytes())
    assert race["class"] == "stale-install" and race["obtain_kind"] == "read" and race["window_end_ns"] is None
    assert (race["release_ns"], race["realloc_ns"], race["install_ns"]) == (1500, 1700, 1800)
    assert (race["release_tid"], race["realloc_tid"], race["uncertain"]) == (9, 8, False)
    slots = list(range(NR_STATS))
    summary = summarize_stats(slots, {"fault": "do_swap_page"})
    assert summary["hits"] == {"fault": {"call": 0, "return": 1}}
    assert summary["windows"] == STAT_BASE + 1


def test_batched_records_carry_placed_losses():
    from swaprace.probes.bcc_backend import decode_records, lost_marks
    from swaprace.readers.ftrace_text import place_lost

    raw = _records([dict(ts=100, cpu=1, role=0, phase=0), dict(ts=150, cpu=0, role=0, phase=0),
                    dict(ts=400, cpu=1, role=0, phase=0, lost_before=32)])
    rec = decode_records(raw)
    marks = lost_marks(rec)
    events = decode_events(rec, {"fault": "do_swap_page"})
    assert place_lost(events, marks) == [[100, 400, 32]]


def test_check_explains_why_not_here():
    why = BccBackend.check()
    try:
        import bcc  # noqa: F401
    except ImportError:
        assert why and "python3-bpfcc" in why


def test_watch_without_bcc_is_one_error_line():
    if BccBackend.check() is None:
        pytest.skip("bcc works here: nothing to refuse")
    result = CliRunner().invoke(main, ["watch", "0.1", "1"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("swaprace: error: watch needs the bcc backend")
    assert "Traceback" not in result.output


def test_watch_ebpf_prints_the_program_for_this_kernel():
    names = load_symbols().names
    if "do_swap_page" not in names:
        pytest.skip("this kernel has no do_swap_page symbol")
    result = CliRunner().invoke(main, ["watch", "--ebpf"])
    assert result.exit_code == 0, result.output
    assert "#define HAVE_FAULT 1" in result.output and "#define EMIT_EVENTS 0" in result.output
    assert "// kretprobe do_swap_page -> sr_ret_fault" in result.output


# --- in the test box ----------------------------------------------------------------------------------------

# The guest run is the ``bcc_guest`` fixture of tests/conftest.py (one boot per kernel, shared with
# tests/test_detector_vm.py).


@pytest.mark.vm
def test_record_counts_equal_kernel_counts(bcc_guest):
    rec = bcc_guest["record"]
    assert rec.get("status") is not None and "error" not in rec, rec
    counts, hits = rec["capture_counts"], rec["detector"]["counters"]["hits"]
    lost = rec["lost_events"]
    assert lost is not None, "bcc must know its losses"
    for role, phases in hits.items():
        for phase, kernel_n in phases.items():
            got = counts.get(role, {}).get(phase, 0)
            # every probe hit is one record unless a buffer dropped it (and then it is counted in lost)
            assert kernel_n - lost <= got <= kernel_n, (role, phase, got, kernel_n, rec["lost"])
    assert any(k.startswith("kretprobe_missed:") for k in rec["lost"]), rec["lost"]
    assert counts["fault"]["return"] > 100, counts
    assert counts["lookup"]["call"] >= counts["fault"]["call"] * 0.9, counts  # about one lookup per fault or more
    assert counts.get("ksm_copy", {}).get("call", 0) > 0  # KSM on: every swap-in asks ksm_might_need_to_copy


@pytest.mark.vm
def test_analyze_windows_equal_fault_returns(bcc_guest):
    rec = bcc_guest["record"]
    faults = rec["capture_counts"]["fault"]
    # a return whose call came before tracing started cannot form a window, nor one whose call probe did not
    # run (counted: kprobe and BPF recursion misses of the fault's call probe, seen on 7.3)
    unpaired = max(0, faults["return"] - faults["call"])
    call_misses = sum(v for k, v in rec["lost"].items() if k in ("kprobe_missed:do_swap_page",
                                                                  "bpf_recursion_missed:sr_call_fault"))
    windows = rec["analysis"]["windows"]
    assert faults["return"] - unpaired - call_misses <= windows <= faults["return"] - unpaired, (windows, rec["lost"])
    assert rec["analysis"]["windows"] > 100


@pytest.mark.vm
def test_both_backends_same_counts(bcc_guest):
    """The same probe hits through both backends, up to what each counted as lost. (On 7.3 bcc saw a few
    hits fewer than ftrace: BPF recursion misses, now counted from each program's fdinfo.)"""
    both = bcc_guest["record"]["both"]
    lost = (bcc_guest["record"]["lost_events"] or 0) + sum(both["ftrace_lost"].values())
    assert both["bcc"]["fault"]["call"] > 100, both
    for role in set(both["bcc"]) | set(both["ftrace"]):
        for phase in ("call", "return"):
            a = both["bcc"].get(role, {}).get(phase, 0)
            b = both["ftrace"].get(role, {}).get(phase, 0)
            # the same probe hits through both; a call/return straddling the common span's edges may differ
            assert abs(a - b) <= lost + 2, (role, phase, a, b, both["ftrace_lost"])


@pytest.mark.vm
def test_sigterm_leaves_no_probe_and_a_readable_capture(bcc_guest):
    rec = bcc_guest["record"]
    assert rec["attached_bcc_events"] > 0, rec
    assert rec["stopped_by"] == "SIGTERM" and rec["capture_events"] > 0, rec
    assert rec["probes_after"] == rec["probes_before"], rec
    assert rec["bcc_kprobe_events_after"] == rec["bcc_kprobe_events_before"] == []


def test_watch_lines_from_detector_counters():
    from swaprace.probes.watch import difference, format_header, format_interval, format_race, interval_counts

    from swaprace.probes.bpf_layout import defines

    d = defines()
    slots = [0] * NR_STATS
    slots[0], slots[1] = 120, 118  # fault call/return
    slots[2] = 130  # lookup calls
    for name, value in (("WINDOWS", 118), ("RELEASES", 40), ("REUSES", 12), ("RACES_RECOVERED", 1),
                        ("RACES_BENIGN", 1), ("RACES_STALE_INSTALL", 1)):
        slots[d[f"STAT_{name}"]] = value
    counters = summarize_stats(slots, {"fault": "do_swap_page", "lookup": "swap_cache_get_folio"})
    now = interval_counts(counters, {"ringbuf": 3, "kretprobe_missed:do_swap_page": 1})
    assert now == {"faults": 120, "windows": 118, "lookups": 130, "releases": 40, "reuses": 12, "races": 3,
                   "stale": 1, "lost": 4}
    delta = difference(now, {**now, "faults": 100, "races": 1})
    assert delta["faults"] == 20 and delta["races"] == 2 and delta["lookups"] == 0
    assert format_header().split() == ["TIME", "FAULTS", "WINDOWS", "LOOKUPS", "RELEASES", "REUSES", "RACES",
                                       "LOST"]
    assert format_interval("12:00:00", delta).split()[1:3] == ["20", "0"]
    line = format_race({"entry": swp_entry(1, 0x2A), "tid": 7, "pid": 6, "window_start_ns": 1_000,
                        "window_end_ns": 9_000, "release_ns": 3_000, "realloc_ns": 5_000,
                        "class": "stale-install"})
    assert line.startswith("RACE STALE-INSTALL: entry 0x40000000000002a (type 1 offset 0x2a) tid 7")
    assert "freed +2.0 us, allocated again +4.0 us" in line and "window 8.0 us" in line


@pytest.mark.parametrize("fixture", sorted((FIXTURES / "real").glob("bcc-*.parquet")), ids=lambda p: p.stem)
def test_real_bcc_fixture_reads_and_analyzes(fixture):
    from swaprace.analysis.model import analyze

    capture = read_capture(fixture)
    meta, events = capture.meta, capture.events
    assert meta.backend == "bcc" and meta.lost_known and meta.lost_events == 0
    assert {"fault", "lookup", "free_cache"} <= set(meta.symbols)
    assert set(events["func"].astype(str)) <= set(meta.symbols.values())
    # what the bcc program knows goes into the columns: lookups carry their entry, folio roles their folio
    lookups = events[(events["role"] == "lookup") & (events["phase"] == "call")]
    assert len(lookups) and lookups["entry"].notna().all()
    deletes = events[(events["role"] == "cache_delete") & (events["phase"] == "call")]
    assert deletes["folio"].notna().all()
    # made with the new probes: slot life, cache residency, and nr where the function has it
    assert {"slot_alloc", "slot_free", "cache_add", "cache_delete", "swap_put"} <= set(events["role"].astype(str))
    assert events["nr"].notna().any()
    summary = analyze(capture).summary
    assert summary["windows"] > 100 and summary["windows_with_entry"] == summary["windows"]
    assert summary["reuses"] > 0  # slot reallocations (tests/fixtures/real/README.md)
    assert summary["race_classes"]["stale-install"] == 0


def test_decode_events_builds_the_model_without_normalize():
    import pandas as pd

    from swaprace.events import normalize

    rng = np.random.default_rng(3)
    rows = [dict(ts=int(t), tid=int(rng.integers(1, 5)), pid=1, cpu=int(rng.integers(0, 2)),
                 role=int(rng.integers(0, len(ROLES))), phase=int(rng.integers(0, 2)), valid=int(rng.integers(0, 16)),
                 entry=int(rng.integers(0, 99)), nr=1, comm=[b"kswapd0", b"stress", b"a"][int(rng.integers(0, 3))])
            for t in rng.integers(0, 10**6, 200)]
    df = decode_events(_records(rows), {"fault": "do_swap_page"})
    pd.testing.assert_frame_equal(df, normalize(df))  # exactly the model's dtypes, categories and order
    assert sorted(set(df["comm"].astype(str))) == ["a", "kswapd0", "stress"]


def test_a_probe_with_no_counter_is_uncounted_not_zero(monkeypatch):
    """A probe bcc attached through the perf PMU has no kprobe_profile line: its misses are counted nowhere
    swaprace can read, so the capture says "not counted" instead of a made-up 0; a probe with a line reports its
    count, and one that was listed earlier (then detached) keeps its last count."""
    from swaprace.probes import bcc_backend, tracefs

    backend = BccBackend()
    backend._plan = plan_for(BOOKWORM)
    suffix = f"_bcc_{bcc_backend.os.getpid()}"
    profile = {"p_do_swap_page" + suffix: tracefs.ProbeProfile("p_do_swap_page" + suffix, 100, 3)}
    monkeypatch.setattr(tracefs, "mounted_tracefs", lambda: Path("/nonexistent"))
    monkeypatch.setattr(tracefs, "kprobe_profile", lambda root: profile)
    misses = backend._kretprobe_misses_now({"kretprobe_missed:do_swap_page": 7})
    assert misses["kprobe_missed:do_swap_page"] == 3
    assert misses["kretprobe_missed:do_swap_page"] == 7  # detached since: its last count
    assert "kprobe_missed:swap_free" not in misses
    assert "kprobe_missed:swap_free" in backend.uncounted()
    assert "kprobe_missed:do_swap_page" not in backend.uncounted()


def test_uncounted_sources_make_the_summary_a_lower_bound():
    from swaprace.analysis.model import analyze
    from swaprace.analysis.summary_text import render_summary

    capture = read_capture(FIXTURES / "real" / "bcc-bookworm-6.1.parquet")
    capture.meta.extra["lost_uncounted"] = ["bpf_recursion_missed:kprobe__do_swap_page"]
    result = analyze(capture)
    assert result.summary["lost_uncounted"] == ["bpf_recursion_missed:kprobe__do_swap_page"]
    text = render_summary(result)
    assert "lower bounds" in text
    assert "not counted on this kernel: bpf_recursion_missed:kprobe__do_swap_page" in text


def test_recursion_misses_are_uncounted_where_the_kernel_does_not_count_them(monkeypatch, tmp_path):
    """Before Linux 6.7 trace_call_bpf() skips a kprobe program silently and fdinfo's recursion_misses reads 0:
    the capture lists the source as not counted rather than carrying that 0."""
    from types import SimpleNamespace

    from swaprace.probes import bcc_backend

    fd = os.open(tmp_path, os.O_RDONLY)  # any open fd: its fdinfo has no recursion_misses line
    try:
        backend = BccBackend()
        backend._bpf = SimpleNamespace(funcs={b"sr_call_fault": SimpleNamespace(fd=fd)})
        monkeypatch.setattr(bcc_backend, "kprobe_recursion_misses_counted", lambda: False)
        assert backend._recursion_misses({}) == {}
        assert backend.uncounted() == ["bpf_recursion_missed:sr_call_fault"]
        counted = BccBackend()
        counted._bpf = backend._bpf
        monkeypatch.setattr(bcc_backend, "kprobe_recursion_misses_counted", lambda: True)
        assert counted._recursion_misses({}) == {}  # a directory's fdinfo: no line, so not counted either
        assert counted.uncounted() == ["bpf_recursion_missed:sr_call_fault"]
    finally:
        os.close(fd)


def test_this_kernels_btf_says_whether_kprobe_recursion_is_counted():
    from swaprace.kernel.features import kprobe_recursion_misses_counted

    assert kprobe_recursion_misses_counted("/nonexistent/btf") is None
    if not Path("/sys/kernel/btf/vmlinux").exists():
        pytest.skip("this kernel has no BTF")
    major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    assert kprobe_recursion_misses_counted() is ((major, minor) >= (6, 7))  # upstream kernels (no backports)

"""analyze() on small exact cases: one per rule of the spec (the module docstring of swaprace.analysis.model).

Each case is a sequence of the probe events a real 6.1 (or 7.x) kernel fires, in order. The simulated-kernel
oracle (tests/test_simkernel.py) checks the same rules against data truth on random interleavings; these cases
pin the named situations of the slot-life model ("Why") and the summary contract.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from swaprace.analysis.model import OUTCOMES, RACE_COLUMNS, _Events, analyze, outcome_codes, pair_returns
from swaprace.events import Capture, CaptureMeta, normalize
from swaprace.readers import read_any

ROLE = {"do_swap_page": "fault", "swap_cache_get_folio": "lookup", "folio_free_swap": "free_cache",
        "add_to_swap_cache": "cache_add", "__delete_from_swap_cache": "cache_delete", "free_swap_slot": "slot_free",
        "folio_alloc_swap": "slot_alloc", "__swap_cache_add_folio": "slot_alloc", "swap_free": "swap_put",
        "swap_free_nr": "swap_put", "ksm_might_need_to_copy": "ksm_copy", "swap_readpage": "swap_read",
        "swapcache_prepare": "prepare", "swapcache_clear": "prepare_clear", "free_swap_and_cache": "zap_put",
        "folio_put_swap": "swap_put", "swap_writepage": "swap_write"}
E, F1, F2, F3 = 0x3A5, 0xFFFFEA0000001000, 0xFFFFEA0000002000, 0xFFFFEA0000003000
EEXIST = 2**64 - 17


def cap(*events, lost_intervals=(), lost=None) -> Capture:
    """events: dicts with ts, tid, func, phase and any of entry, folio, retval, nr."""
    rows = []
    for ev in events:
        rows.append({"ts_ns": ev["ts"], "cpu": 0, "tid": ev["tid"], "comm": f"t{ev['tid']}", "func": ev["func"],
                     "role": ROLE[ev["func"]], "phase": ev.get("phase", "call"), "entry": ev.get("entry"),
                     "folio": ev.get("folio"), "retval": ev.get("retval"), "nr": ev.get("nr")})
    frame = pd.DataFrame(rows)
    for col in ("entry", "folio", "retval"):
        frame[col] = pd.array([r[col] for r in rows], dtype="UInt64")
    frame["nr"] = pd.array([r["nr"] for r in rows], dtype="UInt32")
    meta = CaptureMeta(lost_known=True, lost=lost or {}, lost_intervals=[list(x) for x in lost_intervals])
    return Capture(normalize(frame), meta)


def call(ts, tid, func, **kw):
    return dict(ts=ts, tid=tid, func=func, phase="call", **kw)


def ret(ts, tid, func, retval):
    return dict(ts=ts, tid=tid, func=func, phase="return", retval=retval)


def fault_start(ts, tid, entry, folio):
    """T enters do_swap_page and looks entry up: a hit on folio (or a miss with folio=0)."""
    return [call(ts, tid, "do_swap_page"), call(ts + 1, tid, "swap_cache_get_folio", entry=entry),
            ret(ts + 2, tid, "swap_cache_get_folio", folio)]


def free_slot(ts, tid, entry, folio):
    """folio_free_swap on 6.1: the cache delete, the slot free (count zero), the true return."""
    return [call(ts, tid, "folio_free_swap", folio=folio, entry=entry),
            call(ts + 1, tid, "__delete_from_swap_cache", folio=folio, entry=entry),
            call(ts + 2, tid, "free_swap_slot", entry=entry), ret(ts + 3, tid, "folio_free_swap", 1)]


def realloc(ts, tid, entry, folio):
    """Reclaim allocates the slot again and adds a folio under it (add_to_swap on 6.1)."""
    return [call(ts, tid, "folio_alloc_swap", folio=folio), ret(ts + 1, tid, "folio_alloc_swap", entry),
            call(ts + 2, tid, "add_to_swap_cache", folio=folio, entry=entry)]


def install_and_return(ts, tid, entry, retval=4):
    return [call(ts, tid, "swap_free", entry=entry), ret(ts + 5, tid, "do_swap_page", retval)]


def classes(c: Capture):
    return [r["class"] for r in analyze(c).summary["races"]]


# --- the 2010 race on the cache path ---------------------------------------------------------------------------


def test_cache_path_aba_is_a_stale_install_with_its_threads_and_folios():
    c = cap(*fault_start(100, 1, E, F1), *free_slot(110, 2, E, F1), *realloc(120, 3, E, F2),
            *install_and_return(130, 1, E))
    r = analyze(c)
    race = r.summary["races"][0]
    assert race["class"] == "stale-install" and race["entry"] == E and race["tid"] == 1
    assert (race["obtain_ns"], race["obtain_kind"], race["release_ns"], race["release_tid"]) == (102, "lookup", 112, 2)
    assert (race["realloc_ns"], race["realloc_tid"], race["install_ns"]) == (121, 3, 130)
    assert race["folio"] == F1 and race["installed_folio"] == F1 and race["uncertain"] is False
    assert r.windows.race_class.tolist() == ["stale-install"]
    assert r.summary["reuses"] == 1 and r.summary["race_classes"]["stale-install"] == 1
    gens = r.generations
    assert gens.generation.tolist() == [0, 1]
    assert gens.alloc_kind.isna().tolist() == [True, False] and gens.free_kind.tolist()[0] == "slot_free"
    assert gens.alloc_ns.tolist()[1] == 121 and gens.free_tid.tolist()[0] == 2 and gens.alloc_tid.tolist()[1] == 3


def test_backing_out_after_a_reuse_is_recovered():
    c = cap(*fault_start(100, 1, E, F1), *free_slot(110, 2, E, F1), *realloc(120, 3, E, F2),
            ret(140, 1, "do_swap_page", 0))
    assert classes(c) == ["recovered"]


def test_installing_the_folio_bound_again_in_the_new_generation_is_benign():
    # The fixed kernel's folio_test_swapcache && page_private == entry check passes: live data (the slot-life model's "Why").
    c = cap(*fault_start(100, 1, E, F1), *free_slot(110, 2, E, F1), *realloc(120, 3, E, F1),
            *install_and_return(130, 1, E))
    assert classes(c) == ["benign"]


def test_release_and_rebind_inside_the_lookup_call_are_no_race():
    # T's lookup returns the current folio: what happened before that return is not in its window (Why, case 2).
    c = cap(call(100, 1, "do_swap_page"), call(101, 1, "swap_cache_get_folio", entry=E),
            *free_slot(102, 2, E, F1), *realloc(107, 3, E, F2), ret(111, 1, "swap_cache_get_folio", F2),
            *install_and_return(130, 1, E))
    r = analyze(c)
    assert r.summary["races"] == [] and r.summary["reuses"] == 1


def test_eviction_and_reread_without_a_slot_free_is_no_race():
    # T misses; reclaim deletes E's cache folio without freeing the slot; E is read back and added again; T
    # installs: the slot and its data stayed (Why, case 1). Counted as residency, never as a reuse.
    c = cap(call(90, 5, "add_to_swap_cache", folio=F3, entry=E),
            *fault_start(100, 1, E, 0),
            call(105, 2, "__delete_from_swap_cache", folio=F3, entry=E),
            call(110, 1, "add_to_swap_cache", folio=F1, entry=E), *install_and_return(130, 1, E))
    r = analyze(c)
    assert r.summary["races"] == [] and r.summary["reuses"] == 0
    assert r.summary["residency"]["evictions"] == 1 and r.summary["residency"]["rereads"] == 1
    assert r.windows.obtain_kind.tolist() == ["cache_add"]


def test_free_then_install_by_the_faulting_thread_is_done_with_the_entry():
    # do_swap_page's own swap_free and folio_free_swap, then a reuse: the window already installed E.
    c = cap(*fault_start(100, 1, E, F1), call(110, 1, "swap_free", entry=E), *free_slot(111, 1, E, F1),
            *realloc(120, 3, E, F2), ret(140, 1, "do_swap_page", 4))
    r = analyze(c)
    assert r.summary["races"] == [] and r.summary["reuses"] == 1
    assert r.summary["residency"]["evictions"] == 0  # the delete came with the slot free


def test_a_free_without_reallocation_is_no_race():
    c = cap(*fault_start(100, 1, E, F1), *free_slot(110, 2, E, F1), ret(140, 1, "do_swap_page", 0))
    assert analyze(c).summary["races"] == []


# --- the 2024 race on the skip-swapcache path --------------------------------------------------------------


def test_skip_swapcache_private_read_is_stale_after_a_reuse():
    c = cap(*fault_start(100, 1, E, 0), call(104, 1, "swap_readpage", folio=F1, entry=E),
            call(110, 2, "swap_free", entry=E), call(111, 2, "free_swap_slot", entry=E),
            *realloc(120, 3, E, F2), *install_and_return(130, 1, E))
    r = analyze(c)
    assert classes(c) == ["stale-install"]
    assert r.summary["races"][0]["obtain_kind"] == "read"
    assert "private read" in r.summary["races"][0]["reason"]


def test_skip_swapcache_read_after_the_reallocation_is_stale_until_the_new_data_is_written():
    # T missed E and committed to it; E was freed and reallocated before T's read: the slot still held the old
    # (or, on zram, discarded) data while the new generation's sat in the swap cache (found by the oracle).
    def run(write: bool, probed: bool = True, first=E, nr=None, result=0):
        evs = [*fault_start(100, 1, E, 0), call(110, 2, "swap_free", entry=E), call(111, 2, "free_swap_slot", entry=E),
               *realloc(120, 3, E, F2)]
        if write:
            evs += [call(125, 3, "swap_writepage", folio=F2, entry=first, nr=nr), ret(126, 3, "swap_writepage", result)]
        evs += [call(130, 1, "swap_readpage", folio=F1, entry=E), *install_and_return(140, 1, E)]
        c = cap(*evs)
        if probed:
            c.meta.symbols["swap_write"] = "swap_writepage"
        return analyze(c).summary["races"]
    unwritten = run(write=False)
    assert [r["class"] for r in unwritten] == ["stale-install"] and "before its new data" in unwritten[0]["reason"]
    assert not unwritten[0]["uncertain"]
    assert [r["class"] for r in run(write=True)] == ["benign"]
    assert [r["class"] for r in run(write=True, first=E - 2, nr=4)] == ["benign"]  # pageout of a large folio
    assert [r["class"] for r in run(write=True, first=E - 2, nr=2)] == ["stale-install"]  # E is not in the range
    assert [r["class"] for r in run(write=True, result=2**64 - 5)] == ["stale-install"]  # -EIO: nothing written
    blind = run(write=False, probed=False)  # a recorder without the swap_write role cannot tell
    assert [r["class"] for r in blind] == ["stale-install"] and blind[0]["uncertain"]


def test_prepare_backoffs_conflicts_and_installs_after_a_failed_prepare():
    c = cap(*fault_start(100, 1, E, 0), call(103, 1, "swapcache_prepare", entry=E),
            ret(104, 1, "swapcache_prepare", 0),
            *fault_start(105, 2, E, 0), call(108, 2, "swapcache_prepare", entry=E),
            ret(109, 2, "swapcache_prepare", EEXIST), ret(110, 2, "do_swap_page", 0),
            call(111, 3, "swapcache_prepare", entry=E), ret(112, 3, "swapcache_prepare", 0),
            call(113, 1, "swapcache_clear", entry=E), ret(114, 1, "do_swap_page", 4),
            call(120, 4, "swapcache_prepare", entry=E), ret(121, 4, "swapcache_prepare", 0),
            *fault_start(130, 5, E, 0), call(133, 5, "swapcache_prepare", entry=E),
            ret(134, 5, "swapcache_prepare", EEXIST), call(135, 5, "swap_readpage", folio=F2, entry=E),
            *install_and_return(136, 5, E))
    p = analyze(c).summary["prepare"]
    assert p == {"calls": 5, "backoffs": 2, "conflicts": 1, "installs_after_failed_prepare": 1}


# --- KSM copies ------------------------------------------------------------------------------------------------


def test_ksm_copy_before_the_reallocation_is_stale_and_after_it_judged_by_its_source():
    before = cap(*fault_start(100, 1, E, F1), call(103, 1, "ksm_might_need_to_copy", folio=F1),
                 ret(104, 1, "ksm_might_need_to_copy", F3), *free_slot(110, 2, E, F1),
                 *realloc(120, 3, E, F1), *install_and_return(130, 1, E))
    r = analyze(before)
    assert classes(before) == ["stale-install"] and r.summary["races"][0]["installed_folio"] == F3
    after = cap(*fault_start(100, 1, E, F1), *free_slot(110, 2, E, F1), *realloc(120, 3, E, F1),
                call(125, 1, "ksm_might_need_to_copy", folio=F1), ret(126, 1, "ksm_might_need_to_copy", F3),
                *install_and_return(130, 1, E))
    assert classes(after) == ["benign"]


# --- large folios ------------------------------------------------------------------------------------------------


def test_events_over_nr_entries_apply_to_each_entry_of_the_range():
    e0 = 0x400
    c = cap(*fault_start(100, 1, e0 + 2, F1),
            call(110, 2, "free_swap_slot", entry=e0, nr=4),
            call(120, 3, "__swap_cache_add_folio", folio=F2, entry=e0, nr=4),
            call(130, 1, "swap_free_nr", entry=e0, nr=4), ret(135, 1, "do_swap_page", 4))
    r = analyze(c)
    assert [(x["entry"], x["class"]) for x in r.summary["races"]] == [(e0 + 2, "stale-install")]
    assert r.summary["reuses"] == 4


# --- losses, gaps, unknown functions -------------------------------------------------------------------------


def test_a_race_near_lost_events_or_a_history_gap_is_uncertain():
    base = [*fault_start(100, 1, E, F1), *free_slot(110, 2, E, F1), *realloc(120, 3, E, F2),
            *install_and_return(130, 1, E)]
    assert analyze(cap(*base)).summary["uncertain_races"] == 0
    near = analyze(cap(*base, lost_intervals=[(125, 128, 3)], lost={"ftrace_overrun": 3}))
    assert near.summary["races"][0]["uncertain"] and "lost" in near.summary["races"][0]["reason"]
    far = analyze(cap(*base, lost_intervals=[(500, 510, 3)], lost={"ftrace_overrun": 3}))
    assert far.summary["uncertain_races"] == 0
    unplaced = analyze(cap(*base, lost={"ringbuf": 1}))
    assert unplaced.summary["uncertain_races"] == 1 and unplaced.summary["lost_unplaced"]
    gap = analyze(cap(call(50, 9, "free_swap_slot", entry=E), *base))  # two frees with no allocation between
    assert gap.summary["history_gaps"] == 1 and gap.summary["races"][0]["uncertain"]


def test_unknown_functions_are_counted_by_name():
    c = cap(*fault_start(100, 1, E, F1))
    c.unknown_functions = {"swap_frobnicate": 3}
    assert analyze(c).summary["unknown_functions"] == {"swap_frobnicate": 3}


# --- generations without an allocator probe --------------------------------------------------------------------


def test_without_an_allocator_probe_the_first_cache_add_after_a_free_begins_a_generation():
    c = cap(call(10, 2, "free_swap_slot", entry=E), call(20, 3, "add_to_swap_cache", folio=F1, entry=E),
            call(30, 3, "__delete_from_swap_cache", folio=F1, entry=E),
            call(40, 4, "add_to_swap_cache", folio=F2, entry=E))
    g = analyze(c).generations
    assert g.generation.tolist() == [0, 1]
    assert pd.isna(g.alloc_ns.iloc[0]) and g.free_ns.iloc[0] == 10 and g.alloc_kind.tolist()[1] == "cache_add"
    assert analyze(c).summary["residency"]["rereads"] == 1


def test_free_cache_false_frees_nothing_and_its_low_byte_decides():
    def run(retval):
        return cap(*fault_start(100, 1, E, F1), call(110, 2, "folio_free_swap", folio=F1, entry=E),
                   ret(111, 2, "folio_free_swap", retval), *realloc(120, 3, E, F2), *install_and_return(130, 1, E))
    assert classes(run(0x100)) == []
    assert classes(run(0x101)) == ["stale-install"]


# --- order, pairing, windows -------------------------------------------------------------------------------


def test_equal_timestamps_keep_input_order():
    same = [call(100, 1, "do_swap_page"), call(100, 1, "swap_cache_get_folio", entry=E),
            ret(100, 1, "swap_cache_get_folio", F1), call(100, 2, "free_swap_slot", entry=E),
            call(100, 3, "folio_alloc_swap", folio=F2), ret(100, 3, "folio_alloc_swap", E),
            call(100, 1, "swap_free", entry=E), ret(100, 1, "do_swap_page", 0)]
    assert classes(cap(*same)) == ["stale-install"]
    swapped = same[:3] + same[4:6] + [same[3]] + same[6:]  # allocation before the free: no reuse in the window
    assert classes(cap(*swapped)) == []


def test_pairing_is_a_per_thread_stack_and_survives_lost_events():
    c = cap(ret(1, 1, "do_swap_page", 0),  # a return whose call predates the capture
            call(2, 1, "do_swap_page"),  # a call whose return was lost
            call(3, 1, "do_swap_page"), call(4, 2, "do_swap_page"),
            ret(5, 1, "do_swap_page", 4), ret(6, 2, "do_swap_page", 0))
    ev = _Events(c.events)
    calls, rets = pair_returns(ev, ("fault",))["fault"]
    assert list(zip(calls, rets)) == [(2, 4), (3, 5)]
    w = analyze(c).windows
    assert w.start_ns.tolist() == [3, 4] and w.end_ns.tolist() == [5, 6] and w.entry.isna().all()


def test_window_entry_is_the_first_lookup_of_that_thread_inside_it():
    c = cap(call(100, 1, "do_swap_page"), call(101, 2, "swap_cache_get_folio", entry=0x999),
            call(102, 1, "swap_cache_get_folio", entry=E), call(103, 1, "swap_cache_get_folio", entry=0x777),
            ret(104, 1, "do_swap_page", 0), call(105, 1, "swap_cache_get_folio", entry=0x555))
    assert analyze(c).windows.entry.tolist() == [E]


def test_outcomes_from_vm_fault_bits():
    codes = outcome_codes(np.array([0, 0x4, 0x400, 0x404, 0x1, 0x2, 0x10, 0x20, 0x40, 0x100], np.uint64))
    assert [OUTCOMES[c] for c in codes] == ["minor", "major", "retry", "retry", "error", "error", "error",
                                            "error", "error", "minor"]


def test_ksm_copies_count_only_real_copies():
    c = cap(call(1, 1, "ksm_might_need_to_copy", folio=F1), ret(2, 1, "ksm_might_need_to_copy", F1),
            call(3, 1, "ksm_might_need_to_copy", folio=F1), ret(4, 1, "ksm_might_need_to_copy", F2),
            call(5, 1, "ksm_might_need_to_copy", folio=F1), ret(6, 1, "ksm_might_need_to_copy", 0),
            call(7, 1, "ksm_might_need_to_copy", folio=F1),
            ret(8, 1, "ksm_might_need_to_copy", 2**64 - 133))  # ERR_PTR(-EHWPOISON)
    assert analyze(c).summary["ksm_copies"] == 1


def _aba() -> Capture:
    return cap(*fault_start(100, 1, E, F1), *free_slot(110, 2, E, F1), *realloc(120, 3, E, F2),
               *install_and_return(130, 1, E))


def test_filters():
    r = analyze(_aba(), entry=0x999)
    assert r.windows.empty and r.races.empty and r.generations.empty and r.residency.empty
    assert analyze(_aba(), tid=2).windows.empty
    assert len(analyze(_aba(), tid=1).races) == 1
    early = analyze(_aba(), until_ns=115)  # the window never completes
    assert early.summary["windows"] == 0 and early.summary["races"] == []
    assert analyze(_aba(), since_ns=105).summary["windows"] == 0


# --- fixtures and the contract ----------------------------------------------------------------------------


def test_summary_contract_on_the_bookworm_fixture():
    s = analyze(read_any("tests/fixtures/aba-bookworm.trace")).summary
    types = {"events": int, "skipped_lines": int, "by_function": dict, "windows": int, "windows_with_entry": int,
             "lookup_hits": int, "entries": int, "ksm_copies": int, "reuses": int, "races": list,
             "residency": dict, "prepare": dict, "unknown_functions": dict, "generations": int}
    for key, typ in types.items():
        assert isinstance(s[key], typ), key
    assert (s["events"], s["windows"], s["windows_with_entry"]) == (37, 3, 3)
    assert (s["lookup_hits"], s["entries"], s["ksm_copies"], s["reuses"]) == (2, 4, 1, 2)
    assert s["by_function"]["do_swap_page"] == {"call": 4, "return": 3}
    assert [(hex(r["entry"]), r["tid"], r["class"]) for r in s["races"]] == [
        ("0x3a5", 2001, "stale-install"), ("0x3b0", 2002, "recovered")]
    assert s["lost_events"] == 0


def test_trixie_fixture():
    r = analyze(read_any("tests/fixtures/aba-trixie.trace"))
    assert [(hex(x["entry"]), x["tid"], x["class"]) for x in r.summary["races"]] == [("0x1a2b", 3101, "stale-install")]
    assert r.windows.outcome.tolist() == ["minor", "retry"]
    assert r.windows.pid.tolist() == [3100, 3100]
    assert r.summary["ksm_copies"] == 0


#: Per real fixture (tests/fixtures/real/README.md): evictions, re-reads, slot reallocations. Evictions and re-reads
#: are cache residency; only reallocations are reuses; none is a race on these fixed kernels.
REAL = {"ftrace-bookworm-6.1.trace": (0, 0, 0), "ftrace-trixie-bpo-7.3.trace": (0, 0, 0),
        "bcc-bookworm-6.1.parquet": (1757, 1144, 148), "bcc-trixie-bpo-7.3.parquet": (1302, 633, 508)}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_captures_count_residency_apart_from_reuses_and_have_no_race(name):
    s = analyze(read_any(f"tests/fixtures/real/{name}")).summary
    assert (s["residency"]["evictions"], s["residency"]["rereads"], s["reuses"]) == REAL[name]
    assert s["races"] == [] and s["history_gaps"] == 0 and s["lost_events"] == 0


def test_empty_capture_analyzes_to_zeros():
    from swaprace.events import empty_events
    s = analyze(Capture(empty_events(), CaptureMeta())).summary
    assert (s["events"], s["windows"], s["races"], s["lost_events"]) == (0, 0, [], None)


def test_frames_have_the_contract_columns():
    r = analyze(_aba())
    assert list(r.windows.columns) == ["tid", "pid", "comm", "cpu", "start_ns", "end_ns", "duration_ns", "entry",
                                       "retval", "outcome", "obtain_ns", "obtain_kind", "install_ns", "race_class"]
    assert list(r.generations.columns) == ["entry", "generation", "alloc_ns", "alloc_kind", "alloc_tid", "free_ns",
                                           "free_kind", "free_tid"]
    assert list(r.residency.columns) == ["entry", "folio", "bind_ns", "bind_kind", "unbind_ns", "unbind_kind",
                                         "eviction", "reread"]
    assert tuple(r.races.columns) == RACE_COLUMNS
    assert str(r.windows.entry.dtype) == "UInt64" and str(r.windows.outcome.dtype) == "category"


def test_a_7x_install_is_found_by_its_folio_when_folio_swap_names_another_entry():
    # 7.x: folio_put_swap(swapcache, NULL) reads the entry from folio->swap; after a race that rebound the
    # folio to E2 the event names E2, but it is T's install of the folio it obtained for E.
    e2 = 0x9A0
    c = cap(*fault_start(100, 1, E, F1), *free_slot(110, 2, E, F1), *realloc(120, 3, E, F2),
            *realloc(125, 4, e2, F1), call(130, 1, "folio_put_swap", folio=F1, entry=e2),
            ret(135, 1, "do_swap_page", 4))
    r = analyze(c)
    assert [(x["entry"], x["class"], x["install_ns"]) for x in r.summary["races"]] == [(E, "stale-install", 130)]

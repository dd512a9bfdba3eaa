"""analyze(): windows, pairing, generations, releases, races and the summary contract, on small exact cases."""

from __future__ import annotations

import numpy as np
import pandas as pd

from swaprace.analysis.model import OUTCOMES, analyze, outcome_codes, pair_returns, _Events
from swaprace.readers import read_any
from swaprace.events import Capture, CaptureMeta, normalize

ROLE = {"do_swap_page": "fault", "swap_cache_get_folio": "lookup", "folio_free_swap": "free_cache",
        "add_to_swap_cache": "cache_add", "delete_from_swap_cache": "cache_delete", "put_swap_folio": "slot_free",
        "swap_free": "swap_put", "ksm_might_need_to_copy": "ksm_copy"}
E, F1, F2 = 0x3A5, 0xFFFFEA0000001000, 0xFFFFEA0000002000


def cap(*events) -> Capture:
    """events: (ts, tid, func, phase, value[, entry]) -- value is the key on calls, the retval on returns."""
    rows = []
    for ev in events:
        ts, tid, func, phase, value = ev[:5]
        role = ROLE[func]
        key = {"lookup": "entry", "slot_free": "entry", "swap_put": "entry"}.get(role, "folio")
        row = {"ts_ns": ts, "cpu": 0, "tid": tid, "comm": "t", "func": func, "role": role, "phase": phase,
               "entry": None, "folio": None, "retval": None}
        if phase == "return":
            row["retval"] = value
        elif value is not None:
            row[key] = value
        if len(ev) > 5:
            row["entry"] = ev[5]
        rows.append(row)
    frame = pd.DataFrame(rows)
    for col in ("entry", "folio", "retval"):
        frame[col] = pd.array([r[col] for r in rows], dtype="UInt64")
    return Capture(normalize(frame), CaptureMeta())


def aba(install: bool = True):
    evs = [(100, 1, "do_swap_page", "call", None), (101, 1, "swap_cache_get_folio", "call", E),
           (102, 1, "swap_cache_get_folio", "return", F1),
           (110, 2, "folio_free_swap", "call", F1), (111, 2, "folio_free_swap", "return", 1),
           (120, 3, "add_to_swap_cache", "call", F2, E)]
    if install:
        evs.append((130, 1, "swap_free", "call", E))
    evs.append((140, 1, "do_swap_page", "return", 4))
    return cap(*evs)


def test_stale_install_race_fields():
    result = analyze(aba())
    assert result.summary["races"] == [{"entry": E, "tid": 1, "window_start_ns": 100, "window_end_ns": 140,
                                        "release_ns": 111, "rebind_ns": 120, "class": "stale-install",
                                        "install_ns": 130}]
    assert result.windows.race_class.tolist() == ["stale-install"]
    gens = result.generations
    assert gens.generation.tolist() == [0, 1]
    assert gens.bind_kind.tolist() == ["lookup", "cache_add"]
    assert gens.release_kind.tolist()[0] == "free_cache" and pd.isna(gens.release_kind.tolist()[1])
    assert gens.folio.tolist() == [F1, F2] and gens.bind_ns.tolist() == [102, 120]
    assert result.summary["reuses"] == 1


def test_recovered_when_the_thread_does_not_install():
    assert [r["class"] for r in analyze(aba(install=False)).summary["races"]] == ["recovered"]


def test_no_race_without_rebind_or_before_lookup():
    # Release and rebind happen before the lookup: no race.
    c = cap((90, 2, "put_swap_folio", "call", E), (95, 3, "add_to_swap_cache", "call", F2, E),
            (100, 1, "do_swap_page", "call", None), (101, 1, "swap_cache_get_folio", "call", E),
            (102, 1, "swap_cache_get_folio", "return", F2), (130, 1, "swap_free", "call", E),
            (140, 1, "do_swap_page", "return", 0))
    r = analyze(c)
    assert r.summary["races"] == [] and r.summary["reuses"] == 1
    # Release inside the window, rebind only after it: no race.
    c = cap((100, 1, "do_swap_page", "call", None), (101, 1, "swap_cache_get_folio", "call", E),
            (110, 2, "put_swap_folio", "call", E), (140, 1, "do_swap_page", "return", 0),
            (150, 3, "add_to_swap_cache", "call", F2, E))
    assert analyze(c).summary["races"] == []


def test_release_of_a_folio_no_longer_bound_to_the_entry_is_ignored():
    # E moves from F1 to F2 (no release seen); freeing F1's cache later must not release E.
    c = cap((100, 1, "do_swap_page", "call", None), (101, 1, "swap_cache_get_folio", "call", E),
            (102, 1, "swap_cache_get_folio", "return", F1), (103, 3, "add_to_swap_cache", "call", F2, E),
            (110, 2, "delete_from_swap_cache", "call", F1), (120, 3, "add_to_swap_cache", "call", F1, E),
            (140, 1, "do_swap_page", "return", 0))
    r = analyze(c)
    assert r.summary["races"] == [] and len(r.generations) == 1


def test_implicit_generation_when_first_seen_released():
    c = cap((10, 2, "put_swap_folio", "call", E), (20, 3, "add_to_swap_cache", "call", F1, E))
    g = analyze(c).generations
    assert g.generation.tolist() == [0, 1]
    assert pd.isna(g.bind_ns.iloc[0]) and g.release_ns.iloc[0] == 10 and g.release_kind.iloc[0] == "slot_free"


def test_free_cache_false_does_not_release_and_low_byte_decides():
    base = [(100, 1, "do_swap_page", "call", None), (101, 1, "swap_cache_get_folio", "call", E),
            (102, 1, "swap_cache_get_folio", "return", F1), (110, 2, "folio_free_swap", "call", F1)]
    tail = [(120, 3, "add_to_swap_cache", "call", F2, E), (140, 1, "do_swap_page", "return", 0)]
    assert analyze(cap(*base, (111, 2, "folio_free_swap", "return", 0x100), *tail)).summary["races"] == []
    assert len(analyze(cap(*base, (111, 2, "folio_free_swap", "return", 0x101), *tail)).summary["races"]) == 1


def test_equal_timestamps_keep_input_order():
    # Everything at one timestamp: release before rebind in input order -> race; swapped -> none.
    same = [(100, 1, "do_swap_page", "call", None), (100, 1, "swap_cache_get_folio", "call", E),
            (100, 1, "swap_cache_get_folio", "return", F1), (100, 2, "put_swap_folio", "call", E),
            (100, 3, "add_to_swap_cache", "call", F2, E), (100, 1, "do_swap_page", "return", 0)]
    assert len(analyze(cap(*same)).summary["races"]) == 1
    swapped = same[:3] + [same[4], same[3]] + same[5:]
    assert analyze(cap(*swapped)).summary["races"] == []


def test_pairing_is_a_per_thread_stack_and_survives_lost_events():
    c = cap((1, 1, "do_swap_page", "return", 0),  # return whose call predates the capture
            (2, 1, "do_swap_page", "call", None),  # call whose return was lost
            (3, 1, "do_swap_page", "call", None), (4, 2, "do_swap_page", "call", None),
            (5, 1, "do_swap_page", "return", 4), (6, 2, "do_swap_page", "return", 0))
    ev = _Events(c.events)
    calls, rets = pair_returns(ev, ("fault",))["fault"]
    assert list(zip(calls, rets)) == [(2, 4), (3, 5)]  # rows: (call@3, ret@5) and (call@4, ret@6)
    w = analyze(c).windows
    assert w.start_ns.tolist() == [3, 4] and w.end_ns.tolist() == [5, 6] and w.entry.isna().all()


def test_window_entry_is_the_first_lookup_of_that_thread_inside_it():
    c = cap((100, 1, "do_swap_page", "call", None), (101, 2, "swap_cache_get_folio", "call", 0x999),
            (102, 1, "swap_cache_get_folio", "call", E), (103, 1, "swap_cache_get_folio", "call", 0x777),
            (104, 1, "do_swap_page", "return", 0), (105, 1, "swap_cache_get_folio", "call", 0x555))
    w = analyze(c).windows
    assert w.entry.tolist() == [E]


def test_outcomes_from_vm_fault_bits():
    codes = outcome_codes(np.array([0, 0x4, 0x400, 0x404, 0x1, 0x2, 0x10, 0x20, 0x40, 0x100], np.uint64))
    assert [OUTCOMES[c] for c in codes] == ["minor", "major", "retry", "retry", "error", "error", "error",
                                            "error", "error", "minor"]


def test_ksm_copies_count_only_real_copies():
    c = cap((1, 1, "ksm_might_need_to_copy", "call", F1), (2, 1, "ksm_might_need_to_copy", "return", F1),
            (3, 1, "ksm_might_need_to_copy", "call", F1), (4, 1, "ksm_might_need_to_copy", "return", F2),
            (5, 1, "ksm_might_need_to_copy", "call", F1), (6, 1, "ksm_might_need_to_copy", "return", 0),
            (7, 1, "ksm_might_need_to_copy", "call", F1),
            (8, 1, "ksm_might_need_to_copy", "return", 2**64 - 133))  # ERR_PTR(-EHWPOISON)
    assert analyze(c).summary["ksm_copies"] == 1


def test_filters():
    r = analyze(aba(), entry=0x999)
    assert r.windows.empty and r.races.empty and r.generations.empty
    assert analyze(aba(), tid=2).windows.empty
    assert len(analyze(aba(), tid=1).races) == 1
    early = analyze(aba(), until_ns=115)  # window never completes, rebind cut off
    assert early.summary["windows"] == 0 and early.summary["events"] == 5
    assert analyze(aba(), since_ns=105).summary["windows"] == 0


def test_summary_contract_on_the_bookworm_fixture():
    s = analyze(read_any("tests/fixtures/aba-bookworm.trace")).summary
    types = {"events": int, "skipped_lines": int, "by_function": dict, "windows": int, "windows_with_entry": int,
             "lookup_hits": int, "entries": int, "ksm_copies": int, "reuses": int, "races": list}
    for key, typ in types.items():
        assert isinstance(s[key], typ), key
    assert "lost_events" in s
    assert (s["events"], s["skipped_lines"], s["windows"], s["windows_with_entry"]) == (35, 13, 3, 3)
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


def test_empty_capture_analyzes_to_zeros():
    from swaprace.events import empty_events
    s = analyze(Capture(empty_events(), CaptureMeta())).summary
    assert (s["events"], s["windows"], s["races"], s["lost_events"]) == (0, 0, [], None)


def test_frames_have_the_contract_columns():
    r = analyze(aba())
    assert list(r.windows.columns) == ["tid", "pid", "comm", "cpu", "start_ns", "end_ns", "duration_ns", "entry",
                                       "retval", "outcome", "race_class"]
    assert list(r.generations.columns) == ["entry", "generation", "bind_ns", "folio", "bind_kind", "release_ns",
                                           "release_kind"]
    assert list(r.races.columns)[:7] == ["entry", "tid", "window_start_ns", "window_end_ns", "release_ns",
                                         "rebind_ns", "class"]
    assert str(r.windows.entry.dtype) == "UInt64" and str(r.windows.outcome.dtype) == "category"

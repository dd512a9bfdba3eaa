"""The symbol catalog and role resolution, against real kallsyms copies of the kernels we test on."""

from __future__ import annotations

from pathlib import Path

import pytest

from swaprace.errors import SwapraceError
from swaprace.events import KEY_COLUMN, ROLES
from swaprace.probes.backend import ProbePlan
from swaprace.kernel.catalog import (
    CATALOG,
    FOLIO_SWAP_OFFSET,
    SymbolTable,
    check_catalog,
    load_symbols,
    parse_kallsyms,
    resolve_roles,
)
from swaprace.kernel.layout import DEFAULTS_6_1, KernelLayout, check_arch
from swaprace.probes.ftrace_backend import call_fetch_args, kprobe_lines

FIXTURES = Path(__file__).parent / "fixtures"
KALLSYMS = {
    "host-6.18": FIXTURES / "kallsyms-host-6.18.txt",
    "bookworm-6.1": FIXTURES / "kallsyms-bookworm-6.1.txt",
    "trixie-bpo-7.3": FIXTURES / "kallsyms-trixie-bpo-7.3.txt",
}
# What each kernel must resolve to (measured: kernel-history.md and the guests' own kallsyms).
EXPECTED = {
    "bookworm-6.1": {
        "fault": "do_swap_page", "lookup": "swap_cache_get_folio", "ksm_copy": "ksm_might_need_to_copy",
        "free_cache": "folio_free_swap", "slot_alloc": "folio_alloc_swap", "swap_put": "swap_free",
        "prepare": "swapcache_prepare", "slot_free": "free_swap_slot", "cache_add": "add_to_swap_cache",
        "cache_delete": "__delete_from_swap_cache", "zap_put": "free_swap_and_cache", "swap_dup": "swap_duplicate",
        "swap_read": "swap_readpage", "prepare_clear": "swapcache_clear",
    },
    "trixie-bpo-7.3": {
        "fault": "do_swap_page", "lookup": "swap_cache_get_folio", "ksm_copy": "ksm_might_need_to_copy",
        "free_cache": "folio_free_swap", "slot_alloc": "__swap_cache_add_folio", "swap_put": "folio_put_swap",
        "cache_add": "__swap_cache_do_add_folio", "cache_delete": "__swap_cache_del_folio", "prepare": None,
        "slot_free": "__swap_cluster_free_entries", "zap_put": "swap_put_entries_direct",
        "swap_dup": "folio_dup_swap", "swap_read": "swap_read_folio", "prepare_clear": None,
    },
    "host-6.18": {
        "fault": "do_swap_page", "lookup": "swap_cache_get_folio", "free_cache": "folio_free_swap",
        "swap_put": "swap_free_nr",
    },
}


def available(name: str) -> Path:
    path = KALLSYMS[name]
    if not path.exists():
        pytest.skip(f"fixture {path.name} not recorded yet")
    return path


def test_catalog_is_consistent():
    check_catalog()
    assert set(CATALOG) == set(ROLES)
    for role, cands in CATALOG.items():
        assert cands, role
        forms = {(c.symbol, c.requires, c.excludes) for c in cands}
        assert len(forms) == len(cands), f"{role}: duplicate candidate"
        for cand in cands:
            assert cand.note.strip(), f"{cand.symbol} has no provenance note"
            # drgn's form where a commit is known; "unverified" said where it is not
            assert "Linux kernel commit" in cand.note or "unverified" in cand.note, cand.note
            if KEY_COLUMN[role] is not None:
                assert cand.key_arg is not None or cand.key_from_folio or cand.entry_src == "cluster", cand


def test_saved_traceable_list_is_used():
    # bookworm's own available_filter_functions (trimmed like its kallsyms): every chosen symbol is traceable
    table = load_symbols(str(available("bookworm-6.1")), str(FIXTURES / "traceable-bookworm-6.1.txt"))
    res = resolve_roles(table)
    assert table.traceable is not None
    assert all(r.warning is None for r in res.values() if r.ok)
    assert {r: x.symbol for r, x in res.items()} == {r: x.symbol for r, x in
                                                      resolve_roles(load_symbols(str(available("bookworm-6.1")))).items()}


@pytest.mark.parametrize("kernel", sorted(EXPECTED))
def test_resolution_matches_measured_kernel(kernel):
    table = load_symbols(str(available(kernel)))
    res = resolve_roles(table)
    for role, symbol in EXPECTED[kernel].items():
        assert res[role].symbol == symbol, (role, res[role])
        if symbol is None:
            assert res[role].reason and res[role].tried == [c.symbol for c in CATALOG[role]]
    assert table.traceable is None and "traceability unknown" in res["fault"].warning


def test_untraceable_symbol_falls_through_to_next_candidate(tmp_path):
    kallsyms = tmp_path / "kallsyms"
    kallsyms.write_text("ffffffff81000000 T swap_free_nr\nffffffff81000100 T swap_free\n"
                        "ffffffff81000200 T do_swap_page\n")
    traceable = tmp_path / "available_filter_functions"
    traceable.write_text("swap_free\ndo_swap_page\n")  # swap_free_nr is notrace here
    res = resolve_roles(load_symbols(str(kallsyms), str(traceable)), ["swap_put", "fault", "lookup"])
    assert res["swap_put"].symbol == "swap_free"
    assert res["swap_put"].warning is None
    assert res["lookup"].symbol is None
    assert "swap_cache_get_folio: not in kallsyms" in res["lookup"].reason
    assert "lookup_swap_cache: not in kallsyms" in res["lookup"].reason


def test_untraceable_reason_is_reported(tmp_path):
    kallsyms = tmp_path / "kallsyms"
    kallsyms.write_text("ffffffff81000000 T swapcache_prepare\n")
    traceable = tmp_path / "aff"
    traceable.write_text("do_swap_page\n")
    res = resolve_roles(load_symbols(str(kallsyms), str(traceable)), ["prepare"])
    assert res["prepare"].symbol is None
    assert "not traceable" in res["prepare"].reason


def test_compiler_clone_is_used_with_a_warning():
    table = SymbolTable(names={"folio_free_swap.isra.0", "do_swap_page"}, traceable=None)
    res = resolve_roles(table, ["free_cache"])["free_cache"]
    assert res.symbol == "folio_free_swap.isra.0"
    assert res.candidate.symbol == "folio_free_swap"
    assert "compiler clone" in res.warning


def test_garbage_kallsyms_is_one_error(tmp_path):
    bad = tmp_path / "x.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    with pytest.raises(SwapraceError, match="not a kallsyms file"):
        load_symbols(str(bad))
    with pytest.raises(SwapraceError, match="cannot read"):
        load_symbols(str(tmp_path / "missing"))


def test_parse_kallsyms_keeps_text_symbols_only():
    names = parse_kallsyms(["ffffffff81000000 T do_swap_page\n", "ffffffff82000000 D swapper_spaces\n",
                            "0000000000000000 t swap_free [somemod]\n"])
    assert names == {"do_swap_page", "swap_free"}


def test_ftrace_fetch_args_follow_the_catalog():
    by_symbol = {c.symbol: c for cands in CATALOG.values() for c in cands}
    # put_swap_folio(folio, entry): the key (entry) is the 2nd argument, the folio the 1st.
    assert call_fetch_args(by_symbol["put_swap_folio"]) == [("entry", "%si:x64"), ("folio", "%di:x64")]
    # folio_put_swap(folio, subpage): the key is a swap entry read from folio->swap.
    assert call_fetch_args(by_symbol["folio_put_swap"])[0] == ("entry", f"+{FOLIO_SWAP_OFFSET}(%di):x64")
    # __swap_cache_del_folio(ci, folio, entry, shadow): folio key first, then its entry.
    assert call_fetch_args(by_symbol["__swap_cache_del_folio"])[:2] == [("folio", "%si:x64"), ("entry", "%dx:x64")]
    assert call_fetch_args(by_symbol["do_swap_page"]) == []
    # 7.x __swap_cluster_free_entries(si, ci, ci_start, nr): the raw values the reader rebuilds the entry from
    layout = KernelLayout()
    assert call_fetch_args(by_symbol["__swap_cluster_free_entries"], layout) == [
        ("si_type", "+72(%di):s8"), ("cinfo", "+80(%di):x64"), ("ci", "%si:x64"), ("ci_off", "%dx:u32"),
        ("ci_size", "\\48:u32"), ("ci_slots", "\\512:u32"), ("nr", "%cx:u32")]
    # the folio's size where the function has no nr: PG_head and the order byte, per layout
    assert call_fetch_args(by_symbol["add_to_swap_cache"], DEFAULTS_6_1)[2:] == [
        ("fhead", "+0(%di):b1@16/64"), ("forder", "+81(%di):u8")]
    assert ("page", "%si:x64") in call_fetch_args(by_symbol["folio_put_swap"])


def test_swap_read_folio_form_follows_its_sibling():
    base = {"do_swap_page", "swap_cache_get_folio", "swap_read_folio"}
    debian = resolve_roles(SymbolTable(base | {"swap_read_submit"}, None), ["swap_read"])["swap_read"]
    upstream = resolve_roles(SymbolTable(base | {"swap_read_unplug"}, None), ["swap_read"])["swap_read"]
    assert debian.candidate.folio_arg == 1 and upstream.candidate.folio_arg == 0


def test_unsupported_architecture_is_refused_in_one_line():
    with pytest.raises(SwapraceError, match="x86_64 only .this machine is aarch64"):
        check_arch("aarch64")


@pytest.mark.parametrize("kernel", ["bookworm-6.1", "trixie-bpo-7.3"])
def test_kprobe_lines_for_guest_kernels(kernel):
    plan = ProbePlan(resolutions=resolve_roles(load_symbols(str(available(kernel)))), maxactive=64)
    lines = kprobe_lines(plan, "swaprace_42")
    assert "p:swaprace_42/sr42_fault do_swap_page" in lines
    assert "r64:swaprace_42/sr42_fault_ret do_swap_page ret=$retval:x64" in lines
    assert "p:swaprace_42/sr42_lookup swap_cache_get_folio entry=%di:x64" in lines
    # every probed role has exactly one call probe; void functions get no return probe
    calls = [line for line in lines if line.startswith("p:")]
    assert len(calls) == len(plan.probed)
    for line in lines:
        if line.startswith("r"):
            symbol = line.split()[1]
            role = next(r for r, res in plan.probed.items() if res.symbol == symbol)
            assert plan.probed[role].candidate.returns != "void"

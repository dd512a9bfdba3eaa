"""swaprace.kernel.symbols and the catalog's clone handling: kernel symbol -> role for the offline readers,
compiler clones (``.isra.0``, ``.constprop.0``, ``.part.0``, ``.lto_priv.0``, ``.cold``) and a capture's own
symbols overriding the catalog."""

from __future__ import annotations

import pytest

from swaprace.events import ROLES
from swaprace.kernel.catalog import CATALOG, SymbolTable, clone_base
from swaprace.kernel.symbols import base_symbol, catalog_roles, role_of_symbol, symbol_overrides


@pytest.mark.parametrize("symbol, base", [
    ("folio_free_swap", "folio_free_swap"),
    ("folio_free_swap.isra.0", "folio_free_swap"),
    ("swap_free.constprop.0", "swap_free"),
    ("do_swap_page.part.0", "do_swap_page"),
    ("add_to_swap.lto_priv.0", "add_to_swap"),
    ("__swap_entry_free.constprop.0.isra.0", "__swap_entry_free"),
    ("swap_cache_get_folio.cold", "swap_cache_get_folio"),
    ("free_swap_slot.isra.0.cold", "free_swap_slot"),
    ("swap_read_unplug.cold.12", "swap_read_unplug"),
])
def test_base_symbol_strips_clone_suffixes(symbol, base):
    assert base_symbol(symbol) == base


@pytest.mark.parametrize("symbol, base", [
    ("folio_free_swap.isra.0", "folio_free_swap"),
    ("swap_free.constprop.0", "swap_free"),
    ("do_swap_page.part.3", "do_swap_page"),
    ("add_to_swap.lto_priv.0", "add_to_swap"),
    ("free_swap_slot.isra.0.cold", "free_swap_slot"),
    ("folio_free_swap", None),           # not a clone
    ("swap_cache_get_folio.cold", None),  # a .cold part is never a function entry
    ("swap_cache_get_folio.cold.1", None),
    ("a.b.isra.0", None),                # the base is not a C identifier
])
def test_clone_base_only_for_entry_clones(symbol, base):
    assert clone_base(symbol) == base


def test_symbol_table_groups_clones_by_base():
    table = SymbolTable(names={"folio_free_swap.isra.0", "folio_free_swap.constprop.0", "do_swap_page",
                               "swap_cache_get_folio.cold"}, traceable=None)
    assert table.clones == {"folio_free_swap": ["folio_free_swap.constprop.0", "folio_free_swap.isra.0"]}


def test_catalog_roles_cover_every_candidate():
    roles = catalog_roles()
    assert set(roles.values()) <= set(ROLES)
    for role, cands in CATALOG.items():
        for cand in cands:
            assert cand.symbol in roles
    assert roles["do_swap_page"] == "fault"


def test_role_of_symbol_knows_catalog_names_and_their_clones():
    assert role_of_symbol("do_swap_page") == "fault"
    assert role_of_symbol("do_swap_page.isra.0") == "fault"
    assert role_of_symbol("do_swap_page.cold") == "fault"
    assert role_of_symbol("vfs_read") is None
    assert role_of_symbol("vfs_read.isra.0") is None


def test_capture_symbols_override_the_catalog():
    overrides = symbol_overrides({"fault": "my_fault_handler", "lookup": None, "slot_free": "do_swap_page"})
    assert overrides == {"my_fault_handler": "fault", "do_swap_page": "slot_free"}
    assert role_of_symbol("my_fault_handler", overrides) == "fault"
    assert role_of_symbol("my_fault_handler.constprop.0", overrides) == "fault"
    assert role_of_symbol("do_swap_page", overrides) == "slot_free"  # the recorder knows what it probed
    assert role_of_symbol("swap_cache_get_folio", overrides) == "lookup"  # the rest from the catalog
    assert symbol_overrides(None) == {}

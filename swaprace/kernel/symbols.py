"""Kernel symbol -> analysis role, for readers whose input names functions but not roles (ftrace/perf text).

The mapping comes from the probe catalog (:mod:`swaprace.kernel.catalog`, a plain data module: importing it
pulls in no bcc), so a function the live tracer can probe is always a function the offline reader
understands. Compiler clones (``folio_free_swap.isra.0``) play the role of their base function. A capture's
own ``CaptureMeta.symbols`` (role -> symbol) overrides the catalog: the recorder knows what it probed.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Dict, Mapping, Optional

from swaprace.kernel.catalog import CATALOG, CLONE_SUFFIX_RE


@lru_cache(maxsize=1)
def catalog_roles() -> Dict[str, str]:
    """Every symbol the catalog knows, mapped to its role."""
    return {cand.symbol: role for role, cands in CATALOG.items() for cand in cands}


def base_symbol(symbol: str) -> str:
    """``symbol`` without a compiler clone suffix (``.isra.0``, ``.constprop.0``, ...)."""
    return CLONE_SUFFIX_RE.sub("", symbol)


def role_of_symbol(symbol: str, overrides: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """The role ``symbol`` plays, or None when it is not on the swap path.

    ``overrides`` maps symbol -> role (the inverse of ``CaptureMeta.symbols``) and wins over the catalog.
    """
    if overrides:
        role = overrides.get(symbol) or overrides.get(base_symbol(symbol))
        if role:
            return role
    known = catalog_roles()
    return known.get(symbol) or known.get(base_symbol(symbol))


def symbol_overrides(meta_symbols: Optional[Mapping[str, str]]) -> Dict[str, str]:
    """Invert ``CaptureMeta.symbols`` (role -> symbol) into symbol -> role."""
    return {sym: role for role, sym in (meta_symbols or {}).items() if sym}

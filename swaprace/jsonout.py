"""The JSON output layer of ``--json`` and report.json: 64-bit values as hex strings.

Swap entries carry the swap type in their top bits and folios are kernel addresses: both are beyond the 2**53
that jq and JavaScript hold exactly, so a number would be silently rounded by the reader. Under the keys of
:data:`HEX_KEYS` an integer (or a list of integers) is written as ``"0x3a5"``; every reader of swaprace
accepts such strings back (JSON Lines, ``--entry``).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

#: keys whose integer values are 64-bit kernel values (entries, folio pointers, raw return values)
HEX_KEYS = frozenset({"entry", "folio", "folios", "retval", "entries_hex"})


def hexify(obj: Any, key: str | None = None) -> Any:
    """``obj`` with the integers under :data:`HEX_KEYS` turned into ``"0x..."`` strings (a copy)."""
    if isinstance(obj, dict):
        return {k: hexify(v, k) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [hexify(v, key) for v in obj]
    if key in HEX_KEYS and isinstance(obj, (int, np.integer)) and not isinstance(obj, (bool, np.bool_)):
        return hex(int(obj))
    return obj


def dumps(obj: Any, **kw: Any) -> str:
    """``json.dumps`` of :func:`hexify`'d ``obj`` (numpy scalars and other leftovers become str)."""
    kw.setdefault("default", _default)
    return json.dumps(hexify(obj), **kw)


def _default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return str(value)

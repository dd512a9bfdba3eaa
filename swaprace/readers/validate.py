"""One validation of event values for every reader: what does not fit the event model is an error, not a wrap.

Each reader builds a frame of the :data:`swaprace.events.INPUT_COLUMNS` its own way; before
:func:`swaprace.events.normalize` casts it to the model's types (where ``astype`` would wrap a tid beyond int32,
an entry beyond 64 bits, or a negative entry, and would turn ``True`` into 1 or a float entry into a rounded
one), :func:`check_events` says, in one :class:`SwapraceError` line, which column holds what.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from swaprace.errors import SwapraceError
from swaprace.events import PHASES, ROLES

I64_MAX = 2**63 - 1
I32_MAX = 2**31 - 1
U64_MAX = 2**64 - 1

#: column -> (lowest, highest, may be null)
RANGES = {
    "ts_ns": (0, I64_MAX, False),
    "cpu": (0, I32_MAX, False),
    "tid": (0, I32_MAX, False),
    "pid": (0, I32_MAX, False),
    "entry": (0, U64_MAX, True),
    "folio": (0, U64_MAX, True),
    "retval": (0, U64_MAX, True),
}


def check_events(frame: pd.DataFrame, source: str) -> None:
    """Raise :class:`SwapraceError` naming ``source`` when a value does not fit its column, or a role or
    phase is missing or unknown."""
    for column, (low, high, nullable) in RANGES.items():
        if column in frame.columns:
            _check_int_column(frame[column], column, low, high, nullable, source)
    for column, known in (("role", ROLES), ("phase", PHASES)):
        if column not in frame.columns:
            continue
        values = frame[column]
        if values.isna().any():
            raise SwapraceError(f"{source}: an event has no {column} (null); every event needs one of "
                                f"{', '.join(known)}")
        bad = ~values.astype("object").isin(known)
        if bad.any():
            got = _short(values[bad].iloc[0])
            if column == "phase":
                raise SwapraceError(f"{source}: phase must be 'call' or 'return' (got {got})")
            raise SwapraceError(f"{source}: unknown {column} {got} (roles: {', '.join(known)})")


def _check_int_column(values: pd.Series, column: str, low: int, high: int, nullable: bool, source: str) -> None:
    what = f"{source}: {column}"
    null = values.isna()
    if null.any() and not nullable:
        raise SwapraceError(f"{what} has a missing value: every event needs one")
    present = values[~null]
    if len(present) == 0:
        return
    dtype = present.dtype
    if ptypes.is_bool_dtype(dtype):
        raise SwapraceError(f"{source}: bad {column} value {present.iloc[0]!r}: a boolean, not an integer")
    if ptypes.is_float_dtype(dtype):
        raise SwapraceError(f"{source}: bad {column} value {present.iloc[0]!r}: a float, not an integer "
                            f"(a float cannot hold every 64-bit value exactly)")
    if ptypes.is_integer_dtype(dtype):
        lo, hi = int(present.min()), int(present.max())
    else:  # object: Python values, e.g. from JSON
        ints: list[int] = []
        for v in present:
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
                kind = "a boolean" if isinstance(v, (bool, np.bool_)) else type(v).__name__
                raise SwapraceError(f"{source}: bad {column} value {_short(v)}: {kind}, not an integer")
            ints.append(int(v))
        lo, hi = min(ints), max(ints)  # present is not empty
    if lo < low or hi > high:
        bad = lo if lo < low else hi
        raise SwapraceError(f"{source}: bad {column} value {_short(bad)}: does not fit (allowed {low}..{high})")


def check_finite_seconds(value: float, option: str) -> int:
    """A ``--since``/``--until`` time in seconds as ns, or one clear error (nan, inf, beyond int64 ns)."""
    if not math.isfinite(value):
        raise SwapraceError(f"{option} {value!r}: not a finite number of seconds")
    if abs(value) >= I64_MAX / 1e9:
        raise SwapraceError(f"{option} {value!r}: out of range (at most {I64_MAX // 10**9} seconds)")
    return round(value * 1e9)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


#: CaptureMeta fields and the JSON types they take (None allowed for every optional one)
_META_TYPES = {
    "kernel_release": (str,), "backend": (str,), "symbols": (dict,), "lost": (dict,), "lost_known": (bool,),
    "start_time_ns": (int,), "start_ts_ns": (int,), "duration_s": (int, float), "host": (str,),
    "command": (list,), "tool_version": (str,), "detector": (dict,), "extra": (dict,), "format_version": (int,),
    "lost_intervals": (list,),
}


def meta_from_obj(obj: object, source: str):
    """A :class:`CaptureMeta` from a decoded JSON object, or one clear error when it is not one."""
    from swaprace.events import CaptureMeta

    if not isinstance(obj, dict):
        raise SwapraceError(f"{source}: capture metadata is {type(obj).__name__}, not a JSON object")
    for key, types in _META_TYPES.items():
        value = obj.get(key)
        if value is None:
            continue
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            raise SwapraceError(f"{source}: capture metadata field {key!r} is {type(value).__name__} "
                                f"({_short(value)}), expected {' or '.join(t.__name__ for t in types)}")
    symbols = obj.get("symbols") or {}
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in symbols.items()):
        raise SwapraceError(f"{source}: capture metadata 'symbols' must map role names to symbol names")
    lost = obj.get("lost") or {}
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= I64_MAX for v in lost.values()):
        raise SwapraceError(f"{source}: capture metadata 'lost' must map loss sources to counts")
    intervals = obj.get("lost_intervals") or []
    if not all(isinstance(iv, list) and 2 <= len(iv) <= 3 and all(isinstance(x, int) and not isinstance(x, bool)
                                                                  for x in iv) for iv in intervals):
        raise SwapraceError(f"{source}: capture metadata 'lost_intervals' must be [start_ns, end_ns, count] lists")
    known = {k: v for k, v in obj.items() if k in _META_TYPES and v is not None}
    meta = CaptureMeta(**known)
    meta.extra = dict(meta.extra)
    meta.extra.update({k: v for k, v in obj.items() if k not in _META_TYPES})
    return meta


def meta_from_json(text: str, source: str):
    """:func:`meta_from_obj` of a JSON text (bad JSON, too deep nesting: one clear error)."""
    import json

    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise SwapraceError(f"{source}: capture metadata is not valid JSON ({str(exc).splitlines()[0][:80]})"
                            ) from None
    return meta_from_obj(obj, source)


def check_arrow_types(schema, source: str) -> None:
    """Integer columns of a Parquet/Arrow table must be integers in the file itself (pandas metadata could
    otherwise cast a float column back to integers on reading, rounding what it cannot hold)."""
    import pyarrow as pa

    for name in RANGES:
        if name not in schema.names:
            continue
        kind = schema.field(name).type
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        if not (pa.types.is_integer(kind) or pa.types.is_null(kind)):
            raise SwapraceError(f"{source}: bad {name} column: {kind}, not integers")

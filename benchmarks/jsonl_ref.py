"""REFERENCE ONLY (benchmarks, tests): ``swaprace.readers.read_jsonl`` as it was before the streaming work
(every line decoded to a dict, object columns, then ``normalize``), kept to time the streaming reader
against and to check it gives identical results. Not used by swaprace.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import BinaryIO

import pandas as pd

from swaprace.errors import SwapraceError
from swaprace.events import INPUT_COLUMNS, Capture, CaptureMeta, empty_events, normalize
from swaprace.kernel.symbols import role_of_symbol, symbol_overrides
from swaprace.readers import PathLike, _binary, _text
from swaprace.readers.validate import check_events, meta_from_obj


def read_jsonl(source: PathLike | BinaryIO, name: str | None = None) -> Capture:
    """Read JSON Lines: one event object per line (the columns of :mod:`swaprace.events`), optionally a first
    line ``{"meta": {...CaptureMeta...}}``. ``role`` may be left out (derived from ``func``); ``entry``,
    ``folio`` and ``retval`` may be integers or ``"0x..."`` strings; ``pid`` defaults to ``tid``."""
    path = Path(name or (getattr(source, "name", None) if hasattr(source, "read") else source) or "<input>")
    meta = CaptureMeta(backend="jsonl")
    records = []
    skipped = 0
    with _binary(source) as raw, _text(raw) as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except (ValueError, RecursionError) as exc:
                why = "nested too deeply" if isinstance(exc, RecursionError) else "not valid JSON"
                raise SwapraceError(f"{path}:{n}: {why} ({line.strip()[:60]!r})") from None
            if not isinstance(obj, dict):
                raise SwapraceError(f"{path}:{n}: expected a JSON object per line")
            if "meta" in obj and len(obj) == 1:
                meta = meta_from_obj(obj["meta"], f"{path}:{n}")
                continue
            records.append(obj)
    if not records:
        return Capture(events=empty_events(), meta=meta, source_format="jsonl", skipped_lines=skipped)
    overrides = symbol_overrides(meta.symbols)
    columns = {}
    for col in INPUT_COLUMNS:  # object columns: no float for a missing value, no wrap for a big one
        values = [rec.get(col) for rec in records]
        if col in ("entry", "folio", "retval"):
            values = [_u64_value(v, path, col) for v in values]
        columns[col] = values
    missing = [c for c in INPUT_COLUMNS if c not in ("pid", "comm", "cpu", "role", "entry", "folio", "retval")
               and all(v is None for v in columns[c])]
    if missing:
        raise SwapraceError(f"{path}: JSON Lines events lack {', '.join(missing)}")
    columns["comm"] = ["" if v is None else v for v in columns["comm"]]
    columns["cpu"] = [0 if v is None else v for v in columns["cpu"]]
    columns["pid"] = [t if p is None else p for p, t in zip(columns["pid"], columns["tid"])]  # pid defaults to tid
    # role: given, or derived from func (an unknown function is skipped, like a text reader's other events)
    columns["role"] = [rec["role"] if "role" in rec else role_of_symbol(str(rec.get("func")), overrides)
                       for rec in records]
    keep = [("role" in rec) or role is not None for rec, role in zip(records, columns["role"])]
    skipped += keep.count(False)
    frame = pd.DataFrame({c: pd.Series([v for v, k in zip(vals, keep) if k], dtype=object)
                          for c, vals in columns.items()})
    check_events(frame, str(path))
    try:
        events = normalize(frame)
    except (ValueError, TypeError, OverflowError) as exc:
        raise SwapraceError(f"{path}: JSON Lines events have bad values ({str(exc).splitlines()[0]})") from None
    return Capture(events=events, meta=meta, source_format="jsonl", skipped_lines=skipped)


def _u64_value(v: object, path: Path, name: str) -> object:
    """A JSON entry/folio/retval: an integer, a ``"0x..."`` (or decimal) string, or null; range-checked later."""
    if isinstance(v, str):
        try:
            return int(v, 0)
        except ValueError:
            raise SwapraceError(f"{path}: bad {name} value {v[:40]!r} (an integer or a \"0x...\" string)") from None
    return v

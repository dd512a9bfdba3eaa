"""The map step: one capture in, its derived tables out, as Parquet files a query engine can read together.

:func:`derive` reads a capture (any format :func:`swaprace.readers.read_any` knows), runs
:func:`swaprace.analysis.model.analyze` on it and writes one Parquet file per table::

    OUT_DIR/windows/<run_id>.parquet       one row per fault window          (Analysis.windows)
    OUT_DIR/generations/<run_id>.parquet   one row per slot generation       (Analysis.generations)
    OUT_DIR/residency/<run_id>.parquet     one row per swap-cache residency  (Analysis.residency)
    OUT_DIR/races/<run_id>.parquet         one row per race                  (Analysis.races)
    OUT_DIR/summary/<run_id>.parquet       one row: the capture's counts     (Analysis.summary, flattened)

``run_id`` is the capture's file name and the first 12 hex digits of its content's SHA-256, so two captures
called ``run.parquet`` from two hosts never collide and a capture that changed gets new files. Every file is
written atomically and carries the capture's metadata twice: as columns (:data:`META_COLUMNS`, the same
value on every row, so a query over many captures can group by kernel or host) and in the file's key-value
metadata under ``swaprace.derived`` (JSON: the same values plus the tool version and the source path).
Nullable integers stay nullable (``entry``, ``install_ns``...); categorical columns are written as Arrow
dictionaries of strings (DuckDB reads them as VARCHAR). A table with no rows is still written, with its
columns, so every capture has all five files.

Only pyarrow, pandas and the analysis are imported here: ``swaprace analyze --out-dir`` stays as light as
``swaprace analyze``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from swaprace import __version__
from swaprace.capture import atomic_output

TABLES = ("windows", "generations", "residency", "races", "summary")
#: The derived tables' layout; bumped when a column changes, so `swaprace fleet` derives every capture again.
DERIVED_FORMAT = 1
META_KEY = b"swaprace.derived"
#: The metadata columns on every row of every derived table.
META_COLUMNS = ("run_id", "capture", "content_hash", "kernel_release", "host", "backend", "source_format",
                "lost_events", "lost_known")
_HASH_BLOCK = 4 << 20
_TEXT_COLUMNS = ("comm", "reason", "summary_json")

PathLike = Union[str, "os.PathLike[str]"]


def tool_version() -> str:
    """What the derived tables depend on: the package version, the derived format, and a digest of the
    analysis and derive code (a rule change in a development tree re-derives, even without a version bump)."""
    digest = hashlib.sha256()
    here = Path(__file__).resolve()
    for source in (here.parent.parent / "analysis" / "model.py", here):
        try:
            digest.update(source.read_bytes())
        except OSError:
            digest.update(str(source).encode())
    return f"{__version__}/derived-{DERIVED_FORMAT}/{digest.hexdigest()[:10]}"


def content_hash(path: PathLike) -> str:
    """SHA-256 of the file's bytes (hex), read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(_HASH_BLOCK)
            if not block:
                return digest.hexdigest()
            digest.update(block)


def make_run_id(path: PathLike, digest: str) -> str:
    """``<file name>-<first 12 hex digits of the content hash>``."""
    return f"{Path(path).name}-{digest[:12]}"


@dataclass
class Derived:
    """What :func:`derive` wrote for one capture."""

    capture: str
    run_id: str
    content_hash: str
    tool_version: str
    paths: dict[str, str]  # table -> file
    counts: dict[str, Any] = field(default_factory=dict)  # the summary row's numbers
    events: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"capture": self.capture, "run_id": self.run_id, "content_hash": self.content_hash,
                "tool_version": self.tool_version, "paths": dict(self.paths), "counts": dict(self.counts),
                "events": self.events, "seconds": round(self.seconds, 3)}


def derive(capture_path: PathLike, out_dir: PathLike, fmt: str | None = None,
           digest: str | None = None) -> Derived:
    """Analyse ``capture_path`` and write its derived tables under ``out_dir`` (see the module docstring).

    ``digest`` is the capture's content hash when the caller computed it already.
    """
    from swaprace.analysis.model import analyze
    from swaprace.readers import read_any

    started = time.perf_counter()
    digest = digest or content_hash(capture_path)
    analysis = analyze(read_any(capture_path, fmt))
    derived = write_derived(analysis, capture_path, out_dir, digest=digest)
    derived.seconds = time.perf_counter() - started
    return derived


def write_derived(analysis, capture_path: PathLike, out_dir: PathLike, digest: str | None = None) -> Derived:
    """Write the derived tables of an :class:`~swaprace.analysis.model.Analysis` of ``capture_path``."""
    digest = digest or content_hash(capture_path)
    run_id = make_run_id(capture_path, digest)
    version = tool_version()
    meta = analysis.capture.meta
    summary = analysis.summary
    values = {
        "run_id": run_id,
        "capture": Path(capture_path).name,
        "content_hash": digest,
        "kernel_release": meta.kernel_release,
        "host": meta.host,
        "backend": meta.backend,
        "source_format": analysis.capture.source_format,
        "lost_events": meta.lost_events,
        "lost_known": bool(meta.lost_known),
    }
    kv = {**values, "source_path": str(capture_path), "tool_version": version, "derived_format": DERIVED_FORMAT,
          "lost": dict(meta.lost), "duration_s": meta.duration_s, "start_time_ns": meta.start_time_ns,
          "filters": summary.get("filters") or {}}
    row = summary_row(summary)
    frames = {"windows": analysis.windows, "generations": analysis.generations, "residency": analysis.residency,
              "races": analysis.races, "summary": pd.DataFrame([row])}
    paths = {}
    out_dir = Path(out_dir)
    for table in TABLES:
        path = out_dir / table / f"{run_id}.parquet"
        _write_table(frames[table], values, kv, path)
        paths[table] = str(path)
    counts = {k: v for k, v in row.items() if k != "summary_json"}
    return Derived(capture=str(capture_path), run_id=run_id, content_hash=digest, tool_version=version,
                   paths=paths, counts=counts, events=int(summary["events"]))


def summary_row(summary: dict[str, Any]) -> dict[str, Any]:
    """The analyze summary as one flat row: the counts a fleet query adds up, plus the whole summary as JSON."""
    classes = summary["race_classes"]
    races = summary["races"]
    res = summary["residency"]
    prepare = summary.get("prepare") or {}
    time_range = summary.get("time_range_ns") or [None, None]
    row: dict[str, Any] = {
        "events": summary["events"],
        "skipped_lines": summary["skipped_lines"],
        "windows": summary["windows"],
        "windows_with_entry": summary["windows_with_entry"],
        "windows_with_page": summary["windows_with_page"],
        "lookup_hits": summary["lookup_hits"],
        "entries": summary["entries"],
        "ksm_copies": summary["ksm_copies"],
        "generations": summary["generations"],
        "reuses": summary["reuses"],
        "history_gaps": summary["history_gaps"],
        "evictions": res["evictions"],
        "rereads": res["rereads"],
        "cache_adds": res["cache_adds"],
        "cache_deletes": res["cache_deletes"],
        "races": len(races),
        "races_recovered": classes.get("recovered", 0),
        "races_benign": classes.get("benign", 0),
        "races_stale_install": classes.get("stale-install", 0),
        "uncertain_races": summary["uncertain_races"],
        "stale_install_uncertain": sum(1 for r in races if r["class"] == "stale-install" and r["uncertain"]),
        "prepare_calls": prepare.get("calls", 0),
        "prepare_backoffs": prepare.get("backoffs", 0),
        "prepare_conflicts": prepare.get("conflicts", 0),
        "installs_after_failed_prepare": prepare.get("installs_after_failed_prepare", 0),
        "lost_unplaced": bool(summary["lost_unplaced"]),
        "first_ns": time_range[0],
        "last_ns": time_range[1],
    }
    for outcome, n in summary["outcomes"].items():
        row[f"outcome_{outcome}"] = n
    row["summary_json"] = json.dumps(summary, sort_keys=True, default=str)
    return row


def _write_table(frame: pd.DataFrame, values: dict[str, Any], kv: dict[str, Any], path: Path) -> None:
    frame = frame.reset_index(drop=True)
    for col in frame.columns:
        if frame[col].dtype == object or (col in _TEXT_COLUMNS and not isinstance(frame[col].dtype, pd.CategoricalDtype)):
            # Python strings, or nothing at all in an empty table: an Arrow string column either way
            frame[col] = frame[col].astype("string")
    table = pa.Table.from_pandas(frame, preserve_index=False)
    n = table.num_rows
    # a column of an empty frame with no values has Arrow type null: give it a real type
    for i, fld in enumerate(table.schema):
        if pa.types.is_null(fld.type):
            table = table.set_column(i, pa.field(fld.name, pa.string()), pa.nulls(n, pa.string()))
    meta_cols = {
        "run_id": pa.string(), "capture": pa.string(), "content_hash": pa.string(),
        "kernel_release": pa.string(), "host": pa.string(), "backend": pa.string(), "source_format": pa.string(),
        "lost_events": pa.int64(), "lost_known": pa.bool_(),
    }
    for name in META_COLUMNS:
        typ = meta_cols[name]
        value = values[name]
        column = pa.nulls(n, typ) if value is None else pa.repeat(pa.scalar(value, typ), n)
        if name in table.schema.names:  # never shadow an analysis column
            name = f"capture_{name}"
        table = table.append_column(pa.field(name, typ), column)
    schema_meta = dict(table.schema.metadata or {})  # keeps pandas' own: nullable ints read back as such
    schema_meta[META_KEY] = json.dumps(kv, sort_keys=True, default=str).encode()
    table = table.replace_schema_metadata(schema_meta)
    with atomic_output(path) as fh:
        pq.write_table(table, fh, compression="zstd")


def read_derived_meta(path: PathLike) -> dict[str, Any]:
    """The ``swaprace.derived`` key-value metadata of a derived Parquet file."""
    raw = (pq.read_schema(path).metadata or {}).get(META_KEY)
    return json.loads(raw) if raw else {}


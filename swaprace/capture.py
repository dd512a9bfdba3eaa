"""Native captures: Parquet files holding the event table and its :class:`CaptureMeta`.

Written atomically (temp file in the same directory, fsync, rename) so that an interrupted writer never
leaves a half file under the final name.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO, Iterable, Iterator, Union

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from swaprace.errors import SwapraceError, first_line
from swaprace.events import INPUT_COLUMNS, Capture, CaptureMeta, normalize, to_arrow
from swaprace.osutil import UnsafeOutput, atomic_write

META_KEY = b"swaprace"
PARQUET_MAGIC = b"PAR1"

PathLike = Union[str, "os.PathLike[str]"]


@contextlib.contextmanager
def atomic_output(path: PathLike, mode: str = "wb", inputs: tuple = ()) -> Iterator[IO]:
    """:func:`swaprace.osutil.atomic_write` with its refusals and I/O errors as one :class:`SwapraceError`.

    Readers never see a half-written file under the final name, even if the writer is killed.
    """
    try:
        with atomic_write(path, mode, inputs=inputs) as fh:
            yield fh
    except UnsafeOutput as exc:
        raise SwapraceError(str(exc)) from None
    except OSError as exc:
        raise SwapraceError(f"cannot write {path}: {exc.strerror or exc}") from None


def write_capture(capture: Capture, path: PathLike, inputs: tuple = ()) -> Path:
    """Write ``capture`` to ``path`` as Parquet, atomically. Returns the final path."""
    table = to_arrow(normalize(capture.events))
    schema_meta = dict(table.schema.metadata or {})
    if capture.unknown_functions:  # kept with the capture: the summary lists them
        capture.meta.extra["unknown_functions"] = dict(capture.unknown_functions)
    schema_meta[META_KEY] = capture.meta.to_json().encode()
    table = table.replace_schema_metadata(schema_meta)
    with atomic_output(path, inputs=inputs) as fh:
        pq.write_table(table, fh, compression="zstd")
    return Path(path)


def write_raw_trace(path: PathLike, lines: Iterable[str], meta: CaptureMeta) -> Path:
    """Raw ftrace text with the metadata as a leading ``# swaprace: {json}`` line (the offline reader's
    header), written atomically."""
    with atomic_output(path, "w") as fh:
        fh.write(f"# swaprace: {meta.to_json()}\n")
        for line in lines:
            fh.write(line + "\n")
    return Path(path)


def read_capture(path: PathLike | IO[bytes], name: str | None = None) -> Capture:
    """Read a native Parquet capture (a path or a seekable binary file); any damage becomes one
    :class:`SwapraceError`."""
    source = path
    if name:
        path = Path(name)
    elif hasattr(path, "read"):
        path = Path(getattr(path, "name", "<input>"))
    else:
        path = Path(path)
    try:
        table = pq.read_table(source)
    except (pa.ArrowException, OSError) as exc:
        raise SwapraceError(f"{path}: not a readable Parquet capture ({first_line(exc)})") from None
    from swaprace.readers.validate import (
        check_arrow_types,
        check_events,
        meta_from_json,
    )

    raw = (table.schema.metadata or {}).get(META_KEY)
    if raw:
        meta = meta_from_json(raw.decode("utf-8", "backslashreplace"), f"{path} (Parquet footer)")
    else:
        meta = CaptureMeta(backend="parquet")
    check_arrow_types(table.schema, str(path))
    try:
        frame = table.to_pandas(types_mapper=_NULLABLE_INTS.get)  # a null never turns an int column to float
        missing = [c for c in INPUT_COLUMNS if c not in frame.columns and c != "pid"]
        if missing:
            raise KeyError(f"no column {', '.join(missing)}")
        check_events(frame, str(path))
        events = normalize(frame)
    except (ValueError, TypeError, KeyError, OverflowError, pa.ArrowException) as exc:
        raise SwapraceError(f"{path}: Parquet file is not a swaprace capture ({first_line(exc)})") from None
    unknown = {str(k): int(v) for k, v in (meta.extra.get("unknown_functions") or {}).items()}
    return Capture(events=events, meta=meta, source_format="parquet", unknown_functions=unknown)


_NULLABLE_INTS = {
    pa.int8(): pd.Int8Dtype(), pa.int16(): pd.Int16Dtype(), pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype(),
    pa.uint8(): pd.UInt8Dtype(), pa.uint16(): pd.UInt16Dtype(), pa.uint32(): pd.UInt32Dtype(),
    pa.uint64(): pd.UInt64Dtype(),
}

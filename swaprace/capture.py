"""Native captures: Parquet files holding the event table and its :class:`CaptureMeta`.

Written atomically (temp file in the same directory, fsync, rename) so that an interrupted writer never
leaves a half file under the final name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterable, Iterator, Union

import pyarrow as pa
import pyarrow.parquet as pq

from swaprace.errors import SwapraceError
from swaprace.events import Capture, CaptureMeta, normalize, to_arrow

META_KEY = b"swaprace"
PARQUET_MAGIC = b"PAR1"

PathLike = Union[str, "os.PathLike[str]"]


@contextlib.contextmanager
def atomic_output(path: PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temp file beside ``path``; on success fsync it and rename it over ``path``, else remove it.

    Readers never see a half-written file under the final name, even if the writer is killed.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a capture gets a normal file's mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_capture(capture: Capture, path: PathLike) -> Path:
    """Write ``capture`` to ``path`` as Parquet, atomically. Returns the final path."""
    table = to_arrow(normalize(capture.events))
    schema_meta = dict(table.schema.metadata or {})
    if capture.unknown_functions:  # kept with the capture: the summary lists them
        capture.meta.extra["unknown_functions"] = dict(capture.unknown_functions)
    schema_meta[META_KEY] = capture.meta.to_json().encode()
    table = table.replace_schema_metadata(schema_meta)
    with atomic_output(path) as fh:
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


def read_capture(path: PathLike) -> Capture:
    """Read a native Parquet capture; any damage becomes one :class:`SwapraceError`."""
    path = Path(path)
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise SwapraceError(f"{path}: not a readable Parquet capture ({_first_line(exc)})") from None
    raw = (table.schema.metadata or {}).get(META_KEY)
    meta = CaptureMeta.from_json(raw.decode()) if raw else CaptureMeta(backend="parquet")
    try:
        events = normalize(table.to_pandas())
    except (ValueError, TypeError, KeyError) as exc:
        raise SwapraceError(f"{path}: Parquet file is not a swaprace capture ({_first_line(exc)})") from None
    unknown = {str(k): int(v) for k, v in (meta.extra.get("unknown_functions") or {}).items()}
    return Capture(events=events, meta=meta, source_format="parquet", unknown_functions=unknown)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]

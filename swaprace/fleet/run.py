"""The map over many captures: a local process pool (the default: no server) or a dask.distributed cluster.

Each capture is one task, :func:`derive_task`, that runs where the capture is read: it hashes the capture,
compares the hash and the tool version with what the manifest says was derived last time, and either says
"up to date" or derives the tables (:func:`swaprace.fleet.derive.derive`). A task never raises: a capture that
cannot be read or analysed comes back as a ``failed`` record with the error, so one bad capture never stops
the other hundreds. The parent collects the records as they finish, reports progress, removes the files of a
capture's previous content, and writes ``OUT_DIR/manifest.json`` atomically.

``manifest.json``::

    {"tool_version": "...", "captures": {"/abs/path/run.parquet": {"status": "derived" | "up-to-date" |
     "failed", "run_id": ..., "content_hash": ..., "tool_version": ..., "paths": {table: file}, "error": ...,
     "counts": {...}, "events": N, "seconds": s}}}
"""

from __future__ import annotations

import glob
import json
import os
import time
import traceback
import uuid
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from swaprace.capture import atomic_output
from swaprace.errors import SwapraceError
from swaprace.fleet.derive import (
    TABLES,
    content_hash,
    derive,
    make_run_id,
    tool_version,
)

MANIFEST = "manifest.json"
#: What a directory given to `swaprace fleet` is searched for (recursively); a glob or a file is taken as is.
CAPTURE_SUFFIXES = (".parquet", ".trace", ".jsonl", ".ndjson", ".perf", ".txt")
ENGINES = ("local", "dask")

Progress = Callable[[int, int, dict], None]


def find_captures(inputs: Iterable[str], out_dir: str | os.PathLike | None = None) -> list[str]:
    """Capture files named by ``inputs``: files as given, globs expanded (``**`` recursive), directories
    searched recursively for :data:`CAPTURE_SUFFIXES` (hidden files and ``out_dir`` left out). Sorted, unique,
    absolute. A glob or directory that yields nothing is an error, so a typo is not an empty fleet."""
    out = Path(out_dir).resolve() if out_dir else None
    found: dict[str, None] = {}
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            hits = [p for p in sorted(path.rglob("*"))
                    if p.is_file() and p.suffix in CAPTURE_SUFFIXES and not _hidden(p.relative_to(path))
                    and not (out and _inside(p.resolve(), out))]
            if not hits:
                raise SwapraceError(f"{item}: no capture files in this directory ({', '.join(CAPTURE_SUFFIXES)})")
        elif path.is_file():
            hits = [path]
        else:
            hits = [Path(p) for p in sorted(glob.glob(item, recursive=True)) if Path(p).is_file()]
            if not hits:
                raise SwapraceError(f"{item}: no such file, directory, or matching capture")
        for p in hits:
            found[str(p.resolve())] = None
    return sorted(found)


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def _inside(path: Path, directory: Path) -> bool:
    try:
        path.relative_to(directory)
        return True
    except ValueError:
        return False


def derive_task(capture: str, out_dir: str, known: dict | None = None, force: bool = False) -> dict[str, Any]:
    """One capture: skip it when ``known`` (its manifest record) matches its content and this tool version and
    its files are all there; else derive it. Returns a manifest record; never raises."""
    started = time.perf_counter()
    version = tool_version()
    record: dict[str, Any] = {"capture": capture, "tool_version": version, "worker": _worker_name()}
    try:
        digest = content_hash(capture)
        record.update(content_hash=digest, run_id=make_run_id(capture, digest))
        if (not force and known and known.get("status") in ("derived", "up-to-date")
                and known.get("content_hash") == digest and known.get("tool_version") == version
                and all(Path(p).is_file() for p in (known.get("paths") or {}).values())
                and set(known.get("paths") or {}) == set(TABLES)):
            record.update({k: known[k] for k in ("paths", "counts", "events") if k in known})
            record["status"] = "up-to-date"
        else:
            derived = derive(capture, out_dir, digest=digest)
            record.update(derived.to_json())
            record["capture"] = capture
            record["status"] = "derived"
    except SwapraceError as exc:
        record.update(status="failed", error=str(exc))
    except Exception as exc:  # noqa: BLE001 -- a task reports every failure, it never takes the fleet down
        frames = traceback.extract_tb(exc.__traceback__)
        where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}{where}")
    record["seconds"] = round(time.perf_counter() - started, 3)
    return record


def _worker_name() -> str:
    return f"{os.uname().nodename}:{os.getpid()}"


@dataclass(frozen=True)
class FleetOptions:
    """What ``swaprace fleet`` is asked to do (field names are its option names; see its ``--help``)."""

    out_dir: str
    inputs: tuple[str, ...] = ()  # globs, directories or captures to derive; none: only query out_dir
    engine: str = "local"
    scheduler: str | None = None
    workers: int | None = None
    force: bool = False
    show_summary: bool = False
    sql: str | None = None
    report: bool = False

    @property
    def queries(self) -> bool:
        """Whether anything is asked of the derived tables (the summary, a query, the report)."""
        return bool(self.show_summary or self.sql or self.report)

    def derive(self, progress: Progress | None = None) -> FleetResult:
        """The map over ``inputs`` (:func:`run_fleet`)."""
        return run_fleet(self.inputs, self.out_dir, engine=self.engine, scheduler=self.scheduler,
                         workers=self.workers, force=self.force, progress=progress)


@dataclass
class FleetResult:
    """What one `swaprace fleet` map did."""

    out_dir: str
    engine: str
    records: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def by_status(self, status: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("status") == status]

    @property
    def failed(self) -> list[dict[str, Any]]:
        return self.by_status("failed")

    @property
    def all_failed(self) -> bool:
        return bool(self.records) and len(self.failed) == len(self.records)

    def to_json(self) -> dict[str, Any]:
        return {
            "out_dir": self.out_dir, "engine": self.engine, "seconds": round(self.seconds, 3),
            "captures": len(self.records), "derived": len(self.by_status("derived")),
            "up_to_date": len(self.by_status("up-to-date")), "failed": len(self.failed),
            "all_failed": self.all_failed,
            "failures": [{"capture": r["capture"], "error": r.get("error")} for r in self.failed],
            "records": self.records,
        }


def load_manifest(out_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        return {"captures": {}}
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"captures": {}}  # unreadable: derive everything again, and write a good one
    manifest.setdefault("captures", {})
    return manifest


def write_manifest(out_dir: str | os.PathLike, manifest: dict[str, Any]) -> None:
    with atomic_output(Path(out_dir) / MANIFEST, "w") as fh:
        json.dump(manifest, fh, indent=1, sort_keys=True)


def run_fleet(inputs: Iterable[str], out_dir: str | os.PathLike, engine: str = "local",
              scheduler: str | None = None, workers: int | None = None, force: bool = False,
              progress: Progress | None = None, client: Any = None, connect_timeout: float = 20) -> FleetResult:
    """Derive every capture named by ``inputs`` into ``out_dir`` (see the module docstring).

    ``engine`` ``local`` runs a process pool of ``workers`` (default: the CPU count); ``dask`` runs the tasks on
    a dask.distributed cluster: ``client`` when given, else the scheduler at ``scheduler``, else a
    LocalCluster of ``workers`` processes started for this call. A ``scheduler`` implies ``dask``.
    """
    if scheduler or client is not None:
        engine = "dask"
    if engine not in ENGINES:
        raise SwapraceError(f"unknown engine {engine!r} (choose from {', '.join(ENGINES)})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    captures = find_captures(inputs, out)
    manifest = load_manifest(out)
    known = manifest["captures"]
    started = time.perf_counter()
    result = FleetResult(out_dir=str(out), engine=engine)
    jobs = [(c, str(out.resolve()), known.get(c), force) for c in captures]

    def collect(record: dict[str, Any]) -> None:
        result.records.append(record)
        previous = known.get(record["capture"]) or {}
        if record.get("status") == "derived" and previous.get("run_id") not in (None, record.get("run_id")):
            _remove_files(previous.get("paths") or {}, keep=record.get("paths") or {})
        if (record.get("status") == "failed" and previous.get("paths")
                and (previous.get("content_hash"), previous.get("tool_version"))
                != (record.get("content_hash"), record.get("tool_version"))):
            _remove_files(previous["paths"], keep={})  # no tables of content (or rules) that are gone
        known[record["capture"]] = {k: v for k, v in record.items() if k != "worker"}
        if progress:
            progress(len(result.records), len(jobs), record)

    try:
        if engine == "local":
            _run_local(jobs, workers, collect)
        else:
            _run_dask(jobs, scheduler, workers, client, collect, connect_timeout)
    finally:
        result.records.sort(key=lambda r: r["capture"])
        manifest["tool_version"] = tool_version()
        write_manifest(out, manifest)
    result.seconds = time.perf_counter() - started
    return result


def _remove_files(paths: dict[str, str], keep: dict[str, str]) -> None:
    keep_set = set(keep.values())
    for path in paths.values():
        if path not in keep_set:
            Path(path).unlink(missing_ok=True)


def _run_local(jobs: list[tuple], workers: int | None, collect: Callable[[dict], None]) -> None:
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs) or 1))
    if workers == 1 or len(jobs) <= 1:
        for job in jobs:
            collect(derive_task(*job))
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(derive_task, *job): job for job in jobs}
        for future in as_completed(futures):
            collect(_outcome(future, futures[future][0]))


def _outcome(future: Any, capture: str) -> dict[str, Any]:
    """A task's record, or a failed record when the worker itself died (OOM kill, segfault...)."""
    try:
        return future.result()
    except Exception as exc:  # noqa: BLE001 -- BrokenProcessPool, KilledWorker, CommClosedError...
        return {"capture": capture, "status": "failed", "error": f"worker lost: {type(exc).__name__}: {exc}"}


def _run_dask(jobs: list[tuple], scheduler: str | None, workers: int | None, client: Any,
              collect: Callable[[dict], None], connect_timeout: float = 20) -> None:
    try:
        from dask.distributed import Client, LocalCluster
        from dask.distributed import as_completed as dask_completed
    except ImportError:
        raise SwapraceError("the dask engine needs dask.distributed: pip install 'swaprace[fleet]'") from None
    own_cluster = own_client = None
    try:
        if client is None:
            if scheduler:
                try:
                    own_client = client = Client(scheduler, timeout=f"{connect_timeout}s")
                except (OSError, TimeoutError) as exc:
                    raise SwapraceError(f"cannot reach the dask scheduler at {scheduler}: {exc}") from None
            else:
                own_cluster = LocalCluster(n_workers=workers or min(os.cpu_count() or 1, 4), threads_per_worker=1,
                                           processes=True, dashboard_address=None)
                own_client = client = Client(own_cluster)
        futures = {}
        batch = uuid.uuid4().hex[:8]
        for n, job in enumerate(jobs):
            # pure=False: a task's answer depends on the files, not only on its arguments
            fut = client.submit(derive_task, *job, pure=False, key=f"swaprace-derive-{batch}-{n}")
            futures[fut] = job[0]
        for fut in dask_completed(list(futures)):
            collect(_outcome(fut, futures[fut]))
    finally:
        if own_client is not None:
            own_client.close()
        if own_cluster is not None:
            own_cluster.close()

"""The one event model: every backend writes it, every reader produces it, every analysis consumes it.

A capture is a table with one row per probe hit plus one metadata record (:class:`CaptureMeta`).

Columns (this is the only place they are defined):

==============  ==========  ==============================================================================
column          type        meaning
==============  ==========  ==============================================================================
``ts_ns``       int64       event time in ns (bpf_ktime_get_ns, or the ftrace/perf timestamp)
``cpu``         int32       CPU that hit the probe
``pid``         int32       thread-group id (process); equal to ``tid`` when the source cannot tell
``tid``         int32       thread id (the ftrace "pid")
``comm``        string      task command name
``func``        string      kernel symbol actually probed (``do_swap_page``, ``swap_cache_get_folio``, ...)
``role``        string      what the function means to the analysis: one of :data:`ROLES`
``phase``       string      ``call`` (function entry) or ``return``
``entry``       uint64      ``swp_entry_t.val`` where the event knows it (null otherwise)
``folio``       uint64      page / folio pointer the event is about (null otherwise)
``retval``      uint64      raw 64-bit return value on ``return`` events (null on calls)
``nr``          uint32      how many consecutive entries (a large folio's pages) the event covers, from
                            ``entry`` on; null means 1 (the kernel function has no ``nr``)
``swap_type``   uint8       derived from ``entry``: swap device index (null when ``entry`` is null)
``swap_offset`` uint64      derived from ``entry``: slot offset on that device
==============  ==========  ==============================================================================

Which value a role's *call* event carries (its "key", the first fetch argument of an ftrace probe) is
:data:`KEY_COLUMN`; a *return* event's first value is always the return value.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np
import pandas as pd
import pyarrow as pa

# --- roles -----------------------------------------------------------------------------------------

#: The four roles of the race itself.
CORE_ROLES = ("fault", "lookup", "ksm_copy", "free_cache")
#: The slot's life and the swap cache's residency inside it (see swaprace.analysis.model for the rules).
LIFECYCLE_ROLES = (
    "slot_alloc",  # a swap slot is allocated: a new generation of its entry (folio_alloc_swap, get_swap_page)
    "slot_free",  # the slot's swap count reached zero: its generation ends (free_swap_slot, swap_entries_free)
    "swap_put",  # one swap count dropped after a fault installed its pte (swap_free[_nr], folio_put_swap)
    "zap_put",  # one swap count dropped by an unmap (free_swap_and_cache[_nr], swap_put_entries_direct)
    "swap_dup",  # one swap count added (fork: swap_duplicate, folio_dup_swap, swap_dup_entry_direct)
    "cache_add",  # a folio enters the swap cache under an entry (add_to_swap_cache, __swap_cache_add_folio)
    "cache_delete",  # a folio leaves the swap cache; the slot stays (__delete_from_swap_cache, ...)
    "swap_read",  # a folio is read from its slot (swap_readpage, swap_read_folio): the skip path's page
    "swap_write",  # a folio is written to its slot (swap_writepage, swap_writeout): a generation's data lands
    "prepare",  # swapcache_prepare(): SWAP_HAS_CACHE taken on the synchronous-IO path (13ddaf26be32)
    "prepare_clear",  # swapcache_clear(): that SWAP_HAS_CACHE dropped again (13ddaf26be32)
)
ROLES = CORE_ROLES + LIFECYCLE_ROLES

#: What a role's call event carries as its key value: the swap entry, the page/folio, or nothing.
KEY_COLUMN: Dict[str, Optional[str]] = {
    "fault": None,
    "lookup": "entry",
    "ksm_copy": "folio",
    "free_cache": "folio",
    "slot_alloc": "folio",
    "slot_free": "entry",
    "swap_put": "entry",
    "zap_put": "entry",
    "swap_dup": "entry",
    "cache_add": "folio",
    "cache_delete": "folio",
    "swap_read": "folio",
    "swap_write": "folio",
    "prepare": "entry",
    "prepare_clear": "entry",
}

PHASES = ("call", "return")

# --- swp_entry_t encoding ----------------------------------------------------------------------------
# x86-64 (and every 64-bit arch with the generic layout): swp_entry(type, offset) =
# (type << SWP_TYPE_SHIFT) | offset, SWP_TYPE_SHIFT = BITS_PER_XA_VALUE - MAX_SWAPFILES_SHIFT = 63 - 5.
SWP_TYPE_SHIFT = 58
SWP_OFFSET_MASK = (1 << SWP_TYPE_SHIFT) - 1


def swp_entry(swap_type: int, offset: int) -> int:
    """Build a ``swp_entry_t.val`` from a device index and a slot offset."""
    return (swap_type << SWP_TYPE_SHIFT) | (offset & SWP_OFFSET_MASK)


# --- the table -----------------------------------------------------------------------------------------

_DICT = pa.dictionary(pa.int32(), pa.string())

SCHEMA = pa.schema(
    [
        ("ts_ns", pa.int64()),
        ("cpu", pa.int32()),
        ("pid", pa.int32()),
        ("tid", pa.int32()),
        ("comm", _DICT),
        ("func", _DICT),
        ("role", _DICT),
        ("phase", _DICT),
        ("entry", pa.uint64()),
        ("folio", pa.uint64()),
        ("retval", pa.uint64()),
        ("nr", pa.uint32()),
        ("swap_type", pa.uint8()),
        ("swap_offset", pa.uint64()),
    ]
)
COLUMNS = tuple(SCHEMA.names)
#: Columns a producer must supply; ``swap_type``/``swap_offset`` are derived by :func:`normalize`, and ``nr``
#: may be left out (null: one entry).
INPUT_COLUMNS = tuple(c for c in COLUMNS[:-2] if c != "nr")

_INT_DTYPES = {"ts_ns": "int64", "cpu": "int32", "pid": "int32", "tid": "int32"}
_NULLABLE_U64 = ("entry", "folio", "retval")
_CATEGORICAL = ("comm", "func", "role", "phase")


def normalize(df: pd.DataFrame) -> pd.DataFrame:
    """Return ``df`` with the model's dtypes, derived columns, and rows sorted by time (stable).

    Accepts any frame holding :data:`INPUT_COLUMNS` (``pid`` defaults to ``tid`` when missing); nullable
    values may be NaN/None. Events from several CPUs arrive out of order, so every producer goes through here.
    """
    df = df.copy()
    if "pid" not in df.columns:
        df["pid"] = df["tid"]
    missing = [c for c in INPUT_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"event table lacks columns: {', '.join(missing)}")
    for col, dtype in _INT_DTYPES.items():
        df[col] = df[col].astype(dtype)
    for col in _NULLABLE_U64:
        df[col] = df[col].astype("UInt64")
    df["nr"] = df["nr"].astype("UInt32") if "nr" in df.columns else pd.array([pd.NA] * len(df), dtype="UInt32")
    for col in _CATEGORICAL:
        df[col] = df[col].astype("string").astype("category")
    df["swap_type"], df["swap_offset"] = _split_entries(df["entry"])
    df = df[list(COLUMNS)]
    if len(df) and not df["ts_ns"].is_monotonic_increasing:
        df = df.sort_values("ts_ns", kind="stable")
    return df.reset_index(drop=True)


def _split_entries(entry: pd.Series):
    """(swap_type, swap_offset) columns derived from a nullable uint64 ``entry`` column."""
    raw = entry.to_numpy(dtype="uint64", na_value=0)
    mask = entry.isna().to_numpy()
    swap_type = pd.arrays.IntegerArray((raw >> np.uint64(SWP_TYPE_SHIFT)).astype("uint8"), mask)
    offset = pd.arrays.IntegerArray(raw & np.uint64(SWP_OFFSET_MASK), mask.copy())
    return pd.Series(swap_type, index=entry.index), pd.Series(offset, index=entry.index)


def empty_events() -> pd.DataFrame:
    """A zero-row event table with the model's dtypes."""
    return normalize(pd.DataFrame({c: pd.Series([], dtype="object") for c in INPUT_COLUMNS}).astype(
        {"ts_ns": "int64", "cpu": "int32", "pid": "int32", "tid": "int32"}))


def to_arrow(df: pd.DataFrame) -> pa.Table:
    """The event frame as an Arrow table with exactly :data:`SCHEMA`."""
    return pa.Table.from_pandas(df, schema=SCHEMA, preserve_index=False)


# --- metadata ------------------------------------------------------------------------------------------

#: 2: the ``nr`` column and the lifecycle roles zap_put, swap_dup, swap_read, prepare_clear (version 1 files read
#: as before, ``nr`` null).
FORMAT_VERSION = 2


@dataclass
class CaptureMeta:
    """What a capture knows about how it was made.

    ``lost`` maps a loss source (``perf_buffer``, ``ringbuf``, ``kretprobe_missed:<func>``,
    ``kprobe_missed:<func>``, ``bpf_recursion_missed:<program>``, ``ftrace_overrun``, ...) to a count. ``lost_known`` is False when the source cannot tell at all
    (a text log pasted from elsewhere): then :attr:`lost_events` is None, never a made-up zero.
    ``detector`` holds the in-kernel detector's findings (counters and races) when the bcc backend ran it.
    """

    kernel_release: Optional[str] = None
    backend: Optional[str] = None  # "bcc", "ftrace", or the offline format ("ftrace-text", "perf-script", ...)
    symbols: Dict[str, str] = field(default_factory=dict)  # role -> kernel symbol probed
    lost: Dict[str, int] = field(default_factory=dict)
    lost_known: bool = False
    #: Where losses happened, as far as the source can tell: ``[start_ns, end_ns, count]`` on the event clock
    #: (events of one CPU between two it kept). Losses not placed here could be anywhere in the capture.
    lost_intervals: List[List[int]] = field(default_factory=list)
    start_time_ns: Optional[int] = None  # wall-clock (Unix epoch) ns when tracing started
    start_ts_ns: Optional[int] = None  # the event clock's value at that moment
    duration_s: Optional[float] = None
    host: Optional[str] = None
    command: Optional[List[str]] = None
    tool_version: Optional[str] = None
    detector: Optional[Dict[str, Any]] = None
    extra: Dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @property
    def lost_events(self) -> Optional[int]:
        return int(sum(self.lost.values())) if self.lost_known else None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "CaptureMeta":
        raw = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        extra = {k: v for k, v in raw.items() if k not in known}
        meta = cls(**{k: v for k, v in raw.items() if k in known})
        meta.extra.update(extra)
        return meta


@dataclass
class Capture:
    """An event table, its metadata, and what the reader had to skip."""

    events: pd.DataFrame
    meta: CaptureMeta
    source_format: str = "parquet"
    skipped_lines: int = 0
    #: Events of kernel functions the catalog does not know, counted by function name (kept out of the table,
    #: never dropped silently: the summary lists them).
    unknown_functions: Dict[str, int] = field(default_factory=dict)

"""The one definition of what the BPF program and its loader share: record layouts, role ids, counter slots.

The C side never spells these out: :func:`c_header` generates the ``struct sr_event`` / ``struct sr_race``
definitions and the ``ROLE_*`` / ``STAT_*`` / ``RACE_*`` / ``OBTAIN_*`` defines from the tables below, and the
program is compiled with that header in front of ``swaprace.bpf.c``. The numpy dtypes come from the same
tables. At load time :func:`check_compiled` compares the compiler's layout (bcc's ctypes structs of the
``layout_event``/``layout_race`` maps, which clang laid out) with the dtypes, field by field.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np

from swaprace.errors import SwapraceError
from swaprace.events import ROLES

_C = {"u64": ("u64", "<u8", 8), "u32": ("u32", "<u4", 4), "u16": ("u16", "<u2", 2), "u8": ("u8", "u1", 1)}

#: One probe hit. ``nr``: entries the event covers (0: the function has no nr). ``lost_before``: records this
#: CPU could not write since its previous written record (so losses are placed between two records).
EVENT_FIELDS: Sequence[Tuple[str, str, int]] = (
    ("ts", "u64", 1), ("entry", "u64", 1), ("folio", "u64", 1), ("retval", "u64", 1),
    ("pid", "u32", 1), ("tid", "u32", 1), ("nr", "u32", 1), ("lost_before", "u32", 1),
    ("cpu", "u16", 1), ("role", "u8", 1), ("phase", "u8", 1), ("valid", "u8", 1), ("pad", "u8", 3),
    ("comm", "char", 16),
)
#: A race the detector found (the offline analysis' race fields; see swaprace.analysis.model).
RACE_FIELDS: Sequence[Tuple[str, str, int]] = (
    ("entry", "u64", 1), ("window_start", "u64", 1), ("window_end", "u64", 1), ("obtain", "u64", 1),
    ("release", "u64", 1), ("realloc", "u64", 1), ("install", "u64", 1), ("folio", "u64", 1),
    ("installed_folio", "u64", 1), ("ksm_copy", "u64", 1),
    ("tid", "u32", 1), ("pid", "u32", 1), ("release_tid", "u32", 1), ("realloc_tid", "u32", 1),
    ("klass", "u32", 1), ("obtain_kind", "u32", 1), ("uncertain", "u32", 1), ("pad", "u32", 1),
)
#: Events staged per CPU and written as one ring-buffer record (one user-space callback per batch).
EVENT_BATCH = 32

VALID_BITS = {"ENTRY": 1, "FOLIO": 2, "RETVAL": 4, "NR": 8}
PHASES = ("call", "return")
#: Same order as swaprace.analysis.model.RACE_CLASSES / OBTAIN_KINDS (checked by tests).
RACE_CLASSES = ("recovered", "benign", "stale-install")
OBTAIN_KINDS = ("lookup", "cache_add", "read")
#: How a role's call knows the entry / nr (swaprace.kernel.catalog ENTRY_SOURCES / NR_SOURCES + none).
ENTRY_SRC_IDS = {None: 0, "arg": 1, "folio": 2, "return": 3, "cluster": 4, "subpage": 5}
NR_SRC_IDS = {None: 0, "arg": 1, "folio": 2, "subpage": 3}

#: Counter slots after the per-role hit counters (2 per role: call, return).
STAT_NAMES: List[str] = [
    "event_drops",  # event records not written (buffer full); placed by the next record's lost_before
    "windows",  # do_swap_page returns that closed a window
    "windows_with_entry",  # ... whose thread made a lookup in it
    "lookup_hits",  # lookups returning a folio
    "bindings",  # folio <-> entry bindings (lookup hits, cache adds)
    "unbindings",  # cache deletes / free_cache true of the bound folio
    "slot_allocs",
    "releases",  # slot frees (slot_free, or free_cache true with no slot free seen inside it)
    "reuses",  # allocations of a slot whose previous event was a free
    "rereads",  # cache adds of an entry whose generation already had a residency
    "obtained",  # windows whose thread obtained its page
    "installs",  # windows whose thread installed its entry
    "races_recovered",
    "races_benign",
    "races_stale_install",
    "race_table_full",  # race found, race table full (still counted above)
    "state_map_full",  # detector state could not be stored
    "race_stream_drops",  # race record not streamed (still in the race table)
    "returns_without_call",  # return probe with no matching call (attached mid-call, or a lost call)
    "releases_unattributed",  # free_cache true of a folio with no known entry
    "slot_states_created",  # per-entry states created; beyond ENTRY_STATES the LRU forgot at least the excess
    "slot_state_misses",  # events on an entry with no state (new to the capture, or forgotten by the LRU)
    "window_stack_overflows",  # a window pushed on a full per-thread stack (the oldest, a lost return, dropped)
    "windows_without_return",  # stale windows under a returning one (their returns were lost): dropped
    "nr_truncated",  # events covering more than MAX_NR entries (only the first MAX_NR followed)
    "prepare_backoffs",  # swapcache_prepare -EEXIST
    "prepare_conflicts",  # two successful prepares of one entry with SWAP_HAS_CACHE held
    "installs_after_failed_prepare",
    "windows_uncertain",  # windows that saw a slot state created mid-window (history unknown)
]
STAT_BASE = 2 * len(ROLES)
NR_STATS = STAT_BASE + len(STAT_NAMES)


def _dtype(fields) -> np.dtype:
    parts = []
    for name, ctype, count in fields:
        if ctype == "char":
            parts.append((name, f"S{count}"))
        elif name == "pad":
            parts.append((name, f"V{_C[ctype][2] * count}"))
        else:
            parts.append((name, _C[ctype][1]))
    return np.dtype(parts)


EVENT_DTYPE = _dtype(EVENT_FIELDS)
RACE_DTYPE = _dtype(RACE_FIELDS)


def _c_struct(name: str, fields) -> str:
    lines = [f"struct {name} {{"]
    for fname, ctype, count in fields:
        ctype = "char" if ctype == "char" else _C[ctype][0]
        lines.append(f"    {ctype} {fname}{f'[{count}]' if count > 1 else ''};")
    return "\n".join(lines + ["};"])


def defines() -> Dict[str, int]:
    """Every number the program and the loader share."""
    out: Dict[str, int] = {f"ROLE_{role.upper()}": i for i, role in enumerate(ROLES)}
    out["NR_ROLES"] = len(ROLES)
    out.update({f"PHASE_{p.upper()}": i for i, p in enumerate(PHASES)})
    out.update({f"VALID_{k}": v for k, v in VALID_BITS.items()})
    out["STAT_HITS"] = 0
    out.update({f"STAT_{name.upper()}": STAT_BASE + i for i, name in enumerate(STAT_NAMES)})
    out["NR_STATS"] = NR_STATS
    out.update({f"RACE_{c.upper().replace('-', '_')}": i for i, c in enumerate(RACE_CLASSES)})
    out.update({f"OBTAIN_{k.upper()}": i for i, k in enumerate(OBTAIN_KINDS)})
    out.update({f"SRC_{(k or 'none').upper()}": v for k, v in ENTRY_SRC_IDS.items()})
    out.update({f"NRSRC_{(k or 'none').upper()}": v for k, v in NR_SRC_IDS.items()})
    out["EVENT_BATCH"] = EVENT_BATCH
    return out


def c_header() -> str:
    """The generated C header: defines and the two record structs."""
    lines = ["// generated by swaprace/probes/bpf_layout.py: the one definition of these numbers and layouts",
             "#include <uapi/linux/ptrace.h>  // (the kernel's u64/u32/... types)"]
    lines += [f"#define {k} {v}" for k, v in defines().items()]
    lines += [_c_struct("sr_event", EVENT_FIELDS), _c_struct("sr_race", RACE_FIELDS)]
    return "\n".join(lines) + "\n"


def check_compiled(bpf) -> None:
    """Compare the compiler's struct layouts (bcc's ctypes leaves of the layout maps) with the dtypes."""
    for table, dtype, what in (("layout_event", EVENT_DTYPE, "sr_event"), ("layout_race", RACE_DTYPE, "sr_race")):
        leaf = bpf[table].Leaf
        import ctypes

        if ctypes.sizeof(leaf) != dtype.itemsize:
            raise SwapraceError(f"struct {what}: the compiler made it {ctypes.sizeof(leaf)} bytes, the loader "
                                f"expects {dtype.itemsize}")
        assert dtype.names is not None and dtype.fields is not None  # structured dtypes
        for name in dtype.names:
            if name == "pad":
                continue
            got = getattr(leaf, name).offset
            want = dtype.fields[name][1]
            if got != want:
                raise SwapraceError(f"struct {what}.{name}: compiled at offset {got}, the loader expects {want}")

"""Synthetic but realistic swap-in captures for the benchmarks (built column-wise, millions of events).

Each fault thread runs do_swap_page episodes back to back; kswapd frees and re-binds entries meanwhile. The
episode shapes follow what a 6.1 kernel emits for the probed roles:

* minor (swap-cache hit):  do_swap_page, swap_cache_get_folio -> folio, ksm_might_need_to_copy -> folio,
  swap_free(entry), return 0
* major (miss + readahead): do_swap_page, swap_cache_get_folio -> 0, add_to_swap_cache(folio, entry),
  swap_free(entry), folio_free_swap(folio) { delete_from_swap_cache(folio), put_swap_folio(entry) } -> 1,
  return VM_FAULT_MAJOR
* reclaim (kswapd):          folio_alloc_swap(folio) -> entry, add_to_swap_cache(folio, entry),
  folio_free_swap(folio) { delete_from_swap_cache, put_swap_folio } -> 1

Entries come from a small pool, so they are reused all the time, and threads overlap in time, so some
reuses land inside fault windows: the capture holds races of both classes, as a stressed box would.
"""

from __future__ import annotations

from typing import List, Tuple

import numpy as np
import pandas as pd

from swaprace.events import normalize

FUNC_ROLE = {
    "do_swap_page": "fault", "swap_cache_get_folio": "lookup", "ksm_might_need_to_copy": "ksm_copy",
    "folio_free_swap": "free_cache", "add_to_swap_cache": "cache_add", "delete_from_swap_cache": "cache_delete",
    "put_swap_folio": "slot_free", "swap_free": "swap_put", "folio_alloc_swap": "slot_alloc",
}
# (func, phase, value source) -- value source: E entry, F folio, F2 copy folio, 0/1/4 constants, "-" none
MINOR = [("do_swap_page", "call", "-"), ("swap_cache_get_folio", "call", "E"),
         ("swap_cache_get_folio", "return", "F"), ("ksm_might_need_to_copy", "call", "F"),
         ("ksm_might_need_to_copy", "return", "F2"), ("swap_free", "call", "E"), ("do_swap_page", "return", "0")]
MAJOR = [("do_swap_page", "call", "-"), ("swap_cache_get_folio", "call", "E"),
         ("swap_cache_get_folio", "return", "0"), ("add_to_swap_cache", "call", "F"), ("swap_free", "call", "E"),
         ("folio_free_swap", "call", "F"), ("delete_from_swap_cache", "call", "F"), ("put_swap_folio", "call", "E"),
         ("folio_free_swap", "return", "1"), ("do_swap_page", "return", "4")]
RECLAIM = [("folio_alloc_swap", "call", "F"), ("folio_alloc_swap", "return", "E"), ("add_to_swap_cache", "call", "F"),
           ("folio_free_swap", "call", "F"), ("delete_from_swap_cache", "call", "F"),
           ("put_swap_folio", "call", "E"), ("folio_free_swap", "return", "1")]
FOLIO_BASE = 0xFFFFEA0000000000


def synthetic_events(n_events: int, seed: int = 1, threads: int = 8, entry_pool: int = 50_000) -> pd.DataFrame:
    """About ``n_events`` events of ``threads`` faulting threads plus kswapd (pid 44), time-sorted."""
    rng = np.random.default_rng(seed)
    per_episode = (len(MINOR) + len(MAJOR) + len(RECLAIM)) / 3
    n_episodes = int(n_events / per_episode)
    parts: List[Tuple[list, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    kinds = rng.integers(0, 3, n_episodes)
    period = 40_000  # ns between a thread's episodes; an episode lasts < 30 us
    for kind, template in enumerate((MINOR, MAJOR, RECLAIM)):
        idx = np.flatnonzero(kinds == kind)
        n = len(idx)
        if kind == 2:
            tid = np.full(n, 44)
            start = np.sort(rng.integers(0, n_episodes // threads * period, n))
        else:
            tid = 1000 + (idx % threads)
            start = (idx // threads) * period + rng.integers(0, 5_000, n)
        entry = rng.integers(1, entry_pool, n).astype(np.uint64) | np.uint64(1 << 58)  # swap type 1
        folio = np.uint64(FOLIO_BASE) + rng.integers(0, 1 << 24, n).astype(np.uint64) * np.uint64(64)
        parts.append((template, tid, start, entry, folio))
    return _assemble(parts, rng)


def _assemble(parts, rng) -> pd.DataFrame:
    cols = {k: [] for k in ("ts_ns", "tid", "func", "phase", "entry", "folio", "retval")}
    for template, tid, start, entry, folio in parts:
        k = len(template)
        n = len(tid)
        offsets = np.cumsum(rng.integers(1_000, 4_000, (n, k)), axis=1)
        for j, (func, phase, src) in enumerate(template):
            role = FUNC_ROLE[func]
            cols["ts_ns"].append(start + offsets[:, j])
            cols["tid"].append(tid)
            cols["func"].append(np.full(n, func, dtype=object))
            cols["phase"].append(np.full(n, phase, dtype=object))
            value = {"E": entry, "F": folio, "F2": folio + np.uint64(4096 * 64),
                     "-": np.zeros(n, np.uint64)}.get(src)
            if value is None:
                value = np.full(n, int(src), np.uint64)
            key = {"lookup": "entry", "slot_free": "entry", "swap_put": "entry"}.get(role, "folio")
            none = np.zeros(n, np.uint64)
            is_call = phase == "call" and src != "-"
            cols["entry"].append(value if is_call and key == "entry" else
                                 (entry if (is_call and role == "cache_add") else none))
            cols["folio"].append(value if is_call and key == "folio" else none)
            cols["retval"].append(value if phase == "return" else none)
    ts = np.concatenate(cols["ts_ns"]).astype(np.int64) + 5_170_000_000_000
    func = np.concatenate(cols["func"])
    phase = np.concatenate(cols["phase"])
    entry = np.concatenate(cols["entry"])
    folio = np.concatenate(cols["folio"])
    retval = np.concatenate(cols["retval"])
    is_call = phase == "call"
    tid = np.concatenate(cols["tid"]).astype(np.int32)
    frame = pd.DataFrame({
        "ts_ns": ts, "cpu": (tid % 2).astype(np.int32), "pid": np.where(tid == 44, 44, 1000).astype(np.int32),
        "tid": tid, "comm": np.where(tid == 44, "kswapd0", "stress"), "func": func,
        "role": pd.Series(func).map(FUNC_ROLE).to_numpy(), "phase": phase,
        "entry": pd.arrays.IntegerArray(entry, entry == 0),
        "folio": pd.arrays.IntegerArray(folio, folio == 0),
        "retval": pd.arrays.IntegerArray(retval, is_call),
    })
    return normalize(frame)


def to_ftrace_text(events: pd.DataFrame) -> bytes:
    """Render events as ftrace `trace` text of kprobe events (hex fetch args, like the live recorder)."""
    key_name = {"lookup": "entry", "slot_free": "entry", "swap_put": "entry", "fault": None}
    lines = ["# tracer: nop", "#", f"# entries-in-buffer/entries-written: {len(events)}/{len(events)}   #P:2",
             "#", "#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION", "#              | |         |   |||||"
             "     |         |"]
    ts = events["ts_ns"].to_numpy()
    comm = events["comm"].astype(str).to_numpy()
    tid = events["tid"].to_numpy()
    cpu = events["cpu"].to_numpy()
    func = events["func"].astype(str).to_numpy()
    role = events["role"].astype(str).to_numpy()
    is_call = (events["phase"] == "call").to_numpy()
    entry = events["entry"].to_numpy(dtype="uint64", na_value=0)
    folio = events["folio"].to_numpy(dtype="uint64", na_value=0)
    retval = events["retval"].to_numpy(dtype="uint64", na_value=0)
    for i in range(len(events)):
        head = f"{comm[i]:>16}-{tid[i]:<7} [{cpu[i]:03d}] ..... {ts[i] // 10**9}.{(ts[i] // 1000) % 10**6:06d}:"
        if is_call[i]:
            name = key_name.get(role[i], "folio")
            args = "" if name is None else f" {name}=0x{(entry[i] if name == 'entry' else folio[i]):x}"
            if role[i] == "cache_add":
                args += f" entry=0x{entry[i]:x}"
            lines.append(f"{head} sr_{role[i]}: ({func[i]}+0x0/0x1a0){args}")
        else:
            lines.append(f"{head} sr_{role[i]}_ret: (caller_fn+0x9b/0x9f0 <- {func[i]}) ret=0x{retval[i]:x}")
    return ("\n".join(lines) + "\n").encode()

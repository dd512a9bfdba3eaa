"""What the workload itself saw: oracle mismatches, fault windows, /proc/vmstat deltas.

Independent of any tracer: the mismatches come from comparing every page read back with what was last
written, the windows from timing each first touch in the helper's threads (CLOCK_MONOTONIC).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import numpy as np

#: /proc/vmstat counters that show which paths a run exercised.
VMSTAT_KEYS = ("pswpin", "pswpout", "ksm_swpin_copy", "cow_ksm", "swap_ra", "swap_ra_hit", "pgmajfault",
               "pgfault", "swpin_zero", "swpout_zero", "thp_swpout")


def read_vmstat(path: Path = Path("/proc/vmstat")) -> Dict[str, int]:
    counters = {}
    for line in path.read_text().splitlines():
        name, _, value = line.partition(" ")
        if value.strip().isdigit():
            counters[name] = int(value)
    return counters


def vmstat_delta(before: Dict[str, int], after: Dict[str, int]) -> Dict[str, Dict[str, int]]:
    """{counter: {before, after, delta}} for the counters this kernel has (others are left out)."""
    return {k: {"before": before[k], "after": after[k], "delta": after[k] - before[k]}
            for k in VMSTAT_KEYS if k in before and k in after}


def overlap_stats(windows: np.ndarray, pids: np.ndarray) -> Dict[str, int]:
    """How many of the helper's fault windows overlapped one running on a different CPU.

    ``windows`` is the helper's window array, ``pids`` the worker process of each row. A window counts only
    when it stayed on one CPU. ``same_page_overlapping_pairs`` counts pairs of different threads faulting
    the same page of the same process at once: the concurrent faults on one swap entry the race needs.
    """
    stable = windows["cpu_start"] == windows["cpu_end"]
    w = windows[stable]
    stats = overlaps(w["start_ns"].astype(np.int64), w["end_ns"].astype(np.int64), w["cpu_start"],
                     w["tid"], pids[stable] * (1 << 32) + w["page_index"].astype(np.int64))
    return {"windows": int(len(windows)), "windows_on_one_cpu": int(len(w))} | stats


def overlaps(start: np.ndarray, end: np.ndarray, cpu: np.ndarray, tid: np.ndarray,
             key: np.ndarray) -> Dict[str, int]:
    """Windows (intervals) overlapping in time with one on another CPU; pairs; pairs on the same ``key``.

    Fault windows are microseconds long, so each window is compared only with the few that start before it
    ends (a sort and a searchsorted; the inner loop is short).
    """
    order = np.argsort(start, kind="stable")
    start, end, cpu, tid, key = start[order], end[order], cpu[order], tid[order], key[order]
    overlapping = np.zeros(len(start), dtype=bool)
    pairs = same_key = 0
    last = np.searchsorted(start, end, side="left")
    for i in np.flatnonzero(last > np.arange(len(start)) + 1):
        j = np.arange(i + 1, last[i])
        other_cpu = j[cpu[j] != cpu[i]]
        if len(other_cpu):
            overlapping[i] = True
            overlapping[other_cpu] = True
            pairs += len(other_cpu)
            same_key += int(((key[other_cpu] == key[i]) & (tid[other_cpu] != tid[i])).sum())
    return {"overlapping_windows": int(overlapping.sum()), "overlapping_pairs": int(pairs),
            "same_page_overlapping_pairs": int(same_key)}


def describe_mismatch(m: Dict[str, int]) -> str:
    got = f"tag {m['got_tag']:#x} gen {m['got_gen']}" if m["got_magic_ok"] else "garbage (no page header)"
    return (f"pid {m['pid']} tid {m['tid']} addr {m['addr']:#x} page {m['page_index']} ({m['phase_name']}) "
            f"at +{m['elapsed_s']:.3f}s: expected tag {m['expected_tag']:#x} gen {m['expected_gen']}, got {got}, "
            f"first bad byte at {m['first_bad_offset']}")


def sort_mismatches(mismatches: List[Dict[str, int]]) -> List[Dict[str, int]]:
    return sorted(mismatches, key=lambda m: m["mono_ns"])

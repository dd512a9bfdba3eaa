"""Stress scenarios aimed at one known swap-in race each (``swaprace stress --scenario NAME``).

A scenario is a preset of the stress options plus, where the general rounds cannot drive the race, a mode
of the native helper (``stress_helper.c``). The data oracle is the same in all of them: every page carries
content fully determined by (tag, generation) and every read is compared with the last write.

``skip-swapcache-2024`` (the race fixed by 13ddaf26be32, reverted in the ``lab-2024`` kernel)
    One process, a small private region (64 pages), swapped to zram: each page's swap count is 1, so
    ``do_swap_page`` takes the SWP_SYNCHRONOUS_IO skip-swapcache path. A pager thread MADV_PAGEOUTs the
    whole region again and again; four threads walk the pages in the same order, each touching a page
    without a lock (several threads fault one swap entry at once), then, under that page's lock, checking it
    and writing its next generation. Without the guard, thread A installs its copy and frees entry E, the
    page is written and paged out again to the same slot E (a 64 KiB zram swap: 15 slots for 64 pages), and
    thread B, still in its fault with E's old data, passes ``pte_same()`` and installs it: the next locked
    check sees an older generation than the last write. Counted once per lost write (phase ``locked-check``).
    On a kernel with the guard, B's ``swapcache_prepare()`` fails and it retries the fault: zero.

``swapcache-2010`` (the race fixed by 4969c1192d15 + 31c4a3d3a0f8, reverted in the ``lab-2010`` kernel)
    The skip-swapcache-2024 workload on a disk swap file of 9 slots instead (not SWP_SYNCHRONOUS_IO: every
    fault goes through the swap cache), and each writer, after its locked check, drops the page
    (MADV_DONTNEED), writes the next generation into a fresh page and pushes it out (MADV_PAGEOUT). Thread A
    reads entry E into the swap cache and sleeps in its fault; thread B finds that folio P there and sleeps
    too; A installs P, and with swap more than half full do_swap_page frees P's swap cache: E's slot is free.
    A's fresh page goes out and is given slot E again. Without the bail-out B wakes, locks P -- no longer in
    the swap cache, or not for E -- and passes ``pte_same()``: P's old data would be installed (a lost write).
    On 6.1 the kernel's own sanity check stops it one step before: P is still mapped exclusively by A, and
    ``BUG_ON(folio_test_anon(folio) && PageAnonExclusive(page))`` in do_swap_page (the PG_anon_exclusive work
    of Linux 5.19) oopses -- measured on lab-2010 within seconds of the start. With the bail-out
    (``!folio_test_swapcache(folio) || page_private(page) != entry.val``) B retries the fault.

``ksm-2010`` (the same race, through KSM copies)
    The general rounds tuned for KSM copies: two unrelated processes (different anon_vma roots) whose
    region is three quarters KSM groups (identical pages inside and across the processes, merged by a fast
    KSM scan), pushed out by the cgroup limit to a disk swap file kept more than half full, where the swap
    allocator and ``do_swap_page`` free swap-cache pages whose count reached zero (``folio_free_swap``,
    vm_swap_full()). Four threads per process fault the same batch at once; the process whose fault finds a
    page of the other's anon_vma in the swap cache copies it (``ksm_might_need_to_copy``: vmstat
    ``ksm_swpin_copy``), writers rewrite a fifth of each batch (so a stale copy is visible) and forked
    readers share swap entries across mms. Without the bail-out, a fault that found page P for entry E,
    then slept, may install a copy of P after P left the swap cache and E was given to the newer copy
    at the same address: a lost write the oracle sees.

Both take ``--widen-us N``: on a lab kernel, ``vm.swaprace_widen_us`` (sleep N µs between getting the page
and the pte lock) for the stress run and its workers only (``vm.swaprace_widen_tgid``), restored on exit
through the state log like every other change; on a stock kernel there is no such knob and the run says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

from swaprace.errors import SwapraceError

MiB = 1 << 20
SYSCTL_DIR = Path("/proc/sys/vm")
WIDEN_US = SYSCTL_DIR / "swaprace_widen_us"
WIDEN_TGID = SYSCTL_DIR / "swaprace_widen_tgid"
WIDEN_HITS = SYSCTL_DIR / "swaprace_widen_hits"


@dataclass(frozen=True)
class Scenario:
    name: str
    helper_mode: int  # native.SCENARIO_*
    swap_device: str
    options: Dict[str, Any] = field(default_factory=dict)  # StressOptions fields set by the scenario
    limit_bytes: Optional[int] = None  # None: the usual 3/8 of the working set; else this cgroup limit
    swap_bytes: Optional[int] = None
    kernel: str = ""  # the lab kernel it is meant for


#: The same-page workload of the helper's modes 1 and 2: one process, 64 private pages, four faulting threads
#: and a MADV_PAGEOUT pager.
SAME_PAGE_OPTIONS: Dict[str, Any] = {"threads": 4, "processes": 1, "mem_bytes": 64 * 4096, "batch": 16,
                                     "ksm": False, "fork_every": 0, "shared_permille": 0, "pageout": True,
                                     "pager_us": 1000}

SCENARIOS: Dict[str, Scenario] = {
    "skip-swapcache-2024": Scenario(
        "skip-swapcache-2024", helper_mode=1, swap_device="zram", options=SAME_PAGE_OPTIONS,
        # No memory pressure: MADV_PAGEOUT alone swaps, and the interpreter stays resident. A zram swap of 15
        # usable slots, fewer than the region's 64 pages: the page a fault just installed (its slot freed by
        # swap_free) goes out again to one of the few free slots -- often the one it left -- which is the
        # reuse the race needs. Measured on lab-2024, 20 s, widener 20 ms: 9 slots 99 lost writes, 15 slots 58,
        # 31 slots 27, 1023 slots (4 MiB) 0; widener off, 15 slots: 1 in 60 s.
        limit_bytes=512 * MiB, swap_bytes=64 * 1024, kernel="lab-2024"),
    "swapcache-2010": Scenario(
        "swapcache-2010", helper_mode=2, swap_device="file", options=SAME_PAGE_OPTIONS,
        # a swap file of 9 slots for 64 pages: always more than half full (every fault frees its swap cache)
        # and a page pushed out is often given the slot a fault just freed
        limit_bytes=512 * MiB, swap_bytes=40 * 1024, kernel="lab-2010"),
    "ksm-2010": Scenario(
        "ksm-2010", helper_mode=0, swap_device="file",
        options={"threads": 4, "processes": 2, "mem_bytes": 8 * MiB, "batch": 64, "ksm": True,
                 "shared_permille": 750, "group_size": 4, "write_permille": 200, "fork_every": 4,
                 "pageout": True},
        kernel="lab-2010"),
}


def get(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise SwapraceError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}") from None


def apply_preset(opts, name: str, explicit: Dict[str, Any]) -> None:
    """Set the scenario's options on ``opts`` (a StressOptions), except those the user gave explicitly."""
    scenario = get(name)
    for key, value in scenario.options.items():
        if key not in explicit:
            setattr(opts, key, value)
    if "swap_device" not in explicit:
        opts.swap_device = scenario.swap_device
    if scenario.limit_bytes is not None and "limit_bytes" not in explicit:
        opts.limit_bytes = scenario.limit_bytes
    if scenario.swap_bytes is not None and "swap_bytes" not in explicit:
        opts.swap_bytes = scenario.swap_bytes


def widener_available() -> bool:
    return WIDEN_US.exists()


def read_int(path: Path) -> Optional[int]:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def set_widener(log, widen_us: int, tgid: int) -> Dict[str, Any]:
    """Turn the lab kernel's window widener on for ``tgid`` and its children; each sysctl's old value goes to
    the state log first (kind ``sysctl``: restored on exit, on signals and by ``--cleanup``)."""
    if not widener_available():
        return {"available": False, "widen_us": 0}
    for path, value in ((WIDEN_TGID, tgid), (WIDEN_US, widen_us)):
        old = path.read_text().strip()
        log.add(kind="sysctl", path=str(path), old=old)
        try:
            path.write_text(str(value))
        except OSError as exc:
            raise SwapraceError(f"cannot write {value} to {path}: {exc.strerror}") from None
    return {"available": True, "widen_us": widen_us, "tgid": tgid, "hits_before": read_int(WIDEN_HITS)}


def stop_widener() -> None:
    """Widen no more windows (for the final sweep, which only checks pages; the state log restores the
    sysctl's old value at exit as before)."""
    try:
        WIDEN_US.write_text("0")
    except OSError as exc:
        raise SwapraceError(f"cannot write 0 to {WIDEN_US}: {exc.strerror}") from None


def widener_summary(state: Dict[str, Any], minutes: float) -> Dict[str, Any]:
    out = dict(state)
    before = out.pop("hits_before", None)
    after = read_int(WIDEN_HITS)
    if before is not None and after is not None:
        out["sleeps"] = after - before
        out["sleeps_per_minute"] = round((after - before) / minutes, 1) if minutes else None
    return out

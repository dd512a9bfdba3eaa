"""The planted-race capture shared by the report tests (tests/test_report.py, tests/test_report_cli.py,
tests/test_reliability.py); what it contains is described in tests/test_report.py's docstring.

The ``planted_path`` fixture (the capture written as Parquet) is in tests/conftest.py.
"""

from __future__ import annotations

import pandas as pd

from swaprace.events import Capture, CaptureMeta, normalize, swp_entry

STALE_ENTRY = swp_entry(0, 0x12A)
RECOVERED_ENTRY = swp_entry(0, 0x2B0)
BENIGN_ENTRY = swp_entry(0, 0x3C0)
UNCERTAIN_ENTRY = swp_entry(0, 0x4D0)
KSWAPD, RECLAIM, KWORKER = 44, 45, 77
SYMBOLS = {"fault": "do_swap_page", "lookup": "swap_cache_get_folio", "free_cache": "folio_free_swap",
           "cache_delete": "delete_from_swap_cache", "swap_put": "swap_free", "slot_alloc": "folio_alloc_swap",
           "slot_free": "free_swap_slot", "cache_add": "add_to_swap_cache"}
COLUMNS = ["ts_ns", "cpu", "tid", "comm", "func", "role", "phase", "entry", "folio", "retval"]
LOST_AT = (9_000_400, 9_000_450)


def planted_folio(n: int) -> int:
    return 0xFFFFEA0004000000 + 0x40 * n


def planted_events() -> pd.DataFrame:
    rows = []

    def ev(ts, cpu, tid, comm, role, phase, entry=None, folio=None, retval=None):
        rows.append((ts, cpu, tid, comm, SYMBOLS[role], role, phase, entry, folio, retval))

    def alloc(ts, tid, comm, entry, folio):  # add_to_swap: folio_alloc_swap returns the entry, then the cache add
        ev(ts, 1, tid, comm, "slot_alloc", "call", folio=folio)
        ev(ts + 50, 1, tid, comm, "slot_alloc", "return", retval=entry)
        ev(ts + 100, 1, tid, comm, "cache_add", "call", entry=entry, folio=folio)

    def free(ts, entry, folio):  # folio_free_swap: the cache delete, the slot free, true
        ev(ts, 1, KSWAPD, "kswapd0", "free_cache", "call", folio=folio)
        ev(ts + 20, 1, KSWAPD, "kswapd0", "cache_delete", "call", folio=folio)
        ev(ts + 30, 1, KSWAPD, "kswapd0", "slot_free", "call", entry=entry)
        ev(ts + 50, 1, KSWAPD, "kswapd0", "free_cache", "return", retval=1)

    def fault_start(t, tid, comm, entry, folio):
        ev(t, 0, tid, comm, "fault", "call")
        ev(t + 100, 0, tid, comm, "lookup", "call", entry=entry)
        ev(t + 200, 0, tid, comm, "lookup", "return", retval=folio)

    # Background: each slot allocated before its window, freed after it, allocated again 40 windows later.
    for k in range(400):
        t, tid, entry = 1_000_000 + k * 10_000, 200 + k % 4, swp_entry(0, 0x1000 + k % 40)
        folio, retval = planted_folio(k), (0x400 if k % 25 == 0 else (0x4 if k % 3 else 0))
        cpu = tid % 2
        alloc(t - 3_000, KWORKER, "kworker/u4:2", entry, folio)
        evicted = k % 8 == 4
        if evicted:  # reclaim drops the cache folio but a pte still holds the slot
            ev(t - 1_500, 0, RECLAIM, "kswapd1", "cache_delete", "call", folio=folio)
        ev(t, cpu, tid, "stress", "fault", "call")
        ev(t + 300, cpu, tid, "stress", "lookup", "call", entry=entry)
        ev(t + 500 + 40 * (k % 7), cpu, tid, "stress", "lookup", "return", retval=0 if evicted else folio)
        if evicted:  # the miss reads the slot back into a new folio: a re-read, the same slot and data
            folio = planted_folio(5_000 + k)
            ev(t + 800, cpu, tid, "stress", "cache_add", "call", entry=entry, folio=folio)
        if retval != 0x400:
            ev(t + 2_000, cpu, tid, "stress", "swap_put", "call", entry=entry)
        ev(t + 2_500 + 30 * (k % 11), cpu, tid, "stress", "fault", "return", retval=retval)
        free(t + 6_000, entry, folio)

    # Stale-install race (tid 101): the slot is freed and allocated again for another folio inside the window.
    t = 6_000_000
    f1, f2 = planted_folio(1001), planted_folio(1002)
    alloc(t - 5_000, KWORKER, "kworker/u4:2", STALE_ENTRY, f1)
    fault_start(t, 101, "stress", STALE_ENTRY, f1)
    free(t + 300, STALE_ENTRY, f1)
    alloc(t + 400, 102, "stress", STALE_ENTRY, f2)
    ev(t + 700, 0, 101, "stress", "swap_put", "call", entry=STALE_ENTRY)
    ev(t + 800, 0, 101, "stress", "fault", "return", retval=0x4)

    # Recovered race (tid 301): the same, and the fault backs out.
    t = 7_000_000
    f3, f4 = planted_folio(2001), planted_folio(2002)
    alloc(t - 5_000, KWORKER, "kworker/u4:2", RECOVERED_ENTRY, f3)
    fault_start(t, 301, "worker", RECOVERED_ENTRY, f3)
    free(t + 2_000, RECOVERED_ENTRY, f3)
    alloc(t + 3_000, 302, "worker", RECOVERED_ENTRY, f4)
    ev(t + 5_000, 0, 301, "worker", "fault", "return", retval=0)

    # Benign race (tid 401): the slot is allocated again for the very folio tid 401 holds, which it installs.
    t = 8_000_000
    f5 = planted_folio(3001)
    alloc(t - 5_000, KWORKER, "kworker/u4:2", BENIGN_ENTRY, f5)
    fault_start(t, 401, "worker", BENIGN_ENTRY, f5)
    free(t + 300, BENIGN_ENTRY, f5)
    alloc(t + 500, 402, "worker", BENIGN_ENTRY, f5)
    ev(t + 900, 0, 401, "worker", "swap_put", "call", entry=BENIGN_ENTRY)
    ev(t + 1_000, 0, 401, "worker", "fault", "return", retval=0x4)

    # Uncertain stale-install race (tid 501): events were lost inside its window.
    t = 9_000_000
    f6, f7 = planted_folio(4001), planted_folio(4002)
    alloc(t - 5_000, KWORKER, "kworker/u4:2", UNCERTAIN_ENTRY, f6)
    fault_start(t, 501, "stress", UNCERTAIN_ENTRY, f6)
    free(t + 300, UNCERTAIN_ENTRY, f6)
    alloc(t + 500, 502, "stress", UNCERTAIN_ENTRY, f7)
    ev(t + 900, 0, 501, "stress", "swap_put", "call", entry=UNCERTAIN_ENTRY)
    ev(t + 1_000, 0, 501, "stress", "fault", "return", retval=0x4)
    # dtype=object: a column mixing None and 64-bit pointers would otherwise pass through float64 and lose bits
    return normalize(pd.DataFrame(rows, columns=COLUMNS, dtype=object).sort_values("ts_ns", kind="stable"))


def planted_capture() -> Capture:
    meta = CaptureMeta(kernel_release="6.1.0-56-amd64", backend="planted (tests/test_report.py)",
                       symbols=dict(SYMBOLS), lost={"ftrace_overrun": 5}, lost_known=True,
                       lost_intervals=[[2_999_000, 3_000_000, 3], [*LOST_AT, 2]])
    return Capture(events=planted_events(), meta=meta)

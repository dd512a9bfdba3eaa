#!/usr/bin/env python3
"""A small swap-in workload for the live tests (runs as root inside the test box; stdlib only).

N threads touch an anonymous area bigger than a memory cgroup's limit, so its pages are swapped out and in
again and again. Pages carry their index (a wrong page read back fails the run). With --ksm, a share of the
pages are identical and MADV_MERGEABLE, so KSM merges them and swap-in goes through ksm_might_need_to_copy.
Page accesses go through ctypes (which drops the GIL), so threads fault concurrently.

Everything it changes is restored on exit, Ctrl-C or SIGTERM: the cgroup is removed, KSM's run/pages_to_scan/
sleep_millisecs are put back.

    python3 tests/guest/swap_workload.py --threads 4 --mem 96 --limit 48 --passes 3 --ksm --json
"""

from __future__ import annotations

import argparse
import ctypes
import json
import mmap
import os
import signal
import sys
import threading
import time

PAGE = mmap.PAGESIZE
MADV_MERGEABLE = 12
MADV_PAGEOUT = 21
CGROUP_ROOT = "/sys/fs/cgroup"
KSM = "/sys/kernel/mm/ksm"
KSM_KNOBS = ("run", "pages_to_scan", "sleep_millisecs")

libc = ctypes.CDLL(None, use_errno=True)
libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)


def vmstat() -> dict:
    out = {}
    with open("/proc/vmstat") as fh:
        for line in fh:
            key, value = line.split()
            out[key] = int(value)
    return out


def write(path: str, value: str) -> None:
    with open(path, "w") as fh:
        fh.write(value)


def read(path: str) -> str:
    with open(path) as fh:
        return fh.read().strip()


class Restorer:
    """Undo stack run on every exit path."""

    def __init__(self) -> None:
        self.undo = []

    def push(self, fn) -> None:
        self.undo.append(fn)

    def run(self) -> None:
        while self.undo:
            fn = self.undo.pop()
            try:
                fn()
            except OSError as exc:
                print(f"swap_workload: restore step failed: {exc}", file=sys.stderr)


def enter_cgroup(restorer: Restorer, limit_mb: int) -> str:
    path = os.path.join(CGROUP_ROOT, f"swaprace-wl-{os.getpid()}")
    controllers = read(os.path.join(CGROUP_ROOT, "cgroup.subtree_control")).split()
    if "memory" not in controllers:
        write(os.path.join(CGROUP_ROOT, "cgroup.subtree_control"), "+memory")
    os.mkdir(path)
    restorer.push(lambda: os.rmdir(path))
    write(os.path.join(path, "memory.max"), str(limit_mb << 20))
    write(os.path.join(path, "cgroup.procs"), str(os.getpid()))
    restorer.push(lambda: write(os.path.join(CGROUP_ROOT, "cgroup.procs"), str(os.getpid())))
    return path


def enable_ksm(restorer: Restorer) -> None:
    saved = {k: read(os.path.join(KSM, k)) for k in KSM_KNOBS}
    restorer.push(lambda: [write(os.path.join(KSM, k), v) for k, v in saved.items()])
    write(os.path.join(KSM, "pages_to_scan"), "5000")
    write(os.path.join(KSM, "sleep_millisecs"), "10")
    write(os.path.join(KSM, "run"), "1")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--mem", type=int, default=96, help="area size, MiB")
    ap.add_argument("--limit", type=int, default=48, help="cgroup memory.max, MiB")
    ap.add_argument("--passes", type=int, default=3, help="read passes over the area per thread")
    ap.add_argument("--seconds", type=float, default=None, help="run passes until this much time elapsed")
    ap.add_argument("--ksm", action="store_true", help="make a quarter of the pages identical and mergeable")
    ap.add_argument("--pageout", action="store_true", help="MADV_PAGEOUT the area before each pass")
    ap.add_argument("--write", action="store_true",
                    help="write each page's value back (a write fault: do_swap_page may free the swap slot, so "
                         "the next swap-out allocates one again: slot reallocations)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    if not read("/proc/swaps").splitlines()[1:]:
        print("swap_workload: no active swap", file=sys.stderr)
        return 2
    restorer = Restorer()
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    errors = []
    try:
        enter_cgroup(restorer, args.limit)
        if args.ksm:
            enable_ksm(restorer)
        npages = (args.mem << 20) // PAGE
        area = mmap.mmap(-1, npages * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        base = ctypes.addressof(ctypes.c_char.from_buffer(area))
        ksm_pages = npages // 4 if args.ksm else 0
        if ksm_pages:
            libc.madvise(base, ksm_pages * PAGE, MADV_MERGEABLE)
        for i in range(npages):  # page i holds its index, except the identical KSM share (all 0x5a)
            if stop.is_set():
                break
            addr = base + i * PAGE
            if i < ksm_pages:
                ctypes.memset(addr, 0x5A, PAGE)
            else:
                ctypes.memmove(addr, i.to_bytes(8, "little") * 2, 16)
        if ksm_pages:
            time.sleep(1.0)  # let ksmd merge before the pages go out
        before = vmstat()
        t0 = time.monotonic()

        def worker(tid: int) -> None:
            order = range(npages) if tid % 2 == 0 else range(npages - 1, -1, -1)
            passes = 0
            while not stop.is_set():
                for i in order:
                    if i % 64 == 0 and stop.is_set():
                        return  # SIGTERM/SIGINT: stop within a few pages, so the set-up is undone in time
                    addr = base + i * PAGE
                    want = b"\x5a" * 8 if i < ksm_pages else i.to_bytes(8, "little")
                    if args.write and i >= ksm_pages:
                        # compare-and-write in one access: the write faults the page in (FAULT_FLAG_WRITE)
                        ctypes.memmove(addr + 8, want, 8)
                    got = ctypes.string_at(addr, 8)  # the read faults the page in; ctypes drops the GIL
                    if got != want:
                        errors.append({"page": i, "want": want.hex(), "got": got.hex(), "thread": tid})
                        stop.set()
                        return
                passes += 1
                if args.seconds is not None:
                    if time.monotonic() - t0 >= args.seconds:
                        return
                elif passes >= args.passes:
                    return
                if args.pageout and tid == 0:
                    libc.madvise(base, npages * PAGE, MADV_PAGEOUT)

        if args.pageout:
            libc.madvise(base, npages * PAGE, MADV_PAGEOUT)
        threads = [threading.Thread(target=worker, args=(t,)) for t in range(args.threads)]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.2)
        after = vmstat()
        elapsed = time.monotonic() - t0
        area.close()
    finally:
        restorer.run()
    summary = {
        "threads": args.threads, "pages": npages, "ksm_pages": ksm_pages, "seconds": round(elapsed, 3),
        "interrupted": stop.is_set() and not errors, "corrupt": errors[:10],
        "vmstat": {k: after.get(k, 0) - before.get(k, 0)
                   for k in ("pswpin", "pswpout", "ksm_swpin_copy", "pgmajfault", "swap_ra", "swap_ra_hit")},
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{args.threads} threads, {npages} pages, {elapsed:.1f} s, pswpin {summary['vmstat']['pswpin']}, "
              f"corrupt {len(errors)}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

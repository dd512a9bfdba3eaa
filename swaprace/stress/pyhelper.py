"""The stress helper without a C compiler: the same rounds, in Python threads, touching pages only inside
libc calls made through ctypes (memcmp/memmove/madvise release the GIL, so the faults they take still run
concurrently on different CPUs). Slower than the native helper, and without forked readers; the run's
summary says when it was used.

Page content differs from the native helper's (a header plus a body from random.Random), the oracle does
not: every page read back must equal what was last written.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import random
import signal
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

from swaprace.stress import native

MADV_MERGEABLE = 12
MADV_NOHUGEPAGE = 15
MADV_PAGEOUT = 21
MAGIC = 0x7377617072616365
SHARED_BIT = 1 << 63

_libc = ctypes.CDLL(None, use_errno=True)
_libc.memcmp.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
_libc.memcmp.restype = ctypes.c_int
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.madvise.restype = ctypes.c_int
_libc.sched_getcpu.restype = ctypes.c_int


class _Lib:
    """What worker.py calls on ``helper.lib``."""

    def __init__(self, helper: "PyHelper"):
        self._helper = helper

    def sr_stop_requested(self) -> int:
        return int(self._helper.stop.is_set())


@dataclass
class _RunState:
    """What the threads of one run share (written by the barrier's action while every thread waits)."""
    batch: List[Tuple[int, int]] = field(default_factory=list)
    done: bool = False
    rounds: int = 0
    reads: int = 0
    writes: int = 0


class PyHelper:
    def __init__(self):
        self.stop = threading.Event()
        self.lib = _Lib(self)
        self.result = native.Result()
        self._mismatches: List[native.Mismatch] = []
        self._lock = threading.Lock()

    def install_stop_signals(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stop.set())

    # --- content ---------------------------------------------------------------------------------------
    def _page(self, tag: int, gen: int) -> bytes:
        body = random.Random(tag * 1_000_003 + gen).randbytes(self.page - 32)
        return struct.pack("<QQQQ", MAGIC, tag, gen, zlib.crc32(body)) + body

    # deterministic across processes (no str hashing): identical groups in every worker, for KSM to merge
    def _private_tag(self, index: int) -> int:
        return (self.config.seed * 0x9E3779B1 + (self.config.proc_index << 40) + index) & (SHARED_BIT - 1)

    def _shared_tag(self, group: int) -> int:
        return ((self.config.seed * 0x85EBCA77 + group) & (SHARED_BIT - 1)) | SHARED_BIT

    # --- the interface of native.Helper ----------------------------------------------------------------
    def reserve(self, config: native.Config) -> None:
        self.config = config  # its window and mismatch records are Python objects, allocated as they come

    def prepare(self) -> native.Result:
        config = self.config
        self.page = os.sysconf("SC_PAGE_SIZE")
        n = config.npages
        self.region = mmap.mmap(-1, n * self.page, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self.base = ctypes.addressof(ctypes.c_char.from_buffer(self.region))
        _libc.madvise(self.base, n * self.page, MADV_NOHUGEPAGE)
        self.shared_start = n - n * config.shared_permille // 1000
        self.tag = [self._private_tag(i) if i < self.shared_start else
                    self._shared_tag((i - self.shared_start) // config.group_size) for i in range(n)]
        self.gen = [0] * n
        for i in range(n):
            self.region[i * self.page:(i + 1) * self.page] = self._page(self.tag[i], 0)
        if config.mergeable and self.shared_start < n:
            if _libc.madvise(self.base + self.shared_start * self.page, (n - self.shared_start) * self.page,
                             MADV_MERGEABLE):
                self.result.mergeable_errno = ctypes.get_errno()
        self.result.region_addr = self.base
        self.result.page_size = self.page
        self._windows: List[List[Tuple]] = [[] for _ in range(config.threads)]
        return self.result

    def _check(self, thread: int, index: int, phase: int) -> None:
        addr = self.base + index * self.page
        expected = self._page(self.tag[index], self.gen[index])
        cpu0 = _libc.sched_getcpu()
        start = time.monotonic_ns()
        differs = _libc.memcmp(addr, expected, self.page)  # the fault happens in here, GIL released
        end = time.monotonic_ns()
        if thread >= 0 and end - start >= self.config.slow_ns and len(self._windows[thread]) < self.config.max_windows:
            self._windows[thread].append((start, end, index, threading.get_native_id(), cpu0,
                                          _libc.sched_getcpu(), phase, 0))
        if differs:
            self._record(index, addr, expected, phase)

    def _record(self, index: int, addr: int, expected: bytes, phase: int) -> None:
        got = ctypes.string_at(addr, self.page)
        offset = next((i for i in range(self.page) if got[i] != expected[i]), self.page)
        magic, tag, gen, _ = struct.unpack_from("<QQQQ", got)
        m = native.Mismatch(addr=addr, page_index=index, expected_tag=self.tag[index],
                            expected_gen=self.gen[index], got_tag=tag, got_gen=gen,
                            mono_ns=time.monotonic_ns(), real_ns=time.time_ns(), pid=os.getpid(),
                            tid=threading.get_native_id(), cpu=_libc.sched_getcpu(), first_bad_offset=offset,
                            phase=phase, got_magic_ok=int(magic == MAGIC))
        with self._lock:
            self.result.mismatches += 1
            if len(self._mismatches) < self.config.max_mismatches:
                self._mismatches.append(m)

    def _write(self, index: int) -> None:
        tag = self.tag[index]
        if tag & SHARED_BIT:
            tag = self._private_tag(index)
        data = self._page(tag, self.gen[index] + 1)
        ctypes.memmove(self.base + index * self.page, data, self.page)
        self.tag[index], self.gen[index] = tag, self.gen[index] + 1

    def _pick(self, rng: random.Random) -> List[Tuple[int, int]]:
        cfg, shared = self.config, self.config.npages - self.shared_start
        chosen: Dict[int, int] = {}
        while len(chosen) < cfg.batch:
            if shared and rng.random() < 0.25:
                index = self.shared_start + rng.randrange(shared)
            else:
                index = rng.randrange(self.shared_start or cfg.npages)
            writer = 1 + rng.randrange(cfg.threads) if rng.randrange(1000) < cfg.write_permille else 0
            chosen.setdefault(index, writer)
        return list(chosen.items())

    def run(self) -> native.Result:
        cfg, res = self.config, self.result
        rng = random.Random(cfg.seed * 7919 + cfg.proc_index)
        res.start_mono_ns, res.start_real_ns = time.monotonic_ns(), time.time_ns()
        deadline = res.start_mono_ns + cfg.duration_ns
        state = _RunState()

        def between_rounds() -> None:  # the barrier's action: every thread has arrived, none touches pages
            state.rounds += 1
            if self.stop.is_set() or time.monotonic_ns() >= deadline:
                state.done = True
                return
            state.batch = self._pick(rng)
            if cfg.pageout:
                for index, _ in state.batch:
                    if index < self.shared_start:
                        if _libc.madvise(self.base + index * self.page, self.page, MADV_PAGEOUT) == 0:
                            res.pageouts += 1
                        else:
                            res.pageout_errors += 1
                            res.pageout_errno = ctypes.get_errno()

        barrier = threading.Barrier(cfg.threads, action=between_rounds)

        def worker(thread: int) -> None:
            reads = writes = 0
            while True:
                barrier.wait()
                if state.done:
                    break
                for index, writer in state.batch:
                    if writer == 0:
                        self._check(thread, index, 0)
                        reads += 1
                    elif writer == thread + 1:
                        self._write(index)
                        writes += 1
            with self._lock:
                state.reads += reads
                state.writes += writes

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(cfg.threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        res.rounds = state.rounds - 1
        res.pages_read, res.pages_written = state.reads, state.writes
        res.windows = sum(len(w) for w in self._windows)
        res.end_mono_ns = time.monotonic_ns()
        return res

    def sweep(self) -> native.Result:
        for index in range(self.config.npages):
            self._check(-1, index, 3)
        self.result.final_pages_checked = self.config.npages
        return self.result

    def mismatches(self) -> List[native.Mismatch]:
        return list(self._mismatches)

    def windows(self) -> List[ctypes.Array]:
        out = []
        for rows in self._windows:
            array = (native.Window * len(rows))()
            for slot, row in zip(array, rows):
                (slot.start_ns, slot.end_ns, slot.page_index, slot.tid, slot.cpu_start, slot.cpu_end,
                 slot.phase, slot.pad) = row
            out.append(array)
        return out

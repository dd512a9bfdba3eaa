"""Build and load the native stress helper (stress_helper.c) with the system C compiler (the generic build and
load checks live in :mod:`swaprace.native`).

The helper is compiled once per source version into a cache directory and loaded with ctypes. Its
pthreads do the page touching, so Python's GIL never serializes the faults.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import List, Optional

from swaprace.errors import SwapraceError
from swaprace.native import build_shared, cache_dir, find_compiler, untrusted

__all__ = ["Config", "Helper", "Mismatch", "Result", "Window", "build", "cache_dir", "check_struct_sizes",
           "find_compiler", "untrusted"]

SOURCE = Path(__file__).with_name("stress_helper.c")
CFLAGS = ["-O2", "-Wall", "-shared", "-fPIC", "-pthread"]


class Config(ctypes.Structure):
    _fields_ = [
        ("npages", ctypes.c_uint64),
        ("seed", ctypes.c_uint64),
        ("duration_ns", ctypes.c_uint64),
        ("slow_ns", ctypes.c_uint64),
        ("max_windows", ctypes.c_uint64),
        ("max_mismatches", ctypes.c_uint64),
        ("proc_index", ctypes.c_uint32),
        ("threads", ctypes.c_uint32),
        ("batch", ctypes.c_uint32),
        ("shared_permille", ctypes.c_uint32),
        ("group_size", ctypes.c_uint32),
        ("write_permille", ctypes.c_uint32),
        ("fork_every", ctypes.c_uint32),
        ("pageout", ctypes.c_uint32),
        ("mergeable", ctypes.c_uint32),
        ("scenario", ctypes.c_uint32),
        ("pager_us", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
    ]


class Mismatch(ctypes.Structure):
    _fields_ = [
        ("addr", ctypes.c_uint64),
        ("page_index", ctypes.c_uint64),
        ("expected_tag", ctypes.c_uint64),
        ("expected_gen", ctypes.c_uint64),
        ("got_tag", ctypes.c_uint64),
        ("got_gen", ctypes.c_uint64),
        ("mono_ns", ctypes.c_uint64),
        ("real_ns", ctypes.c_uint64),
        ("pid", ctypes.c_int32),
        ("tid", ctypes.c_int32),
        ("cpu", ctypes.c_int32),
        ("first_bad_offset", ctypes.c_uint32),
        ("phase", ctypes.c_uint32),
        ("got_magic_ok", ctypes.c_uint32),
    ]


class Window(ctypes.Structure):
    _fields_ = [
        ("start_ns", ctypes.c_uint64),
        ("end_ns", ctypes.c_uint64),
        ("page_index", ctypes.c_uint64),
        ("tid", ctypes.c_int32),
        ("cpu_start", ctypes.c_int16),
        ("cpu_end", ctypes.c_int16),
        ("phase", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
    ]


class Result(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "region_addr", "page_size", "rounds", "pages_read", "pages_written", "child_pages_read",
        "final_pages_checked", "forks", "fork_failures", "children_failed", "pageouts", "pageout_errors",
        "mismatches", "windows", "windows_dropped", "start_mono_ns", "end_mono_ns", "start_real_ns",
    )] + [("pageout_errno", ctypes.c_int32), ("mergeable_errno", ctypes.c_int32)]


PHASES = {0: "read", 1: "write", 2: "child-read", 3: "final-sweep", 4: "locked-check"}
#: ``Config.scenario`` values (stress_helper.c enum sr_scenario).
SCENARIO_ROUNDS, SCENARIO_SKIP_SWAPCACHE, SCENARIO_SWAPCACHE_FREED = 0, 1, 2


def build(compiler: Optional[str] = None) -> Optional[Path]:
    """Compile the helper (once per source version) and return the shared object's path; None when this
    machine has no C compiler (the caller then uses :mod:`swaprace.stress.pyhelper`)."""
    if os.environ.get("SWAPRACE_STRESS_HELPER") == "python":  # force the fallback (its tests use this)
        return None
    return build_shared(SOURCE, "stress_helper", CFLAGS, "the stress helper", compiler)


def check_struct_sizes(lib: ctypes.CDLL) -> None:
    """The helper's structs, as its compiler laid them out, against the ctypes mirrors here (one layout, checked)."""
    sizes = (ctypes.c_uint64 * 4)()
    lib.sr_struct_sizes(sizes)
    mirrors = {"sr_config": Config, "sr_result": Result, "sr_window": Window, "sr_mismatch": Mismatch}
    wrong = [f"{name} {compiled} B in C, {ctypes.sizeof(mirror)} B here"
             for (name, mirror), compiled in zip(mirrors.items(), sizes) if compiled != ctypes.sizeof(mirror)]
    if wrong:
        raise SwapraceError("the stress helper's structs differ from swaprace/stress/native.py: " + "; ".join(wrong))


class Helper:
    """The loaded helper. One region per process: the C side keeps its state in globals."""

    def __init__(self, path: Optional[Path] = None):
        built = path or build()
        if built is None:
            raise SwapraceError("no C compiler here to build the stress helper")
        self.path: Path = built
        why = untrusted(self.path)
        if why is not None:
            raise SwapraceError(f"not loading the stress helper: {why}")
        lib = ctypes.CDLL(str(self.path))
        lib.sr_reserve.argtypes = [ctypes.POINTER(Config), ctypes.POINTER(Result)]
        lib.sr_reserve.restype = ctypes.c_int
        lib.sr_prepare.argtypes = []
        lib.sr_prepare.restype = ctypes.c_int
        lib.sr_run.argtypes = []
        lib.sr_run.restype = ctypes.c_int
        lib.sr_mismatches.restype = ctypes.POINTER(Mismatch)
        lib.sr_thread_windows.argtypes = [ctypes.c_uint32, ctypes.POINTER(ctypes.POINTER(Window))]
        lib.sr_thread_windows.restype = ctypes.c_uint64
        self.lib = lib
        check_struct_sizes(lib)
        self.config = Config()
        self.result = Result()

    def install_stop_signals(self) -> None:
        self.lib.sr_install_stop_signals()

    def reserve(self, config: Config) -> None:
        """Allocate and touch the oracle's bookkeeping; before the worker joins the cgroup (sr_reserve)."""
        self.config = config
        err = self.lib.sr_reserve(ctypes.byref(self.config), ctypes.byref(self.result))
        if err:
            raise SwapraceError(f"stress helper could not allocate its bookkeeping: {os.strerror(err)}")

    def prepare(self) -> Result:
        """Map and fill the region, charged to the cgroup the worker is in now."""
        err = self.lib.sr_prepare()
        if err:
            raise SwapraceError(f"stress helper could not set up its region: {os.strerror(err)}")
        return self.result

    def run(self) -> Result:
        err = self.lib.sr_run()
        if err:
            raise SwapraceError(f"stress helper could not start its threads: {os.strerror(err)}")
        return self.result

    def sweep(self) -> Result:
        self.lib.sr_sweep()
        return self.result

    def mismatches(self) -> List[Mismatch]:
        kept = min(self.result.mismatches, self.config.max_mismatches)
        base = self.lib.sr_mismatches()
        return [Mismatch.from_buffer_copy(base[i]) for i in range(kept)]

    def windows(self) -> List[ctypes.Array]:
        """One ctypes array of :class:`Window` per thread (copied out of the helper)."""
        out = []
        for thread in range(self.config.threads):
            ptr = ctypes.POINTER(Window)()
            count = self.lib.sr_thread_windows(thread, ctypes.byref(ptr))
            array = (Window * count)()
            if count:
                ctypes.memmove(array, ptr, ctypes.sizeof(Window) * count)
            out.append(array)
        return out

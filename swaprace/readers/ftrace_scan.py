"""The C field scanner for ftrace text (ftrace_scan.c): the per-line fields :mod:`.ftrace_text` needs, in one pass.

Speed: the numpy path locates each field with its own pass over per-line arrays; the C scanner reads every byte
once and fills caller-provided numpy arrays, through ctypes (which releases the GIL, so ``read_any``'s threads
scan blocks in parallel). It only splits fields; all kernel knowledge stays in Python.

It is built at first use with the system C compiler (:mod:`swaprace.native`: cache directory, ownership check).
Without a compiler, or when the build fails, :func:`scan` returns None and the numpy path gives the same result.
``SWAPRACE_FTRACE_SCANNER=numpy`` forces that path, ``=c`` insists on the scanner (an error when it is missing).
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from swaprace.errors import SwapraceError
from swaprace.native import build_shared, untrusted

SOURCE = Path(__file__).with_name("ftrace_scan.c")
CFLAGS = ["-O3", "-Wall", "-shared", "-fPIC"]  # -O3: a fifth faster than -O2 here (measured)
ENV = "SWAPRACE_FTRACE_SCANNER"
_log = logging.getLogger(__name__)

# Columns of the row matrices (enums in ftrace_scan.c; their counts are checked at load).
(I_LS, I_LE, I_COMM0, I_COMM1, I_SYM0, I_SYM1, I_CPU, I_TID, I_TGID, I_FLAGS, I_FIRST_CODE, I_NAMED, I_COMM_CODE,
 I_SYM_CODE, NI) = range(15)
U_TS, U_FIRST, U_NAMED0 = range(3)
F_TGID_KNOWN, F_RET, F_TS_BAD, F_FIRST_OK = 1, 2, 4, 8
_FULL, _DEFER = -1, -2


@dataclass
class Scan:
    """What the scanner found in a block (positions into the block as given, unpadded)."""

    side_starts: np.ndarray  # int64: lines that begin with "#" or "C" (comments, loss reports)
    side_ends: np.ndarray  # without a final "\r"
    nonblank: int  # non-blank lines
    irows: np.ndarray  # (NI, rows) int64: one column per event line, in line order
    urows: np.ndarray  # (U_NAMED0 + names, rows) uint64
    comm_firsts: Optional[np.ndarray]  # row where each task name code first appears (None: too many names)
    sym_firsts: Optional[np.ndarray]  # the same for symbols


class _Lib:
    """The loaded scanner (one per process)."""

    def __init__(self, path: Path, names: tuple):
        why = untrusted(path)
        if why is not None:
            raise SwapraceError(f"not loading the ftrace scanner: {why}")
        lib = ctypes.CDLL(str(path))
        p = ctypes.c_void_p
        lib.sr_ftrace_scan.argtypes = [p, ctypes.c_int64, p, ctypes.c_int64, p, p, ctypes.c_int64, p, p]
        lib.sr_ftrace_scan.restype = ctypes.c_int64
        lib.sr_ftrace_layout.argtypes = [p, ctypes.c_char_p, ctypes.c_int64]
        lib.sr_ftrace_layout.restype = None
        layout = np.zeros(5, np.int64)
        text = ctypes.create_string_buffer(256)
        lib.sr_ftrace_layout(layout.ctypes.data, text, len(text))
        self.nu = U_NAMED0 + len(names)
        got = (int(layout[0]), int(layout[1]), text.value.decode())
        if got[:2] != (NI, self.nu) or got[2] != ",".join(names):
            raise SwapraceError(f"the ftrace scanner's layout {got} differs from swaprace/readers/ftrace_scan.py")
        self.tcap, self.dmax = int(layout[3]), int(layout[4])
        self.fn = lib.sr_ftrace_scan
        self._tls = threading.local()

    def scan(self, data: bytes) -> Optional[Scan]:
        """The scan of ``data``; its arrays are this thread's workspace, valid until the thread's next scan."""
        # Capacities from the size alone (no counting pass): an event line takes at least 13 bytes
        # ("-1[0]1:: (x)\n"), any other line at least 2 ("#\n").
        max_rows, max_side = len(data) // 13 + 1, len(data) // 2 + 1
        side, irows, urows, dicts = self._workspace(max_rows, max_side)
        dicts[:2 * self.tcap] = 0  # empty hash tables (the first-row arrays after them need no clearing)
        counts = np.zeros(5, np.int64)
        # c_char_p of a bytes object points at its own buffer (no copy); ctypes drops the GIL for the call
        rc = self.fn(ctypes.c_char_p(data), len(data), side.ctypes.data, max_side, irows.ctypes.data,
                     urows.ctypes.data, max_rows, dicts.ctypes.data, counts.ctypes.data)
        if rc != 0:
            return None  # _DEFER (or _FULL, which the capacities rule out): the numpy path reads this block
        ns, nr, nonblank, ncomm, nsym = (int(c) for c in counts)
        firsts = dicts[2 * self.tcap:].copy()  # (kept by the caller's rows; the workspace is reused)
        return Scan(side[:ns, 0], side[:ns, 1], nonblank, irows[:, :nr], urows[:, :nr],
                    firsts[:ncomm] if ncomm >= 0 else None, firsts[self.dmax:self.dmax + nsym] if nsym >= 0 else None)

    def _workspace(self, max_rows: int, max_side: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Output arrays reused by each thread: fresh ones per block would cost page faults (tens of MiB a block,
        about a third of the scan). Field-major: each field's values are contiguous for numpy."""
        ws = getattr(self._tls, "ws", None)
        if ws is None or ws[1].shape[1] < max_rows or len(ws[0]) < max_side:
            rows = max(max_rows, ws[1].shape[1] if ws else 0)
            ws = (np.empty((max(max_side, len(ws[0]) if ws else 0), 2), np.int64), np.empty((NI, rows), np.int64),
                  np.empty((self.nu, rows), np.uint64), np.empty(2 * (self.tcap + self.dmax), np.int64))
            self._tls.ws = ws
        side, irows, urows, dicts = ws
        # views with this block's capacity as their stride (the C side indexes [field * max_rows + row])
        return side[:max_side], irows.reshape(-1)[:NI * max_rows].reshape(NI, max_rows), \
            urows.reshape(-1)[:self.nu * max_rows].reshape(self.nu, max_rows), dicts


_lock = threading.Lock()
_loaded: dict = {}


def mode() -> str:
    """``c``, ``numpy`` or ``auto`` (the scanner where it builds), from :data:`ENV`."""
    value = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if value not in ("c", "numpy", "auto"):
        raise SwapraceError(f"{ENV}={value!r}: expected c, numpy or auto")
    return value


def load(names: tuple) -> Optional[_Lib]:
    """The scanner, built and loaded once; None without a compiler or when the build fails (noted once, at
    debug level), unless :data:`ENV` is ``c``, which makes that an error."""
    with _lock:
        if "lib" not in _loaded:
            try:
                path = build_shared(SOURCE, "ftrace_scan", CFLAGS, "the ftrace scanner")
                _loaded["lib"] = _Lib(path, names) if path else None
                _loaded["why"] = "no C compiler" if path is None else None
            except (SwapraceError, OSError) as exc:
                _loaded["lib"], _loaded["why"] = None, str(exc)
            if _loaded["lib"] is None:
                _log.debug("ftrace text: numpy field scan (%s)", _loaded["why"])
        if _loaded["lib"] is None and mode() == "c":
            raise SwapraceError(f"{ENV}=c but the ftrace scanner is not available: {_loaded['why']}")
        return _loaded["lib"]


def scan(data: bytes, names: tuple) -> Optional[Scan]:
    """The C scan of ``data`` (padded, whole lines); None where the numpy path must read it."""
    if mode() == "numpy":
        return None
    lib = load(names)
    return lib.scan(data) if lib is not None else None

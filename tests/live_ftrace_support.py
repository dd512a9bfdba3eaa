"""One guest boot per kernel for the live ftrace tests: tests/guest/live_ftrace_check.py runs every check
inside the box and leaves its results in a host directory; test_live_ftrace.py and test_record_vm.py assert on
them. The run is cached per kernel for the whole pytest session (boot + workload cost once, not per test)."""

from __future__ import annotations

import functools
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from vm_support import vm_run

GUEST_TIMEOUT_S = 1800  # generous: a loaded 2-core host under TCG took 10+ minutes for one kernel


@dataclass
class GuestRun:
    kernel: str
    out: Path
    returncode: int
    stdout: str
    stderr: str
    result: dict


_FAILED: dict = {}


def guest_run(kernel: str) -> GuestRun:
    """The cached run for ``kernel``; a failed run is remembered too, so later tests do not boot again."""
    if kernel in _FAILED:
        raise _FAILED[kernel]
    try:
        return _guest_run(kernel)
    except Exception as exc:
        _FAILED[kernel] = exc
        raise


@functools.lru_cache(maxsize=None)
def _guest_run(kernel: str) -> GuestRun:
    out = Path(tempfile.mkdtemp(prefix=f"swaprace-live-ftrace-{kernel}-"))
    done = vm_run(kernel, ["python3", "tests/guest/live_ftrace_check.py", "/mnt/out"], timeout=GUEST_TIMEOUT_S,
                  out_dir=out)
    result_file = out / "result.json"
    result = json.loads(result_file.read_text()) if result_file.exists() else {}
    return GuestRun(kernel, out, done.returncode, done.stdout, done.stderr, result)

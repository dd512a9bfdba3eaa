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

GUEST_TIMEOUT_S = 900


@dataclass
class GuestRun:
    kernel: str
    out: Path
    returncode: int
    stdout: str
    stderr: str
    result: dict


@functools.lru_cache(maxsize=None)
def guest_run(kernel: str) -> GuestRun:
    out = Path(tempfile.mkdtemp(prefix=f"swaprace-live-ftrace-{kernel}-"))
    done = vm_run(kernel, ["python3", "tests/guest/live_ftrace_check.py", "/mnt/out"], timeout=GUEST_TIMEOUT_S,
                  out_dir=out)
    result_file = out / "result.json"
    result = json.loads(result_file.read_text()) if result_file.exists() else {}
    return GuestRun(kernel, out, done.returncode, done.stdout, done.stderr, result)

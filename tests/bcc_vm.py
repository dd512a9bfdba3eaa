"""One boot per kernel for the bcc tests: runs tests/guest/live_bcc_check.py in the test box and caches its
result.json for every test of this pytest session (tests/test_live_bcc.py and tests/test_detector_vm.py).

The guest's captures stay in a per-kernel directory under pytest's temp root; ``SWAPRACE_KEEP_BCC_OUT=DIR``
copies them to DIR (how tests/fixtures/real/bcc-*.parquet were made).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
from pathlib import Path

from vm_support import vm_run

GUEST_TIMEOUT = 900.0


@functools.lru_cache(maxsize=None)
def guest_result(kernel: str) -> dict:
    out = Path(tempfile.mkdtemp(prefix=f"swaprace-bcc-{kernel}-"))
    done = vm_run(kernel, ["python3", "tests/guest/live_bcc_check.py", "/mnt/out"], timeout=GUEST_TIMEOUT,
                  out_dir=str(out))
    result_file = out / "result.json"
    if not result_file.exists():
        raise AssertionError(f"guest wrote no result (exit {done.returncode}):\n{done.stdout[-2000:]}\n"
                             f"{done.stderr[-3000:]}")
    result = json.loads(result_file.read_text())
    result["out_dir"] = str(out)
    keep = os.environ.get("SWAPRACE_KEEP_BCC_OUT")
    if keep:
        dest = Path(keep) / kernel
        dest.mkdir(parents=True, exist_ok=True)
        for item in out.iterdir():
            shutil.copy2(item, dest / item.name)
    return result

"""One workload process: ``python -m swaprace.stress.worker SPEC.json``.

Started by :mod:`swaprace.stress.run`, several at once, as unrelated processes (different anon_vma roots,
so that KSM pages shared between them are copied on swap-in). It allocates the oracle's bookkeeping, joins the
memory cgroup, then maps and fills its region (only the region and what the run itself allocates are charged to
the workload's group), publishes where the region is (``status-<n>.json``), runs, and writes
``result-<n>.json`` (counters and oracle mismatches) and ``windows-<n>.bin`` (timed first touches, raw ``native.Window`` records).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict

from swaprace.osutil import atomic_write_bytes, atomic_write_text
from swaprace.stress import native
from swaprace.stress.pyhelper import PyHelper


def write_json(path: Path, obj: Dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(obj))


def join_cgroup(procs_file: str) -> None:
    if procs_file:
        with open(procs_file, "w") as fh:
            fh.write(str(os.getpid()))


def make_config(spec: Dict[str, Any]) -> native.Config:
    config = native.Config()
    for name, *_ in native.Config._fields_:
        if name in spec:
            setattr(config, name, int(spec[name]))
    return config


def main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    out = Path(spec["out_dir"])
    index = int(spec["proc_index"])
    helper: native.Helper | PyHelper
    if spec["helper"]:
        helper = native.Helper(Path(spec["helper"]))
    else:  # no C compiler on this machine
        helper = PyHelper()
    helper.install_stop_signals()  # SIGINT/SIGTERM: finish the round, sweep, report
    helper.reserve(make_config(spec))  # the oracle's bookkeeping: charged to the parent group, not the workload's
    join_cgroup(spec.get("cgroup_procs", ""))
    result = helper.prepare()
    write_json(out / f"status-{index}.json", {
        "pid": os.getpid(), "region_addr": result.region_addr, "page_size": result.page_size,
        "npages": spec["npages"], "shared_permille": spec["shared_permille"],
    })
    go = out / "go"
    while not go.exists():  # the orchestrator sets the cgroup limit once every worker has filled its region
        if helper.lib.sr_stop_requested():
            return 0
        time.sleep(0.01)
    helper.run()
    (out / f"rounds-done-{index}").touch()  # the orchestrator reads /proc/vmstat when all rounds are over
    helper.sweep()
    # raw native.Window records (run.WINDOW_DTYPE reads them): the worker needs no numpy (~20 MiB resident
    # per process, imported before it joins the cgroup, so charged to the parent group, not to the workload's)
    atomic_write_bytes(out / f"windows-{index}.bin", b"".join(bytes(a) for a in helper.windows()))
    counters = {name: getattr(result, name) for name, *_ in native.Result._fields_}
    mismatches = [{name: getattr(m, name) for name, *_ in native.Mismatch._fields_} | {"proc_index": index}
                  for m in helper.mismatches()]
    write_json(out / f"result-{index}.json", {"pid": os.getpid(), "counters": counters,
                                               "mismatches": mismatches})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

"""Run inside the swaprace test box by tests/test_lab_vm.py: one `swaprace stress --scenario ...` run, with
the machine's swaps, zram devices, cgroups and widener sysctls captured before and after.

    python3 tests/guest/lab_check.py OUT_DIR [stress options...]

Leaves OUT_DIR/result.json ({before, after, rc, stderr, release}) and OUT_DIR/stress.json (the --json summary).
"""

import json
import os
import subprocess
import sys
from pathlib import Path


def machine_state():
    sysctls = {p.name: p.read_text().strip() for p in Path("/proc/sys/vm").glob("swaprace_widen_*")
               if p.name != "swaprace_widen_hits"}
    zram = {p.name: (p / "disksize").read_text().strip() for p in Path("/sys/block").glob("zram*")}
    return {
        "swaps": Path("/proc/swaps").read_text().splitlines()[1:],
        "zram_disksize": zram,
        "cgroups": sorted(p.name for p in Path("/sys/fs/cgroup").iterdir() if p.name.startswith("swaprace-stress")),
        "widener": sysctls,
        "stress_state_file": Path("/var/lib/swaprace/stress-state.json").exists(),
    }


def main(out: Path, options):
    before = machine_state()
    done = subprocess.run(["swaprace", "stress", "--json", *options], capture_output=True, text=True)
    (out / "stress.json").write_text(done.stdout)
    after = machine_state()
    (out / "result.json").write_text(json.dumps({"before": before, "after": after, "rc": done.returncode,
                                                 "stderr": done.stderr, "release": os.uname().release},
                                                indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])

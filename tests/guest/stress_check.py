"""Run inside the swaprace test box by tests/test_stress_vm.py: `swaprace stress --record` for a short run,
with the machine's swap, cgroups, KSM knobs and kprobe events captured before and after.

    python3 tests/guest/stress_check.py OUT_DIR [stress options...]
    python3 tests/guest/stress_check.py OUT_DIR --as-a-user-runs-it   # `swaprace stress --yes --duration 60`

Leaves OUT_DIR/result.json ({before, after, rc, stderr}), OUT_DIR/stress.json (the --json summary) and
OUT_DIR/stress.parquet (the capture).
"""

import json
import subprocess
import sys
from pathlib import Path

KSM = Path("/sys/kernel/mm/ksm")


def machine_state():
    cgroups = sorted(p.name for p in Path("/sys/fs/cgroup").iterdir() if p.name.startswith("swaprace-stress"))
    return {
        "swaps": Path("/proc/swaps").read_text().splitlines()[1:],
        "cgroups": cgroups,
        "ksm": {k: (KSM / k).read_text().strip() for k in ("run", "pages_to_scan", "sleep_millisecs",
                                                              "merge_across_nodes") if (KSM / k).exists()},
        "ksm_pages_sharing": (KSM / "pages_sharing").read_text().strip(),
        "kprobe_events": Path("/sys/kernel/tracing/kprobe_events").read_text().splitlines(),
        "tracing_instances": sorted(p.name for p in Path("/sys/kernel/tracing/instances").iterdir()),
        "stress_state_file": Path("/var/lib/swaprace/stress-state.json").exists(),
    }


def main(out: Path, options):
    before = machine_state()
    if options == ["--as-a-user-runs-it"]:  # every default, as the README's user runs it (no recording)
        argv = ["swaprace", "stress", "--yes", "--duration", "60", "--json"]
    else:
        argv = ["swaprace", "stress", "--record", str(out / "stress.parquet"), "--json", *options]
    done = subprocess.run(argv, capture_output=True, text=True)
    (out / "stress.json").write_text(done.stdout)
    after = machine_state()
    (out / "result.json").write_text(json.dumps({"before": before, "after": after, "rc": done.returncode,
                                                 "stderr": done.stderr}, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])

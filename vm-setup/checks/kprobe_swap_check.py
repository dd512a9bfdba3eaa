#!/usr/bin/env python3
"""Prove that a test box can do what swaprace's live side needs; prints one JSON object.

Run inside the guest (as root), e.g. ``swaprace vm run --kernel trixie-backports -- python3
vm-setup/checks/kprobe_swap_check.py``. It

1. checks the box's facilities (BTF, tracefs, cgroup v2, KSM, bcc, bpftrace, gcc, swaprace importable),
2. resolves the four race roles to kprobe-able kernel functions with swaprace's symbol catalog
   (swaprace.kernel.catalog: first candidate present in kallsyms and traceable wins, newest name first),
3. attaches bcc kprobes on all four and an ftrace kprobe_events probe on the fault role,
4. runs a workload that swaps (swap disk on, a memory cgroup v2 of 32 MiB, 96 MiB touched twice),
5. reports the fault count bcc saw next to the hit count of kprobe_profile (they must be equal), and the
   probes' miss counts, then removes every probe, the cgroup and the swap again.

Exit status 0 when every step worked, 1 otherwise (the JSON says which step failed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Dict, List, Optional

TRACING = Path("/sys/kernel/tracing")
CGROUP = Path("/sys/fs/cgroup/swaprace-check")
FTRACE_EVENT = "swaprace_check_fault"
ROLES = ("fault", "lookup", "ksm_copy", "free_cache")  # swaprace.events.CORE_ROLES, in BPF_TEXT's order
WORKLOAD = """
import sys
size = 96 << 20
buf = bytearray(size)
for rounds in range(2):
    for offset in range(0, size, 4096):
        buf[offset] = (buf[offset] + 1) & 0xFF
print(sum(buf[::4096]), file=sys.stderr)
"""
BPF_TEXT = """
BPF_ARRAY(hits, u64, 4);
static inline void count(int role) { u32 key = role; u64 *value = hits.lookup(&key); if (value) __sync_fetch_and_add(value, 1); }
int on_fault(struct pt_regs *ctx) { count(0); return 0; }
int on_lookup(struct pt_regs *ctx) { count(1); return 0; }
int on_ksm_copy(struct pt_regs *ctx) { count(2); return 0; }
int on_free_cache(struct pt_regs *ctx) { count(3); return 0; }
"""


def facilities() -> Dict[str, object]:
    facts: Dict[str, object] = {
        "testbox": Path("/etc/swaprace-testbox").read_text() if Path("/etc/swaprace-testbox").exists() else None,
        "release": os.uname().release,
        "btf": Path("/sys/kernel/btf/vmlinux").exists(),
        "tracefs": (TRACING / "kprobe_events").exists(),
        "cgroup2_memory": "memory" in Path("/sys/fs/cgroup/cgroup.controllers").read_text().split(),
        "ksm": Path("/sys/kernel/mm/ksm/run").exists(),
        "bpftrace": shutil.which("bpftrace") is not None,
        "gcc": shutil.which("gcc") is not None,
        "headers": Path(f"/lib/modules/{os.uname().release}/build").exists(),
        "swap_disk": Path("/dev/swaprace-swap").exists(),
        "cpus": os.cpu_count(),
    }
    for module in ("swaprace", "bcc", "pandas", "pyarrow", "click", "matplotlib", "pytest", "hypothesis"):
        try:
            __import__(module)
            facts[f"import_{module}"] = True
        except Exception as exc:  # report, do not stop: the JSON says what is missing
            facts[f"import_{module}"] = f"{type(exc).__name__}: {exc}"
    return facts


def resolve_roles() -> Dict[str, Optional[str]]:
    """The four race roles, resolved by swaprace's own catalog against this kernel's kallsyms and ftrace."""
    from swaprace.events import CORE_ROLES
    from swaprace.kernel.catalog import load_symbols, resolve_roles as resolve

    return {role: resolution.symbol for role, resolution in resolve(load_symbols(), CORE_ROLES).items()}


def kprobe_profile() -> Dict[str, List[int]]:
    profile = {}
    for line in (TRACING / "kprobe_profile").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 3:
            profile[fields[0]] = [int(fields[1]), int(fields[2])]
    return profile


def append_probe(line: str) -> None:
    # O_APPEND without Python's "a" mode: that seeks to the end first, which tracefs files refuse (EINVAL).
    fd = os.open(TRACING / "kprobe_events", os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, line.encode() + b"\n")
    finally:
        os.close(fd)


def run(command: List[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, check=True, capture_output=True, text=True, **kwargs)


def swap_workload() -> float:
    run(["swaprace-testbox", "swap-on"])
    cgroup = run(["swaprace-testbox", "cgroup", CGROUP.name, "32M"]).stdout.strip()
    started = time.monotonic()
    shell = f'echo $$ > {cgroup}/cgroup.procs && exec python3 -c "$0"'
    subprocess.run(["sh", "-c", shell, WORKLOAD], check=True)
    return time.monotonic() - started


def cleanup() -> None:
    for step in (
        lambda: (TRACING / "events/kprobes" / FTRACE_EVENT / "enable").write_text("0"),
        lambda: append_probe(f"-:{FTRACE_EVENT}"),
        lambda: run(["swaprace-testbox", "cgroup-rm", CGROUP.name]),
        lambda: run(["swaprace-testbox", "swap-off"]),
    ):
        try:
            step()
        except (OSError, subprocess.CalledProcessError):
            pass


def main() -> int:
    report: Dict[str, object] = {"ok": False}
    try:
        report["facilities"] = facilities()
        roles = resolve_roles()
        report["roles"] = roles
        if not all(roles.values()):
            report["error"] = f"unresolved roles: {[r for r, f in roles.items() if not f]}"
            return 1

        from bcc import BPF

        bpf = BPF(text=BPF_TEXT)
        for role, function in roles.items():
            bpf.attach_kprobe(event=function, fn_name=f"on_{role}")
        append_probe(f"p:{FTRACE_EVENT} {roles['fault']}")
        (TRACING / "events/kprobes" / FTRACE_EVENT / "enable").write_text("1")

        report["workload_seconds"] = round(swap_workload(), 2)

        (TRACING / "events/kprobes" / FTRACE_EVENT / "enable").write_text("0")
        profile = kprobe_profile()
        counts = bpf["hits"]
        bcc_counts = {role: int(counts[counts.Key(index)].value) for index, role in enumerate(ROLES)}
        bpf.cleanup()
        report["bcc_hits"] = bcc_counts
        report["ftrace_fault_hits"], report["ftrace_fault_misses"] = profile.get(FTRACE_EVENT, [None, None])
        report["kprobe_profile"] = profile
        report["ok"] = True
        return 0
    except Exception:
        report["error"] = traceback.format_exc(limit=3)
        return 1
    finally:
        cleanup()
        print(json.dumps(report, indent=2, sort_keys=True))


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Guest side of the live bcc tests: one boot runs every check and writes results to OUT_DIR.

Run inside the test box (root, the checkout at /mnt/swaprace):

    python3 tests/guest/live_bcc_check.py /mnt/out [--only record,both,sigterm]

One check, "record" (bcc compiles for minutes under TCG, so everything shares one compile): the ftrace
backend is attached in this process, `swaprace record --backend bcc` records the swap workload (KSM on, write
faults, a 24 MiB swap file so freed slots are allocated again) in a child process and is stopped with
SIGTERM after a few seconds of tracing. result.json then holds
  - the capture's per-role counts, the BPF program's own hit counters, the losses by source;
  - `analyze` of the capture next to the in-kernel detector's counters and races;
  - both backends' per-role counts over the time both were attached;
  - the kernel's registered kprobes and bcc's kprobe_events before and after (nothing may be left).
record.parquet is the bcc fixture of this kernel (tests/fixtures/real/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(CHECKOUT))
WORKLOAD = [sys.executable, str(CHECKOUT / "tests/guest/swap_workload.py")]
SWAPRACE = [sys.executable, "-m", "swaprace"]
KPROBES_LIST = Path("/sys/kernel/debug/kprobes/list")
TRACEFS = Path("/sys/kernel/tracing")


def sh(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def role_counts(events) -> dict:
    """{role: {"call": n, "return": n}} of an event table."""
    out: dict = {}
    grouped = events.groupby([events["role"].astype(str), events["phase"].astype(str)]).size()
    for (role, phase), n in grouped.items():
        out.setdefault(role, {"call": 0, "return": 0})[phase] = int(n)
    return out


def probes_on(symbols) -> list:
    """Lines of the kernel's list of registered kprobes that sit on one of ``symbols``."""
    try:
        lines = KPROBES_LIST.read_text().splitlines()
    except OSError:
        return []
    wanted = set(symbols)
    return [line for line in lines if any(part.split("+")[0] in wanted for part in line.split())]


def call_probes_on(symbols) -> set:
    """Symbols of ``symbols`` that carry an entry kprobe (type ``k``) in the kernel's kprobe list."""
    try:
        lines = KPROBES_LIST.read_text().splitlines()
    except OSError:
        return set()
    found = set()
    for line in lines:
        parts = line.split()
        if len(parts) >= 3 and parts[1] == "k":
            found.add(parts[2].split("+")[0])
    return found & set(symbols)


def bcc_kprobe_events() -> list:
    return [line for line in (TRACEFS / "kprobe_events").read_text().splitlines() if "_bcc_" in line]


TRACED_EVENTS = 1500  # events (as the ftrace side counts them) to trace before SIGTERM
MAX_TRACE_SECONDS = 60.0


def check_record(out: Path) -> dict:
    """`swaprace record --backend bcc` on the KSM workload, stopped by SIGTERM, with the ftrace backend attached
    to the same probes in this process all along (one bcc compile per boot: minutes under TCG)."""
    import pandas as pd

    from swaprace.analysis.model import analyze
    from swaprace.capture import read_capture
    from swaprace.probes.backend import make_plan
    from swaprace.probes.bcc_backend import attachments
    from swaprace.probes.ftrace_backend import FtraceBackend

    symbols = list(make_plan().symbols.values())
    result: dict = {"probes_before": probes_on(symbols), "bcc_kprobe_events_before": bcc_kprobe_events()}
    capture_path = out / "record.parquet"
    # The workload swaps before and after: bcc's compile takes minutes under TCG, the traced part is short.
    # --write: write faults let do_swap_page free the slot, and the small swap file (SWAPFILE_MB) makes the
    # allocator hand freed slots out again soon: slot reallocations (reuses) for the detector to follow.
    workload = subprocess.Popen(WORKLOAD + ["--threads", "2", "--mem", "24", "--limit", "16", "--seconds", "1800",
                                            "--ksm", "--write", "--json"], stdout=subprocess.PIPE, text=True)
    ftrace = FtraceBackend(raw_trace=str(out / "ftrace.trace"))  # also the ftrace fixture of this kernel
    frames = []
    t0 = time.monotonic()
    proc = None
    try:
        # Hold the workload still while bcc attaches: with faults in flight, attaching the kretprobes oopsed
        # the 6.1 guest once under TCG (a return to address 0 from do_swap_page; not reproduced on demand).
        workload.send_signal(signal.SIGSTOP)
        proc = subprocess.Popen(SWAPRACE + ["record", "-o", str(capture_path), "--backend", "bcc", "--json"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 900
        # bcc attaches the entry probes (perf kprobe PMU), then the return probes (kprobe_events, for
        # maxactive): recording has begun once all of both are there.
        returns = sum(1 for kind, _, _ in attachments(make_plan()) if kind == "kretprobe")
        while (time.monotonic() < deadline and proc.poll() is None
               and not (len(bcc_kprobe_events()) >= returns and call_probes_on(symbols) == set(symbols))):
            time.sleep(0.5)
        workload.send_signal(signal.SIGCONT)
        result["attach_seconds"] = round(time.monotonic() - t0, 1)
        result["attached_bcc_events"] = len(bcc_kprobe_events())
        ftrace.start(make_plan())  # both attached from here on
        # Trace until the ftrace side has seen TRACED_EVENTS events (a few thousand: the fixture's size).
        seen, until = 0, time.monotonic() + MAX_TRACE_SECONDS
        while time.monotonic() < until and seen < TRACED_EVENTS and proc.poll() is None:
            time.sleep(0.2)
            frames.append(ftrace.drain())
            seen += len(frames[-1])
        result["ftrace_events_while_traced"] = seen
        proc.send_signal(signal.SIGTERM)
        try:
            stdout, stderr = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        time.sleep(0.3)
    finally:
        ftrace.stop()
        workload.send_signal(signal.SIGCONT)
        workload.send_signal(signal.SIGTERM)
        try:
            wl_out, _ = workload.communicate(timeout=60)
            result["workload"] = json.loads(wl_out or "null")
        except (subprocess.TimeoutExpired, ValueError):
            workload.kill()
            workload.communicate()
    frames.append(ftrace.drain())
    result.update(status=proc.returncode, stderr=stderr[-3000:], seconds=round(time.monotonic() - t0, 1))
    # The ftrace side's raw text with its metadata (kprobe_profile's hits at the end): tests/fixtures/real.
    from swaprace.capture import write_raw_trace
    from swaprace.events import CaptureMeta

    ftrace_plan = make_plan()
    fmeta = CaptureMeta(backend="ftrace", kernel_release=os.uname().release, symbols=ftrace_plan.symbols,
                        lost={k: int(v) for k, v in ftrace.losses().items()}, lost_known=True)
    fmeta.extra["kernel_hits"] = ftrace.hits()
    fmeta.extra["layout"] = ftrace_plan.layout.to_dict()
    write_raw_trace(out / "ftrace.trace", ftrace.raw_lines(), fmeta)
    result["probes_after"] = probes_on(symbols)
    result["bcc_kprobe_events_after"] = bcc_kprobe_events()
    try:
        result["summary"] = json.loads(stdout)
    except ValueError:
        result["stdout"] = stdout[-2000:]
    if not capture_path.exists():
        return result  # the recorder failed: its stderr is in the result
    capture = read_capture(capture_path)
    meta = capture.meta
    events = capture.events
    result.update(
        capture_events=int(len(events)), stopped_by=meta.extra.get("stopped_by"),
        capture_counts=role_counts(events), detector=meta.detector, lost=meta.lost,
        lost_events=meta.lost_events, kernel_hits=meta.extra.get("kernel_hits"), symbols=meta.symbols,
        release=meta.kernel_release, capture_bytes=capture_path.stat().st_size,
    )
    analysis = analyze(capture)
    result["analysis"] = {k: analysis.summary.get(k) for k in
                          ("events", "windows", "windows_with_entry", "windows_with_page", "lookup_hits",
                           "reuses", "races", "race_classes", "uncertain_races", "ksm_copies", "entries",
                           "residency", "prepare", "history_gaps", "unknown_functions", "lost_unplaced")}
    result["lost_intervals"] = meta.lost_intervals[:50]
    result["layout"] = meta.extra.get("layout")
    # The two backends over the time both were attached (same clock: CLOCK_MONOTONIC in both).
    ftrace_events = pd.concat(frames, ignore_index=True)
    if len(events) and len(ftrace_events):
        # Each probe is compared over the time bcc had it attached: bcc detaches its probes one by one (return
        # probes first), so one span for all of them would count probes bcc had already let go.
        lo = max(int(events["ts_ns"].min()), int(ftrace_events["ts_ns"].min()))
        hi = min(int(events["ts_ns"].max()), int(ftrace_events["ts_ns"].max()))
        result["both"] = {"span_ns": hi - lo, "bcc": {}, "ftrace": {}, "ftrace_lost": ftrace.losses()}
        for df in (events, ftrace_events):
            df["_key"] = df["role"].astype(str) + "/" + df["phase"].astype(str)
        for key, own in events.groupby("_key"):
            # One hit is stamped twice, by the BPF program and by the ftrace kprobe event, a few microseconds
            # apart: right at the span's edges a hit can fall inside for one backend and outside for the other.
            # Both are compared over the same span kept EDGE_MARGIN_NS inside the edges.
            first = max(lo, int(own["ts_ns"].min())) + EDGE_MARGIN_NS
            last = min(hi, int(own["ts_ns"].max())) - EDGE_MARGIN_NS
            role, phase = key.split("/")
            for name, df in (("bcc", events), ("ftrace", ftrace_events)):
                n = int(((df["_key"] == key) & (df["ts_ns"] >= first) & (df["ts_ns"] <= last)).sum())
                result["both"][name].setdefault(role, {"call": 0, "return": 0})[phase] = n
    return result


CHECKS = {"record": check_record}
SWAPFILE = Path("/var/tmp/swaprace-live-bcc.swap")
EDGE_MARGIN_NS = 1_000_000
SWAPFILE_MB = 24  # 6,144 slots, a third to a half in use: freed slots are allocated again within seconds


def swap_file_on() -> None:
    sh(["dd", "if=/dev/zero", f"of={SWAPFILE}", "bs=1M", f"count={SWAPFILE_MB}"], check=True)
    SWAPFILE.chmod(0o600)
    sh(["mkswap", str(SWAPFILE)], check=True)
    sh(["swapon", "-p", "32767", str(SWAPFILE)], check=True)


def swap_file_off() -> None:
    sh(["swapoff", str(SWAPFILE)])
    SWAPFILE.unlink(missing_ok=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--only", default=",".join(CHECKS))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    swap_file_on()
    result: dict = {"release": os.uname().release}
    for name in args.only.split(","):
        t0 = time.monotonic()
        try:
            result[name] = CHECKS[name](out)
        except Exception as exc:  # noqa: BLE001 -- one failed check must not hide the others
            import traceback

            result[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        result[name]["check_seconds"] = round(time.monotonic() - t0, 1)
        (out / "result.json").write_text(json.dumps(result, indent=1, default=str))
        print(f"live_bcc_check: {name} done in {result[name]['check_seconds']} s", flush=True)
    swap_file_off()
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Live benchmark (run inside the test box, as root): overhead ratios, events/s without loss, where loss starts.

    swaprace vm run --kernel bookworm -- python3 benchmarks/bench_live_bcc.py --all
    swaprace vm run --kernel trixie-backports -- python3 benchmarks/bench_live_bcc.py --all --json

One run prints every figure of the live table in benchmarks/README.md, on the same swap workload
(tests/guest/swap_workload.py, MADV_PAGEOUT before every pass so each pass swaps the whole area in again):

* untraced run time (before and after the traced runs: drift shows as their spread);
* counting baseline: a minimal bcc program that only increments a per-CPU counter per probe hit, on exactly
  the probes swaprace attaches (same kprobes and kretprobes, same maxactive); its count is the kernel's hit count;
* swaprace detection only (in-kernel detector, no event stream), full stream over the ring buffer, full stream
  over the perf buffer, and the ftrace backend: run time ratio to untraced; for the streams the events/s written,
  losses, and written / hits the kernel counted in that same run (bcc: the program's own per-CPU hit counters;
  ftrace: kprobe_profile);
* detection-only added time as a multiple of the counting baseline's added time (goal: within 2x);
* per-program cost (``kernel.bpf_stats_enabled=1`` for one extra run of each bcc program, then ``run_time_ns`` /
  ``run_cnt`` from the program's fdinfo): ns per run for every kprobe/kretprobe program;
* where loss starts: each stream again, drained every 1 s and every 5 s (the buffers fill in between).

A mode that fails is reported with its reason and the run goes on. Under QEMU TCG only the ratios mean
anything; absolute rates and ns are an emulated CPU's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(CHECKOUT))

from swaprace.probes.backend import make_plan  # noqa: E402
from swaprace.probes.bcc_backend import BccBackend, attachments, ensure_kernel_headers  # noqa: E402

WORKLOAD = [sys.executable, str(CHECKOUT / "tests/guest/swap_workload.py")]
STATS_SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")

COUNT_SOURCE = """
BPF_PERCPU_ARRAY(hits, u64, NPROBES);
"""
COUNT_FN = """
int cnt_{i}(struct pt_regs *ctx) {{
    u32 k = {i};
    u64 *v = hits.lookup(&k);
    if (v) (*v)++;
    return 0;
}}
"""


def workload_cmd(args, out: Path) -> list:
    inner = WORKLOAD + ["--threads", str(args.threads), "--mem", str(args.mem), "--limit", str(args.limit),
                        "--passes", str(args.passes), "--pageout", "--json"]
    return ["sh", "-c", " ".join(inner) + f" > {out}"]


def run_workload(args, poll=None, poll_interval: float = 0.1) -> float:
    """Run the workload once; call ``poll()`` every ``poll_interval`` s meanwhile; return its own seconds."""
    with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
        child = subprocess.Popen(workload_cmd(args, Path(tmp.name)))
        last = time.monotonic()
        while child.poll() is None:
            time.sleep(0.05)
            if poll is not None and time.monotonic() - last >= poll_interval:
                poll()
                last = time.monotonic()
        if child.returncode:
            raise RuntimeError(f"workload exited {child.returncode}")
        if poll is not None:
            poll()
        return json.loads(Path(tmp.name).read_text())["seconds"]


def prog_stats(fds: dict) -> dict:
    """name -> (run_cnt, run_time_ns) from /proc/self/fdinfo (filled only with kernel.bpf_stats_enabled=1)."""
    out = {}
    for name, fd in fds.items():
        info = {}
        for line in Path(f"/proc/self/fdinfo/{fd}").read_text().splitlines():
            key, _, value = line.partition(":")
            info[key.strip()] = value.strip()
        out[name] = (int(info.get("run_cnt", 0)), int(info.get("run_time_ns", 0)))
    return out


def set_stats(on: bool) -> None:
    STATS_SYSCTL.write_text("1\n" if on else "0\n")


class Counting:
    """The counting-only baseline: one program per swaprace probe, each increments its per-CPU slot."""

    name = "counting baseline"

    def __init__(self):
        from bcc import BPF

        plan = make_plan(stream_events=False, detect=True)
        self.attach = attachments(plan)
        ensure_kernel_headers()
        text = COUNT_SOURCE.replace("NPROBES", str(len(self.attach)))
        text += "".join(COUNT_FN.format(i=i) for i in range(len(self.attach)))
        t0 = time.monotonic()
        self.bpf = BPF(text=text)
        try:
            self._attach(plan)
        except BaseException:
            self.bpf.cleanup()
            raise
        self.start_seconds = time.monotonic() - t0
        self.fds = {f"{kind}:{symbol}": self.bpf.funcs[f"cnt_{i}".encode()].fd
                    for i, (kind, symbol, _fn) in enumerate(self.attach)}

    def _attach(self, plan) -> None:
        for i, (kind, symbol, _fn) in enumerate(self.attach):
            if kind == "kprobe":
                self.bpf.attach_kprobe(event=symbol, fn_name=f"cnt_{i}")
            else:
                self.bpf.attach_kretprobe(event=symbol, fn_name=f"cnt_{i}", maxactive=plan.maxactive)

    def hits(self) -> int:
        return int(sum(sum(v) for v in self.bpf["hits"].values()))

    def run(self, args, poll_interval: float = 0.1) -> dict:
        h0 = self.hits()
        seconds = run_workload(args)
        return {"seconds": seconds, "hits": self.hits() - h0}

    def stop(self) -> None:
        self.bpf.cleanup()


class Traced:
    """One compiled and attached swaprace bcc program, used for several workload runs (bcc compiles for
    minutes under TCG, so each mode compiles once)."""

    def __init__(self, stream: bool, perf: bool = False):
        plan = make_plan(stream_events=stream, detect=True)
        plan.extra["perf_buffer"] = perf
        self.stream = stream
        self.backend = BccBackend()
        t0 = time.monotonic()
        self.backend.start(plan)
        self.start_seconds = time.monotonic() - t0
        try:
            self.fds = {f"{kind}:{symbol}": self.backend._bpf.funcs[fn.encode()].fd
                        for kind, symbol, fn in attachments(plan)}
        except BaseException:
            self.backend.stop()
            raise

    def _totals(self):
        counters = self.backend.counters()
        hits = sum(p["call"] + p["return"] for p in counters["hits"].values())
        return hits, int(sum(self.backend.losses().values()))

    def run(self, args, poll_interval: float = 0.1) -> dict:
        hits0, lost0 = self._totals()
        self.backend.drain()
        events = [0]

        def poll():
            events[0] += len(self.backend.drain())

        seconds = run_workload(args, poll, poll_interval)
        for _ in range(50):  # what is still buffered (one drain reads a bounded amount)
            n = len(self.backend.drain())
            events[0] += n
            if not n:
                break
        hits1, lost1 = self._totals()
        return {"seconds": seconds, "events": events[0], "hits": hits1 - hits0, "lost": lost1 - lost0,
                "poll_interval": poll_interval}

    def stop(self) -> None:
        self.backend.stop()


class Ftrace:
    """The ftrace backend (kprobe events, trace_pipe), drained like the bcc streams."""

    def __init__(self):
        from swaprace.probes.ftrace_backend import FtraceBackend

        plan = make_plan(stream_events=True, detect=False)
        self.backend = FtraceBackend()
        t0 = time.monotonic()
        self.backend.start(plan)
        self.start_seconds = time.monotonic() - t0
        self.fds = {}

    def _totals(self):
        return int(sum(self.backend.hits().values())), int(sum(self.backend.losses().values()))

    run = Traced.run

    def stop(self) -> None:
        self.backend.stop()


def median(values):
    return statistics.median(values) if values else float("nan")


def measure(label, factory, args, report, intervals=()):
    """Compile/attach, run ``repeat`` timed runs, one bpf_stats run (bcc), then the slower drains."""
    row = {"mode": label}
    report["modes"].append(row)
    prog = None
    try:
        prog = factory()
        row["compile_attach_s"] = round(prog.start_seconds, 1)
        runs = [prog.run(args) for _ in range(args.repeat)]
        row["runs"] = runs
        row["seconds"] = median([r["seconds"] for r in runs])
        row["hits_per_s"] = round(median([r["hits"] / r["seconds"] for r in runs]))
        if "events" in runs[0] and getattr(prog, "stream", True):
            row["events_per_s"] = round(median([r["events"] / r["seconds"] for r in runs]))
            row["written_vs_counted"] = round(median([r["events"] / max(r["hits"], 1) for r in runs]), 4)
            row["lost"] = [r["lost"] for r in runs]
        if prog.fds and args.prog_stats:
            set_stats(True)
            try:
                before = prog_stats(prog.fds)
                stats_run = prog.run(args)
                after = prog_stats(prog.fds)
            finally:
                set_stats(False)
            row["stats_run_seconds"] = stats_run["seconds"]
            per = {}
            for name in prog.fds:
                cnt = after[name][0] - before[name][0]
                ns = after[name][1] - before[name][1]
                per[name] = {"runs": cnt, "ns": ns, "ns_per_run": round(ns / cnt) if cnt else None}
            row["prog_stats"] = per
            total_cnt = sum(p["runs"] for p in per.values())
            row["ns_per_hit"] = round(sum(p["ns"] for p in per.values()) / max(total_cnt, 1))
        row["slow_drain"] = [prog.run(args, poll_interval=i) for i in intervals]
    except Exception as exc:
        row["failed"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        traceback.print_exc()
    finally:
        if prog is not None:
            try:
                prog.stop()
            except Exception as exc:
                row.setdefault("failed", f"stop: {exc}")
    print(f"  [{time.strftime('%H:%M:%S')}] {label}: "
          f"{row.get('failed') or row.get('seconds')}", file=sys.stderr, flush=True)
    return row


def print_table(report) -> None:
    base = report["untraced_s_median"]
    print(f"kernel {report['kernel']}: workload {report['workload']}, untraced {base:.2f} s "
          f"(median of {report['untraced_s']})")
    print("| mode | run time / untraced (timed run; bpf_stats run) | events/s written | written / kernel hits | lost "
          "| hits/s (kernel) | ns per probe run (bpf_stats) | compile+attach s |")
    print("|---|---|---|---|---|---|---|---|")
    for row in report["modes"]:
        if "failed" in row and "seconds" not in row:
            print(f"| {row['mode']} | failed: {row['failed']} | | | | | | |")
            continue
        ratio = f"x{row['seconds'] / base:.3f}"
        if "stats_run_seconds" in row:
            ratio += f"; x{row['stats_run_seconds'] / base:.3f}"
        ev = f"{row['events_per_s']:,}" if "events_per_s" in row else "-"
        wc = row.get("written_vs_counted", "-")
        lost = ", ".join(f"{x:,}" for x in row["lost"]) if "lost" in row else "-"
        ns = row.get("ns_per_hit", "-")
        print(f"| {row['mode']} | {ratio} | {ev} | {wc} | {lost} | {row['hits_per_s']:,} | {ns} "
              f"| {row.get('compile_attach_s', '-')} |")
    if report.get("detect_vs_counting") is not None:
        print(f"detection-only added time / counting baseline's added time: x{report['detect_vs_counting']} "
              "(goal <= 2)")
    if report.get("detect_vs_counting_ns") is not None:
        print(f"detection-only BPF ns per probe run / counting baseline's: x{report['detect_vs_counting_ns']}")
    print("where loss starts (same stream drained less often):")
    for row in report["modes"]:
        for s in row.get("slow_drain", []):
            print(f"  {row['mode']}: drained every {s['poll_interval']} s: {s['events'] / s['seconds']:,.0f} "
                  f"events/s written, {s['hits'] / s['seconds']:,.0f} hits/s, lost {s['lost']:,} "
                  f"(written/hits {s['events'] / max(s['hits'], 1):.4f})")
    print("per-program cost (bpf_stats run: ns per run, runs):")
    for row in report["modes"]:
        if "prog_stats" in row:
            parts = [f"{name} {p['ns_per_run']} ns x{p['runs']:,}" for name, p in row["prog_stats"].items()]
            print(f"  {row['mode']} (run {row['stats_run_seconds']:.2f} s): " + "; ".join(parts))


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="example (inside the box, via the host):\n"
               "  swaprace vm run --kernel bookworm -- python3 benchmarks/bench_live_bcc.py --all\n"
               "  swaprace vm run --kernel trixie-backports -- python3 benchmarks/bench_live_bcc.py --all --json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mem", type=int, default=64)
    ap.add_argument("--limit", type=int, default=32)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=1, help="timed runs per mode (median)")
    ap.add_argument("--all", action="store_true",
                    help="every mode: counting baseline, detection only, ring buffer, perf buffer, ftrace "
                         "(default: counting, detection, ring buffer)")
    ap.add_argument("--modes", default="", help="comma list of count,detect,ring,perf,ftrace (overrides --all)")
    ap.add_argument("--intervals", default="1,5", help="slower drain intervals (s) for the loss sweep")
    ap.add_argument("--no-prog-stats", dest="prog_stats", action="store_false",
                    help="skip the extra kernel.bpf_stats_enabled run per bcc program")
    ap.add_argument("--json", action="store_true", help="also print the whole report as JSON")
    args = ap.parse_args()
    why = BccBackend.check()
    if why:
        print(f"bench_live_bcc: bcc unusable here: {why}", file=sys.stderr)
        return 2
    modes = [m for m in args.modes.split(",") if m] or (
        ["count", "detect", "ring", "perf", "ftrace"] if args.all else ["count", "detect", "ring"])
    intervals = [float(x) for x in args.intervals.split(",") if x]
    subprocess.run(["swaprace-testbox", "swap-on"], check=False)
    report = {"kernel": os.uname().release, "date": time.strftime("%Y-%m-%d"),
              "workload": {"threads": args.threads, "mem_mib": args.mem, "limit_mib": args.limit,
                           "passes": args.passes},
              "modes": []}
    untraced = [run_workload(args) for _ in range(args.repeat)]
    factories = {
        "count": ("counting baseline (bcc, same probes)", Counting, ()),
        "detect": ("swaprace detection only", lambda: Traced(stream=False), ()),
        "ring": ("swaprace full stream, ring buffer", lambda: Traced(stream=True), intervals),
        "perf": ("swaprace full stream, perf buffer", lambda: Traced(stream=True, perf=True), intervals),
        "ftrace": ("ftrace backend", Ftrace, intervals),
    }
    for mode in modes:
        label, factory, ivals = factories[mode]
        measure(label, factory, args, report, ivals)
    untraced.append(run_workload(args))
    report["untraced_s"] = untraced
    base = report["untraced_s_median"] = median(untraced)
    by = {row["mode"]: row for row in report["modes"]}
    count, detect = by.get(factories["count"][0], {}), by.get(factories["detect"][0], {})
    if "seconds" in count and "seconds" in detect and count["seconds"] > base:
        report["detect_vs_counting"] = round((detect["seconds"] - base) / (count["seconds"] - base), 2)
    if count.get("ns_per_hit") and detect.get("ns_per_hit"):
        report["detect_vs_counting_ns"] = round(detect["ns_per_hit"] / count["ns_per_hit"], 2)
    print_table(report)
    if args.json:
        print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

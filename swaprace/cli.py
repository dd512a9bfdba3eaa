"""The thin click layer: every command parses options, calls the library, prints the result.

Each command's docstring is its ``--help`` and carries an example. Library errors (:class:`SwapraceError`)
become one ``swaprace: error: ...`` line and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Optional

import click

from swaprace import __version__
from swaprace.errors import SwapraceError

if TYPE_CHECKING:
    from click._termui_impl import ProgressBar


class SwapraceGroup(click.Group):
    """A click group that turns library errors into one line on stderr."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SwapraceError as exc:
            click.echo(f"swaprace: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("swaprace: interrupted", err=True)
            ctx.exit(130)
        except BrokenPipeError:
            sys.stderr.close()  # `swaprace ... | head`: the reader left, nothing more to say
            ctx.exit(1)


def echo_json(obj: Any) -> None:
    """Print one JSON object on stdout (the ``--json`` contract of every command): swap entries and other
    64-bit values as ``"0x..."`` strings (:mod:`swaprace.jsonout`)."""
    from swaprace import jsonout

    click.echo(jsonout.dumps(obj, indent=2, sort_keys=True))


@click.group(cls=SwapraceGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="swaprace")
def main() -> None:
    """Watch the Linux swap-in path and flag swap-entry reuse inside do_swap_page's race window.

    \b
    Example:
        swaprace analyze capture.parquet
        swaprace doctor
    """


# === analyze =============================================================================================


def _parse_entry_option(_ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
    """``--entry``: the same spellings as ``swaprace plot entry`` (0x..., decimal, TYPE:OFFSET)."""
    if value is None:
        return None
    from swaprace.analysis.selection import parse_entry

    try:
        return parse_entry(value)
    except SwapraceError as exc:
        raise click.BadParameter(str(exc)) from None


@main.command("analyze")
@click.argument("capture", type=click.Path(dir_okay=True, path_type=str))
@click.option("--format", "fmt", type=click.Choice(["parquet", "jsonl", "ftrace", "perf"]), default=None,
              help="Input format (default: detected from the file).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (the summary) on stdout.")
@click.option("--since", type=float, default=None, metavar="SECONDS",
              help="Ignore events before this time (seconds on the capture's clock, as ftrace prints it).")
@click.option("--until", type=float, default=None, metavar="SECONDS", help="Ignore events after this time.")
@click.option("--entry", default=None, callback=_parse_entry_option, metavar="E",
              help="Report only windows, generations, residencies and races of this swap entry "
                   "(0x hex, decimal or TYPE:OFFSET).")
@click.option("--tid", type=int, default=None, help="Report only windows and races of this thread.")
@click.option("--races-limit", type=int, default=50, show_default=True,
              help="Rows of the races table in the readable summary (0: all).")
@click.option("--out-dir", default=None, type=click.Path(file_okay=False), metavar="DIR",
              help="Also write the derived tables (windows, generations, residency, races, summary) as Parquet "
                   "under DIR/<table>/ (see `swaprace fleet`).")
def analyze_command(capture: str, fmt: Any, as_json: bool, since: Any, until: Any, entry: Any, tid: Any,
                    races_limit: int, out_dir: Any = None) -> None:
    """Analyze a capture: fault windows, swap-entry generations, entry reuse inside a race window.

    CAPTURE is a swaprace Parquet capture, JSON Lines, ftrace text (a `trace` or `trace_pipe` dump of kprobe
    events on do_swap_page, swap_cache_get_folio, folio_free_swap, ...) or `perf script` text of such probes;
    the format is detected. A race is a swap entry whose slot was freed and allocated again inside a
    do_swap_page window, after the faulting thread obtained its page and before it installed it:
    `stale-install` when it then installed data that is not the entry's any more (the ABA of the 2010 "fix
    swapin race condition" thread), `benign` when it installed the folio bound in the new generation,
    `recovered` when it backed out. Evictions and re-reads of the swap cache are counted, never races.

    \b
    Examples:
        swaprace analyze capture.parquet
        swaprace analyze /sys/kernel/tracing/trace --json | jq .races
        swaprace analyze trace.txt --entry 0x3a5 --since 5170.1 --until 5171
        swaprace analyze capture.parquet --entry 0:0x12a
    """
    from swaprace.analysis.selection import load_analysis
    from swaprace.analysis.summary_text import render_summary

    from swaprace.readers.validate import check_finite_seconds
    from swaprace.readers.warnings import capture_warnings, filter_warnings

    since_ns = None if since is None else check_finite_seconds(since, "--since")
    until_ns = None if until is None else check_finite_seconds(until, "--until")
    result = load_analysis(capture, fmt, status=_tty_status, since_ns=since_ns, until_ns=until_ns, entry=entry,
                           tid=tid)
    warnings = capture_warnings(result.capture) + filter_warnings(result.capture, since_ns, until_ns, entry, tid)
    for warning in warnings:
        click.echo(f"swaprace: warning: {warning}", err=True)
    if out_dir:
        from swaprace.fleet.derive import write_derived

        derived = write_derived(result, capture, out_dir)
        click.echo(f"swaprace: wrote {len(derived.paths)} derived tables to {out_dir} (run {derived.run_id})", err=True)
    if as_json:
        echo_json({**result.summary, "warnings": warnings})
    else:
        click.echo(render_summary(result, source=capture, races_limit=races_limit))


# === end analyze =========================================================================================

# === doctor / record =====================================================================================
@main.command()
@click.option("--kallsyms", "kallsyms", type=click.Path(dir_okay=False), default=None,
              help="Read a saved /proc/kallsyms (address type name lines) instead of the live kernel.")
@click.option("--traceable", type=click.Path(dir_okay=False), default=None,
              help="A saved available_filter_functions to judge traceability (with --kallsyms).")
@click.option("--clean", is_flag=True, help="Remove tracefs leftovers of killed swaprace runs, then report.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def doctor(kallsyms, traceable, clean, as_json):
    """Say which kernel function plays each role here, which backends work, and the swap/KSM state.

    Roles are resolved from /proc/kallsyms and available_filter_functions (symbol presence, never the
    version); for a role with no symbol it says every name tried and why each failed. Exits 0 even when
    live tracing is impossible: the "problem:" lines say why.

    \b
    Examples:
        swaprace doctor
        swaprace doctor --json | jq .roles
        swaprace doctor --kallsyms tests/fixtures/kallsyms-bookworm-6.1.txt
    """
    from swaprace.probes.doctor import clean_leftovers, diagnose, format_report
    from swaprace.stress import machine

    removed = clean_leftovers() if clean else []
    if clean:
        removed += machine.clean_leftovers()
    report = diagnose(kallsyms, traceable)
    report["stress_leftovers"] = machine.leftovers()
    for what in report["stress_leftovers"]:
        report["problems"].append(f"left by a killed `swaprace stress`: {what} (`swaprace doctor --clean` or "
                                  f"`swaprace stress --cleanup` undoes it)")
    if clean:
        report["cleaned"] = removed
    if as_json:
        echo_json(report)
    else:
        if clean:
            click.echo(f"removed leftovers: {', '.join(removed) or 'none'}")
        click.echo(format_report(report))


@main.command(context_settings={"ignore_unknown_options": True})
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Capture file to write (Parquet).")
@click.option("-d", "--duration", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop after this many seconds.")
@click.option("--backend", "backend_name", type=click.Choice(["auto", "bcc", "ftrace"]), default="auto",
              show_default=True, help="auto: bcc when it works here, else ftrace.")
@click.option("-p", "--pid", type=int, default=None,
              help="Keep only this process's fault-path events (releases by other tasks are always kept).")
@click.option("--comm", default=None, metavar="NAME",
              help="Trace only the fault windows of threads named NAME (/proc/PID/comm), in the kernel; "
                   "slot frees and reallocations by every task are always traced.")
@click.option("--cgroup", default=None, metavar="PATH",
              help="Trace only the fault windows of tasks in this cgroup v2 directory or below it (bcc).")
@click.option("--ready-file", default=None, type=click.Path(dir_okay=False), metavar="PATH",
              help="Write PATH (atomically) once every probe is armed, before CMD starts: wait for it "
                   "instead of sleeping.")
@click.option("--roles", default=None, help="Comma-separated roles to probe (default: all that resolve).")
@click.option("--buffer-kb", type=click.IntRange(min=64), default=16384, show_default=True,
              help="ftrace: per-CPU ring buffer size.")
@click.option("--maxactive", type=click.IntRange(min=1, max=4096), default=64, show_default=True,
              help="kretprobe instances per return probe.")
@click.option("--stream/--no-stream", default=True, show_default=True,
              help="bcc: write the event stream (--no-stream: in-kernel detection only).")
@click.option("--raw-trace", type=click.Path(dir_okay=False), default=None,
              help="ftrace: also save the raw trace_pipe text (with a '# swaprace:' metadata header).")
@click.option("--ebpf", is_flag=True, help="Print the program (BPF C, or kprobe_events lines) and exit.")
@click.option("--dry-run", is_flag=True, help="Resolve symbols and pick the backend, attach nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary when done.")
@click.argument("cmd", nargs=-1, type=click.UNPROCESSED)
def record(as_json: bool, **options: Any) -> None:
    """Trace the swap-in path into a capture until --duration, CMD exits, or Ctrl-C/SIGTERM.

    Attaches call and return probes to every role that resolves on this kernel (see `swaprace doctor`),
    shows a live counter on a terminal, and writes CAPTURE atomically with its metadata (kernel, backend,
    symbols, losses by source). Probes are removed on every exit path. With CMD, exits with CMD's status
    when CMD ended on its own (a CMD stopped by Ctrl-C/SIGTERM/--duration is not a failure).

    \b
    Examples:
        swaprace record -o run.parquet --duration 10
        swaprace record -o run.parquet --backend ftrace -- ./swap-workload --threads 4
        swaprace record --ebpf --backend ftrace
        swaprace record -o db.parquet --comm postgres --ready-file /tmp/armed -d 60
    """
    from swaprace.probes import record as rec
    from swaprace.probes.backend import get_backend

    opts = rec.RecordOptions(**options)
    plan = rec.record_plan(opts)
    if opts.ebpf:
        click.echo(get_backend(opts.backend_name, program_only=True).program_text(plan), nl=False)
        return
    backend = get_backend(opts.backend_name)
    if opts.dry_run:
        summary = rec.dry_run_summary(backend, plan)
        if as_json:
            echo_json(summary)
        else:
            click.echo(f"backend: {backend.name}")
            for role, res in plan.resolutions.items():
                click.echo(f"  {role:<13} {res.symbol or '-  (' + str(res.reason) + ')'}")
        return
    capture = rec.record_capture(opts, backend, plan, progress=rec.tty_progress(),
                                 warn=lambda msg: click.echo(f"swaprace: warning: {msg}", err=True),
                                 announce=lambda msg: click.echo(msg, err=True))
    summary = rec.record_summary(opts.output, capture)
    if as_json:
        echo_json(summary)
    else:
        lost = "unknown" if capture.meta.lost_events is None else f"{capture.meta.lost_events:,}"
        click.echo(f"wrote {opts.output}: {summary['events']:,} events, {summary['windows']:,} fault windows, "
                   f"lost {lost} ({summary['backend']}, {summary['duration_s']} s)")
    status = rec.command_failure_status(capture.meta)
    if status is not None:
        sys.exit(status)  # CMD failed on its own: say so through our status


# === end doctor / record =================================================================================

# === watch ===============================================================================================
@main.command()
@click.argument("interval", type=click.FloatRange(min=0.05), default=1.0, required=False)
@click.argument("count", type=click.IntRange(min=1), default=None, required=False)
@click.option("-p", "--pid", type=int, default=None,
              help="Follow only this process's faults (releases by other tasks are always followed).")
@click.option("--comm", default=None, metavar="NAME",
              help="Follow only the faults of threads named NAME (releases by every task are followed).")
@click.option("--cgroup", default=None, metavar="PATH",
              help="Follow only the faults of tasks in this cgroup v2 directory or below it.")
@click.option("-T/-t", "--timestamp/--no-timestamp", "timestamp", default=None,
              help="-T: a time on every line, RACE lines too; -t: none, not even on interval lines "
                   "[default: interval lines only].")
@click.option("--maxactive", type=click.IntRange(min=1, max=4096), default=64, show_default=True,
              help="kretprobe instances per return probe.")
@click.option("--ebpf", is_flag=True, help="Print the BPF program (defines + C) and exit.")
@click.option("--dry-run", is_flag=True, help="Resolve the roles and say what would be attached; attach nothing.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line: intervals and races.")
def watch(interval, count, pid, comm, cgroup, timestamp, maxactive, ebpf, dry_run, as_json):
    """Flag swap-entry reuse inside do_swap_page's race window live, with the in-kernel detector (bcc).

    Prints one line per INTERVAL seconds (faults, closed fault windows, lookups, releases, reuses, races,
    lost events in that interval), COUNT times or until Ctrl-C/SIGTERM, and one RACE line the moment a race
    is detected: class stale-install (the faulting thread went on to install the reused entry) or recovered.
    Nothing per event crosses to user space, so the overhead is the probes' own.

    \b
    Examples:
        swaprace watch            # every second until Ctrl-C
        swaprace watch 5 12       # twelve 5-second lines
        swaprace watch --json 1 3 | jq 'select(.type == "race")'
        swaprace watch --ebpf
        swaprace watch -T --comm postgres
    """
    from swaprace.probes.backend import make_plan
    from swaprace.probes.record import filter_warnings, with_thread_filter
    from swaprace.probes.bcc_backend import BccBackend, attachments
    from swaprace.probes.watch import WatchOptions, watch as run_watch

    plan = with_thread_filter(make_plan(pid=pid, maxactive=maxactive, stream_events=False, detect=True),
                              comm, cgroup)
    if ebpf:
        click.echo(BccBackend().program_text(plan), nl=False)
        return
    if dry_run:
        plan.require(("fault", "lookup"))
        why = BccBackend.check()
        summary = {"backend": "bcc", "usable": why is None, "reason": why, "symbols": plan.symbols,
                   "probes": [{"kind": k, "symbol": s, "program": f} for k, s, f in attachments(plan)]}
        if as_json:
            echo_json(summary)
        else:
            click.echo(f"bcc: {'usable' if why is None else 'NOT usable: ' + why}")
            for kind, symbol, fn in attachments(plan):
                click.echo(f"  {kind:<9} {symbol:<28} {fn}")
        return
    if pid is not None and not __import__("os").path.exists(f"/proc/{pid}"):
        raise SwapraceError(f"no process with pid {pid}")
    for message in filter_warnings(plan):
        click.echo(f"swaprace: warning: {message}", err=True)

    def write(line: str) -> None:
        click.echo(line)
        sys.stdout.flush()

    totals = run_watch(plan, WatchOptions(interval=interval, count=count, as_json=as_json, timestamp=timestamp),
                       write)
    if not as_json:
        click.echo(f"total: {totals.get('races', 0)} race(s), {totals.get('stale', 0)} stale-install, "
                   f"{totals.get('lost', 0)} lost", err=True)


# === end watch ===========================================================================================

# === vm ==================================================================================================

from swaprace.vm.image import KERNELS as VM_KERNELS, LAB_KERNELS as VM_LAB_KERNELS  # noqa: E402  (stdlib only)

KERNEL_CHOICE = click.Choice(list(VM_KERNELS) + list(VM_LAB_KERNELS))


def _vm_note(message: str) -> None:
    click.echo(f"swaprace vm: {message}", err=True)


@main.group()
def vm() -> None:
    """The swaprace test box: a Debian guest under QEMU with kprobes, BTF, bcc and bpftrace.

    Kernels: bookworm (6.1) and trixie-backports (7.x, the reworked swap code). Images are cached in
    ~/.cache/swaprace/vm and rebuilt only when vm-setup/ changes. See vm-setup/README.md.

    \b
    Example:
        swaprace vm build --kernel trixie-backports
        swaprace vm run -- python3 -m pytest tests/test_events.py
        swaprace vm shell
    """


@vm.command("build")
@click.option("--kernel", type=KERNEL_CHOICE, default="bookworm", show_default=True, help="Which test box.")
@click.option("--rebuild", is_flag=True, help="Rebuild even when the cached image is current.")
@click.option("--json", "as_json", is_flag=True, help="Print the image's facts as JSON.")
def vm_build(kernel: str, rebuild: bool, as_json: bool) -> None:
    """Build (or reuse) the test box image of one kernel.

    \b
    Example:
        swaprace vm build --kernel bookworm --json
    """
    from swaprace.vm import ensure_image

    image = ensure_image(kernel, progress=_vm_note, rebuild=rebuild)
    if as_json:
        echo_json(image.to_json())
        return
    how = "cached" if image.build_seconds is None else f"built in {image.build_seconds:.0f} s"
    click.echo(
        f"{kernel}: kernel {image.release}, {how}; disk {image.disk} "
        f"({image.disk_bytes / 2**20:.0f} MiB used of {image.disk_size / 2**20:.0f} MiB)"
    )


@vm.command("run", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--kernel", type=KERNEL_CHOICE, default="bookworm", show_default=True, help="Which test box.")
@click.option("--timeout", type=float, default=900.0, show_default=True, help="Seconds before the guest is killed.")
@click.option("--env", "env_pairs", multiple=True, metavar="NAME=VALUE", help="Set in the guest (repeatable).")
@click.option(
    "--out", "out_dir", type=click.Path(exists=True, file_okay=False, writable=True),
    help="Host directory mounted read-write at /mnt/out in the guest (captures, logs).",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def vm_run(
    ctx: click.Context, kernel: str, timeout: float, env_pairs: tuple, out_dir: "str | None", command: tuple
) -> None:
    """Run COMMAND as root in a fresh guest, in the shared checkout (/mnt/swaprace), swaprace importable.

    The command's stdout and stderr stream to this terminal's; its exit status is swaprace's. The guest's
    root disk is a throw-away overlay; files written under the checkout stay. Which accelerator (KVM or TCG)
    and why is printed on stderr.

    \b
    Example:
        swaprace vm run --kernel trixie-backports -- python3 -c 'import swaprace'
        swaprace vm run -- sh -c 'swaprace-testbox swap-on && swaprace-testbox info'
        swaprace vm run --out /tmp/caps -- swaprace record -o /mnt/out/run.parquet -- sleep 5
    """
    from pathlib import Path

    from swaprace.vm import GuestOptions, GuestStreams, run_in_guest

    env = {}
    for pair in env_pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.isidentifier():
            raise click.BadParameter(f"expected NAME=VALUE, got {pair!r}", param_hint="--env")
        env[name] = value
    options = GuestOptions(timeout=timeout, env=env, out_dir=Path(out_dir) if out_dir is not None else None)
    result = run_in_guest(list(command), kernel, options, GuestStreams(stdout=sys.stdout.buffer,
                                                                       stderr=sys.stderr.buffer), progress=_vm_note)
    _vm_note(f"exit status {result.returncode} (boot {result.boot_seconds:.1f} s, total {result.total_seconds:.1f} s)")
    ctx.exit(result.returncode)


@vm.command("shell")
@click.option("--kernel", type=KERNEL_CHOICE, default="bookworm", show_default=True, help="Which test box.")
@click.pass_context
def vm_shell(ctx: click.Context, kernel: str) -> None:
    """Boot a guest with an interactive root shell on this terminal (the serial console).

    `exit` powers the guest off; Ctrl-A X kills it at once.

    \b
    Example:
        swaprace vm shell --kernel trixie-backports
    """
    from swaprace.vm.runner import shell_in_guest

    ctx.exit(shell_in_guest(kernel, progress=_vm_note))

# === end vm ==============================================================================================

# === stress ==============================================================================================
@main.command()
@click.option("--duration", type=float, default=30.0, show_default=True, help="Seconds of workload.")
@click.option("--threads", type=int, default=4, show_default=True, help="Threads per process faulting the same pages.")
@click.option("--processes", type=int, default=2, show_default=True, help="Unrelated workload processes.")
@click.option("--mem", default="32M", show_default=True, help="Working set per process (e.g. 64M).")
@click.option("--limit", default=None, help="Memory cgroup limit for all processes [default: 3/8 of the working set].")
@click.option("--swap", default=None, help="Swap file size [default: 9/8 of the working set: stays > half full].")
@click.option("--ksm/--no-ksm", default=True, show_default=True, help="Identical pages merged by a fast KSM scan.")
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of page choice and content.")
@click.option("--swap-file", default=None, help="Where to create the swap file [default: /var/tmp/swaprace-stress.swap].")
@click.option("--yes", is_flag=True, help="Allow changing swap, cgroups and KSM on this machine (not needed in the test box).")
@click.option("--record", "record_path", default=None, metavar="CAPTURE",
              help="Run the live tracer for the same run, write CAPTURE, and match its races to the oracle.")
@click.option("--cleanup", is_flag=True, help="Undo what a crashed stress run left behind, then exit.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--inject-corruption", type=int, default=0, hidden=True,
              help="Corrupt N pages behind the oracle's back (tests the oracle).")
@click.option("--swap-device", type=click.Choice(["file", "zram"]), default="file", show_default=True,
              help="Swap to a swap file, or to /dev/zram0 (SWP_SYNCHRONOUS_IO: the skip-swapcache path).")
@click.option("--scenario", type=click.Choice(["skip-swapcache-2024", "swapcache-2010", "ksm-2010"]), default=None,
              help="A workload aimed at one known race (presets options; explicit options win).")
@click.option("--widen-us", type=click.IntRange(0, 1_000_000), default=0, show_default=True,
              help="Lab kernels only: sleep this long in do_swap_page's race window (vm.swaprace_widen_us).")
@click.pass_context
def stress(ctx: click.Context, cleanup: bool, as_json: bool, **options: Any) -> None:
    """Drive swap-in races with a data oracle: every page read back is checked.

    Sets up a small swap file, a memory cgroup below the working set and a fast KSM scan (all restored on
    exit, Ctrl-C or SIGTERM), runs threads and forked readers faulting the same pages at once, prints the
    /proc/vmstat counters, and fails when any page holds something other than what was last written.

    \b
    Example:
        swaprace stress --yes --duration 20
        swaprace stress --yes --record run.parquet --json
        swaprace stress --yes --scenario skip-swapcache-2024 --widen-us 20000 --duration 60
        swaprace stress --cleanup
    """
    from click.core import ParameterSource

    from swaprace.stress import machine, run as stress_run

    if cleanup:
        undone = machine.cleanup()
        if as_json:
            echo_json({"undone": undone})
        else:
            click.echo(f"stress: undid {len(undone)} recorded changes" if undone else "stress: nothing to clean up")
        return
    given = [name for name in options if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE]
    opts = stress_run.options_from_cli(options, given)
    tty = sys.stderr.isatty()
    summary = stress_run.run_stress(opts, progress=(lambda msg: click.echo(msg, err=True)) if tty else None,
                                    announce=lambda msg: click.echo(msg, err=True))
    summary["verdict"] = stress_run.verdict(summary)
    if as_json:
        echo_json(summary)
    else:
        for line in stress_run.format_summary(summary):
            click.echo(line)
        click.echo(summary["verdict"])
    if not summary["ok"]:
        sys.exit(1)
# === end stress ==========================================================================================

# === report / plot =======================================================================================
def _tty_status(message: str) -> None:
    """A one-line status on stderr, only when a person is watching (quiet when piped or captured)."""
    if sys.stderr.isatty():
        click.echo(f"swaprace: {message}...", err=True)


class _TtyProgress:
    """A click progress bar on stderr when it is a terminal; a no-op otherwise."""

    def __init__(self, label: str):
        self.label = label
        self.bar: Optional[ProgressBar[Optional[str]]] = None

    def __call__(self, done: int, total: int, what: str) -> None:
        if not sys.stderr.isatty():
            return
        if self.bar is None:
            self.bar = click.progressbar(length=total, label=self.label, file=sys.stderr,
                                         item_show_func=lambda item: item, show_pos=True)
            self.bar.__enter__()
        self.bar.update(done - self.bar.pos, what)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


_FORMAT_OPTION = click.option("--format", "fmt", type=click.Choice(["parquet", "jsonl", "ftrace", "perf"]),
                              help="Capture format (default: detected from the content).")
_PNG_OPTION = click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="PNG file to write.")


@main.command("report")
@click.argument("capture", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Directory for report.html, report.json and the PNGs (created if missing).")
@_FORMAT_OPTION
@click.option("--max-timelines", default=24, show_default=True, type=click.IntRange(min=0),
              help="Draw a timeline for at most this many races (all are listed in the table).")
@click.option("--busiest", default=4, show_default=True, type=click.IntRange(min=0),
              help="Also draw the whole life of this many of the busiest entries.")
@click.option("--json", "as_json", is_flag=True, help="Print the report's index (files, races, figures) as JSON.")
def report_command(capture, out_dir, fmt, max_timelines, busiest, as_json):
    """Write an HTML report with pictures of every flagged race, window durations, reuse distance, rates.

    Each entry timeline shows the swap slot's generations (alloc -> free) and, beneath them, the swap-cache
    residency (folio bind -> unbind, evictions and re-reads marked), then each thread's fault windows.

    DIR/report.html opens offline (images inlined; each is also a PNG in DIR); DIR/report.json indexes it.

    \b
    Example:
        swaprace report capture.parquet -o report/
        xdg-open report/report.html
    """
    from pathlib import Path

    from swaprace.analysis.report import build_report
    from swaprace.analysis.selection import load_analysis

    analysis = load_analysis(capture, fmt, status=_tty_status)
    progress = _TtyProgress("rendering")
    try:
        result = build_report(analysis, out_dir, source_name=Path(capture).name, max_timelines=max_timelines,
                              busiest=busiest, progress=progress, inputs=(capture,))
    finally:
        progress.close()
    for failure in result.failures:
        click.echo(f"swaprace: warning: picture not drawn: {failure}", err=True)
    if as_json:
        echo_json(result.to_json())
        return
    races = result.race_rows
    stale, benign = (sum(1 for r in races if r["class"] == c) for c in ("stale-install", "benign"))
    uncertain = sum(1 for r in races if r.get("uncertain"))
    click.echo(f"wrote {result.html_path} ({len(result.figures)} pictures; {len(races)} races, {stale} stale-install,"
               f" {benign} benign, {uncertain} uncertain; {result.loss_text})")


@main.group("plot")
def plot_group() -> None:
    """Draw one picture of a capture into a PNG file.

    \b
    Example:
        swaprace plot entry 0x400000000012a capture.parquet -o entry.png
        swaprace plot windows capture.parquet -o windows.png
    """


def _plot_done(path, data: dict, as_json: bool) -> None:
    from matplotlib.image import imread

    height, width = imread(str(path)).shape[:2]
    if as_json:
        echo_json({"file": str(path), "width": width, "height": height, **data})
    else:
        click.echo(f"wrote {path} ({width}x{height})")


def _plot_capture(capture, output, fmt, as_json: bool, draw, describe) -> None:
    """One picture of a whole capture: ``draw(analysis, output, inputs=...)`` returns (path, result) and
    ``describe(result)`` what ``--json`` prints."""
    from swaprace.analysis.report import style
    from swaprace.analysis.selection import load_analysis

    style.check_writable(output, (capture,))
    path, result = draw(load_analysis(capture, fmt, status=_tty_status), output, inputs=(capture,))
    _plot_done(path, describe(result), as_json)


@plot_group.command("entry")
@click.argument("entry")
@click.argument("capture", type=click.Path(dir_okay=False))
@_PNG_OPTION
@_FORMAT_OPTION
@click.option("--race", type=click.IntRange(min=0), help="Zoom on this entry's N-th race (0 = first).")
@click.option("--json", "as_json", is_flag=True, help="Print what the picture shows as JSON.")
def plot_entry_command(entry, capture, output, fmt, race, as_json):
    """The life of swap entry ENTRY in two layers, slot generations and swap-cache residency, then each
    thread's fault windows with its obtain and install, and each race's slot free -> reallocation.

    ENTRY is the swp_entry_t value (0x... or decimal) or TYPE:OFFSET (as for `analyze --entry`).

    \b
    Example:
        swaprace plot entry 0:0x12a capture.parquet -o entry.png
        swaprace plot entry 0x12a capture.parquet --race 0 -o race.png
    """
    from swaprace.analysis.report import plot_entry, style, timeline_summary
    from swaprace.analysis.selection import load_analysis, parse_entry

    value = parse_entry(entry)
    style.check_writable(output, (capture,))
    analysis = load_analysis(capture, fmt, status=_tty_status)
    path, data = plot_entry(analysis, value, output, race=race, inputs=(capture,))
    _plot_done(path, timeline_summary(data), as_json)


@plot_group.command("windows")
@click.argument("capture", type=click.Path(dir_okay=False))
@_PNG_OPTION
@_FORMAT_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the histogram's sizes and medians as JSON.")
def plot_windows_command(capture, output, fmt, as_json):
    """Fault-window durations (log axis) split by outcome, raced windows on top.

    \b
    Example:
        swaprace plot windows capture.parquet -o windows.png
    """
    from swaprace.analysis.report import plot_windows

    _plot_capture(capture, output, fmt, as_json, plot_windows,
                  lambda hist: {"sizes": hist.sizes, "medians_ns": hist.medians_ns})


@plot_group.command("reuse")
@click.argument("capture", type=click.Path(dir_okay=False))
@_PNG_OPTION
@_FORMAT_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the histogram's sizes and medians as JSON.")
def plot_reuse_command(capture, output, fmt, as_json):
    """Reuse distance: time from a swap slot's free to its reallocation, by what freed it; and, as a second
    series, from a swap-cache eviction to the re-read of the same slot (not a reuse).

    \b
    Example:
        swaprace plot reuse capture.parquet -o reuse.png
    """
    from swaprace.analysis.report import plot_reuse

    _plot_capture(capture, output, fmt, as_json, plot_reuse,
                  lambda hist: {"sizes": hist.sizes, "medians_ns": hist.medians_ns, **hist.notes})


@plot_group.command("rate")
@click.argument("capture", type=click.Path(dir_okay=False))
@_PNG_OPTION
@_FORMAT_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the per-role counts and bucket width as JSON.")
def plot_rate_command(capture, output, fmt, as_json):
    """Events per second over the capture, one line per role, lost events marked.

    \b
    Example:
        swaprace plot rate capture.parquet -o rate.png
    """
    from swaprace.analysis.report import plot_rate

    _plot_capture(capture, output, fmt, as_json, plot_rate,
                  lambda series: {"bucket_ns": series.bucket_ns, "counts": series.counts, "lost": series.loss_text})
# === end report / plot ===================================================================================


if __name__ == "__main__":
    main()


@main.command("export")
@click.argument("capture", type=click.Path(dir_okay=False, path_type=str))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=str),
              help="The timeline file to write (Chrome trace-event JSON, .json).")
@click.option("--format", "fmt", type=click.Choice(["parquet", "jsonl", "ftrace", "perf"]), default=None,
              help="Input format (default: detected from the file).")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as one JSON object.")
def export_command(capture: str, output: str, fmt: Any, as_json: bool) -> None:
    """Export a capture's analysis as a timeline for Perfetto UI (ui.perfetto.dev) or chrome://tracing.

    Fault windows are slices on each thread's track, each swap entry's slot generations and cache residency
    are async tracks, and each race is an instant with flow arrows free -> reallocation -> install.
    Open the file with ui.perfetto.dev's "Open trace file".

    \b
    Example:
        swaprace export run.parquet -o run.json
    """
    from pathlib import Path

    from swaprace.analysis.export import write_trace_json
    from swaprace.analysis.model import analyze
    from swaprace.capture import atomic_output
    from swaprace.readers import read_any

    if Path(output).resolve() == Path(capture).resolve():
        raise SwapraceError(f"{output}: is the input capture; choose another output file")
    result = analyze(read_any(capture, fmt))
    with atomic_output(output, "w") as fh:
        write_trace_json(result, fh)
    info = {"output": output, "windows": len(result.windows), "generations": len(result.generations),
            "residencies": len(result.residency), "races": len(result.races)}
    if as_json:
        echo_json(info)
    else:
        click.echo(f"wrote {output}: {info['windows']:,} fault windows, {info['generations']:,} slot generations, "
                   f"{info['residencies']:,} cache residencies, {info['races']:,} races (open it in ui.perfetto.dev)")


# === fleet ===============================================================================================
class _FleetProgress:
    """Progress of the map on stderr: a bar on a terminal, else one line per finished capture."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.bar: Optional[ProgressBar[Optional[str]]] = None

    def __call__(self, done: int, total: int, record: dict) -> None:
        from pathlib import Path

        name = Path(record["capture"]).name
        if record.get("status") == "failed":
            click.echo(f"swaprace: warning: {name}: {record.get('error')}", err=True)
        if self.quiet:
            return
        if sys.stderr.isatty():
            if self.bar is None:
                self.bar = click.progressbar(length=total, label="deriving", file=sys.stderr, show_pos=True,
                                             item_show_func=lambda item: item)
                self.bar.__enter__()
            self.bar.update(1, name)
        elif record.get("status") != "failed":
            click.echo(f"fleet: [{done}/{total}] {name}: {record.get('status')} ({record.get('seconds', 0):.2f} s)",
                       err=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


@main.command("fleet")
@click.argument("inputs", nargs=-1, metavar="GLOB|DIR|CAPTURE...")
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Fleet directory: derived Parquet tables (DIR/<table>/), manifest.json, report/.")
@click.option("--engine", type=click.Choice(["local", "dask"]), default="local", show_default=True,
              help="local: a process pool on this machine; dask: a dask.distributed cluster.")
@click.option("--scheduler", default=None, metavar="ADDR",
              help="dask scheduler address (tcp://host:8786); implies --engine dask. Without it, --engine dask "
                   "starts a LocalCluster.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Local processes (or LocalCluster workers) [default: CPU count].")
@click.option("--force", is_flag=True, help="Derive every capture again, even when its tables are up to date.")
@click.option("--summary", "show_summary", is_flag=True,
              help="Print per kernel/host: captures, windows, reuses, races by class, uncertain races, losses.")
@click.option("--sql", "sql", default=None, metavar="QUERY",
              help="Run a DuckDB query over the views windows, generations, residency, races, summary.")
@click.option("--report", "report", is_flag=True, help="Write DIR/report/fleet.html with rates per kernel version.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines (failures are still reported).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: the map's result, summary, rows.")
def fleet_command(quiet: bool, as_json: bool, **options: Any) -> None:
    """Analyse many captures in one command, then query all of them with DuckDB.

    Derives each capture's tables (as `swaprace analyze --out-dir` does) into DIR, in parallel: a local process
    pool by default, or a dask.distributed cluster. A capture whose tables are up to date (same content hash
    and tool version in DIR/manifest.json) is skipped. A capture that fails is reported and listed; the exit
    status is non-zero only when every capture failed. Without captures, only queries DIR.

    \b
    Examples:
        swaprace fleet 'captures/**/*.parquet' -o fleet/ --summary
        swaprace fleet captures/ -o fleet/ --scheduler tcp://10.0.0.5:8786
        swaprace fleet -o fleet/ --sql "SELECT kernel_release, count(*) FROM races GROUP BY ALL" --json
        swaprace fleet -o fleet/ --report
    """
    from swaprace.fleet import query
    from swaprace.fleet.run import FleetOptions

    opts = FleetOptions(**options)
    out: dict = {}
    result = None
    if opts.inputs:
        progress = _FleetProgress(quiet or as_json and not sys.stderr.isatty())
        try:
            result = opts.derive(progress)
        finally:
            progress.close()
        out.update(result.to_json())
    elif not opts.queries:
        raise click.UsageError("give captures to derive, or --summary / --sql / --report to query DIR")
    can_query = result is None or len(result.failed) < len(result.records)
    if opts.show_summary and can_query:
        out["summary"] = query.to_records(frame := query.summary(opts.out_dir))
        if not as_json:
            click.echo(query.format_table(frame))
    if opts.sql and can_query:
        frame = query.query(opts.out_dir, opts.sql)
        out["columns"] = [str(c) for c in frame.columns]
        out["rows"] = query.to_records(frame)
        if not as_json:
            click.echo(query.format_table(frame))
    if opts.report and can_query:
        from swaprace.fleet.report import build_fleet_report

        out["report"] = build_fleet_report(opts.out_dir)
        if not as_json:
            click.echo(f"wrote {out['report']['html']} ({len(out['report']['figures'])} pictures, "
                       f"{out['report']['captures']} captures, {out['report']['stale_installs']} stale installs)")
    if as_json:
        echo_json(out)
    elif result is not None:
        line = (f"fleet: {len(result.records)} captures in {result.seconds:.1f} s ({result.engine}): "
                f"{out['derived']} derived, {out['up_to_date']} up to date, {out['failed']} failed")
        click.echo(line, err=opts.queries)
        for failure in out["failures"]:
            click.echo(f"  failed: {failure['capture']}: {failure['error']}", err=opts.queries)
    if result is not None and result.all_failed:
        sys.exit(1)
# === end fleet ===========================================================================================

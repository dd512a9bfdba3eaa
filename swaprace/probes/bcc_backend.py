"""The bcc backend: one BPF program (``swaprace.bpf.c``) with call/return probes and the in-kernel detector.

How it fits together:

* :func:`compile_flags` turns a :class:`ProbePlan` into ``-D`` defines (roles present, which argument holds the
  key/entry/folio, ring buffer or perf buffer, event stream on/off, process filter). The C source is never
  edited as a string; ``--ebpf`` prints the defines followed by the source (:meth:`BccBackend.program_text`).
* Every probe hit is one 64-byte record (:data:`EVENT_DTYPE`). The poll callback only copies bytes; records
  are decoded in bulk with numpy when :meth:`BccBackend.drain` is called, so the Python cost per event is one
  ``string_at`` call.
* Losses are counted, never guessed: records the BPF side could not write (a per-CPU counter incremented when
  ``ringbuf_output``/``perf_submit`` fails), perf buffer lost-record callbacks, and kretprobe misses (bcc creates
  kretprobes with ``maxactive`` through ``kprobe_events``, so ``kprobe_profile`` lists their miss counts).
* The detector (maps keyed by swap entry and by thread, see the C file) sees every probe hit even when the
  stream drops records; its counters and races come back through :meth:`BccBackend.detector`.
"""

from __future__ import annotations

import ctypes
import os
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from swaprace.errors import SwapraceError
from swaprace.events import KEY_COLUMN, ROLES, empty_events, normalize
from swaprace.probes import tracefs
from swaprace.probes.backend import Backend, ProbePlan
from swaprace.kernel.catalog import FOLIO_SWAP_OFFSET, Candidate

BPF_SOURCE = Path(__file__).with_name("swaprace.bpf.c")

#: Layout of ``struct sr_event`` (64 bytes, little-endian x86-64).
EVENT_DTYPE = np.dtype(
    [
        ("ts", "<u8"), ("entry", "<u8"), ("folio", "<u8"), ("retval", "<u8"),
        ("pid", "<u4"), ("tid", "<u4"), ("cpu", "<u2"), ("role", "u1"), ("phase", "u1"), ("valid", "u1"),
        ("pad", "V3"), ("comm", "S16"),
    ]
)
#: Layout of ``struct sr_race`` (56 bytes).
RACE_DTYPE = np.dtype(
    [
        ("entry", "<u8"), ("window_start", "<u8"), ("window_end", "<u8"), ("release", "<u8"), ("rebind", "<u8"),
        ("tid", "<u4"), ("pid", "<u4"), ("klass", "<u4"), ("pad", "<u4"),
    ]
)
VALID_ENTRY, VALID_FOLIO, VALID_RETVAL = 1, 2, 4
PHASE_NAMES = ("call", "return")
RACE_CLASSES = ("recovered", "stale-install")

#: Counter slots after the per-role hit counters (``STAT_*`` in the C file).
STAT_NAMES = {
    20: "event_drops",
    21: "windows",
    22: "windows_with_entry",
    23: "lookup_hits",
    24: "bindings",
    25: "releases",
    26: "reuses",
    27: "races_recovered",
    28: "races_stale_install",
    29: "race_table_full",
    30: "state_map_full",
    31: "race_stream_drops",
    32: "returns_without_call",
    33: "releases_unattributed",
}
NR_STATS = 40
#: Roles whose probes honour ``--pid`` (the thread's own fault); releases and bindings by any task are followed.
THREAD_ROLES = ("fault", "lookup", "ksm_copy", "swap_put", "prepare")
#: Roles that always need their return probe (the detector works on their return values).
RETURN_NEEDED = ("fault", "lookup", "free_cache")
ARG_REGISTERS = 6  # x86-64 passes the first six integer arguments in registers
DEFAULT_RINGBUF_PAGES = 4096  # 16 MiB shared ring: 262,144 records; 4 MiB overflowed in a 6.1 guest at ~3k events/s bursts
DEFAULT_PERF_PAGES = 256  # 1 MiB per CPU
MAX_RACES = 4096

assert EVENT_DTYPE.itemsize == 64 and RACE_DTYPE.itemsize == 56


# --- pure helpers (no bcc needed: tested on any host) ----------------------------------------------------

def needs_return(role: str, cand: Candidate) -> bool:
    """Whether ``role`` gets a return probe: it returns a value, or the detector needs the return."""
    if role == "cache_add" and cand.entry_arg is None:
        return True  # the entry is read from the folio once the add succeeded
    return role in RETURN_NEEDED or cand.returns != "void"


def _arg(index: Optional[int], what: str, symbol: str) -> int:
    if index is None:
        return -1
    if not 0 <= index < ARG_REGISTERS:
        raise SwapraceError(f"{symbol}: {what} is argument {index}, not passed in a register on x86-64")
    return index


def compile_flags(plan: ProbePlan, ringbuf: bool, *, ringbuf_pages: int = DEFAULT_RINGBUF_PAGES) -> List[str]:
    """The ``-D`` defines that configure ``swaprace.bpf.c`` for ``plan``."""
    flags = [f"-DMAX_RACES={MAX_RACES}", f"-DFOLIO_SWAP_OFFSET={FOLIO_SWAP_OFFSET}"]
    for role, res in plan.probed.items():
        cand = res.candidate
        assert cand is not None and res.symbol is not None
        name = role.upper()
        flags.append(f"-DHAVE_{name}=1")
        key = KEY_COLUMN[role]
        if key is not None:
            key_arg = cand.key_arg if cand.key_arg is not None else cand.folio_arg
            if key_arg is None:
                raise SwapraceError(f"{res.symbol}: the catalog gives no argument for the {role} key")
            flags.append(f"-D{name}_KEY_ARG={_arg(key_arg, 'the key', res.symbol)}")
        flags.append(f"-D{name}_ENTRY_ARG_N={_arg(cand.entry_arg, 'the entry', res.symbol)}")
        flags.append(f"-D{name}_FOLIO_ARG_N={_arg(cand.folio_arg, 'the folio', res.symbol)}")
        if cand.returns == "bool":
            flags.append(f"-D{name}_RET_BOOL=1")
        if needs_return(role, cand):
            flags.append(f"-D{name}_RETURN=1")
    if ringbuf:
        flags += ["-DUSE_RINGBUF=1", f"-DRINGBUF_PAGES={ringbuf_pages}"]
    flags.append(f"-DEMIT_EVENTS={1 if plan.stream_events else 0}")
    if plan.pid is not None:
        flags.append(f"-DFILTER_TGID={int(plan.pid)}")
    return flags


def attachments(plan: ProbePlan) -> List[Tuple[str, str, str]]:
    """(``kprobe``|``kretprobe``, kernel symbol, BPF function) for every probe of ``plan``, in attach order.

    Entry probes first, return probes after (and detached first, :meth:`BccBackend.stop`). Measured in the test
    box (QEMU TCG): with the return probes attached first, the entry programs then ran for only 72-92% of the
    hits the ftrace backend counted on the same functions at the same time; in this order the counts were equal
    in one run, but another run oopsed the 6.1 guest (RIP 0 on return to __handle_mm_fault, i.e. through the
    do_swap_page kretprobe) while the return probes were being attached under load. Unresolved: suspected
    code patching racing with TCG's translated code; to be re-checked on real hardware or KVM.
    """
    out: List[Tuple[str, str, str]] = []
    for role, res in plan.probed.items():
        out.append(("kprobe", res.symbol, f"sr_call_{role}"))  # type: ignore[arg-type]
    for role, res in plan.probed.items():
        if needs_return(role, res.candidate):  # type: ignore[arg-type]
            out.append(("kretprobe", res.symbol, f"sr_ret_{role}"))  # type: ignore[arg-type]
    return out


def program_source() -> str:
    try:
        return BPF_SOURCE.read_text()
    except OSError as exc:
        raise SwapraceError(f"cannot read the BPF program {BPF_SOURCE}: {exc.strerror}") from None


def render_program(flags: Sequence[str]) -> str:
    """The program exactly as bcc compiles it: the defines, then the source."""
    defines = []
    for flag in flags:
        name, _, value = flag[2:].partition("=")
        defines.append(f"#define {name} {value or 1}")
    return "// swaprace: bcc cflags\n" + "\n".join(defines) + "\n\n" + program_source()


def decode_events(raw: bytes, symbols: Dict[str, str]) -> pd.DataFrame:
    """Event records (concatenated ``struct sr_event``) -> the normalized event table."""
    if not raw:
        return empty_events()
    usable = len(raw) - len(raw) % EVENT_DTYPE.itemsize
    rec = np.frombuffer(raw[:usable], dtype=EVENT_DTYPE)
    roles = np.asarray(ROLES, dtype=object)[rec["role"]]
    funcs = np.asarray([symbols.get(role, role) for role in ROLES], dtype=object)[rec["role"]]
    valid = rec["valid"]
    frame = pd.DataFrame(
        {
            "ts_ns": rec["ts"].astype("int64"),
            "cpu": rec["cpu"].astype("int32"),
            "pid": rec["pid"].astype("int32"),
            "tid": rec["tid"].astype("int32"),
            "comm": pd.Series(rec["comm"]).str.decode("utf-8", errors="replace"),
            "func": funcs,
            "role": roles,
            "phase": np.asarray(PHASE_NAMES, dtype=object)[rec["phase"]],
            "entry": pd.arrays.IntegerArray(rec["entry"].copy(), (valid & VALID_ENTRY) == 0),
            "folio": pd.arrays.IntegerArray(rec["folio"].copy(), (valid & VALID_FOLIO) == 0),
            "retval": pd.arrays.IntegerArray(rec["retval"].copy(), (valid & VALID_RETVAL) == 0),
        }
    )
    return normalize(frame)


def decode_races(raw: bytes) -> List[dict]:
    """Race records -> dicts with the offline analysis' race fields (plus ``pid``)."""
    if not raw:
        return []
    usable = len(raw) - len(raw) % RACE_DTYPE.itemsize
    return [race_dict(r) for r in np.frombuffer(raw[:usable], dtype=RACE_DTYPE)]


def race_dict(rec) -> dict:
    end = int(rec["window_end"])
    return {
        "entry": int(rec["entry"]),
        "tid": int(rec["tid"]),
        "pid": int(rec["pid"]),
        "window_start_ns": int(rec["window_start"]),
        "window_end_ns": end or None,  # None: reported before the window closed (stale-install)
        "release_ns": int(rec["release"]),
        "rebind_ns": int(rec["rebind"]),
        "class": RACE_CLASSES[int(rec["klass"]) if int(rec["klass"]) < 2 else 0],
    }


def summarize_stats(per_slot: Sequence[int], symbols: Dict[str, str]) -> dict:
    """Counter slots -> {"hits": {role: {"call": n, "return": n}}, <counter name>: n, ...}."""
    hits = {}
    for index, role in enumerate(ROLES):
        if role in symbols:
            hits[role] = {"call": int(per_slot[2 * index]), "return": int(per_slot[2 * index + 1])}
    out: dict = {"hits": hits}
    for slot, name in STAT_NAMES.items():
        out[name] = int(per_slot[slot])
    return out


def kernel_has_ringbuf() -> bool:
    """BPF ring buffer support, detected by its helper's presence in the running kernel."""
    try:
        with open("/proc/kallsyms") as fh:
            return any(line.rstrip().endswith(" bpf_ringbuf_output") for line in fh)
    except OSError:
        return False


def _kernel_headers_reason() -> Optional[str]:
    release = os.uname().release
    if Path(f"/lib/modules/{release}/build/include").exists() or Path("/sys/kernel/kheaders.tar.xz").exists():
        return None
    return f"no kernel headers for {release} (install linux-headers-{release}; bcc compiles against them)"


# --- the backend ---------------------------------------------------------------------------------------------

class BccBackend(Backend):
    """Probes and detector in one BPF program loaded through bcc."""

    name = "bcc"

    def __init__(self) -> None:
        self._bpf = None
        self._plan: Optional[ProbePlan] = None
        self._ringbuf = False
        self._chunks: List[bytes] = []
        self._race_chunks: List[bytes] = []
        self._perf_lost = 0
        self._race_perf_lost = 0
        self._callbacks: list = []  # keep ctypes callbacks alive
        self._final: Optional[dict] = None  # counters, races and misses captured at stop()
        self._symbols: Dict[str, str] = {}
        self._last_misses: Dict[str, int] = {}
        self.on_race: Optional[Callable[[dict], None]] = None

    # --- feature check ----------------------------------------------------------------------------------
    @classmethod
    def check(cls) -> Optional[str]:
        try:
            import bcc  # noqa: F401
        except ImportError:
            return "bcc is not importable (install Debian's python3-bpfcc; PyPI 'bcc' is unrelated)"
        if os.geteuid() != 0:
            return "not root (loading BPF programs needs root)"
        root = tracefs.mounted_tracefs()
        if root is None or not (root / "kprobe_events").exists():
            return "kernel has no kprobes (no kprobe_events in tracefs)"
        return _kernel_headers_reason()

    # --- program ------------------------------------------------------------------------------------------
    def flags(self, plan: ProbePlan) -> List[str]:
        ringbuf = kernel_has_ringbuf() and not plan.extra.get("perf_buffer", False)
        pages = int(plan.extra.get("ringbuf_pages", DEFAULT_RINGBUF_PAGES))
        return compile_flags(plan, ringbuf, ringbuf_pages=pages)

    def program_text(self, plan: ProbePlan) -> str:
        text = render_program(self.flags(plan))
        probes = "\n".join(f"// {kind} {symbol} -> {fn}" for kind, symbol, fn in attachments(plan))
        return f"{text}\n// attachments (maxactive={plan.maxactive} for kretprobes)\n{probes}\n"

    # --- life cycle -----------------------------------------------------------------------------------------
    def start(self, plan: ProbePlan) -> None:
        plan.require(("fault", "lookup"))
        try:
            from bcc import BPF
        except ImportError:
            raise SwapraceError("bcc is not importable (install python3-bpfcc)") from None
        flags = self.flags(plan)
        self._ringbuf = "-DUSE_RINGBUF=1" in flags
        self._plan = plan
        self._symbols = plan.symbols
        try:
            self._bpf = BPF(text=program_source(), cflags=flags)
        except Exception as exc:  # bcc raises bare Exception for compile/load failures
            self._bpf = None
            raise SwapraceError(f"bcc could not compile/load the program: {_first_line(exc)} "
                                "(see the compiler output above; `--ebpf` prints the program)") from None
        try:
            for kind, symbol, fn in attachments(plan):
                self._attach(kind, symbol, fn, plan.maxactive)
            self._open_outputs(plan)
        except BaseException:
            self.stop()
            raise

    def _attach(self, kind: str, symbol: str, fn: str, maxactive: int) -> None:
        assert self._bpf is not None
        try:
            if kind == "kprobe":
                self._bpf.attach_kprobe(event=symbol, fn_name=fn)
            else:
                self._bpf.attach_kretprobe(event=symbol, fn_name=fn, maxactive=maxactive)
        except Exception as exc:
            raise SwapraceError(f"cannot attach {kind} to {symbol}: {_first_line(exc)}") from None

    def _open_outputs(self, plan: ProbePlan) -> None:
        assert self._bpf is not None
        pages = int(plan.extra.get("perf_pages", DEFAULT_PERF_PAGES))
        if self._ringbuf:
            def on_event(_ctx, data, size):
                self._chunks.append(ctypes.string_at(data, size))
                return 0

            def on_race(_ctx, data, size):
                self._take_race(ctypes.string_at(data, size))
                return 0

            if plan.stream_events:
                self._bpf["events"].open_ring_buffer(on_event)
            self._bpf["race_events"].open_ring_buffer(on_race)
            self._callbacks += [on_event, on_race]
        else:
            def on_perf_event(_cpu, data, size):
                self._chunks.append(ctypes.string_at(data, EVENT_DTYPE.itemsize))

            def on_perf_race(_cpu, data, size):
                self._take_race(ctypes.string_at(data, RACE_DTYPE.itemsize))

            def on_lost(count):
                self._perf_lost += int(count)

            def on_race_lost(count):
                self._race_perf_lost += int(count)  # races stay in the race table: not an event loss

            if plan.stream_events:
                self._bpf["events"].open_perf_buffer(on_perf_event, page_cnt=pages, lost_cb=on_lost)
            self._bpf["race_events"].open_perf_buffer(on_perf_race, page_cnt=8, lost_cb=on_race_lost)
            self._callbacks += [on_perf_event, on_perf_race, on_lost, on_race_lost]

    def _take_race(self, raw: bytes) -> None:
        self._race_chunks.append(raw)
        if self.on_race is not None:
            for race in decode_races(raw):
                race["func"] = self._symbols.get("fault")
                self.on_race(race)

    def poll(self, timeout_ms: int = 0) -> None:
        """Move whatever the kernel has written into the pending chunks (waits up to ``timeout_ms``)."""
        if self._bpf is None:
            return
        if self._ringbuf:
            if timeout_ms > 0:
                self._bpf.ring_buffer_poll(timeout_ms)
            self._bpf.ring_buffer_consume()
        else:
            self._bpf.perf_buffer_poll(timeout_ms)

    def drain(self) -> pd.DataFrame:
        self.poll(0)
        chunks, self._chunks = self._chunks, []
        return decode_events(b"".join(chunks), self._symbols)

    def drain_races(self) -> List[dict]:
        """Race records streamed since the last call (also kept in the race table for :meth:`detector`)."""
        chunks, self._race_chunks = self._race_chunks, []
        return decode_races(b"".join(chunks))

    # --- counters ---------------------------------------------------------------------------------------
    def counters(self) -> dict:
        """The detector's counters and per-role hits, live (or as they were at stop)."""
        if self._final is not None:
            return self._final["counters"]
        if self._bpf is None:
            return summarize_stats([0] * NR_STATS, self._symbols)
        table = self._bpf["stats"]
        slots = [0] * NR_STATS
        for key, per_cpu in table.items():
            slots[key.value] = sum(int(v) for v in per_cpu)
        return summarize_stats(slots, self._symbols)

    def _race_table(self) -> List[dict]:
        if self._final is not None:
            return self._final["races"]
        if self._bpf is None:
            return []
        races = []
        for _key, value in self._bpf["races"].items():
            raw = ctypes.string_at(ctypes.addressof(value), RACE_DTYPE.itemsize)
            races.extend(decode_races(raw))
        return sorted(races, key=lambda r: (r["window_start_ns"], r["tid"]))

    def _kretprobe_misses(self) -> Dict[str, int]:
        """Miss counts of the probes bcc created through kprobe_events (``r_<symbol>_bcc_<pid>``)."""
        if self._final is not None:
            return self._final["misses"]
        self._last_misses = self._kretprobe_misses_now(self._last_misses)
        return self._last_misses

    def _kretprobe_misses_now(self, previous: Optional[Dict[str, int]] = None) -> Dict[str, int]:
        """kprobe_profile's miss counts now; a probe no longer listed (detached) keeps its last count."""
        previous = previous if previous is not None else getattr(self, "_last_misses", {}) or {}
        root = tracefs.mounted_tracefs()
        profile = tracefs.kprobe_profile(root) if root is not None else {}
        suffix = f"_bcc_{os.getpid()}"
        misses: Dict[str, int] = {}
        for kind, symbol, _fn in attachments(self._plan) if self._plan else []:
            if kind != "kretprobe":
                continue
            event = "r_" + symbol.replace("+", "_").replace(".", "_") + suffix
            entry = profile.get(event)
            key = f"kretprobe_missed:{symbol}"
            misses[key] = entry.missed if entry else previous.get(key, 0)
        return misses

    def losses(self) -> Dict[str, int]:
        counters = self.counters()
        lost: Dict[str, int] = {}
        if self._plan is not None and self._plan.stream_events:
            if self._ringbuf:
                lost["ringbuf"] = counters["event_drops"]
            else:
                # A full perf buffer makes perf_submit fail *and* reports a lost record: count it once.
                lost["perf_buffer"] = max(self._perf_lost, counters["event_drops"])
        lost.update(self._kretprobe_misses())
        return lost

    def hits(self) -> Dict[str, int]:
        out: Dict[str, int] = {}
        for role, phases in self.counters()["hits"].items():
            for phase, count in phases.items():
                out[f"{self._symbols[role]}:{phase}"] = count
        return out

    def detector(self) -> Optional[dict]:
        if self._plan is None or not self._plan.detect:
            return None
        counters = dict(self.counters())
        counters.pop("event_drops", None)
        return {
            "engine": "bcc",
            "symbols": dict(self._symbols),
            "counters": counters,
            "races": self._race_table(),
        }

    def stop(self) -> None:
        if self._bpf is None:
            return
        bpf = self._bpf
        try:
            try:
                misses = self._kretprobe_misses_now()  # kprobe_profile lists bcc's kretprobes until detached
            except Exception:
                misses = dict(self._last_misses)
            # Detach in the reverse order of attaching; then, with nothing firing any more, the counters and
            # the buffers describe exactly the same probe hits.
            for kind, symbol, fn in reversed(attachments(self._plan)) if self._plan else []:
                try:
                    (bpf.detach_kprobe if kind == "kprobe" else bpf.detach_kretprobe)(symbol, fn)
                except Exception:  # never attached (start failed half-way): cleanup() below is enough
                    pass
            try:
                self.poll(0)
                self._final = {"counters": self.counters(), "races": self._race_table(),
                               "misses": misses}
            except Exception:  # a half-started program: nothing to read, still clean up below
                pass
        finally:
            self._bpf = None
            bpf.cleanup()  # closes the program and maps, removes whatever bcc still has attached


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def wait_interval(backend: BccBackend, seconds: float, slice_ms: int = 100) -> None:
    """Sleep ``seconds`` while polling the backend's buffers (so race callbacks fire as races happen)."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        backend.poll(int(min(left * 1000, slice_ms)) or 1)

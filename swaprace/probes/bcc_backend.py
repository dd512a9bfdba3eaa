"""The bcc backend: one BPF program (``swaprace.bpf.c``) with call/return probes and the in-kernel detector.

How it fits together:

* :func:`compile_flags` turns a :class:`ProbePlan` into ``-D`` defines (roles present, which argument holds the
  key/entry/folio, ring buffer or perf buffer, event stream on/off, process filter). The C source is never
  edited as a string; ``--ebpf`` prints the defines followed by the source (:meth:`BccBackend.program_text`).
* Every probe hit is one record (:data:`EVENT_DTYPE`, defined once in :mod:`swaprace.probes.bpf_layout` for
  the C side and the loader). Records are staged per CPU and written as one ring-buffer record per
  :data:`EVENT_BATCH`: the poll callback (one ``string_at``) runs once per batch, not once per event, and the
  records are decoded in bulk with numpy when :meth:`BccBackend.drain` is called. The per-event Python callback
  was what lost events under TCG (tests/test_stress_vm.py: 482,565 lost on a cold CI run).
* Losses are counted, never guessed, and placed: a batch the BPF side could not write is counted per CPU, and
  the next batch of that CPU carries the count (``lost_before``), so the loader turns it into a
  ``CaptureMeta.lost_intervals`` entry between that CPU's records; perf buffer lost-record callbacks and
  kretprobe misses (bcc creates kretprobes with ``maxactive`` through ``kprobe_events``, so ``kprobe_profile``
  lists their miss counts) are counted by source.
* The detector (maps keyed by swap entry and by thread, see the C file) sees every probe hit even when the
  stream drops records; its counters and races come back through :meth:`BccBackend.detector`.
"""

from __future__ import annotations

import ctypes
import os
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from swaprace.errors import SwapraceError, first_line
from swaprace.events import ROLES, empty_events
from swaprace.probes import tracefs
from swaprace.probes.backend import Backend, ProbePlan
from swaprace.probes.filters import bpf_flags
from swaprace.kernel.catalog import THREAD_ROLES, Candidate
from swaprace.kernel.catalog import needs_return as catalog_needs_return
from swaprace.kernel.layout import KernelLayout
from swaprace.kernel.headers import ensure_kernel_headers
from swaprace.kernel.features import kprobe_recursion_misses_counted
from swaprace.probes.bpf_layout import (
    ENTRY_SRC_IDS,
    EVENT_BATCH,
    EVENT_DTYPE,
    NR_SRC_IDS,
    NR_STATS,
    OBTAIN_KINDS,
    PHASES,
    RACE_CLASSES,
    RACE_DTYPE,
    STAT_BASE,
    VALID_BITS,
    c_header,
    check_compiled,
)
from swaprace.probes.bpf_layout import STAT_NAMES as STAT_LIST

BPF_SOURCE = Path(__file__).with_name("swaprace.bpf.c")

VALID_ENTRY, VALID_FOLIO, VALID_RETVAL, VALID_NR = (VALID_BITS[k] for k in ("ENTRY", "FOLIO", "RETVAL", "NR"))
PHASE_NAMES = PHASES
#: Counter slot -> name (the per-role hit counters come first, 2 per role).
STAT_NAMES = {STAT_BASE + i: name for i, name in enumerate(STAT_LIST)}
ARG_REGISTERS = 6  # x86-64 passes the first six integer arguments in registers
#: 16 MiB shared ring: 233,016 records in batches of EVENT_BATCH (one user-space callback per batch).
DEFAULT_RINGBUF_PAGES = 4096
DEFAULT_PERF_PAGES = 256  # 1 MiB per CPU
MAX_RACES = 4096
ENTRY_STATES = 131072  # slot states (240 B each): 32 MiB; the test boxes' swap has at most 65,536 slots


# --- pure helpers (no bcc needed: tested on any host) ----------------------------------------------------

def needs_return(role: str, cand: Candidate) -> bool:
    """Whether ``role`` gets a return probe (the catalog decides, for both backends)."""
    return catalog_needs_return(cand)


def _arg(index: Optional[int], what: str, symbol: str) -> int:
    if index is None:
        return -1
    if not 0 <= index < ARG_REGISTERS:
        raise SwapraceError(f"{symbol}: {what} is argument {index}, not passed in a register on x86-64")
    return index


def layout_flags(layout: KernelLayout) -> List[str]:
    """The struct offsets the program reads memory with (BTF of the running kernel, else verified defaults)."""
    return [f"-DFOLIO_SWAP_OFF={layout.folio_swap}", f"-DFOLIO_FLAGS_OFF={layout.folio_flags}",
            f"-DPG_HEAD={layout.pg_head}", f"-DFOLIO_ORDER_OFF={layout.folio_order}",
            f"-DPAGE_SIZE_B={layout.page_size}", f"-DSI_TYPE_OFF={layout.si_type}",
            f"-DSI_CINFO_OFF={layout.si_cluster_info}", f"-DCLUSTER_SIZE={layout.cluster_size}",
            f"-DCLUSTER_SLOTS={layout.cluster_slots}"]


def compile_flags(plan: ProbePlan, ringbuf: bool, *, ringbuf_pages: int = DEFAULT_RINGBUF_PAGES) -> List[str]:
    """The ``-D`` defines that configure ``swaprace.bpf.c`` for ``plan``."""
    flags = [f"-DMAX_RACES={MAX_RACES}", f"-DENTRY_STATES={ENTRY_STATES}"] + layout_flags(plan.layout)
    for role, res in plan.probed.items():
        cand = res.candidate
        assert cand is not None and res.symbol is not None
        name = role.upper()
        sym = res.symbol
        cl = cand.cluster_args or (-1, -1, -1)
        flags += [
            f"-DHAVE_{name}=1",
            f"-D{name}_ENTRY_SRC={ENTRY_SRC_IDS[cand.entry_src]}",
            f"-D{name}_ENTRY_ARG={_arg(cand.entry_arg, 'the entry', sym)}",
            f"-D{name}_FOLIO_ARG={_arg(cand.folio_arg, 'the folio', sym)}",
            f"-D{name}_PAGE_ARG={_arg(cand.page_arg, 'the page', sym)}",
            f"-D{name}_NR_SRC={NR_SRC_IDS[cand.nr_src]}",
            f"-D{name}_NR_ARG={_arg(cand.nr_arg, 'nr', sym)}",
            f"-D{name}_CL_SI={_arg(cl[0] if cl[0] >= 0 else None, 'si', sym)}",
            f"-D{name}_CL_CI={_arg(cl[1] if cl[1] >= 0 else None, 'ci', sym)}",
            f"-D{name}_CL_OFF={_arg(cl[2] if cl[2] >= 0 else None, 'ci_start', sym)}",
            f"-D{name}_RET_BOOL={1 if cand.returns == 'bool' else 0}",
            f"-D{name}_THREAD={1 if role in THREAD_ROLES else 0}",
        ]
        if needs_return(role, cand):
            flags.append(f"-D{name}_RETURN=1")
    if ringbuf:
        flags += ["-DUSE_RINGBUF=1", f"-DRINGBUF_PAGES={ringbuf_pages}"]
    flags.append(f"-DEMIT_EVENTS={1 if plan.stream_events else 0}")
    return flags + bpf_flags(plan.thread_filter)


def attachments(plan: ProbePlan) -> List[Tuple[str, str, str]]:
    """(``kprobe``|``kretprobe``, kernel symbol, BPF function) for every probe of ``plan``, in attach order.

    Entry probes first, return probes after (and detached first, :meth:`BccBackend.stop`). Measured in the test
    box (QEMU TCG): with the return probes attached first, the entry programs then ran for only 72-92% of the
    hits the ftrace backend counted on the same functions at the same time; in this order the counts were equal
    in one run, but another run oopsed the 6.1 guest (RIP 0 on return to __handle_mm_fault, i.e. through the
    do_swap_page kretprobe) while the return probes were being attached under load. Unresolved: suspected
    code patching racing with TCG's translated code; to be re-checked on real hardware or KVM.
    """
    # a probed role is resolved: it has both its symbol and its candidate
    resolved = [(role, res.symbol, res.candidate) for role, res in plan.probed.items()
                if res.symbol is not None and res.candidate is not None]
    out: List[Tuple[str, str, str]] = [("kprobe", symbol, f"sr_call_{role}") for role, symbol, _ in resolved]
    out += [("kretprobe", symbol, f"sr_ret_{role}") for role, symbol, cand in resolved if needs_return(role, cand)]
    return out


def program_source() -> str:
    """The program as bcc compiles it (without the -D flags): the generated layout header, then the C file."""
    try:
        return c_header() + "\n" + BPF_SOURCE.read_text()
    except OSError as exc:
        raise SwapraceError(f"cannot read the BPF program {BPF_SOURCE}: {exc.strerror}") from None


def render_program(flags: Sequence[str]) -> str:
    """The program exactly as bcc compiles it: the defines, then the source."""
    defines = []
    for flag in flags:
        name, _, value = flag[2:].partition("=")
        defines.append(f"#define {name} {value or 1}")
    return "// swaprace: bcc cflags\n" + "\n".join(defines) + "\n\n" + program_source()


def decode_records(raw: Union[bytes, bytearray]) -> np.ndarray:
    """Concatenated ``struct sr_event`` records (whole batches or single records) as a structured array."""
    usable = len(raw) - len(raw) % EVENT_DTYPE.itemsize
    return np.frombuffer(raw[:usable], dtype=EVENT_DTYPE)


def decode_events(raw, symbols: Dict[str, str]) -> pd.DataFrame:
    """Event records (bytes, or an array from :func:`decode_records`) -> the normalized event table.

    Column-wise from the records' codes: no per-row string is made (comm names are decoded once per distinct
    name), because this runs in the recorder's poll loop, where per-event cost decides whether the consumer
    keeps up with the kernel (4.8 us/event through ``normalize``'s string round trip, 0.3 us this way, natively).
    """
    from swaprace.readers.ftrace_text import event_frame

    rec = decode_records(raw) if isinstance(raw, (bytes, bytearray)) else raw
    if not len(rec):
        return empty_events()
    valid = rec["valid"]
    # comm: 16 bytes = two u64 words, factorized by hashing (no string sort), names decoded once per distinct one
    words = np.ascontiguousarray(rec["comm"]).view("<u8").reshape(-1, 2)
    lo, _ = pd.factorize(words[:, 0])
    hi, _ = pd.factorize(words[:, 1])
    comm_codes, firsts = pd.factorize(lo.astype(np.int64) * (int(hi.max()) + 1) + hi)
    first_row = np.zeros(len(firsts), np.int64)
    first_row[comm_codes[::-1]] = np.arange(len(comm_codes))[::-1]
    # bpf_get_current_comm() copies up to the NUL and leaves the rest of the record's buffer as it was (a
    # previous record's bytes: "python3\0ed" was seen): the name ends at the first NUL. Odd bytes are kept
    # escaped, as the ftrace reader keeps them.
    decoded = [c.split(b"\0", 1)[0].decode("utf-8", "backslashreplace") for c in rec["comm"][first_row]]
    comm_names = sorted(set(decoded))  # categories sorted, as normalize() makes them
    comm_codes = np.array([comm_names.index(c) for c in decoded], np.int32)[comm_codes]
    funcs = [symbols.get(role, role) for role in ROLES]
    func_names = sorted(set(funcs))
    func_of_role = np.array([func_names.index(f) for f in funcs], np.int16)
    role_names = sorted(ROLES)  # categories in sorted order, as normalize() makes them
    role_code = np.array([role_names.index(r) for r in ROLES], np.int16)
    return event_frame(
        ts=rec["ts"].astype(np.int64), cpu=rec["cpu"], pid=rec["pid"].astype(np.int32),
        tid=rec["tid"].astype(np.int32),
        comm=(comm_codes, comm_names),
        func=(func_of_role[rec["role"]], func_names), role=(role_code[rec["role"]], role_names),
        phase=(rec["phase"].astype(np.int8), list(PHASE_NAMES)),
        entry=(rec["entry"], (valid & VALID_ENTRY) != 0), folio=(rec["folio"], (valid & VALID_FOLIO) != 0),
        retval=(rec["retval"], (valid & VALID_RETVAL) != 0), nr=(rec["nr"], (valid & VALID_NR) != 0))


def lost_marks(rec: np.ndarray) -> List[tuple]:
    """(cpu, count, ts, True) for every record that says its CPU lost records before it."""
    hit = np.flatnonzero(rec["lost_before"]) if len(rec) else np.empty(0, np.int64)
    return [(int(rec["cpu"][i]), int(rec["lost_before"][i]), int(rec["ts"][i]), True) for i in hit]


def decode_races(raw: bytes) -> List[dict]:
    """Race records -> dicts with the offline analysis' race fields (plus ``pid``)."""
    if not raw:
        return []
    usable = len(raw) - len(raw) % RACE_DTYPE.itemsize
    return [race_dict(r) for r in np.frombuffer(raw[:usable], dtype=RACE_DTYPE)]


def race_dict(rec) -> dict:
    end = int(rec["window_end"])
    klass = int(rec["klass"])
    install = int(rec["install"])
    return {
        "entry": int(rec["entry"]),
        "tid": int(rec["tid"]),
        "pid": int(rec["pid"]),
        "window_start_ns": int(rec["window_start"]),
        "window_end_ns": end or None,  # None: reported at the install, before the window closed
        "obtain_ns": int(rec["obtain"]),
        "obtain_kind": OBTAIN_KINDS[int(rec["obtain_kind"])] if int(rec["obtain_kind"]) < 3 else None,
        "release_ns": int(rec["release"]),
        "release_tid": int(rec["release_tid"]),
        "realloc_ns": int(rec["realloc"]),
        "realloc_tid": int(rec["realloc_tid"]),
        "install_ns": install or None,
        "folio": int(rec["folio"]) or None,
        "installed_folio": int(rec["installed_folio"]) or None,
        "ksm_copy_ns": int(rec["ksm_copy"]) or None,
        "class": RACE_CLASSES[klass] if klass < len(RACE_CLASSES) else "recovered",
        "uncertain": bool(rec["uncertain"]),
    }


def summarize_stats(per_slot: Sequence[int], symbols: Dict[str, str]) -> dict:
    """Counter slots -> {"hits": {role: {"call": n, "return": n}}, <counter name>: n, ...}."""
    hits = {}
    for index, role in enumerate(ROLES):
        if role in symbols:
            hits[role] = {"call": int(per_slot[2 * index]), "return": int(per_slot[2 * index + 1])}
    out: dict = {"hits": hits}
    for slot, name in STAT_NAMES.items():
        out[name] = int(per_slot[slot]) if slot < len(per_slot) else 0
    out["slot_states_forgotten_at_least"] = max(0, out.get("slot_states_created", 0) - ENTRY_STATES)
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
        self._lost_marks: List[tuple] = []
        #: How the user-space side kept up: polls, batch callbacks, seconds in polls, the longest gap between polls.
        self.consumer_stats: Dict[str, object] = {"polls": 0, "callbacks": 0, "poll_seconds": 0.0,
                                                  "max_gap_s": 0.0, "last_poll": None,
                                                  "records_per_callback": EVENT_BATCH}
        self._staged: bytes = b""  # records still in the per-CPU batches at stop
        self._staged_lost: Dict[int, int] = {}
        self._callbacks: list = []  # keep ctypes callbacks alive
        self._final: Optional[dict] = None  # counters, races and misses captured at stop()
        self._symbols: Dict[str, str] = {}
        self._last_misses: Dict[str, int] = {}
        self._uncounted: set[str] = set()  # loss sources with no counter to read (see uncounted())
        self._recursion_counted: Optional[bool] = None  # kernel/features.py, looked up once
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
        ensure_kernel_headers()  # a kernel with CONFIG_IKHEADERS and no header package (the lab kernels)
        try:
            self._bpf = BPF(text=program_source(), cflags=flags)
        except Exception as exc:  # bcc raises bare Exception for compile/load failures
            self._bpf = None
            raise SwapraceError(f"bcc could not compile/load the program: {first_line(exc)} "
                                "(see the compiler output above; `--ebpf` prints the program)") from None
        try:
            check_compiled(self._bpf)  # the compiler's record layout is the loader's, field by field
            if plan.cgroup is not None:
                self._set_cgroup(plan.cgroup.realpath)
            for kind, symbol, fn in attachments(plan):
                self._attach(kind, symbol, fn, plan.maxactive)
            self._open_outputs(plan)
            self._arm(True)  # every probe attached: from now on the program records and detects
        except BaseException:
            self.stop()
            raise

    def _set_cgroup(self, path: str) -> None:
        """Put the --cgroup directory into the program's cgroup array (the kernel refuses a v1 one)."""
        assert self._bpf is not None
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise SwapraceError(f"--cgroup {path}: {exc.strerror}") from None
        try:
            self._bpf["filter_cgroup"][0] = fd  # bcc's CgroupArray takes the fd as an int
        except Exception as exc:
            raise SwapraceError(f"--cgroup {path}: the kernel refused it as a cgroup v2 directory "
                                f"({first_line(exc)})") from None
        finally:
            os.close(fd)  # the map holds its own reference to the cgroup

    def _arm(self, on: bool) -> None:
        assert self._bpf is not None
        table = self._bpf["armed"]
        table[table.Key(0)] = table.Leaf(1 if on else 0)

    def _attach(self, kind: str, symbol: str, fn: str, maxactive: int) -> None:
        assert self._bpf is not None
        try:
            if kind == "kprobe":
                self._bpf.attach_kprobe(event=symbol, fn_name=fn)
            else:
                self._bpf.attach_kretprobe(event=symbol, fn_name=fn, maxactive=maxactive)
        except Exception as exc:
            raise SwapraceError(f"cannot attach {kind} to {symbol}: {first_line(exc)}") from None

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
                self._chunks.append(ctypes.string_at(data, EVENT_DTYPE.itemsize * EVENT_BATCH))

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
        t0 = time.monotonic()
        before = len(self._chunks)
        if self._ringbuf:
            if timeout_ms > 0:
                self._bpf.ring_buffer_poll(timeout_ms)
            self._bpf.ring_buffer_consume()
        else:
            self._bpf.perf_buffer_poll(timeout_ms)
        stats = self.consumer_stats
        t1 = time.monotonic()
        if stats["last_poll"] is not None:
            stats["max_gap_s"] = round(max(stats["max_gap_s"], t0 - stats["last_poll"]), 3)
        stats["last_poll"] = t1
        stats["polls"] += 1
        stats["callbacks"] += len(self._chunks) - before
        stats["poll_seconds"] = round(stats["poll_seconds"] + (t1 - t0), 3)

    def drain(self) -> pd.DataFrame:
        if not self._final:
            self.poll(0)
        chunks, self._chunks = self._chunks, []
        raw = b"".join(chunks) + self._staged
        self._staged = b""
        rec = decode_records(raw)
        self._lost_marks += lost_marks(rec)
        return decode_events(rec, self._symbols)

    def _read_staged(self) -> None:
        """The records still waiting in the per-CPU batches, and what each CPU lost since its last batch."""
        assert self._bpf is not None
        values = self._bpf["stage"][ctypes.c_int(0)]
        staged = []
        for cpu, batch in enumerate(values):
            n = min(int(batch.n), EVENT_BATCH)
            raw = ctypes.string_at(ctypes.addressof(batch.ev), EVENT_DTYPE.itemsize * EVENT_BATCH)
            staged.append(raw[:n * EVENT_DTYPE.itemsize])
            if int(batch.lost):
                self._staged_lost[cpu] = int(batch.lost)
        self._staged = b"".join(staged)

    def lost_intervals(self, events: pd.DataFrame) -> List[List[int]]:
        """Records' ``lost_before`` counts (and losses still pending at stop), between that CPU's records."""
        from swaprace.readers.ftrace_text import place_lost

        marks = list(self._lost_marks) + [(cpu, n, 2**62, False) for cpu, n in self._staged_lost.items()]
        return place_lost(events, marks)

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
            # a kprobe's misses: it fired while another kprobe ran on that CPU; a kretprobe's also: no free
            # instance (maxactive) at the call
            prefix = "r_" if kind == "kretprobe" else "p_"
            event = prefix + symbol.replace("+", "_").replace(".", "_") + suffix
            entry = profile.get(event)
            key = f"{kind}_missed:{symbol}"
            if entry is not None:
                misses[key] = entry.missed
            elif key in previous:
                misses[key] = previous[key]
            else:  # attached through the perf PMU, not kprobe_events: its misses are counted nowhere we can read
                self._uncounted.add(key)
        misses.update(self._recursion_misses(previous))
        return misses

    def uncounted(self) -> List[str]:
        return sorted(self._uncounted - set(self._last_misses))

    def _recursion_misses(self, previous: Dict[str, int]) -> Dict[str, int]:
        """Hits whose BPF program did not run because a BPF program was already running on that CPU (the
        kernel's bpf_prog_active guard): ``recursion_misses`` of each program's fdinfo (Linux 5.12+; counted for
        kprobe programs since Linux 6.7). A program no longer loaded keeps its last count."""
        out: Dict[str, int] = {}
        funcs: Dict[Any, Any] = getattr(self._bpf, "funcs", {}) if self._bpf is not None else {}
        if self._recursion_counted is None:
            self._recursion_counted = kprobe_recursion_misses_counted() is True
        for name, func in list(funcs.items()):
            key = f"bpf_recursion_missed:{name.decode() if isinstance(name, bytes) else name}"
            if not self._recursion_counted:  # fdinfo would read 0 whatever was skipped
                self._uncounted.add(key)
                continue
            try:
                text = Path(f"/proc/self/fdinfo/{func.fd}").read_text()
            except OSError:
                out[key] = previous.get(key, 0)
                continue
            for line in text.splitlines():
                if line.startswith("recursion_misses:"):
                    out[key] = int(line.split(":", 1)[1])
            if key not in out:  # no such line in fdinfo (before Linux 5.12)
                self._uncounted.add(key)
        for key, value in previous.items():  # programs already closed
            if key.startswith("bpf_recursion_missed:"):
                out.setdefault(key, value)
        return out

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
            "layout": self._plan.layout.to_dict(),
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
            # Disarm first (every probe stops at once: no call without its return probe), then detach in the
            # reverse order of attaching; with nothing firing any more, the counters and the buffers describe
            # exactly the same probe hits.
            try:
                self._arm(False)
            except Exception:  # a half-started program: the map may not exist yet
                pass
            for kind, symbol, fn in reversed(attachments(self._plan)) if self._plan else []:
                try:
                    (bpf.detach_kprobe if kind == "kprobe" else bpf.detach_kretprobe)(symbol, fn)
                except Exception:  # never attached (start failed half-way): cleanup() below is enough
                    pass
            try:
                self.poll(0)
                if self._plan is not None and self._plan.stream_events:
                    self._read_staged()
                self._final = {"counters": self.counters(), "races": self._race_table(),
                               "misses": misses}
            except Exception:  # a half-started program: nothing to read, still clean up below
                pass
        finally:
            self._bpf = None
            bpf.cleanup()  # closes the program and maps, removes whatever bcc still has attached


def wait_interval(backend: BccBackend, seconds: float, slice_ms: int = 100) -> None:
    """Sleep ``seconds`` while polling the backend's buffers (so race callbacks fire as races happen)."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        backend.poll(int(min(left * 1000, slice_ms)) or 1)

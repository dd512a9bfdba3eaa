"""The simulated kernel's state: folios, swap slots, the swap cache, ptes, data versions and the truth log.

Swap entries are ``swp_entry(SWAP_TYPE, offset)``; slot offsets start at 1 (offset 0 is the swap header on a
real device). Large folios are naturally aligned: a folio of ``nr`` pages bound to entries ``E0..E0+nr-1`` has
``E0 % nr == 0`` (6.1 ``get_swap_pages(.., entry_size)``, 7.3 cluster orders).

The device is tiny (4-8 slots), so on 6.1 the per-CPU swap slot cache is inactive (``check_cache_active()``
deactivates it when free swap is below ``num_online_cpus() * THRESHOLD_DEACTIVATE_SWAP_SLOTS_CACHE``):
``free_swap_slot()`` then calls ``swapcache_free_entries()`` at once and a freed slot is reusable immediately,
and allocation goes to ``get_swap_pages()`` directly. The allocator hands out the lowest free (aligned) slots.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from swaprace.events import swp_entry

from .trace import Tracer

SWAP_TYPE = 0
FOLIO_BASE = 0xFFFFEA0004000000
STRUCT_PAGE = 64
EEXIST = -17
ENOENT = -2
VM_FAULT_MAJOR = 0x4
VM_FAULT_OOM = 0x1

Addr = tuple[int, int]  # (mm, address index)


def entry_of(offset: int) -> int:
    """``swp_entry_t.val`` of a slot offset on the simulated device."""
    return swp_entry(SWAP_TYPE, offset)


@dataclass(eq=False)
class Folio:
    """A folio: ``nr`` pages of data, a lock, swap-cache binding and who maps or holds it."""

    fid: int  # the struct folio pointer (head page)
    nr: int
    data: list[int]  # one data value per page
    locked_by: int | None = None  # tid holding the folio lock
    swapcache: bool = False  # PG_swapcache
    swap: int = 0  # folio->swap / page_private(head): first slot offset when in the swap cache (0: none)
    ksm: bool = False  # a KSM page with a stable node (shared across mms, never written in place)
    anon_root: int | None = None  # anon_vma root of the mm that mapped it (None: fresh from swap)
    maps: set[tuple[int, int, int]] = field(default_factory=set)  # (mm, addr, page index) ptes mapping it
    refs: dict[int, int] = field(default_factory=dict)  # tid -> references held by threads in flight

    def page(self, idx: int) -> int:
        """The struct page pointer of page ``idx``."""
        return self.fid + idx * STRUCT_PAGE

    def ref(self, tid: int) -> None:
        self.refs[tid] = self.refs.get(tid, 0) + 1

    def put(self, tid: int) -> None:
        n = self.refs.get(tid, 0) - 1
        if n > 0:
            self.refs[tid] = n
        else:
            self.refs.pop(tid, None)


@dataclass
class Slot:
    """One swap slot: its swap count, SWAP_HAS_CACHE (6.1), whether allocated, and the data on the device."""

    count: int = 0
    has_cache: bool = False  # 6.1 swap_map SWAP_HAS_CACHE; 7.x: unused (the table's folio is the pin)
    allocated: bool = False
    data: int | None = None  # what the device holds (written by pageout)
    gen: int = 0  # allocations of this slot so far
    data_gen: int = -1  # the allocation whose pageout wrote ``data``


@dataclass
class Pte:
    """A pte: a present page of a folio, or a swap entry (slot offset)."""

    folio: Folio | None = None
    idx: int = 0
    swap: int | None = None

    @property
    def present(self) -> bool:
        return self.folio is not None


@dataclass
class Install:
    """Truth about one fault install: did it put data other than the latest written into the pte?"""

    tid: int
    mm: int
    addr: int
    entry: int  # swp_entry_t.val of the fault
    install_ns: int  # ts of the install's count-drop event (swap_free / folio_put_swap)
    data: int
    latest: int
    path: str  # "cache", "skip", "ksm-copy"
    extra_stale: bool = False  # a large-folio batch install put stale data into another page's pte
    read_unwritten: bool = False  # its page was read from the slot after a reallocation, before that pageout
    aba: bool = False  # the entry's slot was allocated again between the fault's start and this install
    relookup: bool = False  # its folio came from the swap-in's own cache lookup after do_swap_page's missed

    @property
    def stale(self) -> bool:
        return self.data != self.latest or self.extra_stale


@dataclass
class KernelConfig:
    """What kernel is simulated."""

    flavour: str = "6.1"  # "6.1" or "7.x"
    nslots: int = 6
    sync_io: bool = False  # SWP_SYNCHRONOUS_IO (zram)
    cache_guard: bool = True  # 4969c1192d15/31c4a3d3a0f8 (7.x: folio_matches_swap_entry)
    skip_guard: bool = True  # 13ddaf26be32 swapcache_prepare on the skip path (6.1 only)

    def __post_init__(self) -> None:
        assert self.flavour in ("6.1", "7.x"), self.flavour


class Kernel:
    """All simulated state, plus the tracer that records probe events and the truth log."""

    def __init__(self, config: KernelConfig) -> None:
        self.cfg = config
        self.slots: list[Slot] = [Slot() for _ in range(config.nslots + 1)]  # index 0 unused (header)
        self.cache: dict[int, Folio] = {}  # slot offset -> folio (every page of a large folio)
        self.ptes: dict[Addr, Pte] = {}
        self.latest: dict[Addr, int] = {}  # truth: what (mm, addr) last held: a write, or a stale install
        self.anon_root: dict[int, int] = {}  # mm -> anon_vma root (a fork child shares its parent's)
        self.tracer = Tracer(config.flavour)
        self.truth: list[Install] = []
        self.in_fault: dict[int, int] = {}  # mm -> faults in flight (they hold mmap_lock for read)
        self.forking: set[int] = set()  # mms whose fork holds mmap_lock for write
        self._next_folio = FOLIO_BASE
        self._next_data = 1000

    # --- small helpers -----------------------------------------------------------------------------------

    @property
    def v61(self) -> bool:
        return self.cfg.flavour == "6.1"

    def new_data(self) -> int:
        """A data value never written before."""
        self._next_data += 1
        return self._next_data

    def new_folio(self, nr: int, data: list[int]) -> Folio:
        """Allocate a folio (naturally aligned pfn range, so subpage pointers never collide)."""
        self._next_folio += 8 * STRUCT_PAGE
        return Folio(self._next_folio, nr, list(data))

    def add_mm(self, mm: int, root: int | None = None) -> None:
        self.anon_root[mm] = mm if root is None else root

    def free_slots(self) -> int:
        return sum(1 for s in self.slots[1:] if not s.allocated)

    def swap_full(self) -> bool:
        """``vm_swap_full()``: more than half the device in use (``nr_swap_pages * 2 < total_swap_pages``)."""
        return self.free_slots() * 2 < self.cfg.nslots

    def lowest_free(self, nr: int) -> int | None:
        """The lowest free, ``nr``-aligned run of ``nr`` slots (the allocator; reuse is frequent)."""
        for off in range(nr, self.cfg.nslots + 1, nr) if nr > 1 else range(1, self.cfg.nslots + 1):
            if off + nr - 1 <= self.cfg.nslots and all(not self.slots[off + i].allocated for i in range(nr)):
                return off
        return None

    def set_pte_present(self, key: Addr, folio: Folio, idx: int) -> None:
        self.ptes[key] = Pte(folio=folio, idx=idx)
        folio.maps.add((key[0], key[1], idx))

    def clear_pte(self, key: Addr) -> None:
        """The pte becomes none (the folio loses this mapping)."""
        pte = self.ptes.pop(key, None)
        if pte is not None and pte.folio is not None:
            pte.folio.maps.discard((key[0], key[1], pte.idx))

    def exclusive(self, folio: Folio, mm: int) -> bool:
        """Can ``mm`` write ``folio`` in place (no COW)? Only its own mappings, no KSM, and no swap count left
        on its slots (another pte holding the entry would still read this data back)."""
        if folio.ksm or any(m != mm for m, _, _ in folio.maps) or len(folio.maps) > folio.nr:
            return False
        return not (folio.swapcache and any(self.slots[folio.swap + i].count > 0 for i in range(folio.nr)))

    def check(self) -> None:
        """Invariants that hold between steps (a failure is a simulator bug)."""
        for off, slot in enumerate(self.slots[1:], start=1):
            if not slot.allocated:
                assert slot.count == 0 and not slot.has_cache and off not in self.cache, (off, slot)
        for key, pte in self.ptes.items():
            if pte.swap is not None:
                assert self.slots[pte.swap].allocated and self.slots[pte.swap].count > 0, (key, pte.swap)
                folio = self.cache.get(pte.swap)
                if folio is not None and folio.locked_by is None:
                    pass  # the cache folio holds the data (checked at install time by the truth log)

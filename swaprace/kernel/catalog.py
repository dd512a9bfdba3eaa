"""The symbol catalog: for every role, the kernel functions that play it, newest first, and how to read them.

Kernels rename and reshape the swap-in path often (the folio conversions of 6.x, the 2025 swap-table rework).
A role is resolved by *symbol presence* in the running kernel (``/proc/kallsyms``) and *traceability*
(``available_filter_functions``), never by the version number: the first candidate that exists and can be
probed wins, and when none does, the resolution says every name that was tried and why each failed.

Each candidate says which C argument (0-based) carries the role's key value (:data:`events.KEY_COLUMN`), which
argument is a by-value ``swp_entry_t`` (its register holds ``.val``), which is a ``struct folio *`` /
``struct page *``, and what the function returns. Where only a folio is passed, the swap entry is read from
the folio itself: ``folio->swap.val`` (``page->private`` before ``folio->swap`` existed: the same word of
``struct page``), :data:`FOLIO_SWAP_OFFSET` bytes into the struct.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Set

from swaprace.errors import SwapraceError
from swaprace.events import KEY_COLUMN, ROLES

#: Byte offset of ``folio->swap.val`` (x86-64): flags 8 + lru 16 + mapping 8 + index 8 = 40. On kernels before
#: ``folio->swap`` was added the same word is ``page->private``/``folio->private``, which holds the entry for a
#: swap-cache page, so one offset serves every kernel this tool supports.
FOLIO_SWAP_OFFSET = 40
#: ``sizeof(struct page)`` on x86-64 (a sub-page's entry is folio->swap.val + its index in the folio).
STRUCT_PAGE_SIZE = 64


@dataclass(frozen=True)
class Candidate:
    """One kernel function that can play ``role``, with the argument layout needed to probe it."""

    role: str
    symbol: str
    key_arg: Optional[int]  # 0-based C argument index carrying the role's key value (events.KEY_COLUMN[role])
    entry_arg: Optional[int]  # argument index of a by-value swp_entry_t (its register holds .val), if any
    folio_arg: Optional[int]  # argument index of a struct folio*/page*, if any
    returns: str  # "folio" | "page" | "int" | "bool" | "vm_fault_t" | "void" | "swp_entry_t" | ...
    note: str  # '# Since Linux kernel commit <hash> ("<subject>")' style provenance

    @property
    def key_from_folio(self) -> bool:
        """True when the role's key is a swap entry but the function only receives a folio: read
        ``folio->swap.val`` at :data:`FOLIO_SWAP_OFFSET` from the folio argument."""
        return KEY_COLUMN.get(self.role) == "entry" and self.key_arg is None and self.folio_arg is not None

    @property
    def entry_from_folio(self) -> bool:
        """True when no entry argument exists but a folio does: its entry can be read from the folio."""
        return self.entry_arg is None and self.folio_arg is not None


def _c(role: str, symbol: str, key_arg, entry_arg, folio_arg, returns: str, note: str) -> Candidate:
    return Candidate(role, symbol, key_arg, entry_arg, folio_arg, returns, note)


# Provenance notes: unmarked hashes come from /work/shared/reference/kernel-history.md or were found in a
# mainline history listing; hashes marked "unverified" are recalled, not checked against a kernel tree
# (`git describe --contains`). Argument positions were read from the kernel sources/headers of each form.
CATALOG: Dict[str, List[Candidate]] = {
    "fault": [
        # Since Linux kernel commit 82b0f8c39a38 ("mm: join struct fault_env and vm_fault") (4.10, unverified):
        # do_swap_page(struct vm_fault *vmf); before it do_swap_page(mm, vma, address, page_table, pmd, flags,
        # orig_pte) (7 arguments) and briefly (struct fault_env *fe, pte_t orig_pte). The fault role carries no
        # key, so one candidate serves every form; the return value is a vm_fault_t bitmask in all of them.
        _c("fault", "do_swap_page", None, None, None, "vm_fault_t",
           '# Since Linux kernel commit 82b0f8c39a38 ("mm: join struct fault_env and vm_fault") (unverified): '
           "do_swap_page(struct vm_fault *vmf); older kernels pass 7 arguments"),
    ],
    "lookup": [
        # Since Linux kernel commit c9edc242811d ("mm/swap: add swap_cache_get_folio()"): lookup_swap_cache
        # became a wrapper, then went away. The 2025 swap-table rework dropped the vma/addr arguments
        # (swap_cache_get_folio(entry)); the entry stays the first argument in both forms.
        _c("lookup", "swap_cache_get_folio", 0, 0, None, "folio",
           '# Since Linux kernel commit c9edc242811d ("mm/swap: add swap_cache_get_folio()"); '
           "1 argument (entry) since the 2025 swap-table rework, (entry, vma, addr) before"),
        _c("lookup", "lookup_swap_cache", 0, 0, None, "page",
           "lookup_swap_cache(swp_entry_t entry[, vma, addr]) returning struct page *: kernels before "
           "c9edc242811d"),
    ],
    "ksm_copy": [
        # Since Linux kernel commit 96db66d9c8f3 ("mm: convert ksm_might_need_to_copy() to work on folios"):
        # takes and returns a folio (or ERR_PTR(-EHWPOISON)); before it a page (cbf86cfe04a6), and between
        # 4969c1192d15 ("mm: fix swapin race condition") and cbf86cfe04a6 it returned int (copy done by
        # ksm_does_need_to_copy). Argument 0 is the page/folio in every form.
        _c("ksm_copy", "ksm_might_need_to_copy", 0, None, 0, "folio",
           '# Since Linux kernel commit 96db66d9c8f3 ("mm: convert ksm_might_need_to_copy() to work on '
           'folios"): folio in, folio/ERR_PTR out; struct page * before (cbf86cfe04a6), int in 2.6.36-3.8 '
           '(4969c1192d15 "mm: fix swapin race condition")'),
    ],
    "free_cache": [
        _c("free_cache", "folio_free_swap", 0, None, 0, "bool",
           '# Since Linux kernel commit bdb0ed54a476 ("mm/swapfile: convert try_to_free_swap() to '
           'folio_free_swap()"): bool folio_free_swap(struct folio *)'),
        _c("free_cache", "try_to_free_swap", 0, None, 0, "int",
           "int try_to_free_swap(struct page *): kernels before bdb0ed54a476"),
    ],
    "slot_alloc": [
        # folio_alloc_swap returned the allocated swp_entry_t on 6.1 and returns int (0 or -errno, entry in
        # folio->swap) since the swap-slot-cache removal / swap-table rework; the folio is argument 0 in both.
        _c("slot_alloc", "folio_alloc_swap", 0, None, 0, "swp_entry_t",
           "# Since Linux kernel commit e2e3fdc7d63c (\"mm: convert get_swap_page() to folio_alloc_swap()\") "
           "(unverified): returns swp_entry_t on 6.1, int (entry in folio->swap) after the 2025 rework"),
        _c("slot_alloc", "get_swap_page", 0, None, 0, "swp_entry_t",
           "swp_entry_t get_swap_page(struct page *): kernels before folio_alloc_swap"),
    ],
    "slot_free": [
        # The function that hands slots back to the allocator moved with every rework of swapfile.c. Where it
        # takes (si, ci, entry, nr) the entry is argument 2. It is static, so it may be inlined: then the next
        # candidate (or none) is used, and the resolution says so. The 7.x swap-table code frees through
        # __swap_cluster_free_entries(si, ci, ci_off, nr): a cluster-relative offset, from which a kprobe's
        # fetch arguments cannot rebuild the entry (it needs si->type and ci's index). It is not a candidate:
        # on those kernels the entry's release is seen through cache_delete (__swap_cache_del_folio).
        _c("slot_free", "swap_entries_free", 2, 2, None, "void",
           "static void swap_entries_free(si, ci, swp_entry_t entry, nr) (2025 swap rework, unverified): "
           "renamed from swap_entry_range_free"),
        _c("slot_free", "swap_entry_range_free", 2, 2, None, "void",
           "static void swap_entry_range_free(si, ci, swp_entry_t entry, nr) (6.12-era, unverified)"),
        # Before the swap slot cache was removed (0ff67f990bd4 "mm, swap: remove swap slot cache"), a slot whose
        # count reached zero went back through free_swap_slot(entry).
        _c("slot_free", "free_swap_slot", 0, 0, None, "void",
           'void free_swap_slot(swp_entry_t entry): kernels before 0ff67f990bd4 ("mm, swap: remove swap slot '
           'cache")'),
        # put_swap_folio drops SWAP_HAS_CACHE and frees the slot only when no count remains: a coarser release.
        _c("slot_free", "put_swap_folio", 1, 1, 0, "void",
           "void put_swap_folio(struct folio *, swp_entry_t entry) (6.1; removed by the swap-table rework): "
           "frees the slot only when its count is zero"),
        _c("slot_free", "swapcache_free", 0, 0, None, "void",
           "void swapcache_free(swp_entry_t entry): old kernels (before put_swap_page)"),
    ],
    "swap_put": [
        # Since the 2025 swap-table rework do_swap_page drops the installed pte's count with
        # folio_put_swap(folio, subpage) (no entry argument: the key is read from folio->swap);
        # swap_put_entries_direct(entry, nr) is the zap-side drop.
        _c("swap_put", "folio_put_swap", None, None, 0, "void",
           "void folio_put_swap(struct folio *, struct page *subpage) (2025 swap-table rework, phase II, "
           "unverified hash): the entry comes from folio->swap"),
        _c("swap_put", "swap_put_entries_direct", 0, 0, None, "void",
           "void swap_put_entries_direct(swp_entry_t entry, int nr) (2025 swap-table rework, unverified)"),
        _c("swap_put", "swap_free_nr", 0, 0, None, "void",
           '# Since Linux kernel commit ebfba0045176 ("mm: swap: introduce swap_free_nr() for batched '
           'swap_free()") (unverified): swap_free_nr(swp_entry_t entry, int nr)'),
        _c("swap_put", "swap_free", 0, 0, None, "void", "void swap_free(swp_entry_t entry): 6.1 and older"),
    ],
    "cache_add": [
        _c("cache_add", "__swap_cache_add_folio", 1, 2, 1, "void",
           "void __swap_cache_add_folio(ci, struct folio *, swp_entry_t) (2025 swap-table rework, unverified)"),
        _c("cache_add", "swap_cache_add_folio", 0, 1, 0, "int",
           "swap_cache_add_folio(struct folio *, swp_entry_t, ...) (2025 swap-table rework, unverified; its "
           "argument order changed during review)"),
        _c("cache_add", "add_to_swap_cache", 0, 1, 0, "int",
           '# Since Linux kernel commit a4c366f01f10 ("mm/swap: convert add_to_swap_cache() to take a folio"): '
           "int add_to_swap_cache(struct folio *, swp_entry_t, gfp_t, void **shadowp); page before"),
    ],
    "cache_delete": [
        # The locked inner helpers are the ones every path goes through (reclaim calls them directly).
        _c("cache_delete", "__swap_cache_del_folio", 1, 2, 1, "void",
           "void __swap_cache_del_folio(ci, struct folio *, swp_entry_t, void *shadow) (2025 swap-table "
           "rework, unverified)"),
        _c("cache_delete", "__delete_from_swap_cache", 0, 1, 0, "void",
           "void __delete_from_swap_cache(struct folio *, swp_entry_t, void *shadow): before the rework"),
        _c("cache_delete", "swap_cache_del_folio", 0, None, 0, "void",
           "void swap_cache_del_folio(struct folio *) (2025 swap-table rework, unverified): wrapper"),
        _c("cache_delete", "delete_from_swap_cache", 0, None, 0, "void",
           "void delete_from_swap_cache(struct folio *) (page before 6.0): wrapper"),
    ],
    "prepare": [
        _c("prepare", "swapcache_prepare", 0, 0, None, "int",
           '# Since Linux kernel commit 13ddaf26be32 ("mm/swap: fix race when skipping swapcache") called by '
           "do_swap_page on the SWP_SYNCHRONOUS_IO path; (entry[, nr]); removed by the swap-table rework"),
    ],
}

# Suffixes the compiler gives clones of a function (GCC IPA). A clone of a probed function is still the same
# code, but .isra/.constprop clones may have dropped or reordered arguments, so a clone is used only when the
# plain name is absent, and the resolution carries a warning. ".cold" parts are never function entries.
_CLONE_RE = re.compile(r"^(?P<base>[A-Za-z0-9_]+)\.(?P<kind>isra|constprop|part|lto_priv)(?:\.\d+)*(?:\..*)?$")


@dataclass
class SymbolTable:
    """Text symbols of a kernel and which of them ftrace can trace."""

    names: Set[str]
    traceable: Optional[Set[str]]  # None: unknown (no available_filter_functions): assume traceable
    source: str = "/proc/kallsyms"
    clones: Dict[str, List[str]] = field(default_factory=dict)  # base name -> clone symbols

    def __post_init__(self) -> None:
        if not self.clones:
            for name in self.names:
                match = _CLONE_RE.match(name)
                if match:
                    self.clones.setdefault(match.group("base"), []).append(name)
            for lst in self.clones.values():
                lst.sort()

    def has(self, name: str) -> bool:
        return name in self.names

    def is_traceable(self, name: str) -> Optional[bool]:
        return None if self.traceable is None else name in self.traceable


@dataclass
class Resolution:
    """Which kernel function plays ``role`` here, or why none does."""

    role: str
    candidate: Optional[Candidate]
    symbol: Optional[str]  # actual kallsyms name (may be a .isra clone)
    tried: List[str]
    reason: Optional[str]  # why none: "not in kallsyms", "not traceable (notrace/inlined)", ...
    warning: Optional[str] = None  # resolved, but with a caveat (a compiler clone, traceability unknown)

    @property
    def ok(self) -> bool:
        return self.symbol is not None

    def to_dict(self) -> dict:
        return {
            "role": self.role,
            "symbol": self.symbol,
            "candidate": self.candidate.symbol if self.candidate else None,
            "tried": list(self.tried),
            "reason": self.reason,
            "warning": self.warning,
        }


KALLSYMS = "/proc/kallsyms"
TRACEABLE_PATHS = (
    "/sys/kernel/tracing/available_filter_functions",
    "/sys/kernel/debug/tracing/available_filter_functions",
)
_TEXT_TYPES = set("tTwW")


def parse_kallsyms(lines: Iterable[str], source: str = "kallsyms") -> Set[str]:
    """Function names from ``/proc/kallsyms`` lines (``address type name [module]``).

    Raises :class:`SwapraceError` when not a single line has that shape (a wrong file was given).
    """
    names: Set[str] = set()
    seen = 0
    for line in lines:
        parts = line.split()
        if len(parts) < 3 or len(parts[1]) != 1:
            continue
        try:
            int(parts[0], 16)
        except ValueError:
            continue
        seen += 1
        if parts[1] in _TEXT_TYPES:
            names.add(parts[2])
    if not seen:
        raise SwapraceError(f"{source}: not a kallsyms file (expected 'address type name' lines)")
    return names


def parse_filter_functions(lines: Iterable[str]) -> Set[str]:
    """Names from ``available_filter_functions`` (``name [module]`` or, on 6.5+ ``…_addrs``, ``addr name``)."""
    names: Set[str] = set()
    for line in lines:
        parts = line.split()
        if not parts:
            continue
        names.add(parts[0])
    return names


def load_symbols(kallsyms_path: Optional[str] = None, traceable_path: Optional[str] = None) -> SymbolTable:
    """The symbol table of the live kernel, or of a saved ``/proc/kallsyms`` copy.

    With a saved kallsyms and no ``traceable_path``, traceability is unknown (every present symbol is taken as
    traceable, and resolutions say so). Unreadable files become one :class:`SwapraceError`.
    """
    live = kallsyms_path is None
    path = KALLSYMS if live else str(kallsyms_path)
    try:
        with open(path, "r", errors="replace") as fh:
            names = parse_kallsyms(fh, source=path)
    except OSError as exc:
        raise SwapraceError(f"cannot read {path}: {exc.strerror or exc}") from None
    traceable: Optional[Set[str]] = None
    candidates: Sequence[str] = (traceable_path,) if traceable_path else (TRACEABLE_PATHS if live else ())
    for tpath in candidates:
        try:
            with open(tpath, "r", errors="replace") as fh:
                traceable = parse_filter_functions(fh)
            break
        except OSError as exc:
            if traceable_path:
                raise SwapraceError(f"cannot read {tpath}: {exc.strerror or exc}") from None
    return SymbolTable(names=names, traceable=traceable, source=path)


def resolve_role(symbols: SymbolTable, role: str) -> Resolution:
    """Try ``role``'s candidates in order; the first present and traceable one wins."""
    if role not in CATALOG:
        raise SwapraceError(f"unknown role {role!r} (known: {', '.join(ROLES)})")
    tried: List[str] = []
    failures: List[str] = []
    for cand in CATALOG[role]:
        tried.append(cand.symbol)
        names = [cand.symbol] if symbols.has(cand.symbol) else symbols.clones.get(cand.symbol, [])
        if not names:
            failures.append(f"{cand.symbol}: not in kallsyms (renamed, removed, or inlined)")
            continue
        for name in names:
            traceable = symbols.is_traceable(name)
            if traceable is False:
                failures.append(f"{name}: not traceable (notrace, or not in available_filter_functions)")
                continue
            warning = None
            if name != cand.symbol:
                warning = (f"{name} is a compiler clone of {cand.symbol}: its arguments may differ from the "
                           "C prototype")
            if traceable is None:
                note = "traceability unknown (no available_filter_functions)"
                warning = f"{warning}; {note}" if warning else note
            return Resolution(role, cand, name, tried, None, warning)
    return Resolution(role, None, None, tried, "; ".join(failures) or "no candidates")


def resolve_roles(symbols: SymbolTable, roles: Sequence[str] = ROLES) -> Dict[str, Resolution]:
    """Resolve every role in ``roles`` (default: all of :data:`events.ROLES`)."""
    return {role: resolve_role(symbols, role) for role in roles}


def check_catalog() -> None:
    """Assert the catalog is internally consistent (used by tests and at import in debug runs)."""
    for role, cands in CATALOG.items():
        assert role in ROLES, role
        for cand in cands:
            assert cand.role == role, cand
            key = KEY_COLUMN[role]
            if key is None:
                assert cand.key_arg is None, cand
            elif key == "entry":
                assert cand.key_arg == cand.entry_arg or cand.key_from_folio, cand
            elif key == "folio":
                assert cand.key_arg == cand.folio_arg, cand


def returns_entry(symbol: str) -> bool:
    """True when ``symbol`` (or the function it is a clone of) returns the swap entry by value
    (``swp_entry_t folio_alloc_swap()`` on 6.1): its return value is the entry."""
    from swaprace.kernel.symbols import base_symbol

    base = base_symbol(symbol)
    return any(c.symbol == base and c.returns == "swp_entry_t" for cands in CATALOG.values() for c in cands)

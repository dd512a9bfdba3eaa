"""The symbol catalog: for every role, the kernel functions that play it, newest first, and how to read them.

Kernels rename and reshape the swap-in path often (the folio conversions of 6.x, the 2025 swap-table rework).
A role is resolved by *symbol presence* in the running kernel (``/proc/kallsyms``) and *traceability*
(``available_filter_functions``), never by the version number: the first candidate that exists and can be
probed wins, and when none does, the resolution says every name that was tried and why each failed.

Each candidate says which C argument (0-based) carries the role's key value (:data:`events.KEY_COLUMN`), which
argument is a by-value ``swp_entry_t`` (its register holds ``.val``), which is a ``struct folio *`` /
``struct page *``, what the function returns, and *how the swap entry and ``nr``* (how many entries the event
covers) are obtained -- :attr:`Candidate.entry_src` / :attr:`Candidate.nr_src`:

=============  ====================================================================================================
``arg``        a by-value argument (``entry_arg`` / ``nr_arg``)
``folio``      read from the folio argument: ``folio->swap.val`` (``page->private`` on kernels before
               ``folio->swap``: the same word); nr = ``1 << order`` when the folio is large (PG_head), else 1
``return``     the function returns the entry by value (6.1 ``swp_entry_t folio_alloc_swap()``)
``cluster``    7.x ``__swap_cluster_free_entries(si, ci, ci_start, nr)``: the entry is rebuilt from the swap
               device's type, the cluster's index and the cluster-relative offset (:func:`entry_from_cluster`)
``subpage``    7.x ``folio_put_swap(folio, page)``: ``folio->swap`` + the page's index in the folio, nr 1; a NULL
               page means every page of the folio (nr from the folio)
=============  ====================================================================================================

The byte offsets behind ``folio``/``cluster``/``subpage`` come from :mod:`swaprace.kernel.layout` (BTF of the
running kernel, else verified defaults). Comments give each candidate's origin in drgn's form, ``# Since Linux
kernel commit <hash> ("<subject>") (in vX.Y)``, from ``/work/notes/kernel-swap-functions.md`` Part D (kernel.org
push logs and LKML, since the kernel tree itself was not at hand); "unverified" says where no mainline hash could
be confirmed. Argument positions were read from the two test kernels' exact sources (Debian 6.1.192, 7.3.4).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Set

from swaprace.errors import SwapraceError
from swaprace.events import KEY_COLUMN, ROLES

#: The verified default of ``folio->swap.val``'s offset (x86-64: flags 8 + lru 16 + mapping 8 + index 8); the
#: live probes take it from :func:`swaprace.kernel.layout.detect_layout` instead.
FOLIO_SWAP_OFFSET = 40

ENTRY_SOURCES = ("arg", "folio", "return", "cluster", "subpage")
NR_SOURCES = ("arg", "folio", "subpage")


@dataclass(frozen=True)
class Candidate:
    """One kernel function that can play ``role``, with the argument layout needed to probe it."""

    role: str
    symbol: str
    key_arg: Optional[int]  # 0-based C argument index carrying the role's key value (events.KEY_COLUMN[role])
    entry_arg: Optional[int]  # argument index of a by-value swp_entry_t (its register holds .val), if any
    folio_arg: Optional[int]  # argument index of a struct folio*/page*, if any
    returns: str  # "folio" | "page" | "int" | "bool" | "vm_fault_t" | "void" | "swp_entry_t" | ...
    note: str  # '# Since Linux kernel commit <hash> ("<subject>") (in vX.Y)' style provenance
    entry_src: Optional[str] = None  # ENTRY_SOURCES; None: derived from entry_arg/folio_arg (see __post_init__)
    nr_src: Optional[str] = None  # NR_SOURCES, or None: the event covers one entry
    nr_arg: Optional[int] = None  # argument index of nr (nr_src "arg")
    page_arg: Optional[int] = None  # the struct page * of a "subpage" candidate
    cluster_args: Optional[tuple] = None  # (si, ci, ci_start) argument indexes of a "cluster" candidate
    #: Another kernel symbol that must exist for this form (two forms of one name told apart by a sibling).
    requires: Optional[str] = None
    #: A kernel symbol whose presence rules this form out.
    excludes: Optional[str] = None

    def __post_init__(self) -> None:
        if self.entry_src is None:
            src = "arg" if self.entry_arg is not None else ("folio" if self.folio_arg is not None else None)
            object.__setattr__(self, "entry_src", src)

    @property
    def key_from_folio(self) -> bool:
        """True when the role's key is a swap entry but the function only receives a folio: read
        ``folio->swap.val`` from the folio argument."""
        return KEY_COLUMN.get(self.role) == "entry" and self.key_arg is None and self.folio_arg is not None


def _c(role: str, symbol: str, key_arg, entry_arg, folio_arg, returns: str, note: str, **more) -> Candidate:
    return Candidate(role, symbol, key_arg, entry_arg, folio_arg, returns, note, **more)


# Verified commits (notes Part D): 82b0f8c39a38 (v4.10), c9edc242811d, bdb0ed54a476, a4c366f01f10 (v6.1),
# 96db66d9c8f3, c9bdf768dd93, 13ddaf26be32 (v6.8), 0ff67f990bd4 (v6.15). Everything else is marked unverified.
CATALOG: Dict[str, List[Candidate]] = {
    "fault": [
        # Since Linux kernel commit 82b0f8c39a38 ("mm: join struct fault_env and vm_fault") (in v4.10)
        # do_swap_page(struct vm_fault *vmf); before it 7 arguments. The fault role carries no key, so one
        # candidate serves every form; the return value is a vm_fault_t bitmask in all of them.
        _c("fault", "do_swap_page", None, None, None, "vm_fault_t",
           '# Since Linux kernel commit 82b0f8c39a38 ("mm: join struct fault_env and vm_fault") (in v4.10): '
           "do_swap_page(struct vm_fault *vmf); older kernels pass 7 arguments"),
    ],
    "lookup": [
        # Since Linux kernel commit c9edc242811d ("swap: add swap_cache_get_folio()") (in v6.1)
        # (entry, vma, addr) on 6.1; (entry) on 7.3.4 (swap-table rework, unverified). Entry is arg 0 in both.
        _c("lookup", "swap_cache_get_folio", 0, 0, None, "folio",
           '# Since Linux kernel commit c9edc242811d ("swap: add swap_cache_get_folio()") (in v6.1): '
           "(entry, vma, addr) on 6.1, (entry) on 7.3.4"),
        _c("lookup", "lookup_swap_cache", 0, 0, None, "page",
           "# Until Linux kernel commit c9edc242811d (in v6.1): lookup_swap_cache(swp_entry_t entry[, vma, addr]) "
           "returning struct page * (origin: pre-git, unverified)"),
    ],
    "ksm_copy": [
        # Since Linux kernel commit 96db66d9c8f3 ("mm: convert ksm_might_need_to_copy() to work on folios")
        # (in v6.8, inferred): folio in, folio / NULL / ERR_PTR(-EHWPOISON) out; struct page * on 6.1.
        _c("ksm_copy", "ksm_might_need_to_copy", 0, None, 0, "folio",
           '# Since Linux kernel commit 96db66d9c8f3 ("mm: convert ksm_might_need_to_copy() to work on '
           'folios") (in v6.8, inferred): folio in and out; struct page * on 6.1; int in 2.6.36-3.8 '
           '(4969c1192d15 "mm: fix swapin race condition")'),
    ],
    "free_cache": [
        # Since Linux kernel commit bdb0ed54a476 ("mm/swapfile: convert try_to_free_swap() to folio_free_swap()")
        # (in v6.1): true = the folio left the swap cache and its count-0 slots were freed.
        _c("free_cache", "folio_free_swap", 0, None, 0, "bool",
           '# Since Linux kernel commit bdb0ed54a476 ("mm/swapfile: convert try_to_free_swap() to '
           'folio_free_swap()") (in v6.1): bool folio_free_swap(struct folio *)', nr_src="folio"),
        _c("free_cache", "try_to_free_swap", 0, None, 0, "int",
           "# Until Linux kernel commit bdb0ed54a476 (in v6.1): int try_to_free_swap(struct page *) "
           "(origin unverified)"),
    ],
    "slot_alloc": [
        # 7.3.4: __swap_cache_add_folio(ci, folio, entry) is called only by the allocator
        # (__swap_cluster_alloc_entries, swapfile.c:937): arg 2 is the freshly allocated first entry.
        # Swap-table rework (Kairui Song, 2025): introducing commit unverified.
        _c("slot_alloc", "__swap_cache_add_folio", 1, 2, 1, "void",
           "# __swap_cache_add_folio(ci, struct folio *, swp_entry_t) (swap-table rework, commit unverified): "
           "its only caller on 7.3.4 is the slot allocator", nr_src="folio"),
        # 6.1: swp_entry_t folio_alloc_swap(struct folio *) returns the allocated entry by value (0 = failure). On
        # 7.x it returns int and the candidate above wins, so this form is never used there.
        _c("slot_alloc", "folio_alloc_swap", 0, None, 0, "swp_entry_t",
           "# folio_alloc_swap() replaced get_swap_page() in the v6.0-era folio series (commit unverified): "
           "returns swp_entry_t on 6.1, int (entry in folio->swap) on 7.x",
           entry_src="return", nr_src="folio", excludes="__swap_cluster_free_entries"),
        _c("slot_alloc", "get_swap_page", 0, None, 0, "swp_entry_t",
           "swp_entry_t get_swap_page(struct page *): kernels before folio_alloc_swap (origin unverified)",
           entry_src="return"),
    ],
    "slot_free": [
        # 7.3.4: __swap_cluster_free_entries(si, ci, ci_start, nr) is the only function that resets a slot to free
        # (notes B.2); the entry is rebuilt from si->type, the cluster index and ci_start. Commit unverified.
        _c("slot_free", "__swap_cluster_free_entries", None, None, None, "void",
           "# __swap_cluster_free_entries(si, ci, ci_start, nr) (swap-table rework, commit unverified): the "
           "slot-free point of 7.3.4; entry rebuilt from the cluster", entry_src="cluster", cluster_args=(0, 1, 2),
           nr_src="arg", nr_arg=3),
        # Kemeng Shi's 2025 series (mm-unstable hashes only: unverified).
        _c("slot_free", "swap_entries_free", 2, 2, None, "void",
           "static void swap_entries_free(si, ci, swp_entry_t entry, nr) (2025, commit unverified): renamed "
           "from swap_entry_range_free", nr_src="arg", nr_arg=3),
        _c("slot_free", "swap_entry_range_free", 2, 2, None, "void",
           "static void swap_entry_range_free(si, ci, swp_entry_t entry, nr) (2024 allocator rework, commit "
           "unverified)", nr_src="arg", nr_arg=3),
        # 6.1: void free_swap_slot(swp_entry_t) -- the logical free, once per slot whose count and cache pin
        # reached 0 (notes A.2). Gone since 0ff67f990bd4 ("mm, swap: remove swap slot cache") (in v6.15).
        _c("slot_free", "free_swap_slot", 0, 0, None, "void",
           '# Until Linux kernel commit 0ff67f990bd4 ("mm, swap: remove swap slot cache") (in v6.15): '
           'void free_swap_slot(swp_entry_t entry) (introducing commit, 4.11-era slot cache: unverified)'),
        _c("slot_free", "put_swap_folio", 1, 1, 0, "void",
           "void put_swap_folio(struct folio *, swp_entry_t entry) (6.1; removed by the swap-table rework): "
           "frees the slot only when its count is zero (coarser than free_swap_slot); introducing commit unverified"),
        _c("slot_free", "swapcache_free", 0, 0, None, "void",
           "void swapcache_free(swp_entry_t entry): old kernels (before put_swap_page; unverified)"),
    ],
    "swap_put": [
        # 7.3.4 do_swap_page: folio_put_swap(folio, page) before set_ptes; page NULL = every page of the folio.
        _c("swap_put", "folio_put_swap", None, None, 0, "void",
           "# folio_put_swap(struct folio *, struct page *) (swap-table rework, commit unverified): entry = "
           "folio->swap + the page's index; all pages of the folio when page is NULL",
           entry_src="subpage", nr_src="subpage", page_arg=1),
        _c("swap_put", "swap_free_nr", 0, 0, None, "void",
           '# Since Linux kernel commit ebfba0045176 ("mm: swap: introduce swap_free_nr() for batched '
           'swap_free()") (in v6.11, unverified release)', nr_src="arg", nr_arg=1),
        _c("swap_put", "swap_free", 0, 0, None, "void",
           "void swap_free(swp_entry_t entry): 6.1 and older (pre-git origin; successor swap_free_nr: unverified)"),
    ],
    "zap_put": [
        _c("zap_put", "swap_put_entries_direct", 0, 0, None, "void",
           "# swap_put_entries_direct(swp_entry_t, int nr) (swap-table rework, commit unverified): the zap-side "
           "put of 7.3.4, may free slots", nr_src="arg", nr_arg=1),
        _c("zap_put", "free_swap_and_cache_nr", 0, 0, None, "void",
           '# free_swap_and_cache_nr(swp_entry_t, int nr) ("mm: swap: free_swap_and_cache_nr() as batched '
           'free_swap_and_cache()", v6.10 from memory; mainline hash unverified)', nr_src="arg", nr_arg=1),
        _c("zap_put", "free_swap_and_cache", 0, 0, None, "int",
           "int free_swap_and_cache(swp_entry_t entry): 6.1 (zap_pte_range, madvise_free, shmem truncation); "
           "pre-git origin, commit unverified"),
    ],
    "swap_dup": [
        # One symbol per role: 6.1's swap_duplicate covers fork and unmap; on 7.3.4 folio_dup_swap is the unmap
        # (swap-out) side, which takes a new slot's first count. 7.3.4's fork side, swap_dup_entry_direct, is
        # used only where folio_dup_swap is absent (not seen on 7.3.4: documented gap).
        _c("swap_dup", "swap_duplicate", 0, 0, None, "int",
           "int swap_duplicate(swp_entry_t entry): 6.1 (fork copy_nonpresent_pte and try_to_unmap_one); pre-git "
           "origin, commit unverified"),
        _c("swap_dup", "folio_dup_swap", None, None, 0, "int",
           "# folio_dup_swap(struct folio *, struct page *) (swap-table rework, commit unverified): unmap",
           entry_src="subpage", nr_src="subpage", page_arg=1),
        _c("swap_dup", "swap_dup_entry_direct", 0, 0, None, "int",
           "# swap_dup_entry_direct(swp_entry_t) (swap-table rework, commit unverified): fork"),
    ],
    "cache_add": [
        # 7.3.4: the static __swap_cache_do_add_folio(ci, folio, entry) is traceable ('t') and called by every
        # cache fill: swap-in, readahead (and, inside __swap_cache_add_folio, the allocation). Commit unverified.
        _c("cache_add", "__swap_cache_do_add_folio", 1, 2, 1, "void",
           "# __swap_cache_do_add_folio(ci, struct folio *, swp_entry_t) (swap-table rework, commit "
           "unverified): every swap-cache fill on 7.3.4", nr_src="folio"),
        _c("cache_add", "swap_cache_add_folio", 0, 1, 0, "int",
           "swap_cache_add_folio(struct folio *, swp_entry_t, ...) (swap-table rework, commit unverified; its "
           "argument order changed during review)", nr_src="folio"),
        _c("cache_add", "add_to_swap_cache", 0, 1, 0, "int",
           '# Since Linux kernel commit a4c366f01f10 ("mm/swap: convert add_to_swap_cache() to take a folio") '
           "(in v6.1): int add_to_swap_cache(struct folio *, swp_entry_t, gfp_t, void **shadowp)",
           nr_src="folio"),
    ],
    "cache_delete": [
        # The locked inner helpers are the ones every path goes through (reclaim calls them directly).
        _c("cache_delete", "__swap_cache_del_folio", 1, 2, 1, "void",
           "# __swap_cache_del_folio(ci, struct folio *, swp_entry_t, void *shadow, bool swapout) (swap-table "
           "rework, commit unverified): frees count-0 slots on 7.3.4", nr_src="folio"),
        _c("cache_delete", "__delete_from_swap_cache", 0, 1, 0, "void",
           "void __delete_from_swap_cache(struct folio *, swp_entry_t, void *shadow): 6.1 (folio form since "
           "the v6.0-era folio series, commit unverified)", nr_src="folio"),
        _c("cache_delete", "swap_cache_del_folio", 0, None, 0, "void",
           "void swap_cache_del_folio(struct folio *) (swap-table rework, commit unverified): wrapper",
           nr_src="folio"),
        _c("cache_delete", "delete_from_swap_cache", 0, None, 0, "void",
           "void delete_from_swap_cache(struct folio *) (page before 6.0, folio conversion commit unverified): "
           "wrapper", nr_src="folio"),
    ],
    "swap_read": [
        # Since Linux kernel commit c9bdf768dd93 ("mm: convert swap_readpage() to swap_read_folio()") (in v6.8,
        # inferred). Debian 7.3.4 has swap_read_folio(struct swap_io_ctx *ctx, struct folio *folio) with
        # swap_read_submit(ctx); upstream v6.8+ has swap_read_folio(struct folio *, struct swap_iocb **plug).
        # The sibling symbol tells the two forms apart (BTF, where present, confirms the folio argument).
        _c("swap_read", "swap_read_folio", 1, None, 1, "void",
           '# Since Linux kernel commit c9bdf768dd93 ("mm: convert swap_readpage() to swap_read_folio()") '
           "(in v6.8, inferred); the (ctx, folio) form of Debian 7.3.4 (introducing commit unverified)",
           nr_src="folio", requires="swap_read_submit"),
        _c("swap_read", "swap_read_folio", 0, None, 0, "void",
           '# Since Linux kernel commit c9bdf768dd93 ("mm: convert swap_readpage() to swap_read_folio()") '
           "(in v6.8, inferred): (folio, plug)", nr_src="folio", excludes="swap_read_submit"),
        # 6.1: int swap_readpage(struct page *, bool synchronous, plug): the entry is page_private (+40) at call
        # time on both the cache path and the skip-swapcache path (notes A.1 step 4).
        _c("swap_read", "swap_readpage", 0, None, 0, "int",
           "# Until Linux kernel commit c9bdf768dd93 (in v6.8, inferred): int swap_readpage(struct page *, bool "
           "synchronous, struct swap_iocb **plug) on 6.1 (plug argument: commit unverified); entry = page_private"),
    ],
    "swap_write": [
        # The skip-swapcache path reads the slot directly, so whether a reallocated slot already holds its new
        # generation's data decides if a late private read is live (the model's skip-path rule).
        # Debian 7.3.4: int swap_writeout(struct swap_io_ctx *ctx, struct folio *folio) (commit unverified).
        _c("swap_write", "swap_writeout", 1, None, 1, "int",
           "int swap_writeout(struct swap_io_ctx *ctx, struct folio *folio): Debian 7.3.4 (introducing commit "
           "unverified); the entry is folio->swap", nr_src="folio"),
        # 6.1: int swap_writepage(struct page *, struct writeback_control *): the entry is page_private (+40).
        # pageout() passes &folio->page (shrink_folio_list, mm/vmscan.c 6.1) and __swap_writepage writes the
        # whole folio, so the head page gives the range (PG_head and the order, as for a folio).
        _c("swap_write", "swap_writepage", 0, None, 0, "int",
           "int swap_writepage(struct page *page, struct writeback_control *wbc) on 6.1 (page before the folio "
           "conversions; commit unverified): the entry is page_private; pageout passes the folio's head page",
           nr_src="folio"),
    ],
    "prepare": [
        _c("prepare", "swapcache_prepare", 0, 0, None, "int",
           '# Since Linux kernel commit 13ddaf26be32 ("mm/swap: fix race when skipping swapcache") (in v6.8, '
           "inferred; backported to 6.1.y): called by do_swap_page on the SWP_SYNCHRONOUS_IO path; "
           "int swapcache_prepare(swp_entry_t) on 6.1 (an nr argument later: unverified); removed on 7.3.4"),
    ],
    "prepare_clear": [
        _c("prepare_clear", "swapcache_clear", 1, 1, None, "void",
           '# Since Linux kernel commit 13ddaf26be32 ("mm/swap: fix race when skipping swapcache") (in v6.8, '
           "inferred; backported to 6.1.y): void swapcache_clear(struct swap_info_struct *, swp_entry_t)"),
    ],
}

# Suffixes the compiler gives clones of a function (GCC IPA): the one definition of the package
# (:func:`swaprace.kernel.symbols.base_symbol` strips it). A clone of a probed function is still the same
# code, but .isra/.constprop clones may have dropped or reordered arguments, so a clone is used only when the
# plain name is absent, and the resolution carries a warning. ".cold" parts are never function entries.
CLONE_SUFFIX_RE = re.compile(r"\.(?P<kind>isra|constprop|part|lto_priv|cold)(?:\.\d+)*(?:\..*)?$")
_PLAIN_NAME_RE = re.compile(r"[A-Za-z0-9_]+")


def clone_base(name: str) -> Optional[str]:
    """The function ``name`` is an entry clone of (``foo`` for ``foo.isra.0``); None for a plain name, a
    ``.cold`` part, or a name whose base is not a plain C identifier."""
    match = CLONE_SUFFIX_RE.search(name)
    if match is None or match.group("kind") == "cold":
        return None
    base = name[:match.start()]
    return base if _PLAIN_NAME_RE.fullmatch(base) else None


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
                base = clone_base(name)
                if base is not None:
                    self.clones.setdefault(base, []).append(name)
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
        if cand.symbol not in tried:
            tried.append(cand.symbol)
        if cand.requires and not symbols.has(cand.requires):
            failures.append(f"{cand.symbol}: this form needs {cand.requires}, absent")
            continue
        if cand.excludes and symbols.has(cand.excludes):
            failures.append(f"{cand.symbol}: not this form ({cand.excludes} present)")
            continue
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
            assert cand.entry_src in ENTRY_SOURCES + (None,), cand
            assert cand.nr_src in NR_SOURCES + (None,), cand
            assert (cand.nr_src == "arg") == (cand.nr_arg is not None), cand
            assert (cand.entry_src == "cluster") == (cand.cluster_args is not None), cand
            assert (cand.entry_src == "subpage") == (cand.page_arg is not None), cand
            assert cand.entry_src != "return" or cand.returns == "swp_entry_t", cand


#: Roles whose events tie a thread to its own fault; ``--pid`` filters these only, because frees and
#: allocations by other tasks (kswapd, KSM, other processes) are exactly what a race is made of.
THREAD_ROLES = ("fault", "lookup", "ksm_copy", "swap_put", "prepare", "swap_read")

#: Roles whose return value the analysis reads (fault outcome, lookup hit, KSM copy, free_cache true, 6.1's
#: allocated entry, prepare's -EEXIST). Other roles get no return probe: fewer events, same information.
RETURN_ROLES = ("fault", "lookup", "ksm_copy", "free_cache", "slot_alloc", "prepare", "swap_write")


def needs_return(cand: Candidate) -> bool:
    """Whether ``cand`` gets a return probe."""
    return cand.role in RETURN_ROLES and cand.returns != "void"


def returns_entry(symbol: str) -> bool:
    """True when ``symbol`` (or the function it is a clone of) returns the swap entry by value
    (``swp_entry_t folio_alloc_swap()`` on 6.1): its return value is the entry."""
    from swaprace.kernel.symbols import base_symbol

    base = base_symbol(symbol)
    return any(c.symbol == base and c.returns == "swp_entry_t" for cands in CATALOG.values() for c in cands)

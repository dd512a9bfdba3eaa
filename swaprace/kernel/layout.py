"""Struct offsets and constants the probes read memory with, detected on the running kernel, not assumed.

Detection order: the kernel's BTF (``/sys/kernel/btf/vmlinux``, read by :mod:`swaprace.kernel.btf`), else the
defaults below, which were verified against the exact sources of the two test kernels (Debian 6.1.192 and
7.3.4; see the catalog's notes) -- and the layout then says so in :attr:`KernelLayout.notes`.

The same layout serves the ftrace backend (fetch-argument offsets), the bcc backend (``-D`` defines), and the
readers (rebuilding a swap entry from a cluster-relative offset, a folio's page count from its order).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from swaprace.errors import SwapraceError

#: The only architecture whose argument registers the probes know (System V AMD64 ABI).
SUPPORTED_ARCH = "x86_64"


@dataclass
class KernelLayout:
    """Offsets (bytes) and constants of the structures swaprace reads."""

    folio_swap: int = 40  # offsetof(struct folio, swap) / page->private: the swap entry of a swap-cache folio
    folio_flags: int = 0  # offsetof(struct folio, flags)
    pg_head: int = 6  # enum pageflags PG_head (6.1: 16, 7.x: 6)
    folio_order: int = 64  # byte holding a large folio's order (6.1: _folio_order 81; 7.x: _flags_1 low byte 64)
    page_size: int = 64  # sizeof(struct page): (page - folio) / page_size is a subpage's index
    si_type: int = 72  # offsetof(struct swap_info_struct, type) (signed char)
    si_cluster_info: int = 80  # offsetof(struct swap_info_struct, cluster_info) (6.1: 88)
    cluster_size: int = 48  # sizeof(struct swap_cluster_info) (7.3.4 amd64)
    cluster_slots: int = 512  # SWAPFILE_CLUSTER (HPAGE_PMD_NR with THP_SWAP on x86-64)
    source: str = "defaults"
    notes: List[str] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


#: Verified on Debian 6.1.192 amd64 (mm_types.h, page-flags.h, swap.h: notes A.9).
DEFAULTS_6_1 = KernelLayout(pg_head=16, folio_order=81, si_cluster_info=88, cluster_size=8,  # (6.1: lock + 24:8 bits)
                            source="defaults (Debian 6.1.192 amd64, verified from source)")
#: Verified on Debian 7.3.4 amd64 (notes B.9; struct prefixes cross-checked with gcc, not with the guest's BTF).
DEFAULTS_7_3 = KernelLayout(source="defaults (Debian 7.3.4 amd64, verified from source)")


def check_arch(machine: Optional[str] = None) -> None:
    """Refuse an architecture whose argument registers the probes do not know, in one line."""
    machine = machine or os.uname().machine
    if machine != SUPPORTED_ARCH:
        raise SwapraceError(f"swaprace's probes support {SUPPORTED_ARCH} only (this machine is {machine}): "
                            "their fetch arguments name x86-64 argument registers")


def default_layout(swap_table_kernel: bool) -> KernelLayout:
    """The verified defaults for the kernel family (the 2025 swap-table kernels, or before)."""
    base = DEFAULTS_7_3 if swap_table_kernel else DEFAULTS_6_1
    return dataclasses.replace(base, notes=list(base.notes))


def layout_from_btf(btf, fallback: KernelLayout) -> KernelLayout:
    """The layout read from BTF; fields BTF does not describe keep ``fallback``'s value (and say so)."""
    out = dataclasses.replace(fallback, source="btf", notes=[])

    def take(name: str, value: Optional[int], what: str) -> None:
        if value is None:
            out.notes.append(f"{name}: {what} not in BTF, default {getattr(fallback, name)} used")
        else:
            setattr(out, name, int(value))

    swap = btf.member_offset("folio", "swap")
    take("folio_swap", swap if swap is not None else btf.member_offset("folio", "private"), "folio.swap/private")
    take("folio_flags", btf.member_offset("folio", "flags"), "folio.flags")
    take("pg_head", btf.enum_value("pageflags", "PG_head"), "enum pageflags PG_head")
    order = btf.member_offset("folio", "_folio_order")
    take("folio_order", order if order is not None else btf.member_offset("folio", "_flags_1"),
         "folio._folio_order/_flags_1")
    take("page_size", btf.struct_size("page"), "sizeof(struct page)")
    take("si_type", btf.member_offset("swap_info_struct", "type"), "swap_info_struct.type")
    take("si_cluster_info", btf.member_offset("swap_info_struct", "cluster_info"), "swap_info_struct.cluster_info")
    take("cluster_size", btf.struct_size("swap_cluster_info"), "sizeof(struct swap_cluster_info)")
    return out


def detect_layout(swap_table_kernel: bool, btf_path: Optional[str] = None) -> KernelLayout:
    """The running kernel's layout: BTF where the kernel has it, else the verified defaults (noted)."""
    from swaprace.kernel.btf import BTF_PATH, Btf, BtfError

    fallback = default_layout(swap_table_kernel)
    path = btf_path or BTF_PATH
    try:
        btf = Btf.load(path)
    except BtfError as exc:
        fallback.notes.append(f"no BTF ({exc}): verified defaults used")
        return fallback
    layout = layout_from_btf(btf, fallback)
    layout.source = f"btf:{path}"
    return layout


# --- values the probes cannot compute in the kernel (ftrace fetch arguments cannot divide) ----------------------

SWP_TYPE_SHIFT = 58  # swp_entry(type, offset) = (type << 58) | offset on x86-64 (include/linux/swapops.h)


def entry_from_cluster(si_type, ci, cluster_info, ci_start, cluster_size, cluster_slots=512):
    """The swap entry of a cluster-relative slot (7.x ``__swap_cluster_free_entries``): ``swp_entry(si->type,
    (ci - si->cluster_info) * SWAPFILE_CLUSTER + ci_start)`` (swapfile.c ``cluster_offset``). Works on numpy
    arrays (uint64) and on ints."""
    index = (ci - cluster_info) // cluster_size
    return (si_type << SWP_TYPE_SHIFT) | (index * cluster_slots + ci_start)


def nr_from_folio(head, order):
    """Pages of a folio: ``1 << order`` when PG_head is set (a large folio), else 1 (numpy or ints)."""
    import numpy as np

    head = np.asarray(head, dtype=np.uint64)
    order = np.minimum(np.asarray(order, dtype=np.uint64), np.uint64(20))
    return np.where(head != 0, np.left_shift(np.uint64(1), order), np.uint64(1))


def subpage_entry(folio_entry, folio, page, page_size):
    """``folio->swap.val + folio_page_idx(folio, page)`` (7.x ``folio_put_swap``); a NULL page keeps the folio's
    first entry (the call covers every page of the folio)."""
    import numpy as np

    folio_entry, folio, page = (np.asarray(a, dtype=np.uint64) for a in (folio_entry, folio, page))
    index = np.where((page != 0) & (page >= folio), (page - folio) // np.uint64(page_size), np.uint64(0))
    return folio_entry + index

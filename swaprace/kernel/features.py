"""Kernel features swaprace needs to know about, detected in the running kernel's BTF, never from its version."""

from __future__ import annotations

from typing import Optional


def kprobe_recursion_misses_counted(btf_path: Optional[str] = None) -> Optional[bool]:
    """Whether a kprobe BPF program skipped because another BPF program was running on that CPU is counted in
    the program's ``recursion_misses`` (fdinfo). True/False from BTF; None when the kernel has no BTF.

    Since Linux kernel commit dd8657894c11 ("bpf: Count missed stats in trace_call_bpf") (in v6.7); before it
    trace_call_bpf() skipped the program silently and fdinfo reads 0. Detected through its sibling in the same
    series, 3acf8ace6823 ("bpf: Add missed value to kprobe perf link info") (in v6.7), which adds
    ``bpf_link_info.perf_event.kprobe.missed`` to BTF. (A stable kernel that took only the sibling would be
    taken for counting.)
    """
    from swaprace.kernel.btf import BTF_PATH, Btf, BtfError

    try:
        btf = Btf.load(btf_path or BTF_PATH)
    except BtfError:
        return None
    return btf.has_member_path("bpf_link_info", "perf_event.kprobe.missed")

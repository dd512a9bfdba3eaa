"""``swaprace doctor``: can this machine (or a saved kallsyms) be traced, and with what?

Everything is detected by presence (symbols, files, imports), never by the kernel version.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Optional

from swaprace.events import ROLES
from swaprace.probes import tracefs
from swaprace.probes.backend import AUTO_ORDER, backend_status
from swaprace.kernel.catalog import load_symbols, resolve_roles
from swaprace.kernel.headers import headers_source
from swaprace.kernel.swaps import read_swaps

KSM_DIR = Path("/sys/kernel/mm/ksm")
KSM_FIELDS = ("run", "pages_to_scan", "sleep_millisecs", "pages_shared", "pages_sharing", "full_scans")
BTF_PATH = Path("/sys/kernel/btf/vmlinux")


def kernel_features(names) -> Dict[str, bool]:
    """Features visible as symbols of the kernel (live or saved kallsyms)."""
    return {
        "kprobes": "register_kprobe" in names,
        "kretprobes": "register_kretprobe" in names or "arch_prepare_kretprobe" in names,
        "bpf": "bpf_prog_load" in names or "__sys_bpf" in names or "bpf_check" in names,
        # BPF_MAP_TYPE_RINGBUF (5.8): the ring buffer's helpers exist as symbols.
        "ringbuf": "bpf_ringbuf_output" in names,
    }


def swap_state() -> Dict[str, object]:
    """Active swap devices from /proc/swaps."""
    try:
        swaps = read_swaps()
    except OSError:
        swaps = []
    devices: List[dict] = [{"name": d.name, "type": d.type, "size_kb": d.size_kib, "used_kb": d.used_kib,
                            "priority": d.priority} for d in swaps if d.priority is not None]
    return {"devices": devices, "total_kb": sum(d["size_kb"] for d in devices),
            "used_kb": sum(d["used_kb"] for d in devices)}


def ksm_state() -> Optional[Dict[str, int]]:
    if not KSM_DIR.is_dir():
        return None
    state: Dict[str, int] = {}
    for name in KSM_FIELDS:
        try:
            state[name] = int((KSM_DIR / name).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return state


def _bcc_importable() -> Optional[str]:
    try:
        import bcc  # noqa: F401

        return None
    except Exception as exc:  # python3-bpfcc missing or broken
        return f"bcc not importable ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"


def diagnose(kallsyms: Optional[str] = None, traceable: Optional[str] = None) -> dict:
    """The doctor's findings as one JSON-able dict (see ``swaprace doctor --help``)."""
    symbols = load_symbols(kallsyms, traceable)
    resolutions = resolve_roles(symbols, ROLES)
    live = kallsyms is None
    features = kernel_features(symbols.names)
    root_dir = tracefs.mounted_tracefs() if live else None
    is_root = os.geteuid() == 0
    host = {
        "root": is_root,
        "tracefs": str(root_dir) if root_dir else None,
        "tracefs_writable": bool(root_dir and os.access(root_dir / "kprobe_events", os.W_OK)),
        "btf": BTF_PATH.exists(),
        "bcc": _bcc_importable() is None,
        "bcc_reason": _bcc_importable(),
        "kernel_headers": headers_source(),  # what bcc compiles against (swaprace/kernel/headers.py)
    }
    backends = backend_status() if live else {}
    chosen = next((name for name in AUTO_ORDER if name in backends and backends[name] is None), None)
    problems: List[str] = []
    if not features["kprobes"]:
        problems.append("no kprobes: this kernel was built without CONFIG_KPROBES (register_kprobe is not in "
                        f"{symbols.source}); live tracing is impossible here, offline analysis works")
    missing = [r for r in ("fault", "lookup") if not resolutions[r].ok]
    if missing:
        problems.append(f"required role(s) unresolved: {', '.join(missing)}")
    leftovers: List[dict] = []
    swap = ksm = None
    if live:
        if not is_root:
            problems.append("not root: tracing needs root (run with sudo)")
        swap = swap_state()
        if not swap["devices"]:
            problems.append("no active swap: nothing will be swapped in (swapon a file or device)")
        ksm = ksm_state()
        if root_dir is not None:
            leftovers = tracefs.leftover_groups(root_dir)
            if leftovers:
                names = ", ".join(g["name"] for g in leftovers)
                problems.append(f"leftovers of killed swaprace runs in tracefs: {names} "
                                "(remove them with `swaprace doctor --clean`)")
    return {
        "kernel": {
            "release": os.uname().release if live else None,
            "kallsyms": symbols.source,
            "traceable_known": symbols.traceable is not None,
            "features": features,
        },
        "roles": {role: res.symbol for role, res in resolutions.items()},
        "resolution": {role: res.to_dict() for role, res in resolutions.items()},
        "host": host if live else None,
        "backends": {"status": backends, "auto": chosen} if live else None,
        "swap": swap,
        "ksm": ksm,
        "leftovers": leftovers,
        "problems": problems,
    }


def clean_leftovers() -> List[str]:
    """Remove kprobe groups and instances of swaprace runs whose process is gone. Returns their names."""
    root = tracefs.mounted_tracefs()
    if root is None:
        return []
    removed = []
    for group in tracefs.leftover_groups(root):
        tracefs.remove_group(root, group["name"])
        removed.append(group["name"])
    return removed


def format_report(report: dict) -> str:
    """The human-readable doctor output."""
    out: List[str] = []
    kernel = report["kernel"]
    title = f"kernel {kernel['release']}" if kernel["release"] else f"saved kallsyms {kernel['kallsyms']}"
    out.append(title + ("" if kernel["traceable_known"] else "  (traceability unknown: no "
                        "available_filter_functions)"))
    out.append("roles:")
    for role, res in report["resolution"].items():
        if res["symbol"]:
            extra = f"  [{res['warning']}]" if res["warning"] and kernel["traceable_known"] else ""
            if res["warning"] and "clone" in res["warning"]:
                extra = f"  [{res['warning']}]"
            out.append(f"  {role:<13} {res['symbol']}{extra}")
        else:
            out.append(f"  {role:<13} -  (tried {', '.join(res['tried'])}: {res['reason']})")
    feats = kernel["features"]
    out.append("kernel features: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in feats.items()))
    host = report.get("host")
    if host:
        out.append(f"host: root {'yes' if host['root'] else 'no'}, tracefs {host['tracefs'] or 'not mounted'}"
                   f"{' (writable)' if host['tracefs_writable'] else ''}, BTF {'yes' if host['btf'] else 'no'}, "
                   f"bcc {'yes' if host['bcc'] else 'no'}, kernel headers {host.get('kernel_headers', '?')}")
    backends = report.get("backends")
    if backends:
        for name, why in backends["status"].items():
            out.append(f"backend {name}: {'usable' if why is None else why}")
        out.append(f"backend auto: {backends['auto'] or 'none usable'}")
    swap = report.get("swap")
    if swap is not None:
        if swap["devices"]:
            devs = ", ".join(f"{d['name']} ({d['used_kb']}/{d['size_kb']} KiB)" for d in swap["devices"])
            out.append(f"swap: {devs}")
        else:
            out.append("swap: none active")
    ksm = report.get("ksm")
    if ksm is not None:
        out.append("ksm: " + ", ".join(f"{k}={v}" for k, v in ksm.items()))
    for problem in report["problems"]:
        out.append(f"problem: {problem}")
    return "\n".join(out)

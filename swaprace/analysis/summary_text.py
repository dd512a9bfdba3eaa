"""The readable summary `swaprace analyze` prints: what a kernel engineer checks first, in that order --
where the capture came from, whether events were lost, what was probed, then windows, reuses and races."""

from __future__ import annotations

from typing import List

from swaprace.analysis.model import Analysis

_ROLE_ORDER = ("fault", "lookup", "ksm_copy", "free_cache", "cache_add", "cache_delete", "slot_alloc",
               "slot_free", "swap_put", "prepare")


def _sec(ns: int) -> str:
    return f"{ns / 1e9:.6f}"


def _us(ns: int) -> str:
    return f"{ns / 1e3:+.1f}us"


def render_summary(result: Analysis, source: str = "", races_limit: int = 50) -> str:
    s = result.summary
    meta = result.capture.meta
    out: List[str] = []
    skipped = s["skipped_lines"]
    comments = meta.extra.get("comment_lines")
    skipped_txt = f", {skipped:,} lines skipped" + (f" ({comments} comments)" if comments else "")
    out.append(f"capture   {source} ({s['source_format']}, {s['events']:,} events{skipped_txt})")
    out.append(f"kernel    {meta.kernel_release or 'unknown'}    backend {meta.backend or 'unknown'}")
    if s["lost_events"] is None:
        out.append("lost      unknown (this capture cannot say whether events were lost)")
    else:
        detail = ", ".join(f"{k} {v:,}" for k, v in sorted(s["lost"].items()) if v)
        flag = "  <-- counts below are lower bounds" if s["lost_events"] else ""
        out.append(f"lost      {s['lost_events']:,} events" + (f" ({detail})" if detail else "") + flag)
    if meta.symbols:
        syms = "  ".join(f"{r}={meta.symbols[r]}" for r in _ROLE_ORDER if r in meta.symbols)
        out.append(f"symbols   {syms}")
    if s["time_range_ns"]:
        a, b = s["time_range_ns"]
        span = (b - a) / 1e9
        out.append(f"time      {_sec(a)} .. {_sec(b)} s ({span:.3f} s)" if span >= 1 else
                   f"time      {_sec(a)} .. {_sec(b)} s ({span * 1e6:,.0f} us)")
    if s["filters"]:
        out.append("filters   " + "  ".join(f"{k}={hex(v) if k == 'entry' else v}" for k, v in s["filters"].items()))
    out.append("")
    if s["by_function"]:
        width = max(len(f) for f in s["by_function"])
        out.append(f"{'function':<{width}}  {'calls':>10}  {'returns':>10}")
        for func, n in sorted(s["by_function"].items(), key=lambda kv: -kv[1]["call"] - kv[1]["return"]):
            out.append(f"{func:<{width}}  {n['call']:>10,}  {n['return']:>10,}")
        out.append("")
    o = s["outcomes"]
    out.append(f"fault windows  {s['windows']:,} complete, {s['windows_with_entry']:,} with an entry "
               f"(major {o['major']:,}, minor {o['minor']:,}, retry {o['retry']:,}, error {o['error']:,})")
    out.append(f"lookups        {s['lookup_hits']:,} swap-cache hits; {s['entries']:,} distinct entries; "
               f"{s['ksm_copies']:,} KSM copies")
    out.append(f"generations    {len(result.generations):,} ({s['reuses']:,} reuses: an entry bound again "
               f"after a release)")
    rc = s["race_classes"]
    out.append(f"races          {len(s['races']):,}: {rc['stale-install']:,} stale-install, "
               f"{rc['recovered']:,} recovered")
    if rc["stale-install"]:
        out.append("               stale-install: the faulting thread installed an entry that was freed and "
                   "reused during its fault (the ABA of mm: fix swapin race condition)")
    races = s["races"] if races_limit <= 0 else s["races"][:races_limit]
    if races:
        out.append("")
        out.append(f"{'class':<14} {'entry':>18} {'tid':>8}  {'window start (s)':>18} {'duration':>11} "
                   f"{'release':>11} {'rebind':>11} {'install':>11}")
        for r in races:
            start = r["window_start_ns"]
            install = _us(r["install_ns"] - start) if r.get("install_ns") is not None else "-"
            out.append(f"{r['class']:<14} {hex(r['entry']):>18} {r['tid']:>8}  {_sec(start):>18} "
                       f"{_us(r['window_end_ns'] - start):>11} {_us(r['release_ns'] - start):>11} "
                       f"{_us(r['rebind_ns'] - start):>11} {install:>11}")
        if len(races) < len(s["races"]):
            out.append(f"... {len(s['races']) - len(races):,} more (--races-limit 0 or --json for all)")
    return "\n".join(out)

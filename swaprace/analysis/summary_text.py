"""The readable summary `swaprace analyze` prints: what a kernel engineer checks first, in that order --
where the capture came from, whether events were lost, what was probed, then windows, reuses and races."""

from __future__ import annotations

from typing import Any, Dict, List

from swaprace.analysis.model import Analysis

from swaprace.events import ROLES as _ROLE_ORDER


def _sec(ns: int) -> str:
    return f"{ns / 1e9:.6f}"


def _us(ns: int) -> str:
    return f"{ns / 1e3:+.1f}us"


def recorded_filter_text(recorded: Dict[str, Any]) -> str:
    """The thread filter a capture was recorded with, in words (``CaptureMeta.extra["thread_filter"]``)."""
    keys = [k for k in ("pid", "comm", "cgroup") if recorded.get(k) is not None]
    what = " ".join(f"{k}={recorded[k]}" for k in keys)
    applied = recorded.get("applied") or {}
    where = ", ".join(f"{k} in {applied[k]}" for k in keys if k in applied)
    return (f"fault windows of {what} only ({where}): other threads' windows are absent on purpose; slot "
            "frees and reallocations by every task were traced")


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
        flag = "  <-- counts below are lower bounds" if s["lost_events"] or s["lost_uncounted"] else ""
        out.append(f"lost      {s['lost_events']:,} events" + (f" ({detail})" if detail else "") + flag)
        if s["lost_uncounted"]:
            out.append(f"          not counted on this kernel: {', '.join(s['lost_uncounted'])}")
    if meta.symbols:
        syms = "  ".join(f"{r}={meta.symbols[r]}" for r in _ROLE_ORDER if r in meta.symbols)
        out.append(f"symbols   {syms}")
    if s["time_range_ns"]:
        a, b = s["time_range_ns"]
        span = (b - a) / 1e9
        out.append(f"time      {_sec(a)} .. {_sec(b)} s ({span:.3f} s)" if span >= 1 else
                   f"time      {_sec(a)} .. {_sec(b)} s ({span * 1e6:,.0f} us)")
    recorded = s.get("thread_filter")
    if recorded:
        out.append(f"recorded  {recorded_filter_text(recorded)}")
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
    out.append(f"slots          {s['generations']:,} generations, {s['reuses']:,} reuses (a slot freed and "
               f"allocated again){'' if s['slot_allocator_probed'] else ' -- no allocator probed: first cache adds'}")
    res = s["residency"]
    out.append(f"swap cache     {res['cache_adds']:,} adds, {res['cache_deletes']:,} deletes: {res['evictions']:,} "
               f"evictions, {res['rereads']:,} re-reads (the slot and its data stay: never a reuse)")
    if s["history_gaps"]:
        out.append(f"gaps           {s['history_gaps']:,} entries whose history lost events (their races are "
                   "marked uncertain)")
    p = s["prepare"]
    if p["calls"]:
        out.append(f"prepare        {p['calls']:,} swapcache_prepare, {p['backoffs']:,} backed out (-EEXIST), "
                   f"{p['conflicts']:,} conflicts, {p['installs_after_failed_prepare']:,} installs after a failure")
        if p["conflicts"] or p["installs_after_failed_prepare"]:
            out.append("               the 13ddaf26be32 guard did not hold: two threads had the entry's "
                       "SWAP_HAS_CACHE at once")
    if s["unknown_functions"]:
        out.append("unknown        " + ", ".join(f"{k} {v:,}" for k, v in s["unknown_functions"].items())
                   + " (events of functions swaprace has no role for)")
    rc = s["race_classes"]
    uncertain = f" ({s['uncertain_races']:,} uncertain: near lost events or a history gap)" \
        if s["uncertain_races"] else ""
    out.append(f"races          {len(s['races']):,}: {rc['stale-install']:,} stale-install, {rc['benign']:,} "
               f"benign, {rc['recovered']:,} recovered{uncertain}")
    if rc["stale-install"]:
        out.append("               stale-install: the faulting thread installed data of an entry whose slot was "
                   "freed and allocated again during its fault (the swap-in ABA)")
    races = s["races"] if races_limit <= 0 else s["races"][:races_limit]
    if races:
        out.append("")
        out.append(f"{'class':<14} {'entry':>18} {'tid':>8}  {'window start (s)':>18} {'duration':>11} "
                   f"{'obtain':>11} {'free':>11} {'realloc':>11} {'install':>11}  by")
        for r in races:
            start = r["window_start_ns"]
            install = _us(r["install_ns"] - start) if r.get("install_ns") is not None else "-"
            mark = "?" if r["uncertain"] else ""
            out.append(f"{r['class'] + mark:<14} {hex(r['entry']):>18} {r['tid']:>8}  {_sec(start):>18} "
                       f"{_us(r['window_end_ns'] - start):>11} {_us(r['obtain_ns'] - start):>11} "
                       f"{_us(r['release_ns'] - start):>11} {_us(r['realloc_ns'] - start):>11} {install:>11}  "
                       f"free tid {r['release_tid']}, realloc tid {r['realloc_tid']}")
        if any(r["uncertain"] for r in races):
            out.append("? uncertain: events were lost in or near the window, or the entry's history has a gap")
        if len(races) < len(s["races"]):
            out.append(f"... {len(s['races']) - len(races):,} more (--races-limit 0 or --json for all)")
    return "\n".join(out)

"""Reports from a planted-race capture: files, PNG sizes, the HTML's references, and what the timelines show.

The planted capture is a real native capture (Parquet written by ``write_capture``) of events laid out the way
the 6.1 kernel's probes report them: background faults on 40 entries whose slots are released and reused
*between* windows (reuse, no race), one stale-install race (entry released by kswapd and bound again by another
thread's lookup while tid 101 is inside do_swap_page, which then drops the entry's count: the ABA install),
and one recovered race (entry deleted from the swap cache and rebound inside tid 301's window; tid 301 does not
install it). The analysis is the real :func:`swaprace.analysis.model.analyze`.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from swaprace.analysis.model import analyze
from swaprace.analysis.report import build_report, parse_entry, plot_entry, plot_windows, style
from swaprace.capture import read_capture, write_capture
from swaprace.errors import SwapraceError
from swaprace.events import Capture, CaptureMeta, normalize, swp_entry

STALE_ENTRY = swp_entry(0, 0x12A)
RECOVERED_ENTRY = swp_entry(0, 0x2B0)
KSWAPD = 44
SYMBOLS = {"fault": "do_swap_page", "lookup": "swap_cache_get_folio", "free_cache": "folio_free_swap",
           "cache_delete": "delete_from_swap_cache", "swap_put": "swap_free"}
COLUMNS = ["ts_ns", "cpu", "tid", "comm", "func", "role", "phase", "entry", "folio", "retval"]


def _folio(n: int) -> int:
    return 0xFFFFEA0004000000 + 0x40 * n


def planted_events() -> pd.DataFrame:
    rows = []

    def ev(ts, cpu, tid, comm, role, phase, entry=None, folio=None, retval=None):
        rows.append((ts, cpu, tid, comm, SYMBOLS[role], role, phase, entry, folio, retval))

    # Background: 400 windows on 40 entries, 4 threads; each entry is released by kswapd 4 us after its
    # window ends and looked up again (a reuse) 40 windows later -- never inside a window on it.
    for k in range(400):
        t, tid, entry = 1_000_000 + k * 10_000, 200 + k % 4, swp_entry(0, 0x1000 + k % 40)
        folio, retval = _folio(k), (0x400 if k % 25 == 0 else (0x4 if k % 3 else 0))
        cpu = tid % 2
        ev(t, cpu, tid, "stress", "fault", "call")
        ev(t + 300, cpu, tid, "stress", "lookup", "call", entry=entry)
        ev(t + 500 + 40 * (k % 7), cpu, tid, "stress", "lookup", "return", retval=folio)
        if retval != 0x400:
            ev(t + 2_000, cpu, tid, "stress", "swap_put", "call", entry=entry)
        ev(t + 2_500 + 30 * (k % 11), cpu, tid, "stress", "fault", "return", retval=retval)
        ev(t + 6_000, 1, KSWAPD, "kswapd0", "free_cache", "call", folio=folio)
        ev(t + 6_100, 1, KSWAPD, "kswapd0", "free_cache", "return", retval=1)

    # Planted stale-install race (tid 101), after the background.
    t = 6_000_000
    f1, f2 = _folio(1001), _folio(1002)
    ev(t, 0, 101, "stress", "fault", "call")
    ev(t + 100, 0, 101, "stress", "lookup", "call", entry=STALE_ENTRY)
    ev(t + 200, 0, 101, "stress", "lookup", "return", retval=f1)
    ev(t + 300, 1, KSWAPD, "kswapd0", "free_cache", "call", folio=f1)
    ev(t + 350, 1, KSWAPD, "kswapd0", "free_cache", "return", retval=1)
    ev(t + 400, 1, 102, "stress", "fault", "call")
    ev(t + 450, 1, 102, "stress", "lookup", "call", entry=STALE_ENTRY)
    ev(t + 500, 1, 102, "stress", "lookup", "return", retval=f2)
    ev(t + 700, 0, 101, "stress", "swap_put", "call", entry=STALE_ENTRY)
    ev(t + 800, 0, 101, "stress", "fault", "return", retval=0x4)
    ev(t + 900, 1, 102, "stress", "swap_put", "call", entry=STALE_ENTRY)
    ev(t + 1_000, 1, 102, "stress", "fault", "return", retval=0x4)

    # Planted recovered race (tid 301): released by a swap-cache delete, rebound by tid 302, no install by 301.
    t = 7_000_000
    f3, f4 = _folio(2001), _folio(2002)
    ev(t, 0, 301, "worker", "fault", "call")
    ev(t + 150, 0, 301, "worker", "lookup", "call", entry=RECOVERED_ENTRY)
    ev(t + 250, 0, 301, "worker", "lookup", "return", retval=f3)
    ev(t + 2_000, 1, KSWAPD, "kswapd0", "cache_delete", "call", folio=f3)
    ev(t + 3_000, 1, 302, "worker", "fault", "call")
    ev(t + 3_100, 1, 302, "worker", "lookup", "call", entry=RECOVERED_ENTRY)
    ev(t + 3_300, 1, 302, "worker", "lookup", "return", retval=f4)
    ev(t + 3_900, 1, 302, "worker", "swap_put", "call", entry=RECOVERED_ENTRY)
    ev(t + 4_000, 1, 302, "worker", "fault", "return", retval=0x4)
    ev(t + 5_000, 0, 301, "worker", "fault", "return", retval=0)
    # dtype=object: a column mixing None and 64-bit pointers would otherwise pass through float64 and lose bits
    return normalize(pd.DataFrame(rows, columns=COLUMNS, dtype=object))


def planted_capture() -> Capture:
    meta = CaptureMeta(kernel_release="6.1.0-56-amd64", backend="planted (tests/test_report.py)",
                       symbols=dict(SYMBOLS), lost={"ftrace_overrun": 3}, lost_known=True,
                       extra={"lost_marks": [{"ts_ns": 3_000_000, "count": 3, "cpu": 1}]})
    return Capture(events=planted_events(), meta=meta)


@pytest.fixture(scope="module")
def planted_path(tmp_path_factory) -> Path:
    return write_capture(planted_capture(), tmp_path_factory.mktemp("planted") / "planted.parquet")


@pytest.fixture(scope="module")
def planted_analysis(planted_path):
    return analyze(read_capture(planted_path))


@pytest.fixture(scope="module")
def planted_report(planted_analysis, tmp_path_factory):
    return build_report(planted_analysis, tmp_path_factory.mktemp("report"), source_name="planted.parquet",
                        busiest=1)


def test_the_analysis_finds_the_planted_races(planted_analysis):
    """Guards the fixture: if this fails, the capture does not plant what the report tests rely on."""
    races = planted_analysis.races
    assert sorted(zip(races["entry"].astype(int), races["tid"], races["class"].astype(str))) == [
        (STALE_ENTRY, 101, "stale-install"), (RECOVERED_ENTRY, 301, "recovered")]
    assert planted_analysis.summary["reuses"] > 300  # the background reuses entries outside windows


def _decoded_size(path: Path):
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        return img.size


def test_report_files_exist_and_pngs_decode_at_their_size(planted_report):
    assert planted_report.failures == []
    directory = planted_report.directory
    assert planted_report.html_path.is_file() and planted_report.json_path.is_file()
    kinds = [f.kind for f in planted_report.figures]
    assert kinds.count("overview") == 3 and kinds.count("race") == 2 and kinds.count("busiest") == 1
    expected = {"overview": None, "race": style.TIMELINE_PX, "busiest": style.TIMELINE_PX}
    for fig in planted_report.figures:
        size = _decoded_size(directory / fig.file)
        assert size == (fig.width, fig.height)
        if expected[fig.kind]:
            assert size == expected[fig.kind]
    sizes = {f.file: _decoded_size(directory / f.file) for f in planted_report.figures_of("overview")}
    assert sizes == {"events-per-second.png": style.RATE_PX, "window-durations.png": style.DISTRIBUTION_PX,
                     "reuse-distance.png": style.DISTRIBUTION_PX}


def test_html_references_every_png_and_is_self_contained(planted_report):
    page = planted_report.html_path.read_text()
    for fig in planted_report.figures:
        assert f'href="{fig.file}"' in page and f'data-file="{fig.file}"' in page
        # the inlined copy is byte for byte the PNG file: the page opens offline without its directory
        inline = re.search(r'<img src="data:image/png;base64,([^"]+)" data-file="' + re.escape(fig.file), page)
        assert inline and base64.b64decode(inline.group(1)) == (planted_report.directory / fig.file).read_bytes()
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing fetched from the network
    assert "<script" not in page
    # metadata, losses, per-role counts and the race table are on the page
    for text in ("6.1.0-56-amd64", "ftrace_overrun", "folio_free_swap", "delete_from_swap_cache",
                 "stale-install", "recovered", "kswapd0/44"):
        assert text in page
    assert 'class="verdict bad"' in page


def test_race_timelines_show_the_planted_races_with_their_class(planted_report):
    races = {f.data["focus"]["class"]: f.data for f in planted_report.figures_of("race")}
    assert set(races) == {"stale-install", "recovered"}

    stale = races["stale-install"]
    assert stale["entry"] == STALE_ENTRY and stale["focus"]["tid"] == 101
    assert stale["focus"]["window_start_ns"] == 6_000_000
    assert {"tid": 101, "class": "stale-install", "window_start_ns": 6_000_000, "release_ns": 6_000_350,
            "rebind_ns": 6_000_500} in stale["races"]
    # who held windows and who acted: the faulting thread, the releasing kswapd, the rebinding thread
    assert stale["rows"][0] == "stress/101" and set(stale["rows"]) == {"stress/101", "kswapd0/44", "stress/102"}
    # tid 102's own install at +900 ns falls outside the view (window + 12% margin): only tid 101's is shown
    assert stale["marks"] == {"lookup": 2, "bind": 2, "release": 1, "install": 1}
    assert stale["generations"] == 2 and stale["windows"] == 2
    assert stale["folios"] == [_folio(1001), _folio(1002)]

    recovered = races["recovered"]
    assert recovered["entry"] == RECOVERED_ENTRY and recovered["focus"]["tid"] == 301
    assert recovered["races"][0]["release_ns"] == 7_002_000 and recovered["races"][0]["rebind_ns"] == 7_003_300
    assert set(recovered["rows"]) == {"worker/301", "kswapd0/44", "worker/302"}


def test_race_table_names_the_threads_that_released_rebound_and_installed(planted_report):
    rows = {r["class"]: r for r in planted_report.race_rows}
    assert rows["stale-install"]["released_by"] == KSWAPD and rows["stale-install"]["rebound_by"] == 102
    assert rows["stale-install"]["install_ns"] == 6_000_700
    assert rows["recovered"]["released_by"] == KSWAPD and rows["recovered"]["rebound_by"] == 302
    assert rows["recovered"]["install_ns"] is None
    index = json.loads(planted_report.json_path.read_text())
    assert sorted(r["class"] for r in index["races"]) == ["recovered", "stale-install"]
    assert all(r["anchor"] for r in index["races"])


def test_overview_data(planted_report):
    rate, windows, reuse = (f.data for f in planted_report.figures_of("overview"))
    assert rate["counts"]["fault"] == 2 * 404 and rate["lost_marks"] == 1
    assert sum(windows["sizes"][o] for o in ("minor", "major", "retry") if o in windows["sizes"]) == 404
    assert windows["sizes"]["raced"] == 2
    # 360 background reuses plus the two planted rebinds; the last release of each entry is never rebound
    assert sum(reuse["sizes"].values()) == 362
    assert reuse["never rebound"] == 40


def test_plot_entry_and_windows(planted_analysis, tmp_path):
    path, tl = plot_entry(planted_analysis, STALE_ENTRY, tmp_path / "e.png", race=0)
    assert _decoded_size(path) == style.TIMELINE_PX and tl.focus["class"] == "stale-install"
    path, tl = plot_entry(planted_analysis, swp_entry(0, 0x1005), tmp_path / "life.png")
    assert _decoded_size(path) == style.TIMELINE_PX
    assert len(tl.generations) == 10 and len(tl.races) == 0 and tl.focus is None
    path, hist = plot_windows(planted_analysis, tmp_path / "w.png")
    assert _decoded_size(path) == style.DISTRIBUTION_PX and hist.sizes["raced"] == 2
    with pytest.raises(SwapraceError, match="does not appear"):
        plot_entry(planted_analysis, swp_entry(3, 0x77), tmp_path / "none.png")
    with pytest.raises(SwapraceError, match="race 5 does not exist|--race 5"):
        plot_entry(planted_analysis, STALE_ENTRY, tmp_path / "x.png", race=5)
    with pytest.raises(SwapraceError, match="cannot write .*: no directory"):
        plot_windows(planted_analysis, tmp_path / "missing-dir" / "w.png")
    with pytest.raises(SwapraceError, match="it is a directory"):
        plot_windows(planted_analysis, tmp_path)


@pytest.mark.parametrize("text,value", [("0x12a", 0x12A), ("298", 298), ("0:0x12a", STALE_ENTRY),
                                        ("1:16", swp_entry(1, 16))])
def test_parse_entry(text, value):
    assert parse_entry(text) == value


@pytest.mark.parametrize("text", ["", "zz", "0", "-5", "40:1", "0x1:"])
def test_parse_entry_rejects(text):
    with pytest.raises(SwapraceError, match="not a swap entry"):
        parse_entry(text)


def test_empty_capture_still_renders(tmp_path):
    """A capture with events but no swap-in activity: every figure says so instead of failing."""
    events = normalize(pd.DataFrame([(1, 0, 7, "x", "folio_free_swap", "free_cache", "call", None, 0x40, None)],
                                    columns=COLUMNS, dtype=object))
    meta = CaptureMeta(detector={"windows": 0, "races": [], "counters": {"reuses": 0}})
    report = build_report(analyze(Capture(events, meta)), tmp_path / "r")
    assert [f.kind for f in report.figures] == ["overview"] * 3
    page = report.html_path.read_text()
    assert "unknown" in page and "No entry was reused" in page
    assert "in-kernel detector (bcc)" in page and "counters.reuses" in page and "races (listed)" in page


# --- scale: aggregate, never one artist per event ------------------------------------------------------------


def test_coalesce_intervals_merges_at_pixel_resolution():
    starts = np.array([0, 5, 30, 31, 100], dtype="float64")
    ends = np.array([4, 10, 30.5, 40, 101], dtype="float64")
    s, e = style.coalesce_intervals(starts, ends, min_gap=2)
    assert s.tolist() == [0, 30, 100] and e.tolist() == [10, 40, 101]
    s, e = style.coalesce_intervals(starts[::-1].copy(), ends[::-1].copy(), min_gap=0)  # unsorted, no gap
    assert s.tolist() == [0, 5, 30, 31, 100] and e.tolist() == [4, 10, 30.5, 40, 101]
    s, e = style.coalesce_intervals(np.array([0.0, 1.0, 2.0]), np.array([5.0, 2.0, 3.0]), min_gap=0)  # nested
    assert s.tolist() == [0] and e.tolist() == [5]


def test_busy_entry_timeline_draws_a_bounded_number_of_bars(tmp_path):
    """50,000 fault windows and 25,000 generations of one entry draw as at most a few bars per pixel column."""
    from types import SimpleNamespace

    from swaprace.analysis.report import timeline

    n = 50_000
    start = np.arange(n, dtype="int64") * 20_000
    tids = 1000 + np.arange(n) % 4
    entry = pd.array(np.full(n, STALE_ENTRY, dtype="uint64"), dtype="UInt64")
    windows = pd.DataFrame({"tid": tids, "pid": tids, "comm": "stress", "cpu": tids % 2, "start_ns": start,
                            "end_ns": start + 3_000, "duration_ns": 3_000, "entry": entry, "retval": 4,
                            "outcome": pd.Categorical(["major"] * n), "race_class": pd.Categorical([None] * n)})
    g = n // 2
    generations = pd.DataFrame({"entry": entry[:g], "generation": np.arange(g), "bind_ns": start[::2] + 500,
                                "folio": pd.array(np.arange(g, dtype="uint64") + 0xFFFFEA0000000000, dtype="UInt64"),
                                "bind_kind": "lookup", "release_ns": pd.array(start[::2] + 30_000, dtype="Int64"),
                                "release_kind": "free_cache"})
    events = normalize(pd.DataFrame({"ts_ns": start, "cpu": 0, "tid": tids, "comm": "stress",
                                     "func": "swap_cache_get_folio", "role": "lookup", "phase": "call",
                                     "entry": entry, "folio": None, "retval": None}))
    races = pd.DataFrame({c: [] for c in ("entry", "tid", "window_start_ns", "window_end_ns", "release_ns",
                                          "rebind_ns", "class")})
    analysis = SimpleNamespace(capture=Capture(events, CaptureMeta()), windows=windows, generations=generations,
                               races=races, summary={})
    tl = timeline.entry_timeline(analysis, STALE_ENTRY)
    assert len(tl.windows) == n and len(tl.generations) == g
    fig = timeline.draw_entry_timeline(tl)
    ax = fig.axes[0]
    bars = sum(len(c.get_paths()) for c in ax.collections if type(c).__name__ == "PolyCollection")
    points = sum(len(c.get_offsets()) for c in ax.collections if type(c).__name__ == "PathCollection")
    width_px = style.TIMELINE_PX[0]
    assert 0 < bars <= 3 * width_px and 0 < points <= 4 * width_px
    assert style.save_png(fig, tmp_path / "busy.png").stat().st_size > 0


def test_overview_data_is_bounded_for_millions_of_events():
    from swaprace.analysis.report import distributions, rate

    n = 2_000_000
    rng = np.random.default_rng(3)
    windows = pd.DataFrame({
        "duration_ns": rng.lognormal(9, 1.5, n).astype("int64"),
        "outcome": pd.Categorical.from_codes(rng.integers(0, 2, n), categories=["minor", "major"]),
        "race_class": pd.Categorical.from_codes(np.full(n, -1), categories=["recovered", "stale-install"])})
    hist = distributions.window_durations(windows)
    assert len(hist.edges_ns) == distributions.BINS + 1 and hist.total == n
    assert sum(int(c.sum()) for c in hist.counts.values()) == n
    events = pd.DataFrame({"ts_ns": np.sort(rng.integers(0, 60 * 10**9, n)),
                           "role": pd.Categorical.from_codes(rng.integers(0, 3, n),
                                                             categories=["fault", "lookup", "free_cache"])})
    series = rate.event_rates(events, CaptureMeta(lost={"ringbuf": 9}, lost_known=True))
    assert series.buckets <= rate.MAX_BUCKETS and sum(series.counts.values()) == n
    seconds = np.full(series.buckets, series.bucket_ns / 1e9)
    seconds[-1] = (series.span_ns - (series.buckets - 1) * series.bucket_ns) / 1e9
    assert round(sum(float((r * seconds).sum()) for r in series.rates.values())) == n  # rates integrate to counts
    assert series.loss_text == "lost events: 9 (ringbuf 9)"
    assert rate.loss_summary(CaptureMeta()).startswith("lost events: unknown")
    many = CaptureMeta(lost={f"kretprobe_missed:f{i}": 0 for i in range(8)}, lost_known=True)
    assert rate.loss_summary(many) == "lost events: 0 (8 sources checked)"
    many.lost["ringbuf"] = 2
    assert rate.loss_summary(many) == "lost events: 2 (ringbuf 2)"


def test_race_view_with_generations_lasting_seconds(tmp_path):
    """A microsecond race view whose generations reach seconds away (bars are cut at the view's edges;
    drawing them whole put a label at ~1e9 px and FreeType failed with "raster overflow")."""
    events = planted_events()
    late = pd.DataFrame([(9_000_000_000, 1, KSWAPD, "kswapd0", "folio_free_swap", "free_cache", "call", None,
                          _folio(1002), None),
                         (9_000_000_100, 1, KSWAPD, "kswapd0", "folio_free_swap", "free_cache", "return", None,
                          None, 1)], columns=COLUMNS, dtype=object)
    early = pd.DataFrame([(10, 0, 7, "x", "swap_cache_get_folio", "lookup", "call", STALE_ENTRY, None, None),
                          (20, 0, 7, "x", "swap_cache_get_folio", "lookup", "return", None, None, _folio(999))],
                         columns=COLUMNS, dtype=object)
    events = normalize(pd.concat([early, events.drop(columns=["pid", "swap_type", "swap_offset"]), late]))
    analysis = analyze(Capture(events, CaptureMeta()))
    path, tl = plot_entry(analysis, STALE_ENTRY, tmp_path / "race.png", race=0)
    assert _decoded_size(path) == style.TIMELINE_PX
    assert tl.generations["release_ns"].max() == 9_000_000_100 and tl.end_ns < 6_001_000

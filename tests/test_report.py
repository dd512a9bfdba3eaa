"""Reports from a planted-race capture: files, PNG sizes, the HTML's references, and what the timelines show.

The planted capture is a real native capture (Parquet written by ``write_capture``) of events laid out the way
the 6.1 kernel's probes report them (the model's spec is the docstring of :mod:`swaprace.analysis.model`):

* background: 400 fault windows on 40 entries. Before each window a kworker allocates the entry's slot and adds
  a folio to the swap cache; after it kswapd frees the folio and the slot (a reuse of each slot 40 windows
  later, never inside a window on it). Every 8th window (k % 8 == 4) the folio is evicted first (cache delete,
  slot kept) and the faulting thread reads it back (a re-read, its obtain is its own cache add).
* a stale-install race: tid 101 obtains its page, kswapd frees the slot, tid 102 allocates it again with
  another folio, tid 101 installs.
* a recovered race: the same inside tid 301's window, which backs out.
* a benign race: tid 402 allocates the slot again for the very folio tid 401 obtained; tid 401 installs it.
* an uncertain stale-install race (tid 501): its window overlaps a lost-event interval.

The analysis is the real :func:`swaprace.analysis.model.analyze`.
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
from swaprace.analysis.report import (
    build_report,
    plot_entry,
    plot_reuse,
    plot_windows,
    style,
)
from swaprace.analysis.selection import parse_entry
from swaprace.capture import read_capture
from swaprace.errors import SwapraceError
from swaprace.events import Capture, CaptureMeta, normalize, swp_entry

from report_support import (
    BENIGN_ENTRY,
    COLUMNS,
    KSWAPD,
    KWORKER,
    RECOVERED_ENTRY,
    STALE_ENTRY,
    UNCERTAIN_ENTRY,
    planted_events,
    planted_folio,
)

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
    assert sorted(zip(races["entry"].astype(int), races["tid"], races["class"].astype(str), races["uncertain"])) == [
        (STALE_ENTRY, 101, "stale-install", False), (RECOVERED_ENTRY, 301, "recovered", False),
        (BENIGN_ENTRY, 401, "benign", False), (UNCERTAIN_ENTRY, 501, "stale-install", True)]
    s = planted_analysis.summary
    assert s["reuses"] == 364  # 360 background reallocations between windows, 4 inside the planted windows
    assert s["residency"]["evictions"] == 50 and s["residency"]["rereads"] == 50  # never reuses


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
    assert kinds.count("overview") == 3 and kinds.count("race") == 4 and kinds.count("busiest") == 1
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
    # metadata, losses, per-role counts and the summary's new counts are on the page
    for text in ("6.1.0-56-amd64", "ftrace_overrun", "folio_free_swap", "delete_from_swap_cache", "free_swap_slot",
                 "folio_alloc_swap", "slot generations", "evictions (cache delete, slot kept)",
                 "re-reads (cache add in the same generation)", "races: benign", "uncertain races"):
        assert text in page
    assert 'class="verdict bad"' in page and "2 stale-install race(s)" in page and "1 of the races are uncertain" \
        in page


def _race_table(page: str):
    """The race table of the page as (header, rows of cell texts)."""
    section = page[page.index('<h2 id="races">'):page.index('<h2 id="activity">')]
    header = re.findall(r"<th>(.*?)</th>", section)
    rows = [[re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", tr, re.DOTALL)]
            for tr in re.findall(r"<tr>(.*?)</tr>", section, re.DOTALL)[1:]]
    return header, rows


def test_html_race_table_has_the_race_columns(planted_report):
    header, rows = _race_table(planted_report.html_path.read_text())
    for column in ("swap entry", "thread", "class", "uncertain", "obtain kind", "free tid", "realloc tid",
                   "installed folio", "reason"):
        assert column in header
    col = {name: header.index(name) for name in header}
    by_thread = {r[col["thread"]]: r for r in rows}
    assert set(by_thread) == {"stress/101", "worker/301", "worker/401", "stress/501"}
    stale = by_thread["stress/101"]
    assert stale[col["class"]] == "stale-install" and stale[col["uncertain"]] == "no"
    assert stale[col["obtain kind"]] == "lookup"
    assert stale[col["free tid"]] == "kswapd0/44" and stale[col["realloc tid"]] == "stress/102"
    assert stale[col["installed folio"]] == f"{planted_folio(1001):#x}"  # the old generation's folio: stale
    assert "not bound to the entry" in stale[col["reason"]]
    assert by_thread["worker/401"][col["class"]] == "benign"
    assert by_thread["worker/401"][col["installed folio"]] == f"{planted_folio(3001):#x}"
    assert by_thread["stress/501"][col["uncertain"]] == "yes ?" and "lost" in by_thread["stress/501"][col["reason"]]
    recovered = by_thread["worker/301"]
    assert recovered[col["installed folio"]] == "-" and recovered[col["installed (+)"]] == "no"


def test_race_timelines_show_both_layers_and_the_race(planted_report):
    races = {(f.data["focus"]["tid"]): f.data for f in planted_report.figures_of("race")}
    assert set(races) == {101, 301, 401, 501}

    stale = races[101]
    assert stale["entry"] == STALE_ENTRY and stale["focus"] == {
        "tid": 101, "class": "stale-install", "uncertain": False, "window_start_ns": 6_000_000}
    assert stale["layers"] == ["slot generations", "swap-cache residency"]
    assert stale["races"] == [{"tid": 101, "class": "stale-install", "uncertain": False,
                               "window_start_ns": 6_000_000, "release_ns": 6_000_330, "release_tid": KSWAPD,
                               "realloc_ns": 6_000_450, "realloc_tid": 102, "install_ns": 6_000_700}]
    # the slot layer: generation 0 allocated by the kworker before the view, freed by kswapd; generation 1
    # allocated by tid 102 and still live
    assert stale["generations"] == [
        {"generation": 0, "alloc_ns": 5_995_050, "alloc_tid": KWORKER, "free_ns": 6_000_330, "free_tid": KSWAPD},
        {"generation": 1, "alloc_ns": 6_000_450, "alloc_tid": 102, "free_ns": None, "free_tid": None}]
    # the residency layer beneath it: the old folio until kswapd's delete, the new one from tid 102's add
    assert [(r["folio"], r["unbind_ns"]) for r in stale["residency"]] == [(planted_folio(1001), 6_000_320),
                                                                         (planted_folio(1002), None)]
    # rows: the faulting thread first, then who freed and who allocated the slot again
    assert stale["rows"] == ["stress/101", "kswapd0/44", "stress/102"]
    assert stale["marks"] == {"obtain": 1, "install": 1, "free": 1, "alloc": 1}

    assert races[401]["focus"]["class"] == "benign"
    benign_folios = [r["folio"] for r in races[401]["residency"]]
    # the same folio bound again in the new generation
    assert benign_folios == [planted_folio(3001), planted_folio(3001)]
    assert races[501]["focus"] == {"tid": 501, "class": "stale-install", "uncertain": True,
                                   "window_start_ns": 9_000_000}
    assert races[501]["lost_intervals"] == 1 and races[401]["lost_intervals"] == 0
    recovered = races[301]
    assert recovered["races"][0]["release_ns"] == 7_002_030 and recovered["races"][0]["realloc_ns"] == 7_003_050
    assert recovered["races"][0]["install_ns"] is None and "install" not in recovered["marks"]
    assert set(recovered["rows"]) == {"worker/301", "kswapd0/44", "worker/302"}


def test_busiest_entry_shows_evictions_and_rereads_on_the_residency_layer(planted_analysis, tmp_path):
    path, tl = plot_entry(planted_analysis, swp_entry(0, 0x1004), tmp_path / "life.png")
    assert _decoded_size(path) == style.TIMELINE_PX
    # k % 40 == 4 windows are k % 8 == 4: every generation of this entry had an eviction and a re-read
    assert len(tl.generations) == 10 and len(tl.residency) == 20 and len(tl.races) == 0 and tl.focus is None
    assert int(tl.residency["eviction"].sum()) == 10 and int(tl.residency["reread"].sum()) == 10
    kinds = tl.marks["kind"].value_counts().to_dict()
    assert kinds["eviction"] == 10 and kinds["reread"] == 10 and kinds["alloc"] == 10 and kinds["free"] == 10
    # evicted by kswapd1, re-read by the faulting thread: both have rows
    assert {"kswapd1/45", "stress/200", "kswapd0/44", "kworker/u4:2/77"} <= set(tl.rows["label"])
    path, tl = plot_entry(planted_analysis, swp_entry(0, 0x1005), tmp_path / "life5.png")
    assert len(tl.generations) == 10 and tl.residency["eviction"].sum() == 0


def test_race_table_rows_and_json(planted_report):
    rows = {r["tid"]: r for r in planted_report.race_rows}
    assert rows[101]["release_tid"] == KSWAPD and rows[101]["realloc_tid"] == 102
    assert rows[101]["install_ns"] == 6_000_700 and rows[101]["obtain_kind"] == "lookup"
    assert rows[301]["release_tid"] == KSWAPD and rows[301]["realloc_tid"] == 302 and rows[301]["install_ns"] is None
    assert rows[501]["uncertain"] and not rows[101]["uncertain"]
    index = json.loads(planted_report.json_path.read_text())
    assert sorted(r["class"] for r in index["races"]) == ["benign", "recovered", "stale-install", "stale-install"]
    assert all(r["anchor"] for r in index["races"])
    assert {r["tid"]: r["installed_folio"] for r in index["races"]}[401] == planted_folio(3001)


def test_overview_data(planted_report):
    rate, windows, reuse = (f.data for f in planted_report.figures_of("overview"))
    assert rate["counts"]["fault"] == 2 * 404 and rate["lost_marks"] == 2
    assert rate["counts"]["slot_alloc"] == 2 * 408 and rate["counts"]["slot_free"] == 404
    assert sum(windows["sizes"][o] for o in ("minor", "major", "retry") if o in windows["sizes"]) == 404
    assert windows["sizes"]["raced"] == 4
    # reuse distance is slot free -> reallocation (360 background + the 4 planted); evictions are a separate
    # series, to their re-read
    assert reuse["sizes"] == {"slot_free": 364, "eviction → re-read": 50}
    assert reuse["never reallocated"] == 40 and reuse["evictions never re-read"] == 0
    assert reuse["medians_ns"]["eviction → re-read"] == 2_300  # cache delete at t-1500, re-read add at t+800


def test_plot_entry_and_windows(planted_analysis, tmp_path):
    path, tl = plot_entry(planted_analysis, STALE_ENTRY, tmp_path / "e.png", race=0)
    assert _decoded_size(path) == style.TIMELINE_PX and tl.focus["class"] == "stale-install"
    path, hist = plot_windows(planted_analysis, tmp_path / "w.png")
    assert _decoded_size(path) == style.DISTRIBUTION_PX and hist.sizes["raced"] == 4
    path, hist = plot_reuse(planted_analysis, tmp_path / "r.png")
    assert _decoded_size(path) == style.DISTRIBUTION_PX and hist.notes["reallocations"] == 364
    with pytest.raises(SwapraceError, match="does not appear"):
        plot_entry(planted_analysis, swp_entry(3, 0x77), tmp_path / "none.png")
    with pytest.raises(SwapraceError, match="race 5 does not exist|--race 5"):
        plot_entry(planted_analysis, STALE_ENTRY, tmp_path / "x.png", race=5)
    with pytest.raises(SwapraceError, match="cannot write .*: no directory"):
        plot_windows(planted_analysis, tmp_path / "missing-dir" / "w.png")
    with pytest.raises(SwapraceError, match="it is a directory"):
        plot_windows(planted_analysis, tmp_path)


def test_timeline_draws_the_race_arrow_class_colour_and_uncertain_hatch(planted_analysis):
    """What is drawn, read back from the matplotlib artists: the free -> realloc arrow on the thread's row,
    the window outlined in its class colour, hatched only when the race is uncertain."""
    from matplotlib.colors import to_hex

    from swaprace.analysis.report import timeline

    for entry, cls, uncertain in ((STALE_ENTRY, "stale-install", False), (BENIGN_ENTRY, "benign", False),
                                  (UNCERTAIN_ENTRY, "stale-install", True)):
        race = planted_analysis.races[planted_analysis.races["entry"] == entry].iloc[0].to_dict()
        tl = timeline.entry_timeline(planted_analysis, entry, focus=race)
        ax = timeline.draw_entry_timeline(tl).axes[0]
        arrows = [a for a in ax.texts if getattr(a, "arrow_patch", None) is not None]
        assert len(arrows) == 1
        (x0, _), (x1, y) = arrows[0].xyann, arrows[0].xy
        assert (x0, x1) == (race["release_ns"] - race["window_start_ns"], race["realloc_ns"] - race["window_start_ns"])
        assert round(y) == timeline.FIRST_THREAD_ROW  # on the faulting thread's row (the first)
        outlined = [c for c in ax.collections if type(c).__name__ == "PolyCollection"
                    and len(c.get_edgecolor()) and to_hex(c.get_edgecolor()[0]) == style.RACE_COLORS[cls]]
        assert len(outlined) == 1 and bool(outlined[0].get_hatch()) == uncertain
        labels = [t.get_text() for t in ax.texts]
        assert ("STALE-INSTALL ?" in labels) == uncertain
        assert [t for t in ax.get_yticklabels()][:2][0].get_text() == "slot generations"


@pytest.mark.parametrize("text,value", [("0x12a", 0x12A), ("298", 298), ("0:0x12a", STALE_ENTRY),
                                        ("1:16", swp_entry(1, 16)), (" 0x1f : 0x10 ", swp_entry(31, 16)),
                                        (str(swp_entry(2, 5)), swp_entry(2, 5))])
def test_parse_entry(text, value):
    assert parse_entry(text) == value


@pytest.mark.parametrize("text", ["", "zz", "0", "-5", "40:1", "32:1", "0x1:", "1:-2", hex(1 << 63)])
def test_parse_entry_rejects(text):
    with pytest.raises(SwapraceError, match="not a swap entry"):
        parse_entry(text)


def test_parse_entry_is_shared_by_the_api():
    from swaprace import analysis

    assert analysis.parse_entry is parse_entry and analysis.load_analysis.__module__ == "swaprace.analysis.selection"


def test_empty_capture_still_renders(tmp_path):
    """A capture with events but no swap-in activity: every figure says so instead of failing."""
    events = normalize(pd.DataFrame([(1, 0, 7, "x", "folio_free_swap", "free_cache", "call", None, 0x40, None)],
                                    columns=COLUMNS, dtype=object))
    meta = CaptureMeta(detector={"windows": 0, "races": [], "counters": {"reuses": 0}})
    report = build_report(analyze(Capture(events, meta)), tmp_path / "r")
    assert [f.kind for f in report.figures] == ["overview"] * 3
    page = report.html_path.read_text()
    assert "unknown" in page and "No swap slot was allocated again inside a fault window" in page
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
    """50,000 fault windows, 25,000 slot generations and 25,000 residencies of one entry draw as at most a few
    bars per pixel column."""
    from types import SimpleNamespace

    from swaprace.analysis.report import timeline

    n = 50_000
    start = np.arange(n, dtype="int64") * 20_000
    tids = 1000 + np.arange(n) % 4
    entry = pd.array(np.full(n, STALE_ENTRY, dtype="uint64"), dtype="UInt64")
    windows = pd.DataFrame({"tid": tids, "pid": tids, "comm": "stress", "cpu": tids % 2, "start_ns": start,
                            "end_ns": start + 3_000, "duration_ns": 3_000, "entry": entry, "retval": 4,
                            "outcome": pd.Categorical(["major"] * n),
                            "obtain_ns": pd.array(start + 200, dtype="Int64"),
                            "obtain_kind": pd.Categorical(["lookup"] * n),
                            "install_ns": pd.array(start + 2_000, dtype="Int64"),
                            "race_class": pd.Categorical([None] * n)})
    g = n // 2
    gen_tid = pd.array(np.full(g, 44), dtype="Int64")
    generations = pd.DataFrame({"entry": entry[:g], "generation": np.arange(g),
                                "alloc_ns": pd.array(start[::2] + 100, dtype="Int64"),
                                "alloc_kind": pd.Categorical(["slot_alloc"] * g), "alloc_tid": gen_tid,
                                "free_ns": pd.array(start[::2] + 30_000, dtype="Int64"),
                                "free_kind": pd.Categorical(["slot_free"] * g), "free_tid": gen_tid})
    residency = pd.DataFrame({"entry": entry[:g],
                              "folio": pd.array(np.arange(g, dtype="uint64") + 0xFFFFEA0000000000, dtype="UInt64"),
                              "bind_ns": pd.array(start[::2] + 150, dtype="Int64"),
                              "bind_kind": pd.Categorical(["cache_add"] * g),
                              "unbind_ns": pd.array(start[::2] + 29_000, dtype="Int64"),
                              "unbind_kind": pd.Categorical(["cache_delete"] * g),
                              "eviction": np.arange(g) % 2 == 0, "reread": np.arange(g) % 2 == 1})
    events = normalize(pd.DataFrame({"ts_ns": start, "cpu": 0, "tid": tids, "comm": "stress",
                                     "func": "swap_cache_get_folio", "role": "lookup", "phase": "call",
                                     "entry": entry, "folio": None, "retval": None}))
    races = pd.DataFrame({c: [] for c in ("entry", "tid", "window_start_ns", "window_end_ns", "release_ns",
                                          "release_tid", "realloc_ns", "realloc_tid", "class", "uncertain")})
    analysis = SimpleNamespace(capture=Capture(events, CaptureMeta()), windows=windows, generations=generations,
                               residency=residency, races=races, summary={})
    tl = timeline.entry_timeline(analysis, STALE_ENTRY)
    assert len(tl.windows) == n and len(tl.generations) == g and len(tl.residency) == g
    fig = timeline.draw_entry_timeline(tl)
    ax = fig.axes[0]
    bars = sum(len(c.get_paths()) for c in ax.collections if type(c).__name__ == "PolyCollection")
    points = sum(len(c.get_offsets()) for c in ax.collections if type(c).__name__ == "PathCollection")
    width_px = style.TIMELINE_PX[0]
    assert 0 < bars <= 4 * width_px and 0 < points <= 8 * width_px
    assert len(ax.texts) < 50  # no per-bar labels when thousands of bars share the row
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
                          planted_folio(1002), None),
                         (9_000_000_100, 1, KSWAPD, "kswapd0", "folio_free_swap", "free_cache", "return", None,
                          None, 1)], columns=COLUMNS, dtype=object)
    early = pd.DataFrame([(10, 0, 7, "x", "swap_cache_get_folio", "lookup", "call", STALE_ENTRY, None, None),
                          (20, 0, 7, "x", "swap_cache_get_folio", "lookup", "return", None, None, planted_folio(999))],
                         columns=COLUMNS, dtype=object)
    events = normalize(pd.concat([early, events.drop(columns=["pid", "swap_type", "swap_offset"]), late]))
    analysis = analyze(Capture(events, CaptureMeta()))
    path, tl = plot_entry(analysis, STALE_ENTRY, tmp_path / "race.png", race=0)
    assert _decoded_size(path) == style.TIMELINE_PX
    # the residency from the early lookup reaches back to 20 ns, the new generation forward to 9 s: both cut
    assert tl.residency["bind_ns"].min() == 20 and tl.generations["free_ns"].max() >= 9_000_000_000
    assert tl.start_ns > 5_999_000 and tl.end_ns < 6_001_000

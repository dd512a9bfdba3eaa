"""Real races, caught on the lab-2024 kernel (13ddaf26be32 reverted), held against the data oracle of the same run.

The fixtures (tests/fixtures/real/lab2024-*, made by tests/fixtures/real/record_lab_race.sh, see the README
there) are a bcc recording of a whole 3 s `swaprace stress --scenario skip-swapcache-2024 --widen-us 20000
--record` run with the in-kernel detector's races, and a 100 ms excerpt of the ftrace text of another run; each
beside the stress run's own --json summary: the oracle's lost writes (page, thread, CLOCK_MONOTONIC time,
generation read vs written) and, for the bcc run, its timed page touches. The oracle knows nothing of swap
entries and the model nothing of pages: a stale-install on the page of every lost write is agreement between
two independent witnesses.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from swaprace import analyze, read
from swaprace.stress import join

REAL = Path(__file__).parent / "fixtures" / "real"

#: (entry offset, installing thread, releasing thread, reallocating thread = the MADV_PAGEOUT pager)
BCC_STALE = [(1, 154, 153, 156), (4, 155, 153, 156), (1, 154, 155, 156), (1, 155, 151, 156), (15, 155, 151, 156)]
FTRACE_STALE = [(14, 140, 138, 142), (14, 139, 138, 142), (1, 140, 138, 142), (1, 139, 138, 142)]


def _load(name: str):
    capture = read(REAL / f"{name}.{'parquet' if 'bcc' in name else 'trace'}")
    summary = json.loads((REAL / f"{name}.stress.json").read_text())
    return capture, analyze(capture), summary


def _stale(races: pd.DataFrame):
    stale = races[races["class"] == "stale-install"].sort_values("window_start_ns")
    return [(int(r.entry), int(r.tid), int(r.release_tid), int(r.realloc_tid)) for r in stale.itertuples()]


def test_bcc_race_capture_offline_detector_and_oracle_agree():
    capture, result, summary = _load("lab2024-bcc-race")
    assert capture.meta.kernel_release == "6.1.192-lab2024" and capture.meta.lost_events == 0
    assert _stale(result.races) == BCC_STALE
    assert (result.races.loc[result.races["class"] == "stale-install", "obtain_kind"] == "read").all()
    detector = pd.DataFrame(capture.meta.detector["races"])
    assert _stale(detector) == BCC_STALE  # the in-kernel detector, run for run
    assert summary["corruptions"] == len(BCC_STALE)
    joined = join.join(result.races, result.windows, summary["mismatches"], capture.meta.lost_events,
                       detector_races=capture.meta.detector["races"], workload_pids=set(summary["worker_pids"]),
                       touches=pd.DataFrame(summary["oracle_touches"]))
    assert joined["unpartnered"] == []
    for row in joined["table"]:
        assert row["why_unpartnered"] is None
        assert row["got_gen"] < row["expected_gen"]  # a lost write: an older generation came back
        for side in ("offline", "detector"):
            race = row[side]
            assert (race["class"], race["matched_by"], race["page_index"]) == \
                ("stale-install", "page+time", row["page_index"])
            assert race["install"] <= row["mismatch_ns"]


def test_ftrace_race_excerpt_pairs_each_lost_write_with_its_stale_install():
    capture, result, summary = _load("lab2024-ftrace-race")
    assert capture.meta.backend == "ftrace" and capture.meta.lost_events == 0
    assert _stale(result.races) == FTRACE_STALE
    first, last = int(capture.events["ts_ns"].min()), int(capture.events["ts_ns"].max())
    lost_writes = [m for m in summary["mismatches"] if first <= m["mono_ns"] <= last]
    assert len(lost_writes) == len(FTRACE_STALE)
    joined = join.join(result.races, result.windows, lost_writes, 0)
    for row in joined["table"]:
        race = row["offline"]
        # no page touches were kept for this run: the thread that installed the stale copy finds it itself,
        # a few milliseconds after its fault returned (3.2 ms at most here, under TCG)
        assert (race["class"], race["matched_by"], race["tid"]) == ("stale-install", "thread+time", row["tid"])
        assert 0 < row["mismatch_ns"] - race["install"] < 10_000_000
    assert sorted(r["offline"]["entry"] for r in joined["table"]) == sorted(e for e, *_ in FTRACE_STALE)


@pytest.mark.parametrize("name", ["lab2024-bcc-race", "lab2024-ftrace-race"])
def test_race_reasons_name_the_private_read(name):
    _capture, result, _summary = _load(name)
    stale = result.races[result.races["class"] == "stale-install"]
    assert stale["reason"].str.startswith("installed a private read made before the slot").all()

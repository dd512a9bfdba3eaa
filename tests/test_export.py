"""swaprace export: the Chrome trace-event JSON holds every window, generation, residency and race, at their
times, and parses back."""

import json

from click.testing import CliRunner

from swaprace.analysis.model import analyze
from swaprace.cli import main
from swaprace.readers import read_any

FIXTURE = "tests/fixtures/aba-bookworm.trace"


def _export(tmp_path, capture=FIXTURE):
    out = tmp_path / "run.json"
    result = CliRunner().invoke(main, ["export", capture, "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text()), json.loads(result.output)


def test_every_window_generation_residency_and_race_is_there_at_its_time(tmp_path):
    trace, info = _export(tmp_path)
    a = analyze(read_any(FIXTURE))
    events = trace["traceEvents"]
    faults = [e for e in events if e.get("cat") == "fault"]
    assert sorted((e["tid"], e["ts"], e["dur"]) for e in faults) == sorted(
        (int(w.tid), w.start_ns / 1e3, w.duration_ns / 1e3) for w in a.windows.itertuples())
    begins = [e for e in events if e["ph"] == "b"]
    ends = [e for e in events if e["ph"] == "e"]
    assert len(begins) == len(ends) == len(a.generations) + len(a.residency)
    gens = sorted((e["id2"]["local"], e["ts"]) for e in begins if e["cat"] == "slot" and
                  not e["args"]["began_before_capture"])
    allocated = a.generations[a.generations["alloc_ns"].notna()]
    assert gens == sorted((hex(int(g.entry)), g.alloc_ns / 1e3) for g in allocated.itertuples())
    races = [e for e in events if e["ph"] == "i" and e["cat"] == "race"]
    assert [(e["args"]["entry"], e["tid"], e["args"]["class"]) for e in races] == [
        ("0x3a5", 2001, "stale-install"), ("0x3b0", 2002, "recovered")]
    assert races[0]["ts"] == a.races["install_ns"].iloc[0] / 1e3
    flows = [e for e in events if e["ph"] in "stf" and e.get("name") == "slot reused"]
    assert [e["ph"] for e in flows] == ["s", "t", "f", "s", "t", "f"]
    assert flows[0]["tid"] == 44 and flows[1]["tid"] == 77  # kswapd freed, the kworker reallocated
    assert info["races"] == 2 and trace["otherData"]["race_classes"]["stale-install"] == 1


def test_export_refuses_to_overwrite_its_input(tmp_path):
    src = tmp_path / "in.trace"
    src.write_bytes(open(FIXTURE, "rb").read())
    result = CliRunner().invoke(main, ["export", str(src), "-o", str(src)])
    assert result.exit_code != 0 and "input capture" in result.output
    assert src.read_bytes() == open(FIXTURE, "rb").read()

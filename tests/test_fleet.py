"""`swaprace fleet` and `swaprace analyze --out-dir`: derived Parquet tables, the map (process pool, Dask), the
manifest's up-to-date check, failures reported not fatal, and the DuckDB reduce (--summary, --sql, --report).

The fleet is the committed real captures (tests/fixtures/real), the hand-made ABA trace (races of two classes)
and a few synthetic captures (benchmarks/synth.py; one with a tiny entry pool, so it has stale installs).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from swaprace.analysis.model import analyze
from swaprace.capture import write_capture
from swaprace.cli import main
from swaprace.errors import SwapraceError
from swaprace.events import Capture, CaptureMeta
from swaprace.fleet import TABLES, derive
from swaprace.fleet.derive import META_COLUMNS, read_derived_meta
from swaprace.fleet.run import load_manifest, run_fleet
from swaprace.readers import read_any

pytest.importorskip("duckdb")

ROOT = Path(__file__).resolve().parent.parent
REAL = sorted((ROOT / "tests/fixtures/real").glob("*.parquet")) + sorted((ROOT / "tests/fixtures/real").glob("*.trace"))
N_CAPTURES = len(REAL) + 1 + 3  # the real ones, the ABA trace and three synthetic
ABA = ROOT / "tests/fixtures/aba-bookworm.trace"


def _synth():
    spec = importlib.util.spec_from_file_location("swaprace_bench_synth", ROOT / "benchmarks/synth.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_synthetic(directory: Path) -> list[Path]:
    synth = _synth()
    specs = [("synth-6.6-a.parquet", "6.6.30-synth", "ci-box-01", 5, 16, {"ringbuf": 3}),
             ("synth-6.6-b.parquet", "6.6.30-synth", "ci-box-02", 2000, 8, {"ringbuf": 0}),
             ("synth-7.3.parquet", "7.3.4-synth", "ci-box-01", 500, 8, {})]
    paths = []
    for i, (name, kernel, host, pool, threads, lost) in enumerate(specs):
        frame = synth.synthetic_events(6_000, seed=10 + i, threads=threads, entry_pool=pool)
        meta = CaptureMeta(kernel_release=kernel, host=host, backend="synthetic", lost=lost, lost_known=bool(lost))
        paths.append(write_capture(Capture(events=frame, meta=meta), directory / name))
    return paths


def cli(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def captures(tmp_path_factory) -> Path:
    """A directory of captures: copies of the real ones, the ABA trace, and synthetic ones in a subdirectory."""
    root = tmp_path_factory.mktemp("captures")
    for path in [*REAL, ABA]:
        shutil.copy(path, root / path.name)
    (root / "synthetic").mkdir()
    _write_synthetic(root / "synthetic")
    (root / "README.md").write_text("not a capture: directories are searched by suffix\n")
    return root


@pytest.fixture(scope="module")
def fleet(captures, tmp_path_factory):
    """The fleet derived once with the local engine, through the CLI (--json)."""
    out = tmp_path_factory.mktemp("fleet")
    result = CliRunner().invoke(main, ["fleet", str(captures), "-o", str(out), "--json", "--workers", "2"])
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def _expected(path: Path) -> dict:
    s = analyze(read_any(path)).summary
    return {"windows": s["windows"], "reuses": s["reuses"], "generations": s["generations"],
            "recovered": s["race_classes"]["recovered"], "benign": s["race_classes"]["benign"],
            "stale_install": s["race_classes"]["stale-install"], "uncertain": s["uncertain_races"],
            "events": s["events"]}


def _fleet_numbers(out: Path) -> dict:
    from swaprace.fleet import query

    frame = query.query(out, """
        SELECT s.capture, s.windows, s.reuses, s.generations, s.races_recovered AS recovered,
               s.races_benign AS benign, s.races_stale_install AS stale_install, s.uncertain_races AS uncertain,
               s.events,
               (SELECT count(*) FROM windows w WHERE w.run_id = s.run_id) AS window_rows,
               (SELECT count(*) FROM races r WHERE r.run_id = s.run_id) AS race_rows,
               (SELECT count(*) FROM races r WHERE r.run_id = s.run_id AND r.class = 'stale-install') AS stale_rows
        FROM summary s""")
    return {rec["capture"]: rec for rec in frame.to_dict("records")}


def test_fleet_gives_the_same_numbers_as_analyze_on_each_capture(captures, fleet):
    out, report = fleet
    paths = sorted(p for p in captures.rglob("*") if p.suffix in (".parquet", ".trace"))
    assert report["captures"] == len(paths) == N_CAPTURES and report["derived"] == N_CAPTURES
    assert report["failed"] == 0
    numbers = _fleet_numbers(out)
    assert set(numbers) == {p.name for p in paths}
    raced = 0
    for path in paths:
        want = _expected(path)
        got = numbers[path.name]
        assert {k: int(got[k]) for k in want} == want, path.name
        races = want["recovered"] + want["benign"] + want["stale_install"]
        assert got["window_rows"] == want["windows"] and got["race_rows"] == races
        assert got["stale_rows"] == want["stale_install"]
        raced += races > 0
    assert raced >= 2  # the ABA trace and the small-pool synthetic capture have races


def test_derived_files_carry_the_capture_metadata(fleet):
    _out, report = fleet
    rec = next(r for r in report["records"] if r["capture"].endswith("bcc-bookworm-6.1.parquet"))
    assert set(rec["paths"]) == set(TABLES)
    for table, path in rec["paths"].items():
        assert Path(path).parent.name == table
        meta = read_derived_meta(path)
        assert meta["kernel_release"] == "6.1.0-50-amd64" and meta["host"] == "swaprace-testbox"
        assert meta["backend"] == "bcc" and meta["lost_events"] == 0 and meta["run_id"] == rec["run_id"]
        assert meta["run_id"].startswith("bcc-bookworm-6.1.parquet-") and meta["tool_version"] == rec["tool_version"]
        frame = pq.read_table(path).to_pandas()
        assert set(META_COLUMNS) <= set(frame.columns)
        if len(frame):
            assert set(frame["kernel_release"]) == {"6.1.0-50-amd64"} and set(frame["run_id"]) == {rec["run_id"]}
    windows = pq.read_table(rec["paths"]["windows"])
    assert str(windows.schema.field("entry").type) == "uint64"
    assert windows.to_pandas()["install_ns"].dtype == "Int64"  # nullable ints stay nullable


def test_analyze_out_dir_writes_the_same_tables(tmp_path):
    result = cli("analyze", str(ABA), "--out-dir", str(tmp_path), "--json")
    assert result.exit_code == 0
    summary = json.loads(result.stdout)  # stdout stays the summary; the note goes to stderr
    assert "derived tables" in result.stderr
    races = pq.read_table(next((tmp_path / "races").glob("*.parquet"))).to_pandas()
    assert list(races["class"].astype(str)) == [r["class"] for r in summary["races"]]
    assert races["kernel_release"].isna().all() or races["kernel_release"].notna().all()
    lib = derive(ABA, tmp_path / "lib")
    assert pq.read_table(lib.paths["races"]).num_rows == len(summary["races"])
    assert lib.counts["windows"] == summary["windows"]


def test_up_to_date_captures_are_skipped_and_changed_ones_derived_again(tmp_path):
    src = tmp_path / "caps"
    src.mkdir()
    shutil.copy(REAL[0], src / "a.parquet")
    shutil.copy(REAL[1], src / "b.parquet")
    out = tmp_path / "fleet"
    first = run_fleet([str(src)], out, workers=1)
    assert [r["status"] for r in first.records] == ["derived", "derived"]
    second = run_fleet([str(src / "*.parquet")], out, workers=1)
    assert [r["status"] for r in second.records] == ["up-to-date", "up-to-date"]
    old_b = load_manifest(out)["captures"][str((src / "b.parquet").resolve())]
    shutil.copy(REAL[0], src / "b.parquet")  # new content under the same name
    third = run_fleet([str(src)], out, workers=1)
    assert [r["status"] for r in third.records] == ["up-to-date", "derived"]
    assert not any(Path(p).exists() for p in old_b["paths"].values())  # the old content's tables are gone
    assert len(list((out / "windows").glob("*.parquet"))) == 2
    Path(third.records[0]["paths"]["races"]).unlink()  # a missing table: derived again
    assert [r["status"] for r in run_fleet([str(src)], out, workers=1).records] == ["derived", "up-to-date"]
    assert [r["status"] for r in run_fleet([str(src)], out, workers=1, force=True).records] == ["derived"] * 2


def test_a_broken_capture_is_reported_not_fatal(tmp_path):
    src = tmp_path / "caps"
    src.mkdir()
    shutil.copy(REAL[0], src / "good.parquet")
    (src / "broken.parquet").write_bytes(b"PAR1 this is not parquet at all")
    (src / "empty.trace").write_bytes(b"")
    out = tmp_path / "fleet"
    result = CliRunner().invoke(main, ["fleet", str(src), "-o", str(out), "--json", "--summary"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["failed"] == 2 and report["derived"] == 1 and not report["all_failed"]
    assert {Path(f["capture"]).name for f in report["failures"]} == {"broken.parquet", "empty.trace"}
    assert all(f["error"] for f in report["failures"])
    assert "broken.parquet" in result.stderr  # said on stderr too
    manifest = load_manifest(out)["captures"]
    assert manifest[str((src / "broken.parquet").resolve())]["status"] == "failed"
    assert [row["captures"] for row in report["summary"]] == [1]
    # every capture failed: non-zero exit, and --json says so
    only_bad = CliRunner().invoke(main, ["fleet", str(src / "broken.parquet"), "-o", str(tmp_path / "f2"), "--json"])
    assert only_bad.exit_code == 1 and json.loads(only_bad.stdout)["all_failed"] is True


def test_dask_local_cluster_gives_the_same_tables(captures, fleet, tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    out_local, _ = fleet
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        result = CliRunner().invoke(main, ["fleet", str(captures), "-o", str(tmp_path / "dask"), "--scheduler",
                                           cluster.scheduler_address, "--json"])
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["engine"] == "dask" and report["derived"] == N_CAPTURES and report["failed"] == 0
        with distributed.Client(cluster) as client:  # the library call, and the up-to-date check on Dask
            again = run_fleet([str(captures)], tmp_path / "dask", client=client)
        assert {r["status"] for r in again.records} == {"up-to-date"}
    local = _fleet_numbers(out_local)
    assert _fleet_numbers(tmp_path / "dask") == local


def test_dask_engine_with_worker_processes(tmp_path):
    pytest.importorskip("dask.distributed")
    src = tmp_path / "caps"
    src.mkdir()
    for path in REAL[:2]:
        shutil.copy(path, src / path.name)
    (src / "bad.trace").write_text("hello\n")
    result = run_fleet([str(src)], tmp_path / "fleet", engine="dask", workers=2)  # its own LocalCluster
    assert sorted(r["status"] for r in result.records) == ["derived", "derived", "failed"]
    assert len({r.get("worker") for r in result.records if r["status"] == "derived"}) >= 1


def test_summary_and_sql(fleet):
    out, _ = fleet
    result = cli("fleet", "-o", str(out), "--summary")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split()[:6] == ["kernel", "host", "captures", "events", "windows", "reuses"]
    assert any(line.startswith("6.1.0-50-amd64") and "swaprace-testbox" in line for line in lines)
    assert any(line.startswith("6.6.30-synth") for line in lines)
    js = json.loads(cli("fleet", "-o", str(out), "--summary", "--json").stdout)["summary"]
    assert sum(r["captures"] for r in js) == N_CAPTURES
    row = next(r for r in js if r["kernel"] == "6.6.30-synth" and r["host"] == "ci-box-01")
    assert row["stale_install"] > 0 and row["lost_events"] == 3
    assert {"recovered", "benign", "stale_install", "uncertain", "lost_events", "loss_unknown"} <= set(row)

    sql = "SELECT capture, count(*) AS n FROM races GROUP BY ALL ORDER BY capture"
    rows = json.loads(cli("fleet", "-o", str(out), "--sql", sql, "--json").stdout)
    assert rows["columns"] == ["capture", "n"] and all(r["n"] > 0 for r in rows["rows"])
    assert "aba-bookworm.trace" in {r["capture"] for r in rows["rows"]}
    text = cli("fleet", "-o", str(out), "--sql", "SELECT entry, class FROM races WHERE capture LIKE 'aba%'").stdout
    assert "0x3a5" in text and "stale-install" in text
    bad = CliRunner().invoke(main, ["fleet", "-o", str(out), "--sql", "SELECT nope FROM windows"])
    assert bad.exit_code == 1 and "query failed" in bad.output and "Traceback" not in bad.output
    empty = CliRunner().invoke(main, ["fleet", "-o", str(out / "nothing"), "--summary"])
    assert empty.exit_code == 1 and "no such fleet directory" in empty.output


def test_fleet_report(fleet):
    out, _ = fleet
    result = cli("fleet", "-o", str(out), "--report", "--json")
    assert result.exit_code == 0
    index = json.loads(result.stdout)["report"]
    html = Path(index["html"]).read_text()
    assert "stale installs" in html and "6.6.30-synth" in html and "data:image/png;base64" in html
    assert index["stale_installs"] > 0 and len(index["figures"]) == 2
    for fig in index["figures"]:
        assert Path(fig["file"]).stat().st_size > 10_000
    kernels = [k["kernel"] for k in index["kernels"]]
    assert kernels.index("6.1.0-50-amd64") < kernels.index("6.6.30-synth") < kernels.index("7.3.4+deb13-amd64")


def test_cli_help_usage_and_errors(tmp_path):
    help_text = cli("fleet", "--help").output
    assert "Examples:" in help_text and "--scheduler" in help_text and "--sql" in help_text
    assert "--out-dir" in cli("analyze", "--help").output
    usage = CliRunner().invoke(main, ["fleet", "-o", str(tmp_path)])
    assert usage.exit_code == 2
    missing = CliRunner().invoke(main, ["fleet", str(tmp_path / "nope*.parquet"), "-o", str(tmp_path / "o")])
    assert missing.exit_code == 1 and "no such file" in missing.output
    pytest.importorskip("dask.distributed")
    with pytest.raises(SwapraceError, match="cannot reach the dask scheduler"):
        run_fleet([str(REAL[0])], tmp_path / "o", scheduler="tcp://127.0.0.1:9", connect_timeout=1)


def test_analyze_does_not_import_duckdb_or_dask(tmp_path):
    code = ("import sys; from click.testing import CliRunner; from swaprace.cli import main; "
            f"r = CliRunner().invoke(main, ['analyze', {str(ABA)!r}, '--out-dir', {str(tmp_path)!r}, '--json']); "
            "assert r.exit_code == 0, r.output; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('duckdb', 'dask', 'distributed')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"

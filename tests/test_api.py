"""The library API: docs/api.md's examples run as written, and the documented columns are what analyze returns."""

import re
from pathlib import Path

import swaprace
from swaprace.analysis.frames import TABLES

DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"


def _blocks():
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def test_the_read_and_analyze_example_runs(capsys):
    namespace = {}
    exec(_blocks()[0], namespace)  # noqa: S102 -- the documentation's own example
    a = namespace["a"]
    assert a.summary["race_classes"] == {"recovered": 1, "benign": 0, "stale-install": 1}
    assert "slot_free" in str(namespace["gens"]["free_kind"].tolist())
    assert namespace["stale"]["tid"].tolist() == [2001]
    assert "release_tid" in capsys.readouterr().out


def test_the_export_example_runs():
    namespace = {"a": swaprace.analyze(swaprace.read("tests/fixtures/aba-bookworm.trace"))}
    exec(_blocks()[2], namespace)  # noqa: S102
    assert namespace["timeline"]["traceEvents"]


def test_documented_columns_are_the_columns_analyze_returns():
    a = swaprace.analyze(swaprace.read("tests/fixtures/aba-bookworm.trace"))
    for name, columns in TABLES.items():
        frame = getattr(a, name)
        assert list(frame.columns) == list(columns), name
        for col, (dtype, _meaning) in columns.items():
            assert str(frame[col].dtype) in (dtype, "object" if dtype == "str" else dtype), (name, col)


def test_import_is_lazy_and_unknown_names_fail():
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", "import swaprace, sys; print('pandas' in sys.modules)"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    try:
        swaprace.nothing_here  # noqa: B018
    except AttributeError as exc:
        assert "nothing_here" in str(exc)
    else:
        raise AssertionError("expected AttributeError")

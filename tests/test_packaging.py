"""Packaging facts: one version string (``swaprace.__version__``, which pyproject.toml reads) and every
third-party module the package imports declared as a dependency."""

import ast
import re
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import swaprace
from swaprace.cli import main

ROOT = Path(__file__).resolve().parent.parent
tomllib = pytest.importorskip("tomllib")

#: Imported by the package but not installed from PyPI by it: bcc comes with the distribution
#: (python3-bpfcc); the fleet extras are optional and imported only by ``swaprace fleet``.
NOT_RUNTIME = {"bcc"}
EXTRAS = {"duckdb", "dask"}


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _names(requirements) -> set:
    return {re.split(r"[\s<>=!~\[;]", req, maxsplit=1)[0].lower() for req in requirements}


def test_version_is_defined_once_and_read_by_pyproject():
    toml = _project()
    assert "version" not in toml["project"]
    assert "version" in toml["project"]["dynamic"]
    assert toml["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "swaprace.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", swaprace.__version__)


def test_cli_version_is_the_package_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"swaprace, version {swaprace.__version__}"


def _third_party_imports() -> set:
    found = set()
    for path in (ROOT / "swaprace").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return {name for name in found if name not in sys.stdlib_module_names and name != "swaprace"}


def test_every_imported_library_is_declared():
    project = _project()["project"]
    runtime = _names(project["dependencies"])
    extras = _names(project["optional-dependencies"]["fleet"])
    imported = _third_party_imports()
    needed = imported - NOT_RUNTIME - EXTRAS
    assert needed <= runtime, f"undeclared: {sorted(needed - runtime)}"
    assert EXTRAS <= extras

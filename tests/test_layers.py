"""The package layers point one way: kernel knowledge and readers below, analysis and probes beside each other.

Parsed from the sources (no import side effects): every ``swaprace.*`` import of every module, including ones
inside functions, is an edge of the graph.
"""

import ast
from pathlib import Path
from typing import Dict, Set

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "swaprace"

#: What each layer may import (besides itself and the base modules events/errors/osutil/capture).
ALLOWED = {
    "kernel": set(),
    "readers": {"kernel"},
    "analysis": {"readers", "kernel"},
    "probes": {"kernel", "readers"},
    "stress": {"analysis", "probes", "readers", "kernel"},
    "vm": set(),
}
BASE = {"events", "errors", "osutil", "native", "jsonout", "capture", "__init__", "__version__"}


def _imports(path: Path) -> Set[str]:
    tree = ast.parse(path.read_text())
    out: Set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("swaprace"):
            out.add(node.module)
            out.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("swaprace"))
    return out


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _graph() -> Dict[str, Set[str]]:
    graph: Dict[str, Set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        layer = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        graph.setdefault(layer, set()).update(_layer(m) for m in _imports(path))
    return graph


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports_only_what_is_below_it(layer):
    used = _graph().get(layer, set()) - {layer, ""} - BASE
    assert used <= ALLOWED[layer], f"swaprace.{layer} imports {sorted(used - ALLOWED[layer])}"


def test_no_import_cycle_between_packages():
    graph = {k: v - {k, ""} - BASE for k, v in _graph().items() if k not in BASE and k != "cli"}
    seen: Dict[str, int] = {}

    def visit(node: str, stack: list) -> None:
        if seen.get(node) == 1:
            raise AssertionError(f"import cycle: {' -> '.join(stack + [node])}")
        if seen.get(node) == 2:
            return
        seen[node] = 1
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, stack + [node])
        seen[node] = 2

    for node in sorted(graph):
        visit(node, [])

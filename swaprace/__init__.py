"""swaprace: watch the Linux swap-in path and flag swap-slot reuse inside a page fault's race window.

The library is the same one the command line uses (see docs/api.md)::

    import swaprace
    cap = swaprace.read("run.parquet")          # any capture: Parquet, JSON Lines, ftrace or perf script text
    a = swaprace.analyze(cap)                   # a.windows, a.generations, a.residency, a.races, a.summary
    swaprace.record("run.parquet", duration=10) # live, as root, on a kernel with kprobes

Imports are lazy: ``import swaprace`` costs nothing until one of these is used.
"""

from typing import Any

__version__ = "0.1.0"  # the one version string: pyproject.toml reads it (dynamic version), so do the CLI and captures
__all__ = ["__version__", "analyze", "read", "record", "TABLES"]


def __getattr__(name: str) -> Any:
    if name == "read":
        from swaprace.readers import read_any

        return read_any
    if name == "analyze":
        from swaprace.analysis.model import analyze

        return analyze
    if name == "record":
        from swaprace.probes.api import record

        return record
    if name == "TABLES":
        from swaprace.analysis.frames import TABLES

        return TABLES
    raise AttributeError(f"module 'swaprace' has no attribute {name!r}")

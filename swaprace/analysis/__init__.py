"""Offline analysis: fault windows, slot generations, cache residency, races, and reports.

Pure pandas/numpy/pyarrow: nothing here imports bcc or the probes, so captures can be analyzed on any machine.

    from swaprace.readers import read_any
    from swaprace.analysis import analyze
    result = analyze(read_any("capture.parquet"))
    result.races, result.windows, result.generations, result.residency, result.summary
"""

from swaprace.analysis.model import Analysis, analyze

__all__ = ["Analysis", "analyze"]

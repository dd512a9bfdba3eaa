"""Offline analysis: readers for every capture format, fault windows, entry generations, races.

Pure pandas/numpy/pyarrow: nothing here imports bcc, so captures can be analyzed on any machine.

    from swaprace.analysis import read_any, analyze
    result = analyze(read_any("capture.parquet"))
    result.races, result.windows, result.generations, result.summary
"""

from swaprace.analysis.model import Analysis, analyze
from swaprace.analysis.readers import read_any

__all__ = ["Analysis", "analyze", "read_any"]

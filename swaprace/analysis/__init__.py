"""Offline analysis: fault windows, slot generations, cache residency, races, and reports.

Pure pandas/numpy/pyarrow: nothing here imports bcc or the probes, so captures can be analyzed on any machine.

    from swaprace.readers import read_any
    from swaprace.analysis import analyze
    result = analyze(read_any("capture.parquet"))
    result.races, result.windows, result.generations, result.residency, result.summary
    result = load_analysis("capture.parquet", entry=parse_entry("0:0x12a"))  # read + analyse, one entry
"""

from swaprace.analysis.model import Analysis, analyze
from swaprace.analysis.selection import load_analysis, parse_entry

__all__ = ["Analysis", "analyze", "load_analysis", "parse_entry"]

"""Many captures at once: derive each capture's tables as Parquet (the map), then query them all with DuckDB
(the reduce).

* :mod:`swaprace.fleet.derive` -- one capture -> its derived tables (pyarrow only).
* :mod:`swaprace.fleet.run` -- the map over many captures: a local process pool, or a dask.distributed
  cluster; a manifest records what was derived from which content with which tool version.
* :mod:`swaprace.fleet.query` -- DuckDB views over all derived files, the per kernel/host summary, ad-hoc SQL.
* :mod:`swaprace.fleet.report` -- the fleet HTML report (rates per kernel version as PNG pictures).

duckdb and dask are imported only by the modules that need them.
"""

from swaprace.fleet.derive import TABLES, Derived, derive, write_derived

__all__ = ["TABLES", "Derived", "derive", "write_derived"]

"""The reduce: DuckDB (embedded, in this process) over every derived Parquet file of a fleet directory.

:func:`connect` opens an in-memory DuckDB database with one view per derived table, each over all of that
table's files::

    CREATE VIEW windows AS SELECT * FROM read_parquet('DIR/windows/*.parquet', filename=true, union_by_name=true)

so ``SELECT kernel_release, count(*) FROM windows GROUP BY ALL`` runs over the whole fleet, reading only the
columns it needs. ``filename`` is the derived file a row came from; ``run_id``, ``capture``, ``kernel_release``,
``host``, ``backend`` and ``lost_events`` are on every row. Results come back as pandas DataFrames.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from swaprace.errors import SwapraceError
from swaprace.fleet.derive import TABLES

#: Per kernel and host: what `swaprace fleet --summary` prints.
SUMMARY_SQL = """
SELECT
    coalesce(kernel_release, 'unknown')                       AS kernel,
    coalesce(host, 'unknown')                                 AS host,
    count(*)                                            AS captures,
    sum(events)                                         AS events,
    sum(windows)                                        AS windows,
    sum(reuses)                                         AS reuses,
    sum(races_recovered)                                AS recovered,
    sum(races_benign)                                   AS benign,
    sum(races_stale_install)                            AS stale_install,
    sum(uncertain_races)                                AS uncertain,
    sum(lost_events)                                    AS lost_events,
    count(*) FILTER (WHERE NOT lost_known)              AS loss_unknown
FROM summary
GROUP BY ALL
ORDER BY kernel, host
"""

#: Per kernel version: the rates the fleet report draws.
RATES_SQL = """
SELECT
    coalesce(kernel_release, 'unknown')                       AS kernel,
    count(*)                                            AS captures,
    count(DISTINCT host)                                AS hosts,
    sum(windows)                                        AS windows,
    sum(reuses)                                         AS reuses,
    sum(races_recovered)                                AS recovered,
    sum(races_benign)                                   AS benign,
    sum(races_stale_install)                            AS stale_install,
    sum(uncertain_races)                                AS uncertain,
    sum(events)                                         AS events,
    sum(lost_events)                                    AS lost_events,
    count(*) FILTER (WHERE NOT lost_known)              AS loss_unknown
FROM summary
GROUP BY ALL
ORDER BY kernel
"""


def _duckdb():
    try:
        import duckdb
    except ImportError:
        raise SwapraceError("fleet queries need duckdb: pip install 'swaprace[fleet]'") from None
    return duckdb


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


def connect(fleet_dir: str | os.PathLike, threads: int | None = None) -> Any:
    """An in-memory DuckDB connection with one view per derived table over ``fleet_dir``."""
    duckdb = _duckdb()
    root = Path(fleet_dir)
    if not root.is_dir():
        raise SwapraceError(f"{fleet_dir}: no such fleet directory (run `swaprace fleet CAPTURES... -o {fleet_dir}`)")
    con = duckdb.connect(":memory:")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    present = []
    for table in TABLES:
        files = root / table
        if files.is_dir() and any(files.glob("*.parquet")):
            pattern = _sql_path(files / "*.parquet")
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{pattern}', filename=true, "
                        f"union_by_name=true)")
            present.append(table)
    if "summary" not in present:
        con.close()
        raise SwapraceError(f"{fleet_dir}: no derived tables yet (run `swaprace fleet CAPTURES... -o {fleet_dir}`)")
    return con


def query(fleet_dir: str | os.PathLike, sql: str) -> pd.DataFrame:
    """Run ``sql`` against the fleet's views; a DuckDB error becomes one :class:`SwapraceError` line."""
    duckdb = _duckdb()
    con = connect(fleet_dir)
    try:
        return con.execute(sql).df()
    except duckdb.Error as exc:
        raise SwapraceError(f"query failed: {str(exc).strip().splitlines()[0]}") from None
    finally:
        con.close()


def summary(fleet_dir: str | os.PathLike) -> pd.DataFrame:
    """Per kernel/host: captures, events, windows, reuses, races by class, uncertain races, losses."""
    return query(fleet_dir, SUMMARY_SQL)


def rates(fleet_dir: str | os.PathLike) -> pd.DataFrame:
    """Per kernel version: totals and rates per 1,000 windows (reuses, races by class)."""
    frame = query(fleet_dir, RATES_SQL)
    per = frame["windows"].where(frame["windows"] > 0)
    for col in ("reuses", "recovered", "benign", "stale_install", "uncertain"):
        frame[f"{col}_per_1k_windows"] = (frame[col] * 1000 / per).astype("float64")
    frame["lost_per_1k_events"] = (frame["lost_events"] * 1000 / frame["events"].where(frame["events"] > 0)).astype(
        "float64")
    return frame.iloc[sorted(range(len(frame)), key=lambda i: kernel_sort_key(str(frame["kernel"].iloc[i])))] \
        .reset_index(drop=True)


def kernel_sort_key(release: str) -> tuple:
    """``6.1.0-50-amd64`` < ``6.12.3`` < ``7.3.4+deb13-amd64``: numbers compared as numbers."""
    import re

    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", release) if p)


def to_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """DataFrame rows as plain JSON values (numpy ints -> int, NaN/NA -> None)."""
    out = []
    for rec in frame.astype(object).where(frame.notna(), None).to_dict("records"):
        out.append({k: _plain(v) for k, v in rec.items()})
    return out


def _plain(value: Any) -> Any:
    if value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            return value.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def format_table(frame: pd.DataFrame, max_rows: int = 200) -> str:
    """A plain-text table (right-aligned numbers, thousands separators)."""
    if frame.empty:
        return "(no rows)" if len(frame.columns) == 0 else "  ".join(map(str, frame.columns)) + "\n(no rows)"
    shown = frame.head(max_rows)
    cols = [str(c) for c in shown.columns]
    cells = []
    numeric = []
    for col in shown.columns:
        values = shown[col]
        is_num = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        numeric.append(is_num)
        hexa = str(col) in HEX_COLUMNS
        cells.append([cell_text(v, is_num, hexa) for v in values])
    widths = [max([len(c)] + [len(v) for v in col]) for c, col in zip(cols, cells)]
    lines = ["  ".join(c.rjust(w) if n else c.ljust(w) for c, w, n in zip(cols, widths, numeric)).rstrip()]
    for i in range(len(shown)):
        lines.append("  ".join(col[i].rjust(w) if n else col[i].ljust(w)
                               for col, w, n in zip(cells, widths, numeric)).rstrip())
    if len(frame) > max_rows:
        lines.append(f"... {len(frame) - max_rows:,} more rows (use --json for all)")
    return "\n".join(lines)


HEX_COLUMNS = ("entry", "folio", "installed_folio", "retval")


def cell_text(value: Any, numeric: bool, hexa: bool = False) -> str:
    if value is None or (not isinstance(value, (list, dict, str)) and pd.isna(value)):
        return "-"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f"{int(value):#x}" if hexa else f"{int(value):,}"
    if numeric:
        if float(value).is_integer() and abs(float(value)) < 2**63:
            return f"{int(value):,}"
        return f"{float(value):,.3f}"
    return str(value)

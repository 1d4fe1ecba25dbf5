"""Run folders as DuckDB views: `runs`, `intervals` and `requests`, for `history` and any SQL.

- `runs`: one row per run folder (`tmesh.dataset.runs`): `run` (its path), `name`, `started_at`,
  what it measured (`endpoint`, `model`, `profile`, the workload), `elapsed`, `stop_reason`,
  then each metric as a column (`qps`, `ttft_p50`, `warm_ttft_mean`, …) beside its noise
  (`ttft_p50_noise`).
- `intervals`: one row per interval of each run: `run`, `interval`, `elapsed`,
  `interval_seconds` and each metric that has a per-interval value.
- `requests`: every request of every run with its `run`: read from `requests.parquet` where a
  run was exported, else from its JSON Lines (a damaged line skipped), only when queried.

DuckDB is an embedded SQL engine: the views are built in memory and read the files in place.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tmesh.dataset.optional import require
from tmesh.dataset.requests import PARQUET, arrow, schema
from tmesh.dataset.runs import IDENTITY, NOISE, PER_INTERVAL, Rows, find_runs, read_rows
from tmesh.results.catalogue.metrics import ALL
from tmesh.results.catalogue.names import column
from tmesh.results.rundir import request_files

if TYPE_CHECKING:
    import duckdb

FEATURE = "run history"
_SQL_TYPES = {"int64": "BIGINT", "double": "DOUBLE", "bool": "BOOLEAN", "string": "VARCHAR"}


def open_history(*directories: str | Path) -> tuple[duckdb.DuckDBPyConnection, Rows]:
    """A DuckDB connection holding the views over every run under `directories`, and the rows
    it was built from (with the folders that could not be read)."""
    duck = require("duckdb", FEATURE)
    rows = read_rows(find_runs(directories))
    connection = duck.connect()
    connection.register("runs", _runs_table(rows.runs))
    connection.register("intervals", _intervals_table(rows.intervals))
    _requests_view(connection, [Path(row["run"]) for row in rows.runs])
    return connection, rows


def _runs_table(rows: list[dict[str, Any]]) -> Any:
    pa = arrow()
    text = ("run", "name", "endpoint", "model", "profile", "api", "stop_reason", "tmesh_version")
    columns = [pa.field(name, pa.string()) for name in text]
    columns.append(pa.field("started_at", pa.timestamp("s", tz="UTC")))
    columns += [pa.field(name, pa.int64()) for name in IDENTITY if name not in text]
    columns.append(pa.field("elapsed", pa.float64()))
    for metric in ALL:
        columns.append(pa.field(column(metric.key), pa.float64()))
        columns.append(pa.field(column(metric.key) + NOISE, pa.float64()))
    return pa.Table.from_pylist(rows, schema=pa.schema(columns))


def _intervals_table(rows: list[dict[str, Any]]) -> Any:
    pa = arrow()
    columns = [
        pa.field("run", pa.string()),
        pa.field("interval", pa.int64()),
        pa.field("elapsed", pa.float64()),
        pa.field("interval_seconds", pa.float64()),
        *(pa.field(column(metric.key), pa.float64()) for metric in PER_INTERVAL),
    ]
    return pa.Table.from_pylist(rows, schema=pa.schema(columns))


def _requests_view(connection: Any, runs: Iterable[Path]) -> None:
    """The `requests` view: each run's Parquet if exported, else its JSON Lines, with its run."""
    parquet: list[str] = []
    jsonl: list[str] = []
    owners: list[dict[str, str]] = []
    for run in runs:
        files = [run / PARQUET] if (run / PARQUET).exists() else request_files(run)
        (parquet if files and files[0].name == PARQUET else jsonl).extend(map(str, files))
        owners += [{"file": str(path), "run": str(run)} for path in files]
    columns = schema()
    parts = []
    if parquet:
        parts.append(f"SELECT * FROM read_parquet({_list(parquet)}, filename=true)")
    if jsonl:
        types = ", ".join(f"'{f.name}': '{_SQL_TYPES[str(f.type)]}'" for f in columns)
        parts.append(
            f"SELECT * FROM read_json({_list(jsonl)}, format='newline_delimited', "
            f"columns={{{types}}}, ignore_errors=true, filename=true) WHERE t0 IS NOT NULL"
        )
    if not parts:
        empty = arrow().schema([arrow().field("run", arrow().string()), *columns])
        connection.register("requests", empty.empty_table())
        return
    connection.register("request_files", arrow().Table.from_pylist(owners))
    union = " UNION ALL BY NAME ".join(parts)
    names = ", ".join(f'r."{f.name}"' for f in columns)
    connection.execute(
        f"CREATE VIEW requests AS SELECT f.run, {names} FROM ({union}) r "
        "JOIN request_files f ON r.filename = f.file"
    )


def _list(paths: list[str]) -> str:
    return "[" + ", ".join("'" + path.replace("'", "''") + "'" for path in paths) + "]"

"""A run's requests as an Arrow table, read from its JSON Lines or its Parquet, and written as
Parquet.

The table's columns are `RequestRecord`'s fields and the derived metrics `requests.jsonl` holds
(`DERIVED`), typed from the record's annotations, so a new field of the record is a new column
without a second list to keep. Parquet keeps every field's value exactly: a run exported and read
back gives the same records.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tmesh.dataset.optional import require
from tmesh.report.load import RunLoadError, read_jsonl
from tmesh.results.records import RequestRecord
from tmesh.results.rundir import CONFIG, DERIVED, request_files, request_row

if TYPE_CHECKING:
    import pyarrow as pa

PARQUET = "requests.parquet"
"""Where `tmesh-cli export` puts a run's requests: beside its JSON Lines, where `history` and
the Python API look first."""
FEATURE = "a run's requests as a table"


def arrow() -> Any:
    return require("pyarrow", FEATURE)


def schema() -> pa.Schema:
    """The columns of a requests table: the record's fields, then the derived metrics."""
    pa = arrow()
    hints = typing.get_type_hints(RequestRecord)
    columns = [
        pa.field(f.name, _arrow_type(pa, hints[f.name]), nullable=_optional(hints[f.name]))
        for f in dataclasses.fields(RequestRecord)
    ]
    columns += [pa.field(name, pa.float64()) for name in DERIVED]
    return pa.schema(columns)


def _optional(hint: Any) -> bool:
    return type(None) in typing.get_args(hint)


def _arrow_type(pa: Any, hint: Any) -> Any:
    kinds = [k for k in typing.get_args(hint) if k is not type(None)] or [hint]
    kind = kinds[0]
    if typing.get_origin(hint) is typing.Literal or typing.get_origin(kind) is typing.Literal:
        return pa.string()
    types = {bool: pa.bool_(), int: pa.int64(), float: pa.float64(), str: pa.string()}
    if kind not in types:
        raise TypeError(f"no Arrow type for a request field of type {hint!r}")
    return types[kind]


def read_requests(root: Path) -> pa.Table:
    """Every request of the run folder `root`, in the order they finished: `requests.parquet`
    when it exists, else the JSON Lines (a damaged line skipped, as the report does)."""
    root = Path(root)
    parquet = root / PARQUET
    if parquet.exists():
        return read_parquet(parquet)
    return read_jsonl_requests(root)


def read_parquet(path: Path) -> pa.Table:
    table = require("pyarrow.parquet", FEATURE).read_table(path)
    return table.select([name for name in schema().names if name in table.column_names])


def read_jsonl_requests(root: Path) -> pa.Table:
    """The JSON Lines files of a run, parsed by Arrow; a file Arrow refuses (a truncated last
    line, an empty file) is read record by record instead."""
    pa, reader = arrow(), require("pyarrow.json", FEATURE)
    columns = schema()
    options = reader.ParseOptions(explicit_schema=columns, unexpected_field_behavior="ignore")
    tables = []
    for path in request_files(root):
        try:
            tables.append(reader.read_json(path, parse_options=options))
        except pa.ArrowInvalid:
            rows = [request_row(record) for record in read_jsonl(path, RequestRecord, [])]
            tables.append(pa.Table.from_pylist(rows, schema=columns))
    return pa.concat_tables(tables) if tables else columns.empty_table()


def write_parquet(root: Path, target: Path | None = None) -> Path:
    """Write the run's requests as Parquet (default `root/requests.parquet`), always from its
    JSON Lines (the record of truth); the run's `config.json` rides along as file metadata."""
    root = Path(root)
    if not (root / CONFIG).exists():
        raise RunLoadError(f"{root}: not a tmesh run folder (no {CONFIG})")
    table = read_jsonl_requests(root)
    config = (root / CONFIG).read_bytes()
    table = table.replace_schema_metadata({"tmesh.config": config})
    out = Path(target) if target is not None else root / PARQUET
    require("pyarrow.parquet", FEATURE).write_table(table, out)
    return out

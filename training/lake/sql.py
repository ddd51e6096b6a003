"""SQL over a lake and over files: a DuckDB connection, one statement run, and how many Parquet files it read."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from training.lake.storage import LakeError


@dataclass(frozen=True)
class QueryResult:
    """A query's rows and what the scans read.

    Attributes:
        frame: The result table.
        files_read: Parquet files the scans opened, summed over scans (None when DuckDB did not say).
        files_total: Files the scans could have opened (None when DuckDB did not say).
    """

    frame: pd.DataFrame
    files_read: int | None = None
    files_total: int | None = None

    def describe(self) -> str:
        """``"3 rows; read 1 of 4 Parquet files"``: partition pruning, visible."""
        text = f"{len(self.frame)} row{'s' if len(self.frame) != 1 else ''}"
        if self.files_read is not None and self.files_total:
            text += f"; read {self.files_read} of {self.files_total} Parquet files"
        return text


def connect_duckdb(*, s3: Any | None = None) -> Any:
    """A fresh in-memory DuckDB connection that records scan statistics; ``s3`` is registered for s3://."""
    try:
        import duckdb
    except ImportError as exc:  # pragma: no cover - duckdb is in the train extra
        raise LakeError("SQL needs duckdb: pip install -e '.[train]'") from exc
    con = duckdb.connect(":memory:")
    if s3 is not None:
        con.register_filesystem(s3)
    return con


def run_sql(con: Any, sql: str, *, tables: Sequence[str] = ()) -> QueryResult:
    """Run one statement and collect its result and how many Parquet files its scans read.

    Raises:
        LakeError: the SQL failed; the message is DuckDB's first line (plus the known tables when a table is
            missing).
    """
    import duckdb

    if not sql or not sql.strip():
        raise LakeError("the SQL query is empty")
    con.execute("SET enable_profiling = 'no_output'")
    try:
        relation = con.sql(sql)  # None for statements without a result (CREATE, SET ...)
        frame = relation.df() if relation is not None else pd.DataFrame()
    except duckdb.CatalogException as exc:
        first = str(exc).splitlines()[0]
        raise LakeError(
            f"{first.removeprefix('Catalog Error: ')} ({dataset_listing(sorted(tables))})"
        ) from exc
    except duckdb.Error as exc:
        raise LakeError(f"SQL error: {str(exc).splitlines()[0]}") from exc
    read, total = _scan_files(con)
    return QueryResult(frame=frame, files_read=read, files_total=total)


def _scan_files(con: Any) -> tuple[int | None, int | None]:
    """Sum ``Scanning Files: k/n`` over the last query's Parquet scans, from DuckDB's profile."""
    import duckdb

    try:
        info = json.loads(con.get_profiling_information(format="json"))
    except (duckdb.Error, ValueError, TypeError):  # profiling is best effort: the rows are the answer
        return None, None
    read = total = 0
    seen = False
    stack = list(info.get("operator", info.get("children", [])))
    while stack:
        node = stack.pop()
        stack.extend(node.get("children", []))
        extra = node.get("extra_info") or {}
        scanning = extra.get("Scanning Files") if isinstance(extra, dict) else None
        if scanning and "/" in str(scanning):
            k, n = str(scanning).split("/", 1)
            if k.strip().isdigit() and n.strip().isdigit():
                read, total, seen = read + int(k), total + int(n), True
        elif (
            isinstance(extra, dict)
            and extra.get("Function") == "READ_PARQUET"
            and "Total Files Read" in extra
        ):
            files = int(extra["Total Files Read"])
            read, total, seen = read + files, total + files, True
    return (read, total) if seen else (None, None)


def quote_identifier(name: str) -> str:
    """A SQL identifier (a view or column name), double-quoted."""
    return '"' + str(name).replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """A SQL string literal, single-quoted."""
    return "'" + str(text).replace("'", "''") + "'"


def dataset_listing(names: Sequence[str]) -> str:
    """The catalog's dataset names for an error message (or that there are none)."""
    return f"datasets in the catalog: {', '.join(names)}" if names else "the catalog is empty"

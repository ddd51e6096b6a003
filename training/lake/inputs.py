"""Any command's input table: a file (local or on S3), a lake dataset, or a SQL query, and the lake's short API."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from training.data import load_table, write_table
from training.errors import DataError
from training.lake.catalog import DatasetEntry, IngestMode, Lake
from training.lake.sql import connect_duckdb, run_sql
from training.lake.storage import LakeError, is_remote, s3_filesystem


def read_source(source: str | Path) -> pd.DataFrame:
    """Read a local CSV/Parquet file with :func:`training.data.load_table`, or one on S3 through s3fs."""
    source = str(source)
    if not is_remote(source):
        return load_table(source)
    if not source.startswith(("s3://", "s3a://")):
        raise LakeError(f"unsupported source {source!r}: use a local file or s3://bucket/key")
    fs = s3_filesystem()
    name = source.rsplit("/", 1)[-1]
    path = source.split("://", 1)[1]
    if not fs.exists(path):
        raise DataError(f"data file not found: {source}")
    with tempfile.TemporaryDirectory(prefix="tripod-source-") as folder:
        local = Path(folder) / name
        fs.get(path, str(local))
        return load_table(local)


@dataclass(frozen=True)
class InputSpec:
    """Where a command's table comes from: a file, a lake dataset, or a SQL query (over a lake or files).

    Exactly one of ``data``, ``dataset`` or ``sql`` is given; ``dataset`` needs ``lake``.
    """

    data: str | None = None
    lake: str | None = None
    dataset: str | None = None
    sql: str | None = None

    def validate(self) -> InputSpec:
        given = [name for name in ("data", "dataset", "sql") if getattr(self, name)]
        if len(given) != 1:
            raise DataError(
                'give the input as exactly one of --data FILE, --lake DIR --dataset NAME, or --sql "SELECT …"'
                + (f" (got {', '.join('--' + g for g in given)})" if given else "")
            )
        if self.dataset and not self.lake:
            raise DataError("--dataset needs --lake DIR_OR_S3_URI (or TRIPOD_LAKE)")
        return self

    def describe(self) -> str:
        if self.data:
            return str(self.data)
        if self.dataset:
            return f"{self.lake}#{self.dataset}"
        return f"SQL {self.sql!r}" + (f" over {self.lake}" if self.lake else "")

    def as_dict(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items() if v}


def load_input(spec: InputSpec) -> pd.DataFrame:
    """The table an :class:`InputSpec` names, as a DataFrame.

    Raises:
        DataError: the file cannot be read, the dataset or table is unknown, or the SQL fails.
    """
    spec.validate()
    if spec.data:
        return read_source(spec.data)
    if spec.dataset:
        return Lake(spec.lake or "").read(spec.dataset)
    assert spec.sql
    if spec.lake:
        return Lake(spec.lake).query(spec.sql).frame
    con = connect_duckdb()
    try:
        return run_sql(con, spec.sql).frame
    finally:
        con.close()


@contextmanager
def materialized_input(spec: InputSpec) -> Iterator[Path]:
    """A local file holding the input: the file itself, or a temporary Parquet file of the dataset or query.

    For commands whose pipeline takes a path (``tripod train``).
    """
    spec.validate()
    if spec.data and not is_remote(spec.data):
        yield Path(spec.data)
        return
    frame = load_input(spec)
    with tempfile.TemporaryDirectory(prefix="tripod-input-") as folder:
        name = spec.dataset or "query"
        yield write_table(frame, Path(folder) / f"{name}.parquet")


def ingest(
    source: str | Path,
    lake: str | Path,
    dataset: str,
    *,
    partition_by: Sequence[str] = (),
    mode: IngestMode = "error",
) -> DatasetEntry:
    """Read ``source`` (CSV/Parquet, local or s3://) and write it into ``lake`` as ``dataset``."""
    frame = read_source(source)
    return Lake(lake).ingest(frame, dataset, partition_by=partition_by, mode=mode, source=str(source))


def query(sql: str, lake: str | Path | None = None) -> pd.DataFrame:
    """Run DuckDB SQL over the lake's datasets (by name) and return a DataFrame."""
    return load_input(InputSpec(sql=sql, lake=str(lake) if lake else None))


def read_dataset(lake: str | Path, dataset: str) -> pd.DataFrame:
    """A whole dataset of the lake as a DataFrame."""
    return Lake(lake).read(dataset)

"""The lake's catalog and datasets: :class:`Lake` writes Hive-partitioned Parquet, records it, views it in SQL."""

from __future__ import annotations

import json
import logging
import re
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from training.lake.sql import (
    QueryResult,
    connect_duckdb,
    dataset_listing,
    quote_identifier,
    quote_literal,
    run_sql,
)
from training.lake.storage import LakeError, is_remote, join_path, s3_filesystem

logger = logging.getLogger(__name__)

CATALOG_FILE = "_tripod_catalog.json"
CATALOG_VERSION = 1
MAX_PARTITIONS = 1024
"""More distinct partition values than this is almost always a mistake (one file per row); refused."""
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
IngestMode = Literal["error", "overwrite", "append"]

# Arrow type names (as ``str(pyarrow.DataType)``) → DuckDB types, for Hive partition columns.  Without these
# DuckDB guesses a partition's type from its folder names, so "007" would come back as the integer 7.
_DUCKDB_TYPES = {
    "string": "VARCHAR",
    "large_string": "VARCHAR",
    "int8": "TINYINT",
    "int16": "SMALLINT",
    "int32": "INTEGER",
    "int64": "BIGINT",
    "uint8": "UTINYINT",
    "uint16": "USMALLINT",
    "uint32": "UINTEGER",
    "uint64": "UBIGINT",
    "float": "FLOAT",
    "double": "DOUBLE",
    "bool": "BOOLEAN",
    "date32[day]": "DATE",
}


@dataclass(frozen=True)
class DatasetEntry:
    """One catalog record.

    Attributes:
        name: The dataset's (and SQL view's) name.
        location: Folder of the dataset, relative to the lake root, so a lake can be copied or moved whole.
        format: Always ``"parquet"``.
        schema: ``[{"name", "type"}]`` in the source's column order; types are Arrow type names.
        partitions: Hive partition columns, outermost first.
        rows: Row count.
        files: Number of Parquet files.
        created_at: UTC time of the ingest that created the dataset (ISO 8601).
        updated_at: UTC time of the last ingest into it.
        source: What was ingested (a path or URI), for lineage.
    """

    name: str
    location: str
    format: str
    schema: list[dict[str, str]]
    partitions: list[str]
    rows: int
    files: int
    created_at: str
    updated_at: str
    source: str = ""

    @property
    def columns(self) -> list[str]:
        return [column["name"] for column in self.schema]


class Lake:
    """A lake root and its catalog.

    Args:
        root: A local directory (created on first ingest) or an ``s3://bucket[/prefix]`` URI.
        filesystem: The fsspec filesystem for ``root``; by default local files, or :func:`s3_filesystem`.
    """

    def __init__(self, root: str | Path, *, filesystem: Any | None = None) -> None:
        root = str(root)
        if not root:
            raise LakeError("no lake given: pass --lake DIR_OR_S3_URI (or set TRIPOD_LAKE)")
        self.remote = is_remote(root)
        if self.remote:
            protocol = root.split("://", 1)[0]
            if protocol not in ("s3", "s3a"):
                raise LakeError(f"unsupported lake URI {root!r}: use a local directory or s3://bucket/prefix")
            self.root = root.rstrip("/")
            self.fs = filesystem if filesystem is not None else s3_filesystem()
        else:
            self.root = str(Path(root.removeprefix("file://")).expanduser().absolute())
            if filesystem is None:
                import fsspec

                filesystem = fsspec.filesystem("file")
            self.fs = filesystem

    def __repr__(self) -> str:
        return f"Lake({self.root!r})"

    # -- paths ----------------------------------------------------------------------------------------------
    def _fs_path(self, *parts: str) -> str:
        """A path the fsspec filesystem understands (no protocol for s3fs)."""
        path = join_path(self.root, *parts)
        return path.split("://", 1)[1] if self.remote else path

    def uri(self, *parts: str) -> str:
        """A path DuckDB understands: ``s3://…`` (through the registered filesystem) or a local path."""
        return join_path(self.root, *parts)

    # -- catalog --------------------------------------------------------------------------------------------
    def _read_catalog(self) -> dict[str, Any]:
        path = self._fs_path(CATALOG_FILE)
        self.fs.invalidate_cache()
        try:
            if not self.fs.exists(path):
                return {"version": CATALOG_VERSION, "datasets": {}}
            with self.fs.open(path, "rb") as handle:
                catalog = json.loads(handle.read().decode("utf-8"))
        except json.JSONDecodeError as exc:
            raise LakeError(f"the lake catalog {self.uri(CATALOG_FILE)} is not valid JSON: {exc}") from exc
        except (OSError, ValueError) as exc:
            raise LakeError(f"cannot read the lake catalog {self.uri(CATALOG_FILE)}: {exc}") from exc
        if not isinstance(catalog, dict) or not isinstance(catalog.get("datasets"), dict):
            raise LakeError(f"{self.uri(CATALOG_FILE)} is not a Tripod catalog")
        return catalog

    def _write_catalog(self, catalog: dict[str, Any]) -> None:
        data = json.dumps(catalog, indent=2, sort_keys=True).encode("utf-8")
        path = self._fs_path(CATALOG_FILE)
        if self.remote:  # one PUT: readers see the old or the new catalog, never half of one
            with self.fs.open(path, "wb") as handle:
                handle.write(data)
            return
        Path(self.root).mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=self.root, prefix=".catalog-", delete=False) as handle:
            handle.write(data)
        Path(handle.name).replace(path)  # atomic on POSIX

    def datasets(self) -> list[DatasetEntry]:
        """Every catalog entry, sorted by name."""
        entries = self._read_catalog()["datasets"]
        return [DatasetEntry(**entries[name]) for name in sorted(entries)]

    def dataset(self, name: str) -> DatasetEntry:
        """One catalog entry.

        Raises:
            LakeError: no dataset of that name (the message lists the ones there are).
        """
        entries = self._read_catalog()["datasets"]
        if name not in entries:
            raise LakeError(
                f"no dataset {name!r} in the lake {self.root}; {dataset_listing(sorted(entries))}"
            )
        return DatasetEntry(**entries[name])

    # -- ingest ---------------------------------------------------------------------------------------------
    def ingest(
        self,
        frame: pd.DataFrame,
        name: str,
        *,
        partition_by: Sequence[str] = (),
        mode: IngestMode = "error",
        source: str = "",
    ) -> DatasetEntry:
        """Write ``frame`` as Hive-partitioned Parquet under ``<root>/<name>/`` and record it in the catalog.

        Args:
            frame: The table.
            name: Dataset name; also its SQL view name, so letters, digits and ``_``, not starting with a digit.
            partition_by: Columns to partition by, outermost first.  Missing values go to Hive's default
                partition and read back as NULL.
            mode: ``error`` refuses an existing dataset, ``overwrite`` replaces it, ``append`` adds files to it
                (the schema and partition columns must match).
            source: What was read, recorded for lineage.

        Raises:
            LakeError: a bad name or mode, an existing dataset in ``error`` mode, an unknown or unusable
                partition column, or an append whose schema differs.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not _NAME.match(name):
            raise LakeError(
                f"dataset name {name!r} must be letters, digits and '_', not starting with a digit (it is a SQL name)"
            )
        if mode not in ("error", "overwrite", "append"):
            raise LakeError(f"ingest mode must be error, overwrite or append, not {mode!r}")
        partition_by = list(partition_by)
        missing = [c for c in partition_by if c not in frame.columns]
        if missing:
            available = ", ".join(repr(str(c)) for c in frame.columns)
            raise LakeError(f"partition column(s) {missing} not found; available columns: {available}")
        if len(partition_by) == len(frame.columns) and partition_by:
            raise LakeError("cannot partition by every column: a Parquet file needs at least one column")
        for column in partition_by:
            distinct = frame[column].nunique(dropna=False)
            if distinct > MAX_PARTITIONS:
                raise LakeError(
                    f"partitioning by {column!r} would make {distinct} partitions (at most {MAX_PARTITIONS}); "
                    "pick a column with fewer distinct values"
                )
        frame = frame.rename(columns=str)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        schema = [{"name": f.name, "type": str(f.type)} for f in table.schema]

        catalog = self._read_catalog()
        existing = catalog["datasets"].get(name)
        now = datetime.now(UTC).isoformat(timespec="seconds")
        folder = self._fs_path(name)
        if existing and mode == "error":
            raise LakeError(
                f"dataset {name!r} already exists in {self.root} ({existing['rows']} rows); "
                "pass --mode overwrite to replace it or --mode append to add to it"
            )
        if existing and mode == "append":
            if existing["schema"] != schema or existing["partitions"] != partition_by:
                raise LakeError(
                    f"cannot append to {name!r}: its schema/partitions are {_schema_text(existing)}, "
                    f"the new data has {_schema_text({'schema': schema, 'partitions': partition_by})}"
                )
        elif self.fs.exists(folder):
            self.fs.rm(folder, recursive=True)

        batch = uuid.uuid4().hex[:12]
        if not self.remote:
            Path(folder).mkdir(parents=True, exist_ok=True)
        try:
            pq.write_to_dataset(
                table,
                folder,
                partition_cols=partition_by or None,
                filesystem=self.fs,
                basename_template=f"part-{batch}-{{i}}.parquet",
                max_partitions=MAX_PARTITIONS,
            )
        except (pa.ArrowException, OSError) as exc:
            raise LakeError(f"cannot write dataset {name!r} to {self.uri(name)}: {exc}") from exc
        self.fs.invalidate_cache()
        files = len(self._files(name))
        rows = len(frame) + (existing["rows"] if existing and mode == "append" else 0)
        entry = DatasetEntry(
            name=name,
            location=name,
            format="parquet",
            schema=schema,
            partitions=partition_by,
            rows=rows,
            files=files,
            created_at=existing["created_at"] if existing and mode == "append" else now,
            updated_at=now,
            source=source,
        )
        catalog = self._read_catalog()  # re-read: keep entries another writer added meanwhile
        catalog["datasets"][name] = asdict(entry)
        catalog["version"] = CATALOG_VERSION
        self._write_catalog(catalog)
        logger.info("ingested %d rows into %s (%d files)", len(frame), self.uri(name), files)
        return entry

    def _files(self, name: str) -> list[str]:
        folder = self._fs_path(name)
        if not self.fs.exists(folder):
            return []
        return sorted(p for p in self.fs.find(folder) if p.endswith(".parquet"))

    # -- SQL ------------------------------------------------------------------------------------------------
    def connect(self) -> Any:
        """A DuckDB connection with one view per catalog dataset (and the S3 filesystem registered)."""
        con = connect_duckdb(s3=self.fs if self.remote else None)
        for entry in self.datasets():
            con.execute(f"CREATE OR REPLACE VIEW {quote_identifier(entry.name)} AS {self._select(entry)}")
        return con

    def _select(self, entry: DatasetEntry) -> str:
        pattern = quote_literal(self.uri(entry.location, "**", "*.parquet"))
        options = ["union_by_name = true"]
        if entry.partitions:
            types = {c["name"]: _DUCKDB_TYPES.get(c["type"], "VARCHAR") for c in entry.schema}
            hive = ", ".join(f"{quote_literal(c)}: {quote_literal(types[c])}" for c in entry.partitions)
            options += ["hive_partitioning = true", f"hive_types = {{{hive}}}"]
        else:
            options.append("hive_partitioning = false")
        columns = ", ".join(quote_identifier(c) for c in entry.columns)
        return f"SELECT {columns} FROM read_parquet({pattern}, {', '.join(options)})"

    def read(self, name: str) -> pd.DataFrame:
        """A whole dataset as a DataFrame, columns in their ingested order."""
        self.dataset(name)  # a one-line error naming the datasets there are
        return self.query(f"SELECT * FROM {quote_identifier(name)}").frame

    def query(self, sql: str) -> QueryResult:
        """Run DuckDB SQL over the catalog's datasets (by name) and any paths DuckDB can read.

        Raises:
            LakeError: an unknown table (listing the datasets) or any SQL error, in one line.
        """
        con = self.connect()
        try:
            return run_sql(con, sql, tables=[e.name for e in self.datasets()])
        finally:
            con.close()


def _schema_text(entry: dict[str, Any]) -> str:
    columns = ", ".join(f"{c['name']}:{c['type']}" for c in entry["schema"])
    return f"[{columns}] partitioned by {entry['partitions'] or 'nothing'}"

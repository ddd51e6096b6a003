"""The data lake: partitioned Parquet in a directory or an S3 bucket, a catalog beside it, and SQL over both.

A lake is a root (``/data/lake`` or ``s3://bucket/prefix``) holding one folder of Hive-partitioned Parquet per
dataset (``reviews/division_name=General/part-0.parquet``) and one catalog file, ``_tripod_catalog.json``, that
maps each dataset name to its folder, format, schema, partition columns, row count and creation time.

SQL runs in DuckDB.  Every catalog dataset is a view of the same name over ``read_parquet`` with Hive
partitioning, so a filter on a partition column skips the other partitions' files (:class:`QueryResult` says
how many files the scans read).  Object storage is read through an fsspec filesystem registered with DuckDB
(s3fs), not DuckDB's own ``httpfs`` extension: s3fs takes its endpoint and credentials from the standard AWS
environment variables and config files (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``~/.aws/config`` …), so
any S3-compatible store works, and nothing is downloaded at run time.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from training.data import load_table, write_table
from training.errors import DataError

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


class LakeError(DataError):
    """A lake, dataset or query the user named that cannot be used (missing table, bad SQL, bad name...)."""


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


def is_remote(uri: str) -> bool:
    return "://" in str(uri) and not str(uri).startswith("file://")


def s3_filesystem() -> Any:
    """An s3fs filesystem configured the standard AWS way (environment, ``~/.aws/config``, instance roles).

    A custom endpoint (MinIO, Ceph, moto, …) comes from ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` or the
    profile's ``endpoint_url``, all read by botocore.  A fresh instance each time: fsspec caches instances by
    their arguments, and a cached one would keep an endpoint that the environment has since changed.
    """
    try:
        import s3fs
    except ImportError as exc:  # pragma: no cover - s3fs is in the train extra
        raise LakeError("s3:// needs s3fs: pip install -e '.[train]'") from exc
    return s3fs.S3FileSystem(skip_instance_cache=True)


def _join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts if p)])


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
        path = _join(self.root, *parts)
        return path.split("://", 1)[1] if self.remote else path

    def uri(self, *parts: str) -> str:
        """A path DuckDB understands: ``s3://…`` (through the registered filesystem) or a local path."""
        return _join(self.root, *parts)

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
            raise LakeError(f"no dataset {name!r} in the lake {self.root}; {_listing(sorted(entries))}")
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
            con.execute(f"CREATE OR REPLACE VIEW {_quote(entry.name)} AS {self._select(entry)}")
        return con

    def _select(self, entry: DatasetEntry) -> str:
        pattern = _literal(self.uri(entry.location, "**", "*.parquet"))
        options = ["union_by_name = true"]
        if entry.partitions:
            types = {c["name"]: _DUCKDB_TYPES.get(c["type"], "VARCHAR") for c in entry.schema}
            hive = ", ".join(f"{_literal(c)}: {_literal(types[c])}" for c in entry.partitions)
            options += ["hive_partitioning = true", f"hive_types = {{{hive}}}"]
        else:
            options.append("hive_partitioning = false")
        columns = ", ".join(_quote(c) for c in entry.columns)
        return f"SELECT {columns} FROM read_parquet({pattern}, {', '.join(options)})"

    def read(self, name: str) -> pd.DataFrame:
        """A whole dataset as a DataFrame, columns in their ingested order."""
        self.dataset(name)  # a one-line error naming the datasets there are
        return self.query(f"SELECT * FROM {_quote(name)}").frame

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
        raise LakeError(f"{first.removeprefix('Catalog Error: ')} ({_listing(sorted(tables))})") from exc
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


def _quote(name: str) -> str:
    return '"' + str(name).replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def _listing(names: Sequence[str]) -> str:
    return f"datasets in the catalog: {', '.join(names)}" if names else "the catalog is empty"


def _schema_text(entry: dict[str, Any]) -> str:
    columns = ", ".join(f"{c['name']}:{c['type']}" for c in entry["schema"])
    return f"[{columns}] partitioned by {entry['partitions'] or 'nothing'}"


# -- reading any input --------------------------------------------------------------------------------------


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


# -- module-level API -----------------------------------------------------------------------------------------


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

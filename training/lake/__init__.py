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

Modules: :mod:`~training.lake.storage` (local or S3, :class:`LakeError`), :mod:`~training.lake.sql` (DuckDB),
:mod:`~training.lake.catalog` (:class:`Lake`, the catalog), :mod:`~training.lake.inputs` (a command's input
table).  The names the CLI and tests use are importable from here.
"""

from training.lake.catalog import CATALOG_FILE, DatasetEntry, IngestMode, Lake
from training.lake.inputs import (
    InputSpec,
    ingest,
    load_input,
    materialized_input,
    query,
    read_dataset,
    read_source,
)
from training.lake.sql import QueryResult, connect_duckdb, run_sql
from training.lake.storage import LakeError, is_remote, s3_filesystem

__all__ = [
    "CATALOG_FILE",
    "DatasetEntry",
    "IngestMode",
    "InputSpec",
    "Lake",
    "LakeError",
    "QueryResult",
    "connect_duckdb",
    "ingest",
    "is_remote",
    "load_input",
    "materialized_input",
    "query",
    "read_dataset",
    "read_source",
    "run_sql",
    "s3_filesystem",
]

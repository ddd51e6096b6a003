"""The lake on a local directory: ingest → catalog → SQL round trip, partition pruning, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from training.data import load_table
from training.errors import DataError
from training.lake import CATALOG_FILE, InputSpec, Lake, LakeError, load_input, materialized_input, query


@pytest.fixture
def table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": range(12),
            "region": ["north", "south", "east", None] * 3,
            "code": ["007", "010", "007", "010"] * 3,
            "score": [float(i) / 4 for i in range(12)],
            "label": ["positive", "negative", "neutral"] * 4,
        }
    )


@pytest.fixture
def lake(tmp_path: Path, table: pd.DataFrame) -> Lake:
    lake = Lake(tmp_path / "lake")
    lake.ingest(table, "sales", partition_by=["region"], source="test")
    return lake


def test_ingest_writes_hive_partitions_and_a_catalog_entry(lake: Lake, table: pd.DataFrame) -> None:
    root = Path(lake.root)
    folders = sorted(p.name for p in (root / "sales").iterdir())
    assert folders == ["region=__HIVE_DEFAULT_PARTITION__", "region=east", "region=north", "region=south"]
    catalog = json.loads((root / CATALOG_FILE).read_text())
    entry = catalog["datasets"]["sales"]
    assert entry["location"] == "sales" and entry["format"] == "parquet"
    assert entry["rows"] == len(table) and entry["files"] == 4 and entry["partitions"] == ["region"]
    assert [c["name"] for c in entry["schema"]] == list(table.columns)
    assert entry["created_at"].endswith("+00:00")


def test_round_trip_keeps_rows_columns_and_types(lake: Lake, table: pd.DataFrame) -> None:
    back = lake.read("sales").sort_values("id").reset_index(drop=True)
    assert list(back.columns) == list(table.columns)  # the partition column returns to its place
    assert (
        back["code"].tolist() == table["code"].tolist()
    )  # "007" stays text: partition types come from the catalog
    assert back["region"].isna().sum() == 3  # Hive's default partition reads back as missing
    pd.testing.assert_frame_equal(
        back.drop(columns="region"), table.drop(columns="region"), check_dtype=False
    )


def test_partition_filter_reads_only_its_files(lake: Lake) -> None:
    result = lake.query("SELECT count(*) AS n FROM sales WHERE region = 'north'")
    assert result.frame["n"].tolist() == [3]
    assert (result.files_read, result.files_total) == (1, 4)
    assert result.describe() == "1 row; read 1 of 4 Parquet files"
    everything = lake.query("SELECT count(*) AS n FROM sales")
    assert (everything.files_read, everything.files_total) == (4, 4)


def test_sql_joins_catalog_tables_by_name(lake: Lake, table: pd.DataFrame) -> None:
    lake.ingest(pd.DataFrame({"label": ["positive", "negative"], "weight": [1.0, 2.0]}), "weights")
    frame = query(
        "SELECT s.label, sum(w.weight) AS total FROM sales s JOIN weights w USING (label) "
        "GROUP BY 1 ORDER BY 1",
        lake.root,
    )
    assert frame.to_dict(orient="list") == {"label": ["negative", "positive"], "total": [8.0, 4.0]}


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        pytest.param(
            "SELECT * FROM nowhere", r"nowhere does not exist.*datasets in the catalog: sales", id="table"
        ),
        pytest.param("SELEC 1", r"^SQL error: Parser Error: syntax error", id="syntax"),
        pytest.param("SELECT nope FROM sales", r"^SQL error: Binder Error", id="column"),
        pytest.param("  ", "empty", id="empty"),
    ],
)
def test_bad_sql_is_a_one_line_error(lake: Lake, sql: str, message: str) -> None:
    with pytest.raises(LakeError, match=message) as caught:
        lake.query(sql)
    assert "\n" not in str(caught.value)


def test_unknown_dataset_lists_the_catalog(lake: Lake) -> None:
    with pytest.raises(LakeError, match=r"no dataset 'nope'.*datasets in the catalog: sales"):
        lake.read("nope")


def test_existing_dataset_needs_a_mode(lake: Lake, table: pd.DataFrame) -> None:
    with pytest.raises(LakeError, match=r"already exists.*--mode overwrite"):
        lake.ingest(table, "sales", partition_by=["region"])
    lake.ingest(table, "sales", partition_by=["region"], mode="append")
    assert lake.dataset("sales").rows == 2 * len(table)
    assert len(lake.read("sales")) == 2 * len(table)
    lake.ingest(table.head(2), "sales", mode="overwrite")
    assert lake.dataset("sales").rows == 2 and lake.dataset("sales").partitions == []
    assert len(lake.read("sales")) == 2


def test_append_refuses_another_schema(lake: Lake, table: pd.DataFrame) -> None:
    with pytest.raises(LakeError, match="cannot append"):
        lake.ingest(table.drop(columns="score"), "sales", partition_by=["region"], mode="append")


@pytest.mark.parametrize(
    ("name", "partition_by", "message"),
    [
        pytest.param("bad-name", [], "letters, digits", id="name"),
        pytest.param(
            "ok",
            ["nope"],
            r"partition column\(s\) \['nope'\] not found; available columns: 'id'",
            id="column",
        ),
        pytest.param("ok", ["id"], None, id="fine"),
    ],
)
def test_ingest_checks_its_arguments(
    tmp_path: Path, table: pd.DataFrame, name: str, partition_by: list[str], message: str | None
) -> None:
    lake = Lake(tmp_path / "lake")
    if message is None:
        assert lake.ingest(table, name, partition_by=partition_by).files == 12
        return
    with pytest.raises(LakeError, match=message):
        lake.ingest(table, name, partition_by=partition_by)


def test_input_spec_needs_exactly_one_input(lake: Lake, tmp_path: Path, table: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="exactly one of"):
        InputSpec().validate()
    with pytest.raises(DataError, match=r"exactly one of.*--data, --sql"):
        InputSpec(data="x.csv", sql="SELECT 1").validate()
    with pytest.raises(DataError, match="--dataset needs --lake"):
        InputSpec(dataset="sales").validate()
    assert len(load_input(InputSpec(lake=lake.root, dataset="sales"))) == len(table)
    path = tmp_path / "t.parquet"
    table.to_parquet(path)
    assert load_input(InputSpec(sql=f"SELECT count(*) AS n FROM '{path}'"))["n"].tolist() == [12]


def test_materialized_input_writes_a_temporary_parquet(lake: Lake, table: pd.DataFrame) -> None:
    with materialized_input(
        InputSpec(lake=lake.root, sql="SELECT * FROM sales WHERE region = 'east'")
    ) as path:
        assert path.suffix == ".parquet"
        assert len(load_table(path)) == 3
    assert not path.exists()

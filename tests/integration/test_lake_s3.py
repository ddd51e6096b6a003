"""The lake on S3: moto's S3-compatible server on a loopback port, real HTTP through s3fs, DuckDB on top.

The endpoint and credentials reach s3fs only through the standard AWS environment variables, as they would for
MinIO or AWS itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from training.lake import InputSpec, Lake, LakeError, load_input, s3_filesystem

BUCKET = "tripod-lake"


@pytest.fixture
def aws_env(s3_env: dict[str, str]) -> dict[str, str]:
    """The shared moto variables (tests/conftest.py), with the lake's bucket."""
    fs = s3_filesystem()
    if not fs.exists(BUCKET):
        fs.mkdir(BUCKET)
    return s3_env


@pytest.fixture
def reviews_sample(prepared_reviews: pd.DataFrame) -> pd.DataFrame:
    return prepared_reviews.sample(n=600, random_state=1).reset_index(drop=True)


def test_ingest_and_query_round_trip_with_partition_pruning(
    aws_env: dict[str, str], reviews_sample: pd.DataFrame
) -> None:
    lake = Lake(f"s3://{BUCKET}/lake-api")
    entry = lake.ingest(reviews_sample, "reviews", partition_by=["division_name"], mode="overwrite")
    assert entry.rows == 600 and entry.files == reviews_sample["division_name"].nunique(dropna=False)
    keys = s3_filesystem().find(f"{BUCKET}/lake-api")
    assert f"{BUCKET}/lake-api/_tripod_catalog.json" in keys
    assert any("/reviews/division_name=General/" in key for key in keys)

    back = lake.read("reviews")
    assert len(back) == 600 and list(back.columns) == list(reviews_sample.columns)
    assert sorted(back["review_body"]) == sorted(reviews_sample["review_body"])

    result = lake.query(
        "SELECT sentiment, count(*) AS n FROM reviews WHERE division_name = 'Initmates' GROUP BY 1 ORDER BY 1"
    )
    expected = reviews_sample[reviews_sample["division_name"] == "Initmates"]["sentiment"].value_counts()
    assert dict(zip(result.frame["sentiment"], result.frame["n"], strict=True)) == expected.to_dict()
    assert result.files_read == 1 and result.files_total == entry.files


def test_missing_table_and_bad_sql_on_s3_are_one_line_errors(
    aws_env: dict[str, str], reviews_sample: pd.DataFrame
) -> None:
    lake = Lake(f"s3://{BUCKET}/lake-errors")
    lake.ingest(reviews_sample.head(20), "few", mode="overwrite")
    with pytest.raises(LakeError, match=r"^Table with name missing does not exist!.*catalog: few\)$"):
        lake.query("SELECT * FROM missing")
    with pytest.raises(LakeError, match=r"^SQL error: Parser Error") as caught:
        lake.query("SELECT FROM WHERE")
    assert "\n" not in str(caught.value)


def test_cli_ingests_from_s3_and_queries_to_a_file(
    aws_env: dict[str, str], reviews_sample: pd.DataFrame, tmp_path: Path
) -> None:
    fs = s3_filesystem()
    local = tmp_path / "reviews.parquet"
    reviews_sample.to_parquet(local, index=False)
    fs.put(str(local), f"{BUCKET}/raw/reviews.parquet")
    env = {**os.environ, **aws_env}
    lake = f"s3://{BUCKET}/lake-cli"

    def tripod(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tripod.cli", *args],
            check=False,
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )

    done = tripod(
        "ingest",
        f"s3://{BUCKET}/raw/reviews.parquet",
        "--lake",
        lake,
        "--dataset",
        "reviews",
        "--partition-by",
        "sentiment",
        "--mode",
        "overwrite",
    )
    assert done.returncode == 0, done.stderr
    assert "ingested 600 rows" in done.stdout and "partitioned by sentiment" in done.stdout

    out = tmp_path / "negative.csv"
    done = tripod(
        "query",
        "SELECT review_body FROM reviews WHERE sentiment = 'negative'",
        "--lake",
        lake,
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    assert "read 1 of 3 Parquet files" in done.stdout
    assert len(pd.read_csv(out)) == int((reviews_sample["sentiment"] == "negative").sum())


def test_sql_input_over_s3_feeds_commands(aws_env: dict[str, str], reviews_sample: pd.DataFrame) -> None:
    lake = Lake(f"s3://{BUCKET}/lake-input")
    lake.ingest(reviews_sample, "reviews", partition_by=["sentiment"], mode="overwrite")
    frame = load_input(InputSpec(lake=lake.root, sql="SELECT * FROM reviews WHERE age > 40"))
    assert len(frame) == int((reviews_sample["age"] > 40).sum())
    assert len(load_input(InputSpec(lake=lake.root, dataset="reviews"))) == 600

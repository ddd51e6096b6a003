"""The data commands through the real `tripod` entry point: ingest, datasets, query, and inputs of `train`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.cli import run_cli


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "source.csv"
    pd.DataFrame({"id": range(9), "shop": ["a", "b", "c"] * 3, "amount": [1.5] * 9}).to_csv(path, index=False)
    return path


def test_ingest_list_and_query(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lake = str(tmp_path / "lake")
    code, out, err = run_cli(
        ["ingest", str(source), "--lake", lake, "--dataset", "sales", "--partition-by", "shop"],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    assert (
        out.strip() == f"ingested 9 rows into {lake}/sales as 'sales' (3 Parquet files, partitioned by shop)"
    )

    monkeypatch.setenv("TRIPOD_LAKE", lake)  # --lake from the environment
    code, out, _ = run_cli(["datasets"], monkeypatch, capsys)
    assert code == 0 and out.startswith("sales\t9 rows\t3 columns\t3 files partitioned by shop")

    code, out, _ = run_cli(
        ["query", "SELECT shop, sum(amount) AS total FROM sales WHERE shop = 'b' GROUP BY 1"],
        monkeypatch,
        capsys,
    )
    assert code == 0
    assert out.splitlines()[-1] == "(1 row; read 1 of 3 Parquet files)"
    assert "b    4.5" in out

    target = tmp_path / "out.parquet"
    code, out, _ = run_cli(
        ["query", "SELECT * FROM sales ORDER BY id", "--out", str(target)], monkeypatch, capsys
    )
    assert code == 0 and out.strip() == f"wrote 9 rows to {target} (read 3 of 3 Parquet files)"
    assert pd.read_parquet(target)["id"].tolist() == list(range(9))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["query", "SELECT * FROM nope"], "Table with name nope does not exist!", id="missing-table"
        ),
        pytest.param(["query", "SELEKT 1"], "SQL error: Parser Error", id="bad-sql"),
        pytest.param(
            ["ingest", "{source}", "--dataset", "9bad"], "dataset name '9bad' must be", id="bad-name"
        ),
        pytest.param(
            ["ingest", "{source}", "--dataset", "x", "--partition-by", "shp"],
            r"partition column(s) ['shp'] not found; available columns: 'id', 'shop', 'amount'",
            id="bad-partition",
        ),
        pytest.param(
            ["ingest", "missing.csv", "--dataset", "x"], "data file not found: missing.csv", id="no-file"
        ),
        pytest.param(
            ["train", "--target", "y", "--text-columns", "t", "--out", "m"],
            "exactly one of --data FILE",
            id="train-no-input",
        ),
        pytest.param(
            ["explore", "--target", "y", "--dataset", "sales", "--sql", "SELECT 1"],
            "exactly one of",
            id="two-inputs",
        ),
        pytest.param(
            ["explore", "--target", "y", "--dataset", "nope"], "no dataset 'nope'", id="unknown-dataset"
        ),
    ],
)
def test_data_command_errors_are_one_line(
    source: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    lake = tmp_path / "lake"
    monkeypatch.setenv("TRIPOD_LAKE", str(lake))
    assert run_cli(["ingest", str(source), "--dataset", "sales"], monkeypatch, capsys)[0] == 0
    code, _, err = run_cli([a.replace("{source}", str(source)) for a in args], monkeypatch, capsys)
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("tripod: error: ")]
    assert len(lines) == 1 and message in lines[0], err


def test_train_refuses_a_numeric_text_column_in_one_line(source: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tripod.cli",
            "train",
            "--data",
            str(source),
            "--target",
            "shop",
            "--text-columns",
            "amount",
            "--out",
            str(tmp_path / "m"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("tripod: error: ")]
    assert lines == [
        (
            "tripod: error: text column 'amount' holds numbers (dtype float64), not text: refused rather than "
            "tokenized as words; use free-text columns (numbers belong in numeric inputs, e.g. tripod automl "
            "--numeric)"
        )
    ], result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("m/v*"))  # no model version written

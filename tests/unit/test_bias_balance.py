"""`tripod balance`: down-sampling by class and by facet × class, and the before/after report
(training/bias/balance.py, report.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.cli import run_cli
from training.bias import BiasError, FacetSpec, LabelSpec, balance, bias_analysis
from training.bias.analysis import metric_table


@pytest.fixture(scope="module")
def reviews(prepared_reviews: pd.DataFrame) -> pd.DataFrame:
    return prepared_reviews.sample(n=3000, random_state=3).reset_index(drop=True)


@pytest.fixture(scope="module")
def reviews_path(reviews: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bias") / "reviews.parquet"
    reviews.to_parquet(path, index=False)
    return path


def test_balance_by_class_and_by_facet_and_class(reviews: pd.DataFrame) -> None:
    balanced, summary = balance(reviews, "sentiment", by="class", seed=1)
    counts = balanced["sentiment"].value_counts()
    assert counts.nunique() == 1 and counts.iloc[0] == reviews["sentiment"].value_counts().min()
    assert balanced.index.is_monotonic_increasing

    balanced, summary = balance(
        reviews, "sentiment", by="facet-class", facet=FacetSpec("division_name"), seed=1
    )
    cells = balanced.groupby(["division_name", "sentiment"]).size()
    assert cells.nunique() == 1 and len(cells) == 9
    assert summary["dropped_missing"] == int(reviews["division_name"].isna().sum())
    after = bias_analysis(balanced, LabelSpec("sentiment", ("positive",)), [FacetSpec("division_name")])
    assert np.allclose(metric_table(after, "pre_training", "division_name")["DPL"], 0.0)

    with pytest.raises(BiasError, match="needs a --facet"):
        balance(reviews, "sentiment", by="facet-class")


def test_balance_cli_reports_before_and_after(
    reviews_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "balanced.parquet"
    code, stdout, err = run_cli(
        [
            "balance",
            "--data",
            str(reviews_path),
            "--label",
            "sentiment",
            "--by",
            "facet-class",
            "--facet",
            "age",
            "--threshold",
            "40",
            "--positive-label",
            "positive",
            "--out",
            str(out),
            "--report",
            str(tmp_path / "rep"),
        ],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    assert re.search(r"age=\(40, \d+\]: CI -?[\d.]+ → -?0\.000, DPL -?[\d.]+ → -?0\.000", stdout), stdout
    report = json.loads((tmp_path / "rep" / "balance.json").read_text())
    assert report["rows_after"] == len(pd.read_parquet(out)) == 6 * report["rows_per_cell"]
    page = (tmp_path / "rep" / "balance.html").read_text()
    for section in ("counts", "metrics"):
        body = page.split(f'<section id="{section}">')[1].split("</section>")[0]
        assert "data:image/png;base64," in body

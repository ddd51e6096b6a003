"""`tripod explore`: every section on a sample of the reviews, leak warnings, the HTML, the notebook runs."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest

from training.errors import DataError
from training.explore import ExploreSettings, explore, write_exploration
from training.explore.report import SECTIONS
from training.explore.statistics import cramers_v, target_summary

PLOT_SECTIONS = ("target", "columns", "text", "correlations", "anomalies", "prediction-power")


@pytest.fixture(scope="module")
def small_reviews(prepared_reviews: pd.DataFrame) -> pd.DataFrame:
    frame = prepared_reviews.sample(n=600, random_state=5).reset_index(drop=True)
    return pd.concat([frame, frame.head(2)], ignore_index=True)  # two exact duplicates


@pytest.fixture(scope="module")
def report(small_reviews: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("explore")
    data = out / "reviews.parquet"
    small_reviews.to_parquet(data, index=False)
    settings = ExploreSettings(target="sentiment", sample_rows=500, seed=1)
    result = explore(small_reviews, settings)
    paths = write_exploration(result, out, spec={"data": str(data)}, settings=settings)
    return out, json.loads(paths["json"].read_text())


def test_summary_covers_the_target_columns_duplicates_and_leaks(
    report: tuple[Path, dict], small_reviews: pd.DataFrame
) -> None:
    _, summary = report
    counts = small_reviews["sentiment"].value_counts()
    info = summary["target_summary"]
    assert info["problem_type"] == "multiclass"
    assert info["classes"] == counts.to_dict()
    assert info["imbalance_ratio"] == pytest.approx(counts.max() / counts.min())
    assert summary["roles"]["review_body"] == "text" and summary["roles"]["age"] == "numeric"
    assert (
        summary["roles"]["division_name"] == "categorical" and summary["roles"]["clothing_id"] == "identifier"
    )
    profile = {row["column"]: row for row in summary["column_profile"]}
    assert profile["title"]["missing"] == int(small_reviews["title"].isna().sum())
    assert profile["age"]["mean"] == pytest.approx(small_reviews["age"].mean())
    assert profile["division_name"]["distinct"] == small_reviews["division_name"].nunique()
    assert summary["duplicates"]["duplicate_rows"] == 2
    assert set(summary["text"]["review_body"]["top_ngrams"]) == {"negative", "neutral", "positive"}
    assert summary["correlations"]["cramers_v"]["rating"] == pytest.approx(1.0)
    assert summary["anomalies"]["rows_scored"] == 500
    power = {row["column"]: row for row in summary["prediction_power"]["columns"]}
    assert power["rating"]["score"] > 0.95 and power["review_body"]["power"] > power["age"]["power"]
    leaks = summary["leakage_warnings"]
    assert len(leaks) == 1 and leaks[0].startswith("column 'rating' may leak the target 'sentiment'")
    assert any("imbalanced" in w for w in summary["warnings"])


def test_html_has_every_section_and_a_picture_for_each_plot_section(report: tuple[Path, dict]) -> None:
    out, _ = report
    page = (out / "exploration.html").read_text()
    for section in SECTIONS:
        assert f'<section id="{section}">' in page
    for section in PLOT_SECTIONS:
        body = page.split(f'<section id="{section}">')[1].split("</section>")[0]
        assert re.search(r'<img alt="[^"]*" src="data:image/png;base64,[A-Za-z0-9+/]{100}', body), section
    assert "Target leak? column &#x27;rating&#x27;" in page


def test_notebook_executes(report: tuple[Path, dict]) -> None:
    import nbformat

    from training.explore import execute_notebook

    out, _ = report
    notebook = execute_notebook(out / "exploration.ipynb", timeout=300)
    errors = [
        o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]
    assert not errors
    images = [
        o
        for c in notebook.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "image/png" in o.get("data", {})
    ]
    assert len(images) >= 5
    nbformat.validate(nbformat.read(str(out / "exploration.ipynb"), as_version=4))


@pytest.mark.parametrize(
    ("x", "y", "expected"),
    [
        (["a", "a", "b", "b"], [1, 1, 0, 0], 1.0),
        (["a", "a", "b", "b"], [1, 0, 1, 0], 0.0),
        # 2×2 table [[2, 1], [1, 2]]: χ² = 2/3, n = 6 → V = √(2/3 / 6) = 1/3
        (["a", "a", "a", "b", "b", "b"], [1, 1, 0, 1, 0, 0], 1 / 3),
    ],
    ids=["perfect", "independent", "partial"],
)
def test_cramers_v_by_hand(x: list[str], y: list[int], expected: float) -> None:
    assert cramers_v(pd.Series(x), pd.Series(y)) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("frame", "target", "message"),
    [
        pytest.param(pd.DataFrame({"a": [], "b": []}), "a", "no rows", id="empty"),
        pytest.param(
            pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}),
            "c",
            r"column\(s\) 'c' not found; available columns: 'a', 'b'",
            id="unknown-target",
        ),
        pytest.param(pd.DataFrame({"a": [1, 2], "b": ["x", "x"]}), "b", "1 distinct value", id="one-class"),
        pytest.param(pd.DataFrame({"a": [1, 2], "b": [None, None]}), "b", "is empty", id="empty-target"),
    ],
)
def test_bad_exploration_input(frame: pd.DataFrame, target: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        explore(frame, ExploreSettings(target=target))


def test_regression_target_summary() -> None:
    frame = pd.DataFrame({"y": [float(i) * 1.5 for i in range(40)]})
    info = target_summary(frame, "y")
    assert info["problem_type"] == "regression" and info["imbalance_ratio"] is None
    assert math.isclose(info["statistics"]["mean"], frame["y"].mean())

"""`tripod bias`: Clarify-shaped analysis.json and the HTML report, one-line errors for bad input, a served model's
predictions for post-training metrics (training/bias/report.py, analysis.py, tripod/cli_data.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.cli import error_line, run_cli
from training.bias import BiasError, FacetSpec
from tripod.cli_data import facet_specs


@pytest.fixture(scope="module")
def reviews(prepared_reviews: pd.DataFrame) -> pd.DataFrame:
    return prepared_reviews.sample(n=3000, random_state=3).reset_index(drop=True)


@pytest.fixture(scope="module")
def reviews_path(reviews: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bias") / "reviews.parquet"
    reviews.to_parquet(path, index=False)
    return path


def test_cli_writes_clarify_shaped_analysis_and_html(
    reviews_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(
        [
            "bias",
            "--data",
            str(reviews_path),
            "--label",
            "sentiment",
            "--positive-label",
            "positive",
            "--facet",
            "division_name",
            "--facet",
            "age",
            "--threshold",
            "40",
            "--facet",
            "class_name",
            "--facet-value",
            "Dresses",
            "--facet-value",
            "Knits",
            "--group-variable",
            "department_name",
            "--predictions",
            "recommended_ind",
            "--out",
            str(tmp_path),
        ],
        monkeypatch,
        capsys,
    )
    # recommended_ind is 0/1, not a sentiment: the predictions must use the label's values
    assert code == 2 and "prediction column holds numbers; 'positive' is not a number" in error_line(err)

    frame = pd.read_parquet(reviews_path)
    frame["predicted"] = np.where(frame["recommended_ind"] == 1, "positive", "negative")
    path = tmp_path / "with_predictions.parquet"
    frame.to_parquet(path)
    code, out, err = run_cli(
        [
            "bias",
            "--data",
            str(path),
            "--label",
            "sentiment",
            "--positive-label",
            "positive",
            "--facet",
            "division_name",
            "--facet",
            "age",
            "--threshold",
            "40",
            "--facet",
            "class_name",
            "--facet-value",
            "Dresses",
            "--facet-value",
            "Knits",
            "--group-variable",
            "department_name",
            "--predictions",
            "predicted",
            "--out",
            str(tmp_path / "report"),
        ],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    assert "pre- and post-training metrics for 3 facet(s)" in out
    analysis = json.loads((tmp_path / "report" / "analysis.json").read_text())
    for stage in ("pre_training_bias_metrics", "post_training_bias_metrics"):
        block = analysis[stage]
        assert block["label"] == "sentiment" and block["label_value_or_threshold"] == "positive"
        assert list(block["facets"]) == ["division_name", "age", "class_name"]
        assert [e["value_or_threshold"] for e in block["facets"]["division_name"]] == [
            "General",
            "General Petite",
            "Initmates",
        ]
        assert [e["value_or_threshold"] for e in block["facets"]["age"]] == [f"(40, {frame['age'].max()}]"]
        assert [e["value_or_threshold"] for e in block["facets"]["class_name"]] == ["Dresses,Knits"]
        for entries in block["facets"].values():
            for entry in entries:
                for metric in entry["metrics"]:
                    assert set(metric) <= {"name", "description", "value", "error"}
                    assert isinstance(metric["value"], (float, int)) or metric["value"] in (
                        "Infinity",
                        "-Infinity",
                    )
    assert analysis["details"]["excluded"]["facet_missing"]["division_name"] == int(
        frame["division_name"].isna().sum()
    )

    page = (tmp_path / "report" / "report.html").read_text()
    for section in ("summary", "pre-training", "post-training", "formulas"):
        assert f'<section id="{section}">' in page
    for section in ("pre-training", "post-training"):
        body = page.split(f'<section id="{section}">')[1].split("</section>")[0]
        assert (
            len(re.findall(r'<img alt="[^"]*" src="data:image/png;base64,', body)) >= 2 * 3
        )  # 2 plots per facet
        assert "Facet division_name" in body and "DPL" in body


def test_facet_options_bind_to_the_facet_before_them() -> None:
    specs = facet_specs(
        [
            "--data",
            "x",
            "--facet",
            "a",
            "--facet",
            "age",
            "--threshold",
            "40",
            "--facet=b",
            "--facet-value",
            "x",
            "--facet-value=y",
        ]
    )
    assert specs == [FacetSpec("a"), FacetSpec("age", threshold=40.0), FacetSpec("b", ("x", "y"))]
    with pytest.raises(BiasError, match="must follow the --facet"):
        facet_specs(["--threshold", "3", "--facet", "a"])
    with pytest.raises(BiasError, match="not both"):
        facet_specs(["--facet", "a", "--threshold", "3", "--facet-value", "x"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["--label", "sentiment", "--positive-label", "positive", "--facet", "divison"],
            r"column\(s\) 'divison' not found; available columns: 'clothing_id', 'age'",
            id="unknown-column",
        ),
        pytest.param(
            ["--label", "sentment", "--positive-label", "positive", "--facet", "age"],
            r"column\(s\) 'sentment' not found; available columns:",
            id="unknown-label",
        ),
        pytest.param(
            ["--label", "sentiment", "--positive-label", "positive", "--facet", "constant"],
            r"facet 'constant' has only one value \('same'",
            id="one-value-facet",
        ),
        pytest.param(
            ["--label", "sentiment", "--positive-label", "Positive", "--facet", "division_name"],
            r"label 'sentiment' has no positive rows \(Positive\); its values are: positive \(\d+\), ",
            id="no-positive-label",
        ),
        pytest.param(
            [
                "--label",
                "sentiment",
                "--positive-label",
                "positive",
                "--facet",
                "division_name",
                "--facet-value",
                "Mens",
            ],
            r"facet 'division_name' has no rows with value\(s\) \['Mens'\]",
            id="unknown-facet-value",
        ),
        pytest.param(
            ["--label", "sentiment", "--positive-label", "positive", "--facet", "age", "--threshold", "200"],
            r"threshold 200 puts every row of facet 'age' at or below it",
            id="threshold-outside",
        ),
        pytest.param(
            ["--label", "sentiment", "--positive-label", "positive", "--facet", "review_body"],
            r"facet 'review_body' has \d+ distinct values",
            id="too-many-values",
        ),
        pytest.param(
            ["--label", "sentiment", "--facet", "age"], r"give the positive label value", id="no-positive"
        ),
    ],
)
def test_bad_bias_input_is_one_line(
    reviews: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    path = tmp_path / "data.parquet"
    reviews.assign(constant="same").to_parquet(path)
    code, _, err = run_cli(
        ["bias", "--data", str(path), *args, "--out", str(tmp_path / "r")], monkeypatch, capsys
    )
    assert code == 2
    assert re.search(message, error_line(err)), err


@pytest.mark.parametrize("command", ["bias", "explore", "balance", "ingest"])
@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(b"", "data file is empty", id="empty-file"),
        pytest.param(b"sentiment,facet\npositive,caf\xe9\n", "is not UTF-8 text", id="not-utf8"),
    ],
)
def test_unreadable_files_are_one_line_errors(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    content: bytes,
    message: str,
) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(content)
    args = {
        "bias": [
            "bias",
            "--data",
            str(path),
            "--label",
            "sentiment",
            "--positive-label",
            "positive",
            "--facet",
            "facet",
        ],
        "explore": ["explore", "--data", str(path), "--target", "sentiment", "--out", str(tmp_path / "e")],
        "balance": ["balance", "--data", str(path), "--label", "sentiment", "--out", str(tmp_path / "b.csv")],
        "ingest": ["ingest", str(path), "--lake", str(tmp_path / "lake"), "--dataset", "d"],
    }[command]
    code, _, err = run_cli(args, monkeypatch, capsys)
    assert code == 2
    assert message in error_line(err)


def test_post_training_from_a_served_model(
    trained_model_dir: Path,
    reviews: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from services.runtime.pipeline import Pipeline
    from services.runtime.schema import Records

    sample = reviews.head(400)
    path = tmp_path / "sample.parquet"
    sample.to_parquet(path)
    code, _, err = run_cli(
        [
            "bias",
            "--data",
            str(path),
            "--label",
            "sentiment",
            "--positive-label",
            "positive",
            "--facet",
            "division_name",
            "--model",
            str(trained_model_dir),
            "--out",
            str(tmp_path / "r"),
        ],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    analysis = json.loads((tmp_path / "r" / "analysis.json").read_text())
    assert analysis["details"]["predictions"] == f"model {trained_model_dir}"
    # the same predictions as the runtime gives: DPPL from them by hand for the "General" facet
    pipeline = Pipeline.from_directory(trained_model_dir)
    labels = [
        r["predicted_label"]
        for r in pipeline.predict(
            Records([{"review_body": t} for t in sample["review_body"].fillna("")])
        ).records()
    ]
    known = sample["division_name"].notna().to_numpy()
    predicted = np.array(labels)[known] == "positive"
    in_d = (sample["division_name"] == "General").to_numpy()[known]
    expected = predicted[~in_d].mean() - predicted[in_d].mean()
    general = next(
        e
        for e in analysis["post_training_bias_metrics"]["facets"]["division_name"]
        if e["value_or_threshold"] == "General"
    )
    dppl = next(m["value"] for m in general["metrics"] if m["name"] == "DPPL")
    assert dppl == pytest.approx(expected, abs=1e-12)


def test_model_inputs_missing_from_the_table(
    trained_model_dir: Path,
    reviews: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "no_text.parquet"
    reviews.drop(columns="review_body").head(50).to_parquet(path)
    code, _, err = run_cli(
        [
            "bias",
            "--data",
            str(path),
            "--label",
            "sentiment",
            "--positive-label",
            "positive",
            "--facet",
            "division_name",
            "--model",
            str(trained_model_dir),
        ],
        monkeypatch,
        capsys,
    )
    assert code == 2
    assert re.search(r"'review_body' not found; available columns: 'clothing_id'", error_line(err))

"""`tripod bias` and `tripod balance`: Clarify-shaped analysis.json, the HTML report, bad input, a served model."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.bias import BiasError, FacetSpec, LabelSpec, balance, bias_analysis, metric_table
from tripod.cli_data import facet_specs


def run_cli(
    args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """Run ``tripod ARGS`` in this process through the real entry point; returns (status, stdout, stderr)."""
    from tripod import cli

    monkeypatch.setattr(sys, "argv", ["tripod", *args])
    try:
        cli.main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


def error_line(err: str) -> str:
    """The one error line, without the progress bars tqdm may have drawn before it."""
    lines = [line for line in err.splitlines() if line.startswith("tripod: error: ")]
    assert len(lines) == 1, err
    return lines[0]


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


def test_missing_facet_and_label_values_are_counted_and_left_out() -> None:
    frame = pd.DataFrame(
        {
            "f": ["x", "y", None, "x", "y", "x", "y", "x"],
            "y": ["pos", "neg", "pos", None, "pos", "neg", "neg", "pos"],
        }
    )
    analysis = bias_analysis(frame, LabelSpec("y", ("pos",)), [FacetSpec("f")])
    details = analysis["details"]
    assert details["excluded"] == {"label_missing": 1, "facet_missing": {"f": 1}}
    assert any("1 row(s) without a label" in w for w in details["warnings"])
    assert any("without a value for facet 'f'" in w for w in details["warnings"])
    clean = frame.dropna().reset_index(drop=True)
    expected = bias_analysis(clean, LabelSpec("y", ("pos",)), [FacetSpec("f")])
    pd.testing.assert_frame_equal(
        metric_table(analysis, "pre_training", "f"), metric_table(expected, "pre_training", "f")
    )


def test_multiclass_label_through_several_positive_values() -> None:
    frame = pd.DataFrame({"f": ["a", "a", "b", "b"], "rating": [5, 4, 3, 1]})
    analysis = bias_analysis(frame, LabelSpec("rating", ("4", "5")), [FacetSpec("f", ("b",))])
    table = metric_table(analysis, "pre_training", "f")
    assert table.loc["b", "DPL"] == 1.0  # facet a all positive, facet d none
    assert analysis["pre_training_bias_metrics"]["label_value_or_threshold"] == "4,5"
    threshold = bias_analysis(frame, LabelSpec("rating", threshold=3), [FacetSpec("f", ("b",))])
    assert metric_table(threshold, "pre_training", "f").loc["b", "DPL"] == 1.0


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
    from services.runtime import InferencePipeline

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
    pipeline = InferencePipeline.from_directory(trained_model_dir)
    labels = [
        r["predicted_label"]
        for r in pipeline.predict_records([{"review_body": t} for t in sample["review_body"].fillna("")])
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

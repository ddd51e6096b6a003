"""`tripod explain` on real model directories, the report `tripod train` ships, AutoML's report and its link,
and every user mistake as one line with exit status 2."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from services.artifacts import ModelArtifact
from tests.cli import error_line, run_cli
from tests.conftest import TARGET, TEXT_COLUMN
from training.automl.families.gbdt import GradientBoostedTrees
from training.automl.run import run_automl
from training.data import Split, split_frame, stratified_sample
from training.explain.run import explain_for_export
from training.export import export_candidate
from training.problem import infer_problem
from training.train import evaluation_report

GBDT_ROWS = 600


def _report(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / "explanations.json").read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def gbdt_split(prepared_reviews: pd.DataFrame) -> Split:
    return split_frame(stratified_sample(prepared_reviews, TARGET, GBDT_ROWS, seed=3), TARGET, seed=3)


@pytest.fixture(scope="module")
def gbdt(gbdt_split: Split) -> GradientBoostedTrees:
    problem = infer_problem(
        gbdt_split.train, TARGET, text=[TEXT_COLUMN], categorical=["class_name"], numeric=["age"]
    )
    params = GradientBoostedTrees.default_params("fast", problem) | {"svd_components": 20, "max_rounds": 30}
    return GradientBoostedTrees(problem, params, seed=3).fit(gbdt_split.train, gbdt_split.validation)


@pytest.fixture(scope="module")
def gbdt_dir(gbdt: GradientBoostedTrees, gbdt_split: Split, tmp_path_factory: pytest.TempPathFactory) -> Path:
    metrics, report = evaluation_report(gbdt, gbdt_split)
    return export_candidate(
        gbdt,
        model_root=tmp_path_factory.mktemp("models") / "trees",
        parity_frame=gbdt_split.test,
        data_fingerprint="sha256:test",
        metrics=metrics,
        metrics_report=report,
    )


def test_explain_writes_the_linear_report_of_a_model_directory(
    trained_model_dir: Path,
    prepared_reviews_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["explain", "--model", str(trained_model_dir), "--data", str(prepared_reviews_path)]
    code, out, err = run_cli([*args, "--sample", "500", "--out", str(tmp_path)], monkeypatch, capsys)
    assert code == 0, err
    assert out.startswith(f"wrote {tmp_path / 'explanations.json'} and explanations.html: 500 of 22641 rows")
    report = _report(tmp_path)
    artifact = ModelArtifact.from_directory(trained_model_dir)
    assert report["model"]["manifest_sha256"] == artifact.manifest_digest
    assert (report["model"]["name"], report["model"]["version"]) == ("reviews", "v1")
    assert report["method"]["explainer"] == "shap.LinearExplainer"
    assert report["method"]["shap_version"] == "0.51.0"
    assert report["data"] | {"source": None} == {
        "source": None,
        "rows": 22641,
        "rows_with_text": None,
        "sample": 500,
        "seed": 42,
        "explained_rows": 500,
    }
    assert report["budget"]["max_evals_per_row"] is None
    assert report["timing"]["explain_seconds"] > 0 and report["timing"]["report_seconds"] > 0
    assert report["additivity"]["max_abs_error"] < 1e-5
    assert set(report["importance"]) == {"negative", "neutral", "positive"}
    page = (tmp_path / "explanations.html").read_text(encoding="utf-8")
    assert page.count('src="data:image/png;base64,') == 3


def test_train_ships_a_reproducible_report_in_the_model_directory(trained_model_dir: Path) -> None:
    manifest = ModelArtifact.from_directory(trained_model_dir).manifest
    assert {"reports/explanations.json", "reports/explanations.html"} <= set(manifest.files)
    report = _report(trained_model_dir / "reports")
    assert report["method"]["name"] == "linear"
    assert report["data"]["explained_rows"] == report["data"]["rows"] == 200  # the test split
    assert report["timing"]["recorded"] is False
    assert report["model"]["version"] is None and report["model"]["manifest_sha256"] is None


def test_a_nonlinear_model_gives_the_same_report_for_the_same_seed(
    gbdt_dir: Path,
    prepared_reviews_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def explain(seed: int, folder: str) -> dict[str, Any]:
        args = [
            "explain",
            "--model",
            str(gbdt_dir),
            "--data",
            str(prepared_reviews_path),
            "--seed",
            str(seed),
        ]
        code, _, err = run_cli(
            [*args, "--sample", "4", "--max-evals", "64", "--out", str(tmp_path / folder)],
            monkeypatch,
            capsys,
        )
        assert code == 0, err
        report = _report(tmp_path / folder)
        del report["timing"]
        return report

    first, again, other = explain(7, "a"), explain(7, "b"), explain(8, "c")
    assert first == again
    assert first["examples"] != other["examples"]
    assert first["method"] | {"shap_version": None} == {
        "name": "partition",
        "shap_version": None,
        "output": "probability",
        "output_meaning": "each class's probability, as the model serves it",
        "explainer": "shap.Explainer with shap.maskers.Text",
        "algorithm": "partition: Owen values over the masker's hierarchy of words",
        "exact": False,
        "baseline": "the row with every word of 'review_body' removed (a masked word becomes a space), "
        "the other inputs unchanged",
        "features": "the words of 'review_body', lower-cased, summed over their occurrences in a row",
        "explained_column": "review_body",
        "held_fixed": ["class_name", "age"],
        "max_evals_per_row": 64,
        "batch_size": 64,
    }
    assert 0 < first["budget"]["model_evaluations"] <= 4 * 64
    assert first["data"]["explained_rows"] == 4
    assert first["additivity"]["max_abs_error"] < 1e-9
    assert any("TreeExplainer" in note for note in first["notes"])


def test_a_fitted_gbdt_is_explained_by_its_trees(
    gbdt: GradientBoostedTrees, gbdt_split: Split, tmp_path: Path
) -> None:
    lines: list[str] = []
    html = explain_for_export(gbdt, gbdt_split.test, tmp_path, name="trees", seed=1, echo=lines.append)
    assert html == tmp_path / "explanations.html"
    report = _report(tmp_path)
    assert report["method"]["explainer"] == "shap.TreeExplainer"
    assert report["method"]["output"] == "margin"
    assert report["additivity"]["max_abs_error"] < 1e-5
    kinds = {entry["kind"] for entries in report["importance"].values() for entry in entries}
    assert kinds <= {"component", "categorical", "numeric"} and "component" in kinds
    assert report["examples"] and {e["method"] for e in report["examples"]} == {"partition"}
    assert len(lines) == 1 and "by the tree explainer in" in lines[0]


def test_automl_ships_the_report_and_the_leaderboard_links_it(
    prepared_reviews: pd.DataFrame, tmp_path: Path
) -> None:
    data = tmp_path / "reviews.parquet"
    stratified_sample(prepared_reviews, TARGET, 400, seed=0).to_parquet(data, index=False)
    lines: list[str] = []
    result = run_automl(
        data,
        TARGET,
        tmp_path / "sentiment",
        preset="fast",
        time_budget="60s",
        max_candidates=1,
        text=[TEXT_COLUMN],
        progress=False,
        echo=lines.append,
    )
    reports = result.version_dir / "reports"
    report = _report(reports)
    assert report["method"]["name"] == "linear" and report["timing"]["explain_seconds"] > 0
    assert report["model"]["name"] == "sentiment"
    assert 'href="explanations.html"' in (reports / "leaderboard.html").read_text(encoding="utf-8")
    assert "reports/explanations.html" in ModelArtifact.from_directory(result.version_dir).manifest.files
    assert any(line.startswith("explanations: ") and " s: explanations.html" in line for line in lines)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing-model", r"tripod: error: .*/nope does not exist$"),
        (
            "no-input-column",
            r"tripod: error: column\(s\) 'review_body' not found; available columns: 'text'$",
        ),
        ("sample-zero", r"tripod: error: Invalid value for '--sample': .*1$"),
        ("empty-table", r"tripod: error: the table has no rows to explain$"),
    ],
    ids=["missing-model", "no-input-column", "sample-zero", "empty-table"],
)
def test_mistakes_are_one_line_and_exit_2(
    case: str,
    message: str,
    trained_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = tmp_path / "reviews.csv"
    data.write_text(
        "review_body\ngreat\n" if case != "no-input-column" else "text\ngreat\n", encoding="utf-8"
    )
    if case == "empty-table":
        data.write_text("review_body\n", encoding="utf-8")
    model = tmp_path / "nope" if case == "missing-model" else trained_model_dir
    args = ["explain", "--model", str(model), "--data", str(data), "--out", str(tmp_path / "out")]
    code, _, err = run_cli(
        [*args, *(["--sample", "0"] if case == "sample-zero" else [])], monkeypatch, capsys
    )
    assert code == 2
    assert re.fullmatch(message, error_line(err)), err
    assert not (tmp_path / "out").exists()

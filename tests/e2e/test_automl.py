"""`tripod automl` end to end: a fast search ends in a servable model whose HTTP answers equal the runtime's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import nbclient
import nbformat
import numpy as np
import pandas as pd
import pytest

from harness.server import running_server
from services.artifacts import ModelArtifact
from services.runtime.pipeline import Pipeline
from services.runtime.schema import Records
from training.automl.run import AutoMLResult, SearchFailed, run_automl

ROWS = 1500


def _quiet(*_: object) -> None:
    return None


CLASSIFICATION = {
    "preset": "fast",
    "time_budget": "60s",
    "max_candidates": 4,
    "text": ["review_body"],
    "categorical": ["class_name"],
    "numeric": ["age"],
    "progress": False,
    "echo": _quiet,
}
"""The classification run's options; the resumed runs reuse its study with exactly these."""


@pytest.fixture(scope="module")
def reviews(prepared_reviews_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1,500-row stratified sample as a file, so the run's notebooks can reload it."""
    frame = pd.read_parquet(prepared_reviews_path)
    sample = frame.groupby("sentiment", group_keys=False).sample(frac=ROWS / len(frame), random_state=0)
    path = tmp_path_factory.mktemp("automl") / "reviews.parquet"
    sample.to_parquet(path, index=False)
    return path


@pytest.fixture(scope="module")
def classification_run(reviews: Path, tmp_path_factory: pytest.TempPathFactory) -> AutoMLResult:
    out = tmp_path_factory.mktemp("models") / "sentiment"
    return run_automl(
        reviews,
        "sentiment",
        out,
        **CLASSIFICATION,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def regression_run(reviews: Path, tmp_path_factory: pytest.TempPathFactory) -> AutoMLResult:
    out = tmp_path_factory.mktemp("models") / "rating"
    return run_automl(
        reviews,
        "rating",
        out,
        problem_type="regression",
        preset="fast",
        time_budget="60s",
        max_candidates=3,
        text=["review_body", "title"],
        progress=False,
        echo=_quiet,
    )


def _http_equals_runtime(version_dir: Path, records: list[dict[str, Any]]) -> None:
    local = Pipeline.from_directory(version_dir).predict(Records(records)).records()
    with running_server(version_dir) as server:
        response = httpx.post(f"{server.url}/predict", json={"records": records}, timeout=30)
    assert response.status_code == 200, response.text
    served = response.json()
    key = "predicted_value" if "predicted_value" in local[0] else "probability"
    np.testing.assert_allclose([r[key] for r in served], [r[key] for r in local], atol=1e-6)
    if key == "probability":
        assert [r["predicted_label"] for r in served] == [r["predicted_label"] for r in local]


def test_a_fast_classification_run_ends_in_a_servable_model(classification_run: AutoMLResult) -> None:
    manifest = ModelArtifact.from_directory(classification_run.version_dir).manifest
    assert manifest.problem_type == "multiclass" and manifest.parity.passed
    assert [(c.name, c.dtype) for c in manifest.inputs] == [
        ("review_body", "string"),
        ("class_name", "string"),
        ("age", "float"),
    ]
    records: list[dict[str, Any]] = [
        {"review_body": "Love it, fits great", "class_name": "Dresses", "age": 34},
        {"review_body": "Returned it. Cheap fabric.", "class_name": "Unknown class", "age": None},
    ]
    _http_equals_runtime(classification_run.version_dir, records)


def test_a_fast_regression_run_ends_in_a_two_stage_servable_model(regression_run: AutoMLResult) -> None:
    manifest = ModelArtifact.from_directory(regression_run.version_dir).manifest
    assert manifest.problem_type == "regression" and set(manifest.stages) == {"transformer", "regressor"}
    assert not (regression_run.version_dir / "inverse_label.onnx").exists()
    _http_equals_runtime(
        regression_run.version_dir,
        [{"review_body": "Perfect dress", "title": "Love"}, {"review_body": "Awful", "title": ""}],
    )


def test_the_leaderboard_ranks_every_candidate_and_is_published_with_the_model(
    classification_run: AutoMLResult,
) -> None:
    board = classification_run.leaderboard
    assert len(board) >= 4 and board["rank"].tolist() == list(range(1, len(board) + 1))
    done = board[board["state"] == "complete"]
    assert done["selection_macro_f1"].is_monotonic_decreasing  # ranked on rows no candidate was tuned on
    chosen = board[board["chosen"]]
    assert len(chosen) == 1 and chosen["rank"].iloc[0] == 1
    assert (done["selection_test_gap"] == done["selection_macro_f1"] - done["test_macro_f1"]).all()
    assert {
        "fit_seconds",
        "model_mb",
        "latency_p99_ms",
        "chosen",
        "not_chosen_because",
        "test_accuracy",
        "params",
    } <= set(board.columns)
    reports = classification_run.version_dir / "reports"
    page = (reports / "leaderboard.html").read_text()
    assert (
        "Best of each family" in page
        and "<b>search time</b>: " in page
        and "s for a 60s budget" in page
        and "+ ensemble " in page
    )
    assert page.count("data:image/png;base64,") == 4  # objective, time, latency (Pareto), confusion matrix
    assert (reports / "leaderboard.csv").is_file()
    problem = json.loads((classification_run.run_dir / "problem.json").read_text())
    assert problem["objective"] == "macro_f1" and problem["text"] == ["review_body"]


def test_the_definition_notebook_reproduces_the_best_validation_score(
    classification_run: AutoMLResult,
) -> None:
    reports = classification_run.version_dir / "reports"
    for name in ("candidate_definitions.ipynb", "data_exploration.ipynb"):
        notebook = nbformat.read(reports / name, as_version=4)
        nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3").execute()
        if name.startswith("candidate"):
            last = notebook.cells[-1].outputs[-1]["text"]
            difference = float(last.rsplit("difference ", 1)[1].rstrip(")\n"))
            assert difference <= 0.01, last


def test_a_resumed_study_keeps_its_finished_candidates(reviews: Path, tmp_path: Path) -> None:
    def run(max_candidates: int) -> AutoMLResult:
        return run_automl(
            reviews,
            "sentiment",
            tmp_path,
            preset="fast",
            time_budget="60s",
            max_candidates=max_candidates,
            text=["review_body"],
            study_name="resume-me",
            progress=False,
            echo=_quiet,
        )

    first, second = run(2), run(3)
    trials = sorted(p.name for p in (first.run_dir / "trials").iterdir())
    assert first.run_dir == second.run_dir and trials == ["0000.json", "0001.json", "0002.json"]


def test_a_budget_too_small_for_any_candidate_keeps_a_partial_leaderboard(
    reviews: Path, tmp_path: Path
) -> None:
    with pytest.raises(
        SearchFailed, match=r"no candidate finished within the budget of 0s .*partial leaderboard"
    ):
        run_automl(
            reviews,
            "sentiment",
            tmp_path,
            preset="fast",
            time_budget="0s",  # no candidate can start: deterministic, where 0.01 s raced the first fit
            max_candidates=1,
            text=["review_body"],
            progress=False,
            echo=_quiet,
        )
    assert list(tmp_path.glob("runs/*/reports/leaderboard.csv"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "stars"], "target column 'stars' not found; available columns:"),
        (
            ["--target", "sentiment", "--objective", "rmse"],
            "objective 'rmse' does not fit a multiclass problem",
        ),
        (["--target", "division_name", "--text", "review_body", "--sample", "50"], None),
    ],
    ids=["missing-target", "unknown-objective", "tiny-sample-still-runs-or-explains"],
)
def test_cli_mistakes_get_one_line(
    reviews: Path, tmp_path: Path, args: list[str], message: str | None
) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tripod.cli",
            "automl",
            "--data",
            str(reviews),
            "--out",
            str(tmp_path / "m"),
            "--preset",
            "fast",
            "--time-budget",
            "20s",
            "--max-candidates",
            "1",
            *args,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if message is None:
        assert result.returncode in (0, 2)
        if result.returncode == 2:
            assert len(result.stderr.strip().splitlines()) == 1
        return
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("tripod: error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("scenario", ["natural", "flaml"])
def test_quality_benchmark_runs_in_short_form(prepared_reviews_path: Path, scenario: str) -> None:
    """benchmarks/automl_quality.py is a side script; a small run here keeps it from rotting."""
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "automl_quality.py"
    result = subprocess.run(
        [
            sys.executable,
            str(script),
            "--data",
            str(prepared_reviews_path),
            "--scenario",
            scenario,
            "--preset",
            "fast",
            "--budget",
            "15s",
            "--max-candidates",
            "2",
            "--sample",
            "800",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "test macro-F1" in result.stdout


def test_ctrl_c_stops_the_search_cleanly_and_keeps_finished_candidates(reviews: Path, tmp_path: Path) -> None:
    import signal
    import time

    out = tmp_path / "m"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tripod.cli",
            "automl",
            "--data",
            str(reviews),
            "--target",
            "sentiment",
            "--out",
            str(out),
            "--preset",
            "fast",
            "--time-budget",
            "120s",
            "--text",
            "review_body",
            "--study-name",
            "ctrl-c",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    trials = out / "runs" / "ctrl-c" / "trials"
    deadline = time.monotonic() + 120
    while len(list(trials.glob("*.json"))) < 2 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr[-2000:]
    assert "model written to" in stdout
    assert (out / "latest" / "manifest.json").is_file()
    assert (out / "runs" / "ctrl-c" / "reports" / "leaderboard.csv").is_file()


def test_a_resumed_search_under_a_size_limit_chooses_within_it_and_says_why_not_the_others(
    reviews: Path, classification_run: AutoMLResult
) -> None:
    """The finished study is reused (no new trials) and only the choice changes: the limit is the smallest
    candidate's size, so the choice must be within it and every larger candidate is marked with the reason."""
    board = classification_run.leaderboard
    done = board[(board["state"] == "complete") & (board["family"] != "ensemble")]
    limit = float(done["model_mb"].min()) + 0.0005  # the board rounds sizes to 0.001 MiB
    out = classification_run.version_dir.parent
    resumed = run_automl(
        reviews,
        "sentiment",
        out,
        study_name=classification_run.run_dir.name,
        max_model_mb=limit,
        **CLASSIFICATION,  # type: ignore[arg-type]
    )
    again = resumed.leaderboard
    chosen = again[again["chosen"]]
    assert len(chosen) == 1 and float(chosen["model_mb"].iloc[0]) <= limit
    finished = again[again["state"] == "complete"]
    over = finished[finished["model_mb"] > limit]
    assert (over["not_chosen_because"].str.contains("is over --max-model-mb")).all()
    assert (finished[finished["model_mb"] <= limit]["not_chosen_because"] == "").all()
    page = (resumed.version_dir / "reports" / "leaderboard.html").read_text()
    assert "Score vs serving latency" in page and f"model &lt;= {limit:g} MiB" in page
    top = finished.sort_values(["selection_macro_f1", "trial"], ascending=[False, True]).iloc[0]
    named = f"trial {int(top['trial'])} ({top['family']}) scored best ("
    # the summary names the best-scoring candidate exactly when the limit left it out
    assert (named in page) == (not bool(top["chosen"]))


def test_a_search_with_no_candidate_within_the_latency_limit_fails_and_names_the_best_one(
    reviews: Path, classification_run: AutoMLResult
) -> None:
    with pytest.raises(SearchFailed, match=r"no finished candidate is within the serving limits .* was not chosen: "
                       r"single-review p99 .* ms is over --max-latency-ms 0.001"):  # fmt: skip
        run_automl(
            reviews,
            "sentiment",
            classification_run.version_dir.parent,
            study_name=classification_run.run_dir.name,
            max_latency_ms=0.001,
            **CLASSIFICATION,  # type: ignore[arg-type]
        )

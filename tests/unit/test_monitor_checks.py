"""``monitor run``'s checks on captured traffic: quiet on held-out traffic from the training distribution, and on
each kind of shifted traffic the check that should fire does, by name."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from tests.capture_files import JSON, Exchange, write_capture
from tests.conftest import TARGET, TEXT_COLUMN
from tests.monitor_scenarios import (
    START,
    capture_texts,
    foreign_reviews,
    held_out_rows,
    predicted,
    training_rows,
)
from training.monitor.baseline import build_baseline, write_baseline
from training.monitor.run import MonitorRun, run_monitor

WINDOW = 500


@pytest.fixture(scope="module")
def baseline_dir(
    trained_model_dir: Path, prepared_reviews: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    folder = tmp_path_factory.mktemp("baseline")
    write_baseline(build_baseline(trained_model_dir, training_rows(prepared_reviews), progress=False), folder)
    return folder


def _run(baseline_dir: Path, capture: Path, *overrides: str, **options: object) -> MonitorRun:
    return run_monitor(baseline_dir, str(capture), overrides=overrides, progress=False, **options)  # type: ignore[arg-type]


def _fired(run: MonitorRun) -> set[str]:
    return {check.check for check in run.violations}


def test_held_out_traffic_from_the_training_distribution_raises_nothing(
    baseline_dir: Path, trained_model_dir: Path, prepared_reviews: pd.DataFrame, tmp_path: Path
) -> None:
    texts = held_out_rows(prepared_reviews, WINDOW)[TEXT_COLUMN].tolist()
    capture_texts(tmp_path, trained_model_dir, texts)
    run = _run(baseline_dir, tmp_path)
    assert run.violations == [], [c.description for c in run.violations]
    statuses = {(c.check, c.status) for c in run.checks}
    assert {
        ("data_type_check", "ok"),
        ("completeness_check", "ok"),
        ("missing_column_check", "ok"),
        ("extra_column_check", "ok"),
        ("text_length_drift_check", "ok"),
        ("oov_rate_check", "ok"),
        ("domain_classifier_check", "ok"),
        ("prediction_drift_check", "ok"),
    } == statuses
    assert run.statistics["dataset"]["item_count"] == WINDOW


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        ("one department", {"domain_classifier_check"}),
        ("very short reviews", {"text_length_drift_check", "domain_classifier_check"}),
        ("another language", {"oov_rate_check", "domain_classifier_check", "text_length_drift_check"}),
        ("flipped label mix", {"prediction_drift_check"}),
    ],
    ids=["department", "short", "language", "labels"],
)
def test_shifted_traffic_fires_the_check_that_names_the_shift(
    scenario: str,
    expected: set[str],
    baseline_dir: Path,
    trained_model_dir: Path,
    prepared_reviews: pd.DataFrame,
    tmp_path: Path,
) -> None:
    rest = prepared_reviews.drop(index=training_rows(prepared_reviews).index)
    if scenario == "one department":
        texts = rest[rest["department_name"] == "Jackets"][TEXT_COLUMN].head(WINDOW).tolist()
    elif scenario == "very short reviews":
        texts = [text[:40] for text in rest[TEXT_COLUMN].head(WINDOW)]
    elif scenario == "another language":
        texts = (foreign_reviews() * 5)[:WINDOW]
    else:
        texts = rest[rest[TARGET] == "negative"][TEXT_COLUMN].head(WINDOW).tolist()
    capture_texts(tmp_path, trained_model_dir, texts)
    run = _run(baseline_dir, tmp_path)
    assert expected <= _fired(run), [c.description for c in run.checks]
    assert not _fired(run) & {
        "data_type_check",
        "completeness_check",
        "missing_column_check",
        "extra_column_check",
    }


def test_schema_problems_fire_model_monitors_checks(baseline_dir: Path, tmp_path: Path) -> None:
    """A server that captures its 4xx answers: numbers where text belongs, records without the text, a field
    the model does not take."""
    bodies = (
        [{"review_body": "A lovely soft sweater, fits well."}] * 40
        + [{"review_body": 5}] * 10
        + [{"text": "wrong field name"}] * 10
        + [{"review_body": "ok", "colour": "red"}] * 10
    )
    exchanges = [
        Exchange(
            JSON,
            json.dumps({"records": [body]}).encode(),
            JSON,
            b'{"error": "..."}',
            START + timedelta(seconds=i),
        )
        for i, body in enumerate(bodies)
    ]
    write_capture(tmp_path, exchanges)
    run = _run(baseline_dir, tmp_path, "min_records=1000")
    fired = {(c.check, c.feature) for c in run.violations}
    assert fired == {
        ("data_type_check", "review_body"),
        ("completeness_check", "review_body"),
        ("missing_column_check", "review_body"),
        ("extra_column_check", "text"),
        ("extra_column_check", "colour"),
    }
    skipped = {c.check for c in run.checks if c.status == "skipped"}
    assert {
        "text_length_drift_check",
        "oov_rate_check",
        "domain_classifier_check",
        "prediction_drift_check",
    } <= skipped
    assert run.decode.records_not_fitting == 30 and run.decode.answers_unreadable == 70


def test_ground_truth_windows_find_the_hour_the_model_went_wrong(
    baseline_dir: Path, trained_model_dir: Path, prepared_reviews: pd.DataFrame, tmp_path: Path
) -> None:
    rows = held_out_rows(prepared_reviews, 300, seed=5)
    texts = rows[TEXT_COLUMN].tolist()
    ids = [f"req-{i}" for i in range(len(texts))]
    capture_texts(tmp_path / "capture", trained_model_dir, texts, step=timedelta(seconds=36), ids=ids)
    labels = predicted(trained_model_dir, texts)
    truth = rows[TARGET].tolist()
    # The third hour's labels disagree with every prediction: a model that went wrong then.
    flipped = {"positive": "negative", "negative": "neutral", "neutral": "positive"}
    truth[200:] = [flipped[label] for label in labels[200:]]
    pd.DataFrame({"inferenceId": ids, "label": truth}).to_csv(tmp_path / "truth.csv", index=False)
    run = _run(
        baseline_dir,
        tmp_path / "capture",
        "window=1h",
        "min_labels=50",
        ground_truth=str(tmp_path / "truth.csv"),
    )
    assert run.quality is not None and [w["records"] for w in run.quality] == [100, 100, 100]
    assert run.quality[2]["accuracy"] == 0.0 and run.quality[0]["accuracy"] > 0.6
    fired = [(c.check, c.values["window_start"]) for c in run.violations]
    assert fired == [("accuracy_check", "2026-12-02T12:00:00Z"), ("macro_f1_check", "2026-12-02T12:00:00Z")]
    assert run.quality_join == {"labels": 300, "matched": 300, "multi_record_requests": 0, "without_time": 0}


def test_since_and_until_select_by_hour_folder_then_inference_time(
    baseline_dir: Path, trained_model_dir: Path, prepared_reviews: pd.DataFrame, tmp_path: Path
) -> None:
    texts = held_out_rows(prepared_reviews, 200, seed=9)[TEXT_COLUMN].tolist()
    capture_texts(tmp_path, trained_model_dir, texts, step=timedelta(minutes=3))  # 10:00 to 19:57
    since, until = START + timedelta(hours=2, minutes=30), START + timedelta(hours=5)
    run = _run(baseline_dir, tmp_path, since=since, until=until)
    assert run.statistics["dataset"]["item_count"] == 50  # 12:30 up to 15:00, one every 3 minutes
    assert run.files_pruned == 7 and run.read.files == 3  # hours 12, 13 and 14 are read
    assert run.read.outside_window == 10  # 12:00 to 12:27
    assert [hour.hour for hour, _ in run.hours] == [12, 13, 14]

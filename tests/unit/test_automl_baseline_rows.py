"""How many training rows the exported model's monitoring baseline predicts (training/automl/run.py): all of
them for a fast model, a stratified sample for one whose predictions would take minutes."""

from __future__ import annotations

import pandas as pd

from training.automl.run import MIN_BASELINE_ROWS, baseline_rows
from training.problem import infer_problem

FRAME = pd.DataFrame(
    {
        "review_body": [f"review {i}" for i in range(5000)],
        "sentiment": ["positive"] * 3000 + ["negative"] * 1500 + ["neutral"] * 500,
        "rating": [float(i % 5) for i in range(5000)],
    }
)


def test_a_fast_model_profiles_every_training_row() -> None:
    problem = infer_problem(FRAME, "sentiment", text=["review_body"])
    assert baseline_rows(FRAME, problem, latency_ms=0.2, seed=0) is FRAME
    assert baseline_rows(FRAME, problem, latency_ms=None, seed=0) is FRAME  # not measured: as before


def test_a_slow_model_profiles_a_stratified_minute_of_rows() -> None:
    problem = infer_problem(FRAME, "sentiment", text=["review_body"])
    sample = baseline_rows(FRAME, problem, latency_ms=160.0, seed=0)  # a transformer ensemble's p99
    assert len(sample) == MIN_BASELINE_ROWS  # 60 s / 160 ms = 375 rows, raised to the floor
    shares = sample["sentiment"].value_counts(normalize=True)
    assert shares.round(2).to_dict() == {"positive": 0.6, "negative": 0.3, "neutral": 0.1}
    assert len(baseline_rows(FRAME, problem, latency_ms=20.0, seed=0)) == 3000  # 60 s / 20 ms


def test_a_slow_regression_model_gets_a_plain_sample() -> None:
    problem = infer_problem(FRAME, "rating", problem_type="regression", text=["review_body"])
    assert len(baseline_rows(FRAME, problem, latency_ms=160.0, seed=0)) == MIN_BASELINE_ROWS

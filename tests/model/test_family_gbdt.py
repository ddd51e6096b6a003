"""The gradient-boosted trees family (training/automl/families/gbdt.py): fit → ONNX → export → serve."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

import numpy as np
import optuna
import pandas as pd
import pytest

from services.artifacts import ModelArtifact
from services.runtime.pipeline import Pipeline
from services.runtime.schema import Records
from tests.conftest import TARGET, TEXT_COLUMN
from training.automl.candidate import BudgetExceeded, EpochCallback
from training.automl.families import family_class, gbdt
from training.automl.families.gbdt import GradientBoostedTrees, macro_f1
from training.data import Split, fingerprint, split_frame, stratified_sample
from training.export import export_candidate
from training.problem import Problem, ProblemType, infer_problem

SAMPLE_ROWS = 1500
SMALL = {
    "svd_components": 30,
    "max_features": 3000,
    "learning_rate": 0.2,
    "num_leaves": 15,
    "min_child_samples": 10,
    "max_rounds": 60,
}
"""Small enough for a test: a few seconds per fit on 2 cores."""


@pytest.fixture(scope="module")
def split(prepared_reviews: pd.DataFrame) -> Split:
    sample = stratified_sample(prepared_reviews, TARGET, SAMPLE_ROWS, seed=42).copy()
    # Missing ages, to prove NaN travels through the ONNX transformer and the trees' missing-value branches.
    sample.loc[sample.index[::5], "age"] = np.nan
    return split_frame(sample, TARGET, seed=42)


def _problem(split: Split, target: str = TARGET, **roles: list[str]) -> Problem:
    roles = roles or {"text": [TEXT_COLUMN]}
    kind: ProblemType | Literal["auto"] = "regression" if target == "rating" else "auto"
    return infer_problem(split.train, target, problem_type=kind, **roles)


def _fit(
    problem: Problem,
    split: Split,
    *,
    deadline: float | None = None,
    on_epoch: EpochCallback | None = None,
) -> GradientBoostedTrees:
    params = {**GradientBoostedTrees.default_params("fast", problem), **SMALL}
    return GradientBoostedTrees(problem, params).fit(
        split.train, split.validation, deadline=deadline, on_epoch=on_epoch
    )


def _export(model: GradientBoostedTrees, split: Split, root: Path) -> Path:
    problem = model.problem
    return export_candidate(
        model,
        model_root=root,
        parity_frame=split.test,
        data_fingerprint=fingerprint(split.train, [*problem.roles.input_names, problem.target]),
        metrics={},
        metrics_report={},
    )


def test_the_family_is_registered() -> None:
    assert family_class("gbdt") is GradientBoostedTrees
    assert GradientBoostedTrees.iterative


@pytest.mark.parametrize("target", [TARGET, "recommended_ind"], ids=["multiclass", "binary"])
def test_classifier_exports_with_parity_and_serves(split: Split, target: str, tmp_path: Path) -> None:
    problem = _problem(split, target)
    reports: list[tuple[int, np.ndarray]] = []
    model = _fit(problem, split, on_epoch=lambda step, scores: reports.append((step, scores)))
    assert [step for step, _ in reports] == list(range(10, 10 * len(reports) + 1, 10))
    classes = len(problem.labels)
    # each report is the validation probabilities of that round, in predict_scores' shape
    assert reports and all(s.shape == (len(split.validation), classes) for _, s in reports)
    np.testing.assert_allclose(reports[-1][1].sum(axis=1), 1.0, atol=1e-6)

    version = _export(model, split, tmp_path / "reviews")
    parity = ModelArtifact.from_directory(version).manifest.parity
    assert parity.passed and parity.rows == len(split.test)
    assert parity.max_abs_probability_diff <= parity.max_probability_tolerance == 1e-3
    pipeline = Pipeline.from_directory(version)
    answers = pipeline.predict(
        Records([{TEXT_COLUMN: "Love it, fits perfectly"}, {TEXT_COLUMN: ""}])
    ).records()
    assert [a["predicted_label"] in problem.labels for a in answers] == [True, True]
    assert sum(answers[0]["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_text_categorical_and_numeric_inputs_together(split: Split, tmp_path: Path) -> None:
    numeric = ["age", "positive_feedback_count"]  # age has NaN in training, the count has none
    problem = _problem(split, text=[TEXT_COLUMN], categorical=["class_name"], numeric=numeric)
    model = _fit(problem, split)
    assert model.n_features_ > SMALL["svd_components"] + 2  # SVD + one-hot + numerics
    assert split.test["age"].isna().any()

    version = _export(model, split, tmp_path / "reviews")
    manifest = ModelArtifact.from_directory(version).manifest
    assert [(c.name, c.role) for c in manifest.inputs] == [
        (TEXT_COLUMN, "text"),
        ("class_name", "categorical"),
        ("age", "numeric"),
        ("positive_feedback_count", "numeric"),
    ]
    assert manifest.parity.passed and manifest.candidate.family == "gbdt"

    # Values training never saw (NaN where there was none, an unknown category) follow LightGBM's branches.
    unseen = split.test.assign(positive_feedback_count=np.nan, class_name="never seen")
    pipeline = Pipeline.from_directory(version)
    served = pipeline.predict(
        Records(problem.input_frame(unseen).to_numpy(dtype=object).tolist())
    ).probabilities
    assert served is not None
    np.testing.assert_allclose(served, model.predict_scores(unseen), atol=1e-5)
    answers = pipeline.predict(
        Records(
            [
                {
                    TEXT_COLUMN: "Cheap fabric, returned it",
                    "class_name": "Dresses",
                    "age": None,
                    "positive_feedback_count": 3,
                },
            ]
        )
    ).records()
    assert answers[0]["predicted_label"] in problem.labels


def test_regressor_exports_with_parity_and_serves(split: Split, tmp_path: Path) -> None:
    problem = _problem(split, "rating", text=[TEXT_COLUMN])
    reports: list[np.ndarray] = []
    model = _fit(problem, split, on_epoch=lambda step, scores: reports.append(scores))
    assert reports and all(s.shape == (len(split.validation),) for s in reports)
    assert all(
        0.0 < float(np.sqrt(np.mean((s - problem.encode_target(split.validation)) ** 2))) < 2.0
        for s in reports
    )  # RMSE of ratings 1..5

    version = _export(model, split, tmp_path / "ratings")
    manifest = ModelArtifact.from_directory(version).manifest
    assert manifest.problem_type == "regression" and manifest.parity.passed
    answers = Pipeline.from_directory(version).predict(Records([{TEXT_COLUMN: "Love it"}])).records()
    assert 1.0 <= answers[0]["predicted_value"] <= 5.5


def test_the_deadline_stops_boosting_after_the_current_tree(
    split: Split, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks = iter(range(1000))

    def fake_remaining(deadline: float | None) -> float:
        # two checks before boosting, then one per round: time runs out during the 15th tree
        return 1.0 if next(checks) < 16 else -1.0

    monkeypatch.setattr(gbdt, "remaining", fake_remaining)
    model = _fit(_problem(split), split, deadline=time.monotonic() + 3600)
    assert model.stopped_by_deadline_
    assert model.estimator_.booster_.current_iteration() == 15 < SMALL["max_rounds"]
    assert 1 <= model.best_iteration_ <= 15


def test_a_passed_deadline_before_the_first_tree_is_a_budget_error(split: Split) -> None:
    with pytest.raises(BudgetExceeded, match="deadline"):
        _fit(_problem(split), split, deadline=time.monotonic() - 1)


def test_pruning_propagates_from_on_epoch(split: Split) -> None:
    def prune(step: int, value: float) -> None:
        raise optuna.TrialPruned(f"pruned at {step}")

    with pytest.raises(optuna.TrialPruned, match="pruned at 10"):
        _fit(_problem(split), split, on_epoch=prune)


def test_suggest_prefixes_every_parameter(split: Split) -> None:
    problem = _problem(split)
    trial = optuna.create_study().ask()
    params = GradientBoostedTrees.suggest(trial, "balanced", problem)
    assert set(GradientBoostedTrees.default_params("balanced", problem)) == set(params)
    assert all(name.startswith("gbdt_") for name in trial.params)


@pytest.mark.parametrize(
    ("y", "predicted", "expected"),
    [([0, 1, 2], [0, 1, 2], 1.0), ([0, 0, 1], [0, 0, 0], (0.8 + 0.0) / 3), ([1, 1], [1, 1], 1 / 3)],
    ids=["perfect", "missed-class", "absent-classes"],
)
def test_macro_f1_matches_scikit_learn(y: list[int], predicted: list[int], expected: float) -> None:
    from sklearn.metrics import f1_score

    score = macro_f1(np.array(y), np.array(predicted), 3)
    assert score == pytest.approx(expected)
    assert score == pytest.approx(f1_score(y, predicted, labels=[0, 1, 2], average="macro", zero_division=0))

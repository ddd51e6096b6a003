"""Soft voting over members of different families, exported as one transformer and one classifier graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from services.runtime.pipeline import Pipeline
from services.runtime.schema import Records
from tests.conftest import TARGET
from training.automl.candidate import CandidateModel
from training.automl.ensemble import SoftVotingEnsemble, choose_members, select_weights
from training.automl.families import family_class
from training.automl.objectives import OBJECTIVES
from training.automl.search import TrialRecord
from training.data import Split, split_frame, stratified_sample
from training.problem import ColumnRoles, Problem

ROLES = ColumnRoles(text=("review_body", "title"), categorical=("class_name",), numeric=("age",))


@pytest.fixture(scope="module")
def split(prepared_reviews: pd.DataFrame) -> Split:
    return split_frame(stratified_sample(prepared_reviews, TARGET, 1200, seed=0), TARGET, seed=42)


def _member(name: str, problem: Problem, split: Split, **params: object) -> CandidateModel:
    cls = family_class(name)
    return cls(problem, {**cls.default_params("fast", problem), **params}).fit(split.train, split.validation)


def _check(
    members: list[CandidateModel],
    problem: Problem,
    split: Split,
    tmp_path: Path,
    weights: list[float] | None = None,
) -> None:
    params = {"members": list(range(len(members))), **({"weights": weights} if weights else {})}
    ensemble = SoftVotingEnsemble(problem, params, members=members)
    paths = ensemble.to_onnx().save(tmp_path)
    pipeline = Pipeline.from_stage_files(paths, problem.roles.inputs, problem.labels)
    served = pipeline.predict(Records(problem.input_frame(split.test).to_numpy(dtype=object).tolist()))
    expected = ensemble.predict_scores(split.test)
    reference = np.average([m.predict_scores(split.test) for m in members], axis=0, weights=weights)
    np.testing.assert_allclose(expected, reference)
    got = served.probabilities if problem.is_classification else served.values
    assert got is not None
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_tfidf_and_fasttext_vote_in_one_pair_of_graphs(split: Split, tmp_path: Path) -> None:
    problem = Problem(TARGET, "multiclass", ("negative", "neutral", "positive"), ROLES)
    members = [_member("tfidf_linear", problem, split), _member("fasttext", problem, split, max_epochs=2)]
    _check(members, problem, split, tmp_path)


def test_weighted_votes_are_the_same_in_the_graph_as_in_python(split: Split, tmp_path: Path) -> None:
    problem = Problem(TARGET, "multiclass", ("negative", "neutral", "positive"), ROLES)
    members = [_member("tfidf_linear", problem, split), _member("fasttext", problem, split, max_epochs=2)]
    _check(members, problem, split, tmp_path, weights=[0.75, 0.25])


def test_selection_weights_never_score_below_the_best_member_and_drop_a_useless_one() -> None:
    problem = Problem(TARGET, "multiclass", ("a", "b", "c"), ROLES)
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, size=600)
    one_hot = np.eye(3)[truth]
    good = 0.55 * one_hot + 0.45 * rng.dirichlet(np.ones(3), size=600)  # mostly right
    other = 0.45 * one_hot + 0.55 * rng.dirichlet(
        np.ones(3), size=600
    )  # right less often, errors independent
    noise = rng.dirichlet(np.ones(3), size=600)  # no information at all
    objective = OBJECTIVES["macro_f1"]
    weights = select_weights(objective, problem, truth, [good, other, noise])
    assert weights.sum() == pytest.approx(1.0)
    assert weights[0] > 0 and weights[2] < weights[0]
    blended = np.tensordot(weights, np.stack([good, other, noise]), axes=1)
    best_single = max(objective.score(problem, truth, s) for s in (good, other, noise))
    assert objective.score(problem, truth, blended) >= best_single


def test_a_regression_ensemble_averages_values(split: Split, tmp_path: Path) -> None:
    problem = Problem("rating", "regression", (), ROLES)
    members = [
        _member("tfidf_linear", problem, split),
        _member("gbdt", problem, split, max_rounds=30, svd_components=20),
    ]
    _check(members, problem, split, tmp_path)


@pytest.mark.slow
def test_a_minilm_member_with_a_loop_tokenizer_is_inlined(split: Split, tmp_path: Path) -> None:
    problem = Problem(TARGET, "multiclass", ("negative", "neutral", "positive"), ROLES)
    members = [
        _member("tfidf_linear", problem, split),
        _member("minilm", problem, split, epoch_rows=200, eval_rows=100, max_epochs=1),
    ]
    _check(members, problem, split, tmp_path)


def test_members_are_the_best_of_each_family_first() -> None:
    def record(number: int, family: str, value: float) -> TrialRecord:
        return TrialRecord(number=number, family=family, params={}, state="complete", validation=value)

    records = [
        record(0, "tfidf_linear", 0.60),
        record(1, "tfidf_linear", 0.64),
        record(2, "gbdt", 0.58),
        record(3, "fasttext", 0.62),
        record(4, "fasttext", 0.63),
    ]
    chosen = choose_members(records, OBJECTIVES["macro_f1"])
    assert [r.number for r in chosen] == [1, 4, 2, 3]


def test_ensemble_weights_are_selected_on_rows_no_member_was_tuned_on(
    prepared_reviews: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Members fit on train and tune on validation; the weights must come from the selection split. The rows
    handed to the weight selection are recorded: had they been validation's (or train's), this fails."""
    import pickle

    import training.automl.ensemble as ensemble_module
    from training.automl.ensemble import try_ensemble

    split = split_frame(
        stratified_sample(prepared_reviews, TARGET, 1200, seed=0), TARGET, seed=42, selection=0.1
    )
    problem = Problem(TARGET, "multiclass", ("negative", "neutral", "positive"), ROLES)
    records = []
    for number, (family, params) in enumerate([("tfidf_linear", {}), ("fasttext", {"max_epochs": 2})]):
        member = _member(family, problem, split, **params)
        path = tmp_path / f"{number}.pkl"
        path.write_bytes(pickle.dumps(member))
        objective = OBJECTIVES["macro_f1"]
        selection = objective.score(
            problem, problem.encode_target(split.selection), member.predict_scores(split.selection)
        )
        records.append(
            TrialRecord(
                number, family, {}, "complete", validation=0.5, selection=selection, candidate_path=str(path)
            )
        )
    seen: list[np.ndarray] = []
    select = ensemble_module.select_weights

    def recording(objective, problem, truth, scores, rounds=ensemble_module.SELECTION_ROUNDS):
        seen.append(np.asarray(truth))
        return (
            np.array([0.5, 0.5])
            if len(truth) == len(split.selection)
            else select(objective, problem, truth, scores, rounds)
        )

    monkeypatch.setattr(ensemble_module, "select_weights", recording)
    result = try_ensemble(records, OBJECTIVES["macro_f1"], problem, split, tmp_path, seed=1)
    assert result is not None
    assert np.array_equal(
        seen[0], problem.encode_target(split.selection)
    )  # the final weights: all selection rows
    assert sorted(len(t) for t in seen[1:]) == [
        len(split.selection) // 2,
        len(split.selection) - len(split.selection) // 2,
    ]
    tuned = set(split.train.index) | set(split.validation.index)
    assert not tuned & set(split.selection.index)
    assert result.record.selection is not None and result.record.validation is not None

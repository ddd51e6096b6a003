"""Ctrl-C during a search stops it cleanly wherever it lands (training/automl/interrupt.py, search.py).

Each test sends SIGINT to this very process at one chosen point of a real (small, fast) search, so the timing
that made the end-to-end Ctrl-C test flaky is reproduced every time.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest

from tests.conftest import TARGET, TEXT_COLUMN
from training.automl.families.tfidf import TfidfLinear
from training.automl.objectives import resolve_objective
from training.automl.search import Search, SearchSettings, TrialRecord
from training.data import split_frame, stratified_sample
from training.problem import infer_problem


def _ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)


def _on_call(number: int, function: Callable[..., Any]) -> Callable[..., Any]:
    """``function``, but Ctrl-C is pressed as it starts its ``number``-th call (1-based)."""
    calls = 0

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == number:
            _ctrl_c()
        return function(*args, **kwargs)

    return wrapper


def _search(prepared_reviews: pd.DataFrame, run_dir: Path) -> list[TrialRecord]:
    frame = stratified_sample(prepared_reviews, TARGET, 300, seed=0)
    split = split_frame(frame, TARGET, seed=0)
    problem = infer_problem(split.train, TARGET, text=[TEXT_COLUMN])
    settings = SearchSettings(time_budget_s=120, max_candidates=5, preset="fast", families=("tfidf_linear",))
    objective = resolve_objective(None, problem.problem_type)
    return Search(problem, split, objective, settings, run_dir, progress=False).run()


def test_ctrl_c_inside_optunas_bookkeeping_stops_after_that_trial(
    prepared_reviews: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # optuna 5.0 turned a KeyboardInterrupt here into UnboundLocalError (``updated_state`` never set)
    tell = optuna.study._optimize._tell_with_warning
    monkeypatch.setattr(optuna.study._optimize, "_tell_with_warning", _on_call(2, tell))
    records = _search(prepared_reviews, tmp_path)
    assert [r.state for r in records] == ["complete", "complete"]
    assert all(r.candidate_path and Path(r.candidate_path).is_file() for r in records)


def test_ctrl_c_during_a_fit_stops_that_candidate_and_the_search(
    prepared_reviews: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(TfidfLinear, "fit", _on_call(2, TfidfLinear.fit))
    records = _search(prepared_reviews, tmp_path)
    assert [(r.state, r.error) for r in records] == [("complete", None), ("interrupted", "stopped by Ctrl-C")]
    study = optuna.load_study(study_name="tripod", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert [t.state for t in study.trials] == [
        optuna.trial.TrialState.COMPLETE,
        optuna.trial.TrialState.PRUNED,
    ]


def test_the_previous_sigint_handler_is_back_after_the_search(
    prepared_reviews: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pressed: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pressed.append(signum))
    try:
        monkeypatch.setattr(TfidfLinear, "fit", _on_call(1, TfidfLinear.fit))
        records = _search(prepared_reviews, tmp_path)
        assert [r.state for r in records] == ["interrupted"] and not pressed  # the search's handler took it
        _ctrl_c()
        assert pressed == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, previous)

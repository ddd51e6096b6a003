"""The search prunes a trial only against finished trials of its own family."""

from __future__ import annotations

import optuna

from training.automl.search import FamilyMedianPruner

FAMILY = optuna.distributions.CategoricalDistribution(["fasttext", "minilm"])


def _finished(family: str, value_at_1: float) -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(
        params={"family": family},
        distributions={"family": FAMILY},
        value=value_at_1,
        intermediate_values={1: value_at_1},
    )


def _decide(family: str, value: float) -> bool:
    study = optuna.create_study(direction="maximize", pruner=FamilyMedianPruner(n_startup_trials=2))
    for finished in (_finished("fasttext", 0.66), _finished("fasttext", 0.68), _finished("minilm", 0.40)):
        study.add_trial(finished)
    study.enqueue_trial({"family": family})
    trial = study.ask({"family": FAMILY})
    trial.report(value, 1)
    return trial.should_prune()


def test_a_slow_starting_family_is_not_pruned_against_a_faster_one() -> None:
    # one finished MiniLM trial is fewer than n_startup_trials: no verdict, whatever fastText scored
    assert _decide("minilm", 0.30) is False


def test_a_trial_below_its_own_family_median_is_pruned() -> None:
    assert _decide("fasttext", 0.60) is True
    assert _decide("fasttext", 0.70) is False

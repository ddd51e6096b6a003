"""Objectives the search optimizes, and which problem types each one fits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
    roc_auc_score,
)

from training.errors import DataError
from training.problem import Problem, ProblemType

CLASSIFICATION: tuple[ProblemType, ...] = ("binary", "multiclass")
Direction = Literal["maximize", "minimize"]


@dataclass(frozen=True)
class Objective:
    name: str
    direction: Direction
    """``maximize`` or ``minimize``: Optuna's study direction."""
    problem_types: tuple[ProblemType, ...]

    def better(self, a: float, b: float) -> bool:
        """True when score ``a`` beats ``b``."""
        return a > b if self.direction == "maximize" else a < b

    def score(self, problem: Problem, truth: np.ndarray, scores: np.ndarray) -> float:
        """The objective of predictions ``scores`` (probabilities ``(n, C)`` or values ``(n,)``) against
        ``truth`` (class indices or values)."""
        if problem.is_classification:
            predicted = scores.argmax(axis=1)
            if self.name == "accuracy":
                return float(accuracy_score(truth, predicted))
            if self.name == "macro_f1":
                return float(f1_score(truth, predicted, average="macro", labels=range(len(problem.labels))))
            if self.name == "f1":
                return float(f1_score(truth, predicted, pos_label=1, average="binary"))
            if self.name == "auc":
                if problem.problem_type == "binary":
                    return float(roc_auc_score(truth, scores[:, 1]))
                return float(
                    roc_auc_score(truth, scores, multi_class="ovr", labels=range(len(problem.labels)))
                )
            if self.name == "log_loss":
                return float(log_loss(truth, np.clip(scores, 1e-15, 1), labels=range(len(problem.labels))))
        else:
            if self.name == "mse":
                return float(mean_squared_error(truth, scores))
            if self.name == "rmse":
                return float(np.sqrt(mean_squared_error(truth, scores)))
            if self.name == "mae":
                return float(mean_absolute_error(truth, scores))
            if self.name == "r2":
                return float(r2_score(truth, scores))
        raise AssertionError(f"objective {self.name} on {problem.problem_type}")  # resolve() prevents this


OBJECTIVES = {
    objective.name: objective
    for objective in (
        Objective("accuracy", "maximize", CLASSIFICATION),
        Objective("macro_f1", "maximize", CLASSIFICATION),
        Objective("f1", "maximize", ("binary",)),
        Objective("auc", "maximize", CLASSIFICATION),
        Objective("log_loss", "minimize", CLASSIFICATION),
        Objective("mse", "minimize", ("regression",)),
        Objective("rmse", "minimize", ("regression",)),
        Objective("mae", "minimize", ("regression",)),
        Objective("r2", "maximize", ("regression",)),
    )
}
DEFAULT_OBJECTIVE: dict[ProblemType, str] = {"binary": "f1", "multiclass": "macro_f1", "regression": "rmse"}


def resolve_objective(name: str | None, problem_type: ProblemType) -> Objective:
    """The objective to optimize; the problem type's default when ``name`` is None.

    Raises:
        DataError: an unknown objective, or one that does not fit the problem type (the message lists those
            that do).
    """
    name = name or DEFAULT_OBJECTIVE[problem_type]
    fitting = [o.name for o in OBJECTIVES.values() if problem_type in o.problem_types]
    if name not in OBJECTIVES or problem_type not in OBJECTIVES[name].problem_types:
        raise DataError(f"objective {name!r} does not fit a {problem_type} problem; choose one of {fitting}")
    return OBJECTIVES[name]

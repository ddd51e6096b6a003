"""Moved to :mod:`training.problem` (problem inference is shared by ``tripod train``, explore and AutoML).

Kept only so that callers outside the training side (``benchmarks/serving_artifacts.py``,
``loadtests/sample.py``) keep working until they import :mod:`training.problem`; training code must not use it.
"""

from training.problem import (
    ColumnRoles,
    Problem,
    ProblemType,
    infer_problem,
    infer_problem_type,
    label_strings,
)

__all__ = ["ColumnRoles", "Problem", "ProblemType", "infer_problem", "infer_problem_type", "label_strings"]

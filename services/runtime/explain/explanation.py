"""One record's explanation and its JSON shape (``docs/explain.md``, "The answer")."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from services.runtime.explain.options import ALL_CLASSES, PREDICTED_CLASS, ExplainOptions
from services.runtime.explain.tokens import Span


@dataclass(frozen=True, slots=True)
class Part:
    """One explained piece of a record: an n-gram or a group of words of a text column (with where it is in
    the text), or a whole categorical or numeric field (no offsets)."""

    column: str
    token: str
    spans: tuple[Span, ...] = ()

    def json(self, contribution: float) -> dict[str, Any]:
        start, end = self.spans[0] if self.spans else (None, None)
        return {
            "column": self.column,
            "token": self.token,
            "start": start,
            "end": end,
            "spans": [list(span) for span in self.spans],
            "contribution": contribution,
        }


@dataclass(frozen=True)
class Explanation:
    """Contributions of a record's parts to each output, against a baseline.

    Attributes:
        method: ``linear`` or ``sampling``.
        output: what is explained — ``margin`` (linear: log-odds or softmax input of each class, or the
            value) or ``probability`` (sampling; ``value`` for regression).
        parts: the record's explained parts.
        contributions: ``(n_outputs, n_parts)``; row ``i`` sums to ``values[i] - base_values[i]``.
        base_values: ``(n_outputs,)`` the output for the baseline (all parts absent).
        values: ``(n_outputs,)`` the output for the record.
        details: method facts for the answer (evaluations, budget, seed, groups).
    """

    method: str
    output: str
    parts: Sequence[Part]
    contributions: np.ndarray
    base_values: np.ndarray
    values: np.ndarray
    details: dict[str, Any] = field(default_factory=dict)

    def json(self, options: ExplainOptions, labels: Sequence[str], predicted: int | None) -> dict[str, Any]:
        """The ``explanation`` object of one answer: the chosen classes' top contributions."""
        if not labels:
            outputs: list[tuple[str | None, int]] = [(None, 0)]
        elif options.target == ALL_CLASSES:
            outputs = [(label, i) for i, label in enumerate(labels)]
        elif options.target == PREDICTED_CLASS:
            assert predicted is not None
            outputs = [(labels[predicted], predicted)]
        else:
            outputs = [(options.target, list(labels).index(options.target))]
        classes = []
        for label, index in outputs:
            row = np.asarray(self.contributions[index], dtype=np.float64)
            order = np.argsort(-np.abs(row), kind="stable")[: options.top_k]
            classes.append(
                {
                    "label": label,
                    "base_value": float(self.base_values[index]),
                    "value": float(self.values[index]),
                    "contributions": [
                        self.parts[i].json(float(row[i])) for i in order.tolist() if row[i] != 0.0
                    ],
                }
            )
        return {"method": self.method, "output": self.output, **self.details, "classes": classes}

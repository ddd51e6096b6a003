"""Attributions → the JSON-ready parts of ``explanations.json``: importance, top tokens, examples, additivity.

Every average is over the explained rows, a row without the feature counting zero, so "mean |SHAP|" of a word
reads as "how much this word moves an average review", whatever the explainer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from training.explain.global_shap import Attributions, feature_labels
from training.explain.linear import link
from training.explain.tokens import Span, ngram_spans

TOP_FEATURES = 20
"""Features listed (and plotted) per output."""
TOP_TOKENS = 10
"""Words or n-grams listed per output and direction."""
EXAMPLE_CHARS = 2000
"""Longest example text shown; the rest is cut (reviews are far shorter)."""
OTHER_FEATURES = 5
"""Non-text features listed beside an example's highlighted words."""


def _by_output(values: np.ndarray, outputs: Sequence[str]) -> dict[str, float]:
    return {output: float(values[k]) for k, output in enumerate(outputs)}


def importance(attributions: Attributions, top: int = TOP_FEATURES) -> dict[str, list[dict[str, Any]]]:
    """Per output, the features with the largest mean |SHAP|, largest first."""
    labels = feature_labels(attributions.features)
    mean_abs, mean, present = attributions.mean_abs(), attributions.mean(), attributions.presence()
    ranked: dict[str, list[dict[str, Any]]] = {}
    for k, output in enumerate(attributions.outputs):
        order = np.argsort(-mean_abs[k], kind="stable")[:top]
        ranked[output] = [
            {
                "feature": labels[i],
                "column": attributions.features[i].column,
                "kind": attributions.features[i].kind,
                "term": attributions.features[i].term,
                "mean_abs_shap": float(mean_abs[k, i]),
                "mean_shap": float(mean[k, i]),
                "mean_shap_when_present": float(mean[k, i] * attributions.rows / max(present[i], 1)),
                "rows": int(present[i]),
            }
            for i in order.tolist()
            if mean_abs[k, i] > 0
        ]
    return ranked


def overall_importance(attributions: Attributions, top: int = TOP_FEATURES) -> list[dict[str, Any]]:
    """The features with the largest mean |SHAP| summed over the outputs, with each output's share."""
    labels = feature_labels(attributions.features)
    mean_abs = attributions.mean_abs()
    total = mean_abs.sum(axis=0)
    order = np.argsort(-total, kind="stable")[:top]
    return [
        {
            "feature": labels[i],
            "mean_abs_shap": float(total[i]),
            "by_output": _by_output(mean_abs[:, i], attributions.outputs),
        }
        for i in order.tolist()
        if total[i] > 0
    ]


def top_tokens(
    attributions: Attributions, top: int = TOP_TOKENS
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Per output, the words or n-grams of text columns with the largest mean signed SHAP towards it
    (``towards``, positive) and against it (``against``, negative)."""
    text = np.array([f.kind == "text" for f in attributions.features], dtype=bool)
    labels = feature_labels(attributions.features)
    mean, present = attributions.mean(), attributions.presence()
    found: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for k, output in enumerate(attributions.outputs):
        values = np.where(text, mean[k], 0.0)
        towards = np.argsort(-values, kind="stable")[:top]
        against = np.argsort(values, kind="stable")[:top]

        def entries(order: np.ndarray, sign: float) -> list[dict[str, Any]]:
            return [
                {
                    "token": labels[i],
                    "column": attributions.features[i].column,
                    "mean_shap": float(values[i]),  # noqa: B023 (used at once, in this iteration)
                    "mean_shap_when_present": float(
                        values[i] * attributions.rows / max(present[i], 1)  # noqa: B023
                    ),
                    "rows": int(present[i]),
                }
                for i in order.tolist()
                if sign * values[i] > 0  # noqa: B023
            ]

        found[output] = {"towards": entries(towards, 1.0), "against": entries(against, -1.0)}
    return found


def additivity_error(
    attributions: Attributions, scores: np.ndarray, problem_type: str, *, margin: bool
) -> float:
    """Largest difference between the model's outputs and base + Σ SHAP (through the model's link, softmax
    or sigmoid, when the attributions are margins): how exactly the explained rows add up."""
    if not attributions.rows:
        return 0.0
    totals = attributions.base_values + np.column_stack(
        [np.asarray(v.sum(axis=1)).ravel() for v in attributions.values]
    )
    rebuilt = link(totals, problem_type) if margin else totals
    expected = np.asarray(scores, dtype=np.float64).reshape(attributions.rows, -1)
    return float(np.abs(rebuilt - expected).max(initial=0.0))


def example_rows(
    scores: np.ndarray, eligible: np.ndarray, outputs: Sequence[str], *, regression: bool
) -> list[int]:
    """Explained rows worth showing: for each class, the row predicted as it with the highest probability
    (for a regression, the highest and the lowest value), among ``eligible`` rows.

    Args:
        scores: ``(n_rows, n_outputs)`` or ``(n_rows,)`` model outputs of the explained rows.
        eligible: ``(n_rows,)`` bool: rows whose explained text is not blank.
    """
    positions = np.flatnonzero(eligible)
    if not len(positions):
        return []
    values = np.asarray(scores, dtype=np.float64).reshape(len(eligible), -1)[positions]
    if regression:
        chosen = [positions[int(values[:, 0].argmax())], positions[int(values[:, 0].argmin())]]
    else:
        predicted = values.argmax(axis=1)
        chosen = [
            positions[np.flatnonzero(predicted == k)[int(values[predicted == k, k].argmax())]]
            for k in range(len(outputs))
            if (predicted == k).any()
        ]
    return list(dict.fromkeys(int(row) for row in chosen))


def linear_spans(
    attributions: Attributions, row: int, column: str, text: str, tokenizer: Any
) -> tuple[list[Span], list[dict[str, Any]]]:
    """One row's highlighted words from its n-gram contributions, and its largest other contributions.

    Returns:
        The words of ``column`` with their shares, and the row's largest contributions from other features
        (other columns' words, categories, numbers), largest |value| on the predicted output first.
    """
    values = attributions.row(row)
    present = np.flatnonzero(np.abs(values).sum(axis=1) > 0)
    labels = feature_labels(attributions.features)
    outputs = attributions.outputs
    ngrams: dict[str, np.ndarray] = {}
    others: list[int] = []
    for i in present.tolist():
        feature = attributions.features[i]
        if feature.kind == "text" and feature.column == column and feature.term is not None:
            ngrams[feature.term] = values[i]
        else:
            others.append(i)
    spans = ngram_spans(text, tokenizer, ngrams, len(outputs)) if tokenizer is not None else []
    strongest = sorted(others, key=lambda i: -float(np.abs(values[i]).max()))[:OTHER_FEATURES]
    return spans, [{"feature": labels[i], "shap": _by_output(values[i], outputs)} for i in strongest]


def example_json(
    *,
    row_label: object,
    column: str,
    text: str,
    scores: np.ndarray,
    base: np.ndarray,
    spans: Sequence[Span],
    outputs: Sequence[str],
    regression: bool,
    method: str,
    output_space: str,
    others: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """One example of the report: the text, the model's answer, each word's attribution."""
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    predicted = None if regression else outputs[int(values.argmax())]
    shown = text[:EXAMPLE_CHARS]
    return {
        "row": row_label,
        "column": column,
        "text": shown,
        "truncated": len(text) > len(shown),
        "prediction": float(values[0]) if regression else predicted,
        "scores": _by_output(values, outputs),
        "highlighted_output": predicted or outputs[0],
        "method": method,
        "output": output_space,
        "base_values": _by_output(base, outputs),
        "tokens": [
            {
                "start": span.start,
                "end": span.end,
                "text": text[span.start : span.end],
                "shap": _by_output(span.values, outputs),
            }
            for span in spans
            if span.end <= len(shown)
        ],
        "other_features": list(others),
    }


def explained_text_column(inputs: pd.DataFrame, text_columns: Sequence[str]) -> str | None:
    """The text column whose words are explained: the longest on average (the first of equals)."""
    if not text_columns:
        return None
    lengths = [float(inputs[c].astype(str).str.len().mean()) if len(inputs) else 0.0 for c in text_columns]
    return text_columns[int(np.argmax(lengths))]

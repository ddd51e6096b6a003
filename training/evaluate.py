"""Score a classifier or regressor on held-out rows: the numbers that go into ``metrics.json`` and the manifest."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    precision_recall_fscore_support,
    r2_score,
)


def evaluate(
    y_true: Sequence[str] | np.ndarray,
    y_pred: Sequence[str] | np.ndarray,
    labels: Sequence[str],
    probabilities: np.ndarray | None = None,
) -> dict[str, Any]:
    """Accuracy, macro/weighted F1, per-class scores and the confusion matrix.

    Macro-F1 is the headline number: with 77 % positive reviews, accuracy rewards ignoring the neutral class,
    macro-F1 does not.

    Args:
        y_true: True label strings, ``(n_samples,)``.
        y_pred: Predicted label strings, ``(n_samples,)``.
        labels: Every label in class-index order; fixes the order of per-class rows and the matrix.
        probabilities: Optional ``(n_samples, n_classes)`` in ``labels`` order, for the log loss.

    Returns:
        A JSON-ready dict; ``confusion_matrix.matrix[i][j]`` counts rows of true ``labels[i]`` predicted
        ``labels[j]``.
    """
    labels = [str(label) for label in labels]
    y_true = np.asarray(y_true, dtype=str)
    y_pred = np.asarray(y_pred, dtype=str)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    report: dict[str, Any] = {
        "rows": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)),
        "macro_precision": float(np.mean(precision)),
        "macro_recall": float(np.mean(recall)),
        "per_class": {
            label: {
                "precision": float(p),
                "recall": float(r),
                "f1": float(f),
                "support": int(s),
            }
            for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
        },
        "confusion_matrix": {
            "labels": labels,
            "matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        },
    }
    if probabilities is not None:
        report["log_loss"] = float(log_loss(y_true, probabilities, labels=labels))
    return report


def flat_metrics(report: dict[str, Any], *, prefix: str = "") -> dict[str, float]:
    """The scalar scores of a report, for the manifest's ``metrics`` field (``f1_<label>`` per class)."""
    keys = (
        "accuracy",
        "macro_f1",
        "weighted_f1",
        "macro_precision",
        "macro_recall",
        "log_loss",
        "mse",
        "rmse",
        "mae",
        "r2",
    )
    flat = {f"{prefix}{key}": float(report[key]) for key in keys if key in report}
    for label, scores in report.get("per_class", {}).items():
        flat[f"{prefix}f1_{label}"] = float(scores["f1"])
    return flat


def evaluate_regression(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """MSE, RMSE, MAE and R² of regression predictions."""
    mse = float(mean_squared_error(truth, predicted))
    return {
        "mse": mse,
        "rmse": mse**0.5,
        "mae": float(mean_absolute_error(truth, predicted)),
        "r2": float(r2_score(truth, predicted)),
    }

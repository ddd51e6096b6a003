"""The exploration's figures: one function per picture, each over what a :mod:`~training.explore.statistics`
function returned (or the frame), returning a matplotlib figure, or None when there is nothing to draw."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from training.explore.leakage import LEAK_SCORE
from training.explore.statistics import word_counts
from training.problem import infer_problem_type


def plot_missing(profile: pd.DataFrame) -> Any:
    from training.reports import new_figure

    figure, axis = new_figure(7, max(2.0, 0.28 * len(profile) + 0.8))
    axis.barh(profile["column"], profile["missing_%"], color="#c0392b")
    axis.set_xlabel("% missing")
    axis.set_xlim(0, 100)
    axis.invert_yaxis()
    axis.set_title("missing values per column", fontsize=10)
    return figure


def plot_numeric(frame: pd.DataFrame, roles: Mapping[str, str], limit: int = 12) -> Any | None:
    from training.reports import new_figure

    columns = [c for c, r in roles.items() if r == "numeric"][:limit]
    if not columns:
        return None
    per_row = 4
    rows = -(-len(columns) // per_row)
    figure, axes = new_figure(3.2 * per_row, 2.4 * rows, nrows=rows, ncols=per_row, squeeze=False)
    for k, axis in enumerate(axes.flat):
        if k >= len(columns):
            axis.set_visible(False)
            continue
        values = pd.to_numeric(frame[columns[k]], errors="coerce").dropna()
        axis.hist(values, bins=40, color="#2e86c1")
        axis.set_title(columns[k], fontsize=9)
        axis.tick_params(labelsize=7)
    figure.tight_layout()
    return figure


def plot_target(frame: pd.DataFrame, summary: Mapping[str, Any]) -> Any:
    from training.reports import new_figure

    figure, axis = new_figure(7, 3.2)
    if summary["problem_type"] == "regression":
        axis.hist(frame[summary["target"]].dropna().astype("float64"), bins=50, color="#2e86c1")
        axis.set_title(f"distribution of {summary['target']}", fontsize=10)
        return figure
    classes = summary["classes"]
    axis.bar(list(classes), list(classes.values()), color="#2e86c1")
    for k, (name, count) in enumerate(classes.items()):
        axis.text(k, count, f"{summary['proportions'][name]:.1%}", ha="center", va="bottom", fontsize=8)
    axis.set_title(f"{summary['target']}: imbalance ratio {summary['imbalance_ratio']:.1f}", fontsize=10)
    axis.tick_params(axis="x", rotation=30, labelsize=8)
    return figure


def plot_text_lengths(frame: pd.DataFrame, column: str, target: str) -> Any:
    from training.reports import new_figure

    words = word_counts(frame[column])
    upper = max(1, int(np.percentile(words, 99))) if len(words) else 1
    bins = np.linspace(0, upper, 40)
    figure, axis = new_figure(7, 3.2)
    classification = infer_problem_type(frame[target]) != "regression"
    groups = (
        frame[target].astype(str).groupby(frame[target].astype(str)).groups
        if classification
        else {"all": None}
    )
    for name, index in groups.items():
        values = words if index is None else words.loc[index]
        axis.hist(values.clip(upper=upper), bins=bins, alpha=0.5, density=True, label=str(name)[:20])
    axis.set_xlabel(f"words in {column}")
    axis.set_title(f"{column}: length distribution per class", fontsize=10)
    axis.legend(fontsize=7)
    return figure


def plot_ngrams(ngrams: Mapping[str, list[tuple[str, int]]], column: str) -> Any | None:
    from training.reports import new_figure

    if not ngrams:
        return None
    classes = list(ngrams)
    figure, axes = new_figure(
        3.6 * len(classes),
        0.22 * max(len(v) for v in ngrams.values()) + 1.2,
        ncols=len(classes),
        squeeze=False,
    )
    for axis, name in zip(axes.flat, classes, strict=True):
        grams = ngrams[name]
        axis.barh([g for g, _ in grams], [c for _, c in grams], color="#2e86c1")
        axis.invert_yaxis()
        axis.set_title(f"{name}", fontsize=9)
        axis.tick_params(labelsize=7)
    figure.suptitle(f"top n-grams of {column} per class", fontsize=10)
    figure.tight_layout()
    return figure


def plot_pearson(matrix: pd.DataFrame) -> Any | None:
    from training.reports import new_figure

    if matrix.empty:
        return None
    size = 1.0 + 0.5 * len(matrix)
    figure, axis = new_figure(size + 1.5, size)
    image = axis.imshow(matrix.to_numpy(dtype=float), cmap="RdBu_r", vmin=-1, vmax=1)
    axis.set_xticks(
        range(len(matrix)), [str(c)[:20] for c in matrix.columns], rotation=60, ha="right", fontsize=7
    )
    axis.set_yticks(range(len(matrix)), [str(c)[:20] for c in matrix.index], fontsize=7)
    if len(matrix) <= 16:
        for i in range(len(matrix)):
            for j in range(len(matrix)):
                value = matrix.iat[i, j]
                if not math.isnan(value):
                    axis.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6)
    figure.colorbar(image, ax=axis, shrink=0.8)
    axis.set_title("Pearson correlation", fontsize=10)
    return figure


def plot_association(association: pd.Series, target: str) -> Any | None:
    from training.reports import new_figure

    if association.empty:
        return None
    figure, axis = new_figure(7, max(2.0, 0.3 * len(association) + 0.8))
    axis.barh(association.index, association.to_numpy(), color="#8e44ad")
    axis.set_xlim(0, 1)
    axis.invert_yaxis()
    axis.set_title(f"Cramér's V with {target}", fontsize=10)
    return figure


def plot_anomalies(scores: pd.Series) -> Any | None:
    from training.reports import new_figure

    if scores.empty:
        return None
    figure, axis = new_figure(7, 3)
    axis.hist(scores, bins=60, color="#16a085")
    axis.axvline(0, color="#c0392b", linestyle="--", label="threshold (auto)")
    axis.set_xlabel("Isolation Forest score (lower = more anomalous)")
    axis.legend(fontsize=7)
    axis.set_title(f"{int((scores < 0).sum())} of {len(scores)} rows flagged", fontsize=10)
    return figure


def plot_power(power: pd.DataFrame, metric: str) -> Any | None:
    from training.reports import new_figure

    if power.empty:
        return None
    figure, axis = new_figure(7, max(2.0, 0.3 * len(power) + 0.8))
    colors = ["#c0392b" if s >= LEAK_SCORE else "#2e86c1" for s in power["score"]]
    axis.barh(power["column"], power["score"], color=colors)
    axis.axvline(power["baseline"].iloc[0], color="#444", linestyle="--", label="majority baseline")
    axis.set_xlim(0, 1)
    axis.invert_yaxis()
    axis.legend(fontsize=7)
    axis.set_title(f"each column alone: cross-validated {metric}", fontsize=10)
    return figure

"""The exploration's statistics: column roles and profile, the target, duplicates, text, correlations, anomalies.

Each function takes a DataFrame and returns data (a table, a series or a dict); the figures are drawn separately
(:mod:`training.explore.plots`).  Cheap statistics use every row; the costly ones (n-grams, Isolation Forest)
are called on a seeded random sample of ``sample_rows`` rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from training.data import require_columns
from training.errors import DataError
from training.problem import infer_problem_type, infer_role

SAMPLE_ROWS = 20_000
TOKEN_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_]+"
MAX_CATEGORY_LEVELS = 50
"""Categorical columns keep their most frequent levels up to this many; the rest become one "other" level."""
ROLES = ("text", "categorical", "numeric", "boolean", "identifier", "constant", "empty")


@dataclass(frozen=True)
class ExploreSettings:
    """What :func:`explore` looks at.

    Attributes:
        target: The label (or regression target) column.
        text_columns: Free-text columns; None infers them (strings averaging four or more words).
        sample_rows: Rows used by the costly sections.
        seed: Seed of every sample and model.
        top_ngrams: n-grams shown per class.
        sample_size: Rows in the data sample table.
        anomalies: Anomalous rows listed.
    """

    target: str
    text_columns: tuple[str, ...] | None = None
    sample_rows: int = SAMPLE_ROWS
    seed: int = 42
    top_ngrams: int = 15
    sample_size: int = 10
    anomalies: int = 10


# -- column roles and profile ---------------------------------------------------------------------------------


def column_roles(
    frame: pd.DataFrame, target: str, text_columns: Sequence[str] | None = None
) -> dict[str, str]:
    """A role for every column but the target: one of :data:`ROLES`.

    Roles come from :func:`training.problem.infer_role`, so exploration and AutoML see the same columns
    the same way; booleans and dropped columns get their own names here.
    """
    roles: dict[str, str] = {}
    forced = set(text_columns or ())
    for column in frame.columns:
        name = str(column)
        if name == target:
            continue
        values = frame[column]
        if name in forced:
            roles[name] = "text"
            continue
        if pd.api.types.is_bool_dtype(values.dropna()) and values.notna().any():
            roles[name] = "boolean" if values.dropna().nunique() > 1 else "constant"
            continue
        role, reason = infer_role(values)
        if role is None:
            roles[name] = (
                "empty"
                if reason.startswith("empty")
                else "constant"
                if reason.startswith("constant")
                else "identifier"
            )
        elif role == "text" and text_columns is not None:
            roles[name] = (
                "categorical" if values.nunique() <= 0.5 * max(values.notna().sum(), 1) else "identifier"
            )
        else:
            roles[name] = role
    return roles


def word_counts(values: pd.Series) -> pd.Series:
    """Whitespace-separated words per value (0 for a missing one)."""
    return values.fillna("").astype(str).str.split().str.len().astype("int64")


def profile_columns(frame: pd.DataFrame, roles: Mapping[str, str], target: str) -> pd.DataFrame:
    """One row per column: role, dtype, missing values, cardinality and descriptive statistics."""
    rows = []
    for column in frame.columns:
        name = str(column)
        values = frame[column]
        missing = int(values.isna().sum())
        row: dict[str, Any] = {
            "column": name,
            "role": "target" if name == target else roles.get(name, ""),
            "dtype": str(values.dtype),
            "missing": missing,
            "missing_%": round(100.0 * missing / max(len(values), 1), 2),
            "distinct": int(values.nunique()),
        }
        present = values.dropna()
        if (
            pd.api.types.is_numeric_dtype(present)
            and not pd.api.types.is_bool_dtype(present)
            and len(present)
        ):
            numbers = present.astype("float64")
            row.update(
                mean=numbers.mean(),
                std=numbers.std(),
                min=numbers.min(),
                p25=numbers.quantile(0.25),
                median=numbers.median(),
                p75=numbers.quantile(0.75),
                max=numbers.max(),
            )
        elif len(present):
            counts = present.astype(str).value_counts()
            row.update(top=str(counts.index[0])[:60], top_count=int(counts.iloc[0]))
            if row["role"] == "text":
                words = word_counts(present)
                row.update(
                    mean_words=round(float(words.mean()), 1),
                    max_words=int(words.max()),
                    mean_chars=round(float(present.astype(str).str.len().mean()), 1),
                )
        rows.append(row)
    return pd.DataFrame(rows)


# -- target ---------------------------------------------------------------------------------------------------


def target_summary(frame: pd.DataFrame, target: str) -> dict[str, Any]:
    """Problem type, class counts (classification) or statistics (regression), and the imbalance ratio.

    The imbalance ratio is the largest class count over the smallest.

    Raises:
        DataError: the target is missing, empty, or has one value.
    """
    require_columns(frame, [target])
    values = frame[target]
    if values.notna().sum() == 0:
        raise DataError(f"target column {target!r} is empty")
    problem = infer_problem_type(values)
    summary: dict[str, Any] = {"target": target, "problem_type": problem, "missing": int(values.isna().sum())}
    if problem == "regression":
        numbers = values.dropna().astype("float64")
        summary["statistics"] = {k: float(v) for k, v in numbers.describe().items()}
        summary["imbalance_ratio"] = None
        return summary
    counts = values.dropna().astype(str).value_counts()
    summary["classes"] = {str(k): int(v) for k, v in counts.items()}
    summary["proportions"] = {str(k): float(v / counts.sum()) for k, v in counts.items()}
    summary["imbalance_ratio"] = float(counts.iloc[0] / counts.iloc[-1])
    summary["majority"] = str(counts.index[0])
    summary["minority"] = str(counts.index[-1])
    return summary


def data_sample(frame: pd.DataFrame, rows: int = 10, seed: int = 42) -> pd.DataFrame:
    """A seeded random sample of rows, in their original order."""
    if len(frame) <= rows:
        return frame
    return frame.sample(n=rows, random_state=seed).sort_index()


# -- duplicates -----------------------------------------------------------------------------------------------


def duplicates(frame: pd.DataFrame, target: str, text_columns: Sequence[str]) -> dict[str, Any]:
    """Fully duplicated rows, and texts that appear more than once (with conflicting labels counted)."""
    hashes = pd.util.hash_pandas_object(frame, index=False)
    repeated = hashes.duplicated(keep="first")
    result: dict[str, Any] = {
        "duplicate_rows": int(repeated.sum()),
        "duplicate_rows_%": round(100.0 * float(repeated.mean()) if len(frame) else 0.0, 2),
        "examples": frame.loc[hashes.duplicated(keep=False)].head(6),
        "text": {},
    }
    for column in text_columns:
        text = frame[column].dropna().astype(str).str.strip()
        text = text[text != ""]
        dup = text.duplicated(keep=False)
        conflicting = 0
        if dup.any() and target in frame.columns:
            labels = frame.loc[text[dup].index, target].astype(str)
            conflicting = int((labels.groupby(text[dup]).nunique() > 1).sum())
        result["text"][column] = {
            "repeated_texts": int(text.duplicated().sum()),
            "texts_with_conflicting_labels": conflicting,
        }
    return result


# -- text -----------------------------------------------------------------------------------------------------


def text_lengths(frame: pd.DataFrame, column: str, target: str) -> pd.DataFrame:
    """Word-count statistics of a text column per class (or overall for a regression target)."""
    words = word_counts(frame[column])
    by = frame[target].astype(str) if infer_problem_type(frame[target]) != "regression" else None
    stats = words.groupby(by).describe() if by is not None else words.describe().to_frame("all").T
    stats.index.name = target
    return stats.round(2)


def top_ngrams(
    frame: pd.DataFrame, column: str, target: str, *, top: int = 15, ngram_range: tuple[int, int] = (1, 2)
) -> dict[str, list[tuple[str, int]]]:
    """The most frequent word n-grams of a text column per class (English stop words left out)."""
    from sklearn.feature_extraction.text import CountVectorizer

    text = frame[column].fillna("").astype(str)
    classification = infer_problem_type(frame[target]) != "regression"
    labels = frame[target].astype(str) if classification else pd.Series("all", index=frame.index)
    vectorizer = CountVectorizer(
        stop_words="english",
        ngram_range=ngram_range,
        token_pattern=TOKEN_PATTERN,
        lowercase=True,
        min_df=2,
        max_features=50_000,
    )
    try:
        counts = vectorizer.fit_transform(text)
    except ValueError:  # empty vocabulary: nothing but stop words or one-letter tokens
        return {}
    vocabulary = np.asarray(vectorizer.get_feature_names_out())
    result = {}
    for name in sorted(labels.dropna().unique(), key=str):
        rows = np.flatnonzero((labels == name).to_numpy())
        totals = np.asarray(counts[rows].sum(axis=0)).ravel()
        best = np.argsort(-totals, kind="stable")[:top]
        result[str(name)] = [(str(vocabulary[i]), int(totals[i])) for i in best if totals[i] > 0]
    return result


# -- correlations ---------------------------------------------------------------------------------------------


def pearson(frame: pd.DataFrame, roles: Mapping[str, str], target: str) -> pd.DataFrame:
    """Pearson correlations of the numeric and boolean columns, plus the target (one indicator per class)."""
    columns = [c for c, r in roles.items() if r in ("numeric", "boolean")]
    block = pd.DataFrame(
        {c: pd.to_numeric(frame[c], errors="coerce").astype("float64") for c in columns}, index=frame.index
    )
    y = frame[target]
    if infer_problem_type(y) == "regression":
        block[target] = y.astype("float64")
    else:
        labels = y.astype(str).where(y.notna())
        for name in sorted(labels.dropna().unique(), key=str)[:10]:
            block[f"{target}={name}"] = (labels == name).astype("float64").where(y.notna())
    if block.shape[1] < 2:
        return pd.DataFrame()
    return block.corr(method="pearson", min_periods=3)


def cramers_v(x: pd.Series, y: pd.Series) -> float:
    """Cramér's V = √(χ² / (n · (min(r, c) − 1))) of two categorical series (missing values left out)."""
    from scipy.stats import chi2_contingency

    both = pd.DataFrame({"x": x.astype(str).where(x.notna()), "y": y.astype(str).where(y.notna())}).dropna()
    if both.empty:
        return float("nan")
    table = pd.crosstab(both["x"], both["y"])
    if min(table.shape) < 2:
        return 0.0
    chi2 = chi2_contingency(table.to_numpy(), correction=False)[0]
    return float(math.sqrt(chi2 / (table.to_numpy().sum() * (min(table.shape) - 1))))


def top_levels(values: pd.Series, limit: int = MAX_CATEGORY_LEVELS) -> pd.Series:
    """The values as text, all but the ``limit`` most frequent replaced by ``"(other)"`` (missing stays missing)."""
    text = values.astype(str).where(values.notna())
    keep = text.value_counts().index[:limit]
    return text.where(text.isin(keep) | text.isna(), "(other)")


def categorical_association(frame: pd.DataFrame, roles: Mapping[str, str], target: str) -> pd.Series:
    """Cramér's V between every categorical (or boolean, or few-valued numeric) column and the target."""
    if infer_problem_type(frame[target]) == "regression":
        return pd.Series(dtype="float64")
    values = {}
    for column, role in roles.items():
        few = role == "numeric" and frame[column].nunique() <= 20
        if role in ("categorical", "boolean") or few:
            values[column] = cramers_v(top_levels(frame[column]), frame[target])
    return pd.Series(values, name="cramers_v", dtype="float64").sort_values(ascending=False)


# -- anomalies ------------------------------------------------------------------------------------------------


def anomaly_features(frame: pd.DataFrame, roles: Mapping[str, str]) -> pd.DataFrame:
    """Numbers an Isolation Forest can split: numeric values, category frequencies, text lengths."""
    features = {}
    for column, role in roles.items():
        values = frame[column]
        if role in ("numeric", "boolean"):
            numbers = pd.to_numeric(values, errors="coerce").astype("float64")
            features[column] = numbers.fillna(numbers.median() if numbers.notna().any() else 0.0)
        elif role == "categorical":
            text = values.astype(str).where(values.notna(), "(missing)")
            features[f"{column} (frequency)"] = text.map(text.value_counts(normalize=True)).astype("float64")
        elif role == "text":
            text = values.fillna("").astype(str)
            features[f"{column} (chars)"] = text.str.len().astype("float64")
            features[f"{column} (words)"] = word_counts(values).astype("float64")
    return pd.DataFrame(features, index=frame.index)


def anomalies(
    frame: pd.DataFrame, roles: Mapping[str, str], *, seed: int = 42, top: int = 10
) -> tuple[pd.Series, pd.DataFrame]:
    """Isolation Forest scores (lower = more anomalous) and the ``top`` most anomalous rows.

    Returns:
        ``(scores, rows)``: ``decision_function`` per row (negative = flagged by the ``auto`` threshold) and the
        most anomalous rows with their score and the feature that deviates most (in robust z-score).
    """
    from sklearn.ensemble import IsolationForest

    features = anomaly_features(frame, roles)
    if features.empty or len(frame) < 10:
        return pd.Series(dtype="float64"), pd.DataFrame()
    forest = IsolationForest(n_estimators=100, contamination="auto", random_state=seed, n_jobs=1)
    forest.fit(features.to_numpy())
    scores = pd.Series(forest.decision_function(features.to_numpy()), index=frame.index, name="anomaly_score")
    order = scores.sort_values().index[:top]
    median = features.median()
    spread = (features - median).abs().median().replace(0, np.nan)
    z = ((features.loc[order] - median) / spread).abs()
    rows = frame.loc[order].copy()
    rows.insert(0, "anomaly_score", scores.loc[order].round(4))
    rows.insert(
        1,
        "most_unusual",
        [
            (
                f"{z.loc[i].idxmax()} ({features.at[i, z.loc[i].idxmax()]:.4g})"
                if z.loc[i].notna().any()
                else ""
            )
            for i in order
        ],
    )
    return scores, rows

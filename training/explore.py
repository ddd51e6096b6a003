"""The data-exploration report: what a table holds, how its target is spread, and which columns leak it.

Each section is a small function over a DataFrame that returns data (a table or a dict) and draws its figures
separately, so the HTML report (:func:`explore` → :func:`render_exploration_html`) and the notebook
(:func:`build_notebook`, one cell per section) run the same code.  Cheap statistics use every row; the costly
parts (n-grams, Isolation Forest, per-column models) use a seeded random sample of ``sample_rows`` rows.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from training.automl.problem import infer_problem_type, infer_role, leaks_target
from training.data import require_columns
from training.errors import DataError

logger = logging.getLogger(__name__)

SAMPLE_ROWS = 20_000
TOKEN_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_]+"
LEAK_SCORE = 0.95
"""A column that alone reaches this macro-F1 (or R²) is flagged as a possible target leak."""
LEAK_CRAMERS_V = 0.9
IMBALANCE_WARNING = 3.0
MISSING_WARNING = 0.5
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

    Roles come from :func:`training.automl.problem.infer_role`, so exploration and AutoML see the same columns
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


def _words(values: pd.Series) -> pd.Series:
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
                words = _words(present)
                row.update(
                    mean_words=round(float(words.mean()), 1),
                    max_words=int(words.max()),
                    mean_chars=round(float(present.astype(str).str.len().mean()), 1),
                )
        rows.append(row)
    return pd.DataFrame(rows)


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


def data_sample(frame: pd.DataFrame, rows: int = 10, seed: int = 42) -> pd.DataFrame:
    """A seeded random sample of rows, in their original order."""
    if len(frame) <= rows:
        return frame
    return frame.sample(n=rows, random_state=seed).sort_index()


# -- duplicates -------------------------------------------------------------------------------------------------


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
    words = _words(frame[column])
    by = frame[target].astype(str) if infer_problem_type(frame[target]) != "regression" else None
    stats = words.groupby(by).describe() if by is not None else words.describe().to_frame("all").T
    stats.index.name = target
    return stats.round(2)


def plot_text_lengths(frame: pd.DataFrame, column: str, target: str) -> Any:
    from training.reports import new_figure

    words = _words(frame[column])
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


def _top_levels(values: pd.Series, limit: int = MAX_CATEGORY_LEVELS) -> pd.Series:
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
            values[column] = cramers_v(_top_levels(frame[column]), frame[target])
    return pd.Series(values, name="cramers_v", dtype="float64").sort_values(ascending=False)


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
            features[f"{column} (words)"] = _words(values).astype("float64")
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


# -- prediction power and leakage -----------------------------------------------------------------------------


def _ravel(x: Any) -> np.ndarray:
    return np.asarray(x).ravel()


def _column_model(role: str, classification: bool, seed: int) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.naive_bayes import ComplementNB
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    if role in ("numeric", "boolean"):
        tree = (
            DecisionTreeClassifier(
                max_depth=4, min_samples_leaf=5, class_weight="balanced", random_state=seed
            )
            if classification
            else DecisionTreeRegressor(max_depth=4, min_samples_leaf=5, random_state=seed)
        )
        return make_pipeline(SimpleImputer(strategy="median", add_indicator=True), tree)
    if role == "categorical":
        linear = (
            LogisticRegression(max_iter=300, class_weight="balanced") if classification else Ridge(alpha=1.0)
        )
        return make_pipeline(OneHotEncoder(handle_unknown="ignore", min_frequency=5), linear)
    # Text: naive Bayes is a fraction of a second where a logistic regression takes tens on 2 cores, and
    # complement NB copes with imbalanced classes; "quick" is the point of a per-column score.
    flatten = FunctionTransformer(_ravel, accept_sparse=False)
    model = ComplementNB(alpha=0.5) if classification else Ridge(alpha=1.0)
    return make_pipeline(
        flatten, TfidfVectorizer(token_pattern=TOKEN_PATTERN, min_df=2, max_features=20000), model
    )


def prediction_power(
    frame: pd.DataFrame,
    roles: Mapping[str, str],
    target: str,
    *,
    seed: int = 42,
    folds: int = 3,
    progress: bool = False,
) -> pd.DataFrame:
    """How well each column alone predicts the target: 3-fold cross-validated macro-F1 (or R²) of a quick model.

    Numeric columns get a depth-4 decision tree, categorical ones a one-hot logistic regression, text a TF-IDF
    logistic regression.  ``power`` rescales the score so that the majority-class baseline is 0 and a perfect
    score 1 (for R², power = max(R², 0)).
    """
    from sklearn.dummy import DummyClassifier
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score

    data = frame[frame[target].notna()]
    classification = infer_problem_type(data[target]) != "regression"
    if classification:
        y = data[target].astype(str).to_numpy()
        smallest = int(pd.Series(y).value_counts().min())
        folds = min(folds, smallest)
        if folds < 2:
            return pd.DataFrame(columns=["column", "role", "score", "baseline", "power"])
        cv: Any = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        scoring = "f1_macro"
        baseline = float(
            cross_val_score(
                DummyClassifier(strategy="most_frequent"), np.zeros((len(y), 1)), y, cv=cv, scoring=scoring
            ).mean()
        )
    else:
        y = data[target].astype("float64").to_numpy()
        cv, scoring, baseline = KFold(n_splits=folds, shuffle=True, random_state=seed), "r2", 0.0
    rows = []
    candidates = [(c, r) for c, r in roles.items() if r in ("numeric", "boolean", "categorical", "text")]
    for column, role in tqdm(candidates, desc="prediction power", unit="column", disable=not progress):
        values = data[column]
        if role in ("numeric", "boolean"):
            x: Any = pd.to_numeric(values, errors="coerce").astype("float64").to_frame().to_numpy()
        elif role == "categorical":
            x = _top_levels(values).fillna("(missing)").to_frame().to_numpy(dtype=object)
        else:
            x = values.fillna("").astype(str).to_frame().to_numpy(dtype=object)
        try:
            score = float(
                cross_val_score(
                    _column_model(role, classification, seed),
                    x,
                    y,
                    cv=cv,
                    scoring=scoring,
                    error_score="raise",
                ).mean()
            )
        except ValueError as exc:  # e.g. a text column whose every token is a stop word
            logger.info("prediction power of %s failed: %s", column, exc)
            continue
        power = (score - baseline) / (1.0 - baseline) if baseline < 1 else 0.0
        rows.append(
            {
                "column": column,
                "role": role,
                "score": round(score, 4),
                "baseline": round(baseline, 4),
                "power": round(max(power, 0.0), 4),
            }
        )
    table = pd.DataFrame(rows, columns=["column", "role", "score", "baseline", "power"])
    return table.sort_values("power", ascending=False, kind="stable").reset_index(drop=True)


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


def leakage_warnings(
    frame: pd.DataFrame, roles: Mapping[str, str], target: str, power: pd.DataFrame, association: pd.Series
) -> list[str]:
    """Columns that may leak the target: they determine it, or predict it (almost) perfectly on their own."""
    warnings = []
    scores = dict(zip(power["column"], power["score"], strict=True)) if not power.empty else {}
    for column, role in roles.items():
        reasons = []
        if role not in ("text", "identifier", "empty", "constant") and leaks_target(
            frame[column], frame[target]
        ):
            reasons.append("each of its values determines the target on ≥ 99 % of rows")
        if scores.get(column, 0.0) >= LEAK_SCORE:
            reasons.append(f"alone it scores {scores[column]:.3f} (cross-validated)")
        v = association.get(column) if not association.empty else None
        if v is not None and not math.isnan(v) and v >= LEAK_CRAMERS_V:
            reasons.append(f"Cramér's V with the target is {v:.2f}")
        if reasons:
            warnings.append(f"column {column!r} may leak the target {target!r}: {'; '.join(reasons)}")
    return warnings


def data_warnings(
    profile: pd.DataFrame, target_info: Mapping[str, Any], dups: Mapping[str, Any]
) -> list[str]:
    """Plain data-quality warnings: constant, empty or mostly-missing columns, imbalance, duplicates."""
    warnings = []
    for _, row in profile.iterrows():
        if row["role"] in ("constant", "empty"):
            warnings.append(f"column {row['column']!r} is {row['role']}: it carries no information")
        elif row["role"] == "identifier":
            warnings.append(f"column {row['column']!r} looks like an identifier: leave it out of models")
        if row["missing_%"] > 100 * MISSING_WARNING:
            warnings.append(f"column {row['column']!r} is {row['missing_%']:.0f} % missing")
    ratio = target_info.get("imbalance_ratio")
    if ratio and ratio >= IMBALANCE_WARNING:
        warnings.append(
            f"the target is imbalanced: {target_info['majority']!r} has {ratio:.1f}× the rows of "
            f"{target_info['minority']!r}; prefer macro-F1 to accuracy, consider class weights or `tripod balance`"
        )
    if dups["duplicate_rows"]:
        warnings.append(f"{dups['duplicate_rows']} row(s) are exact duplicates of an earlier row")
    for column, info in dups["text"].items():
        if info["texts_with_conflicting_labels"]:
            warnings.append(
                f"{info['texts_with_conflicting_labels']} repeated {column!r} text(s) carry different labels"
            )
    return warnings


# -- the whole report -----------------------------------------------------------------------------------------


@dataclass
class Exploration:
    """Everything :func:`explore` found: JSON-ready ``summary``, tables, and figures per section."""

    summary: dict[str, Any]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, list[tuple[str, Any]]] = field(default_factory=dict)
    """section id → ``[(alt text, matplotlib figure)]``."""


SECTIONS = (
    "overview",
    "target",
    "sample",
    "columns",
    "duplicates",
    "text",
    "correlations",
    "anomalies",
    "prediction-power",
    "warnings",
)


def explore(frame: pd.DataFrame, settings: ExploreSettings, *, progress: bool = False) -> Exploration:
    """Run every section of the exploration report.

    Raises:
        DataError: an empty table, an unknown target or text column (listing the available ones), or a target
            with fewer than two values.
    """
    if len(frame) == 0 or len(frame.columns) == 0:
        raise DataError("the table has no rows" if len(frame.columns) else "the table has no columns")
    frame = frame.rename(columns=str)
    target = settings.target
    require_columns(frame, [target, *(settings.text_columns or ())])
    steps = tqdm(total=len(SECTIONS), desc="explore: overview", unit="section", disable=not progress)

    def step(name: str) -> None:  # one section done, the next (named in the bar) starting
        steps.update(1)
        steps.set_description(f"explore: {name}")

    result = Exploration(summary={"rows": len(frame), "columns": len(frame.columns), "target": target})
    roles = column_roles(frame, target, settings.text_columns)
    text_columns = [c for c, r in roles.items() if r == "text"]
    sample = (
        data_sample(frame, settings.sample_rows, settings.seed)
        if len(frame) > settings.sample_rows
        else frame
    )
    sample = sample[sample[target].notna()]
    result.summary.update(sampled_rows=len(sample), seed=settings.seed, roles=roles)
    step("target")

    info = target_summary(frame, target)
    result.summary["target_summary"] = info
    result.figures["target"] = [("target distribution", plot_target(frame, info))]
    step("sample")

    result.tables["sample"] = data_sample(frame, settings.sample_size, settings.seed)
    step("columns")

    profile = profile_columns(frame, roles, target)
    result.tables["columns"] = profile
    result.summary["column_profile"] = profile.to_dict(orient="records")
    result.figures["columns"] = [("missing values", plot_missing(profile))]
    numeric_figure = plot_numeric(frame, roles)
    if numeric_figure is not None:
        result.figures["columns"].append(("numeric distributions", numeric_figure))
    step("duplicates")

    dups = duplicates(frame, target, text_columns)
    result.tables["duplicates"] = dups.pop("examples")
    result.summary["duplicates"] = dups
    step("text")

    result.summary["text"] = {}
    result.figures["text"] = []
    for column in text_columns:
        lengths = text_lengths(frame, column, target)
        grams = top_ngrams(sample, column, target, top=settings.top_ngrams)
        result.tables[f"text_lengths:{column}"] = lengths
        result.summary["text"][column] = {
            "lengths": lengths.reset_index().to_dict(orient="records"),
            "top_ngrams": {k: [list(g) for g in v] for k, v in grams.items()},
        }
        result.figures["text"].append((f"{column} lengths", plot_text_lengths(frame, column, target)))
        ngram_figure = plot_ngrams(grams, column)
        if ngram_figure is not None:
            result.figures["text"].append((f"{column} n-grams", ngram_figure))
    step("correlations")

    matrix = pearson(frame, roles, target)
    association = categorical_association(frame, roles, target)
    result.tables["pearson"] = matrix
    result.tables["cramers_v"] = association.to_frame()
    result.summary["correlations"] = {
        "pearson": matrix.round(4).to_dict(),
        "cramers_v": association.round(4).to_dict(),
    }
    result.figures["correlations"] = [
        (alt, f)
        for alt, f in (
            ("Pearson correlation", plot_pearson(matrix)),
            ("Cramér's V", plot_association(association, target)),
        )
        if f is not None
    ]
    step("anomalies")

    scores, unusual = anomalies(sample, roles, seed=settings.seed, top=settings.anomalies)
    result.tables["anomalies"] = unusual
    result.summary["anomalies"] = {
        "rows_scored": len(scores),
        "flagged": int((scores < 0).sum()) if len(scores) else 0,
        "top": unusual.drop(columns=[c for c in unusual.columns if roles.get(c) == "text"]).to_dict(
            orient="records"
        )
        if len(unusual)
        else [],
    }
    figure = plot_anomalies(scores)
    result.figures["anomalies"] = [("anomaly scores", figure)] if figure is not None else []
    step("prediction power")

    power = prediction_power(sample, roles, target, seed=settings.seed)
    metric = "R²" if info["problem_type"] == "regression" else "macro-F1"
    result.tables["prediction-power"] = power
    result.summary["prediction_power"] = {"metric": metric, "columns": power.to_dict(orient="records")}
    figure = plot_power(power, metric)
    result.figures["prediction-power"] = [("prediction power", figure)] if figure is not None else []
    step("warnings")

    leaks = leakage_warnings(frame, roles, target, power, association)
    result.summary["leakage_warnings"] = leaks
    result.summary["warnings"] = data_warnings(profile, info, dups)
    step("done")
    steps.close()
    return result


def render_exploration_html(result: Exploration, *, source: str = "") -> str:
    """The exploration as one self-contained HTML page (figures embedded as PNG)."""
    from training.reports import Section, escape, render_page, table_html

    s = result.summary
    info = s["target_summary"]
    sections = []
    overview = Section("overview", "Overview")
    overview.text(
        f"{s['rows']:,} rows × {s['columns']} columns; target {s['target']!r} "
        f"({info['problem_type']}). Sampled sections use {s['sampled_rows']:,} rows (seed {s['seed']})."
    )
    roles = pd.Series(s["roles"]).value_counts().rename_axis("role").reset_index(name="columns")
    overview.table(roles)
    sections.append(overview)

    target = Section("target", "Target")
    if info["problem_type"] == "regression":
        target.table(pd.DataFrame([info["statistics"]]))
    else:
        target.text(f"Imbalance ratio (largest / smallest class): {info['imbalance_ratio']:.2f}.")
        target.table(
            pd.DataFrame(
                {
                    "class": list(info["classes"]),
                    "rows": list(info["classes"].values()),
                    "share": [round(v, 4) for v in info["proportions"].values()],
                }
            )
        )
    sections.append(target)

    sections.append(Section("sample", "Data sample").table(result.tables["sample"], max_chars=120))
    sections.append(Section("columns", "Columns").table(result.tables["columns"], max_rows=500))

    dup = Section("duplicates", "Duplicate rows")
    d = s["duplicates"]
    dup.text(f"{d['duplicate_rows']:,} exact duplicate rows ({d['duplicate_rows_%']} %).")
    if d["text"]:
        dup.table(pd.DataFrame([{"column": c, **v} for c, v in d["text"].items()]))
    if len(result.tables["duplicates"]):
        dup.html(
            "<p>Examples of duplicated rows:</p>" + table_html(result.tables["duplicates"], max_chars=100)
        )
    sections.append(dup)

    text = Section("text", "Text columns")
    if not s["text"]:
        text.text("No free-text columns.")
    for column, values in s["text"].items():
        text.html(f"<h3>{escape(column)}</h3>")
        text.table(result.tables[f"text_lengths:{column}"], index=True)
        grams = values["top_ngrams"]
        if grams:
            longest = max(len(v) for v in grams.values())
            table = pd.DataFrame(
                {k: [f"{g} ({n})" for g, n in v] + [""] * (longest - len(v)) for k, v in grams.items()}
            )
            text.table(table, max_rows=100)
    sections.append(text)

    correlations = Section("correlations", "Correlations")
    if not result.tables["cramers_v"].empty:
        correlations.text("Cramér's V between each categorical column and the target:")
        correlations.table(result.tables["cramers_v"].round(4), index=True)
    sections.append(correlations)

    anomaly = Section("anomalies", "Anomalous rows (Isolation Forest)")
    a = s["anomalies"]
    anomaly.text(f"{a['flagged']:,} of {a['rows_scored']:,} scored rows fall below the automatic threshold.")
    if len(result.tables["anomalies"]):
        anomaly.table(result.tables["anomalies"], max_chars=100)
    sections.append(anomaly)

    power = Section("prediction-power", "Prediction power per column")
    power.text(
        f"Each column alone, {s['prediction_power']['metric']} over 3-fold cross-validation; power 0 = the "
        "majority-class baseline, 1 = perfect."
    )
    power.table(result.tables["prediction-power"])
    sections.append(power)

    warnings = Section("warnings", "Warnings")
    if not s["leakage_warnings"] and not s["warnings"]:
        warnings.text("Nothing to warn about.")
    for line in s["leakage_warnings"]:
        warnings.warning("Target leak? " + line)
    for line in s["warnings"]:
        warnings.warning(line)
    sections.append(warnings)

    by_id = {section.id: section for section in sections}
    for section_id, figures in result.figures.items():
        for alt, figure in figures:
            by_id[section_id].figure(figure, alt)
    result.figures = {k: [] for k in result.figures}  # closed by figure_png; drop the references
    return render_page(f"Exploration of {s['target']!r}", sections, subtitle=source)


# -- notebook -------------------------------------------------------------------------------------------------


def build_notebook(spec: Mapping[str, str], settings: ExploreSettings) -> Any:
    """A notebook that loads the same input and runs each section in its own cell, for digging further."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    text = repr(tuple(settings.text_columns)) if settings.text_columns is not None else "None"
    cells = [
        new_markdown_cell(
            f"# Exploring `{settings.target}`\n\nInput: `{dict(spec)}`. Each cell below is one "
            "section of the HTML report; change anything and re-run."
        ),
        new_code_cell(
            "%matplotlib inline\n"
            "import pandas as pd\n"
            "from training import explore as ex\n"
            "from training.lake import InputSpec, load_input\n\n"
            f"spec = InputSpec(**{dict(spec)!r})\n"
            "frame = load_input(spec).rename(columns=str)\n"
            f"target = {settings.target!r}\n"
            f"SEED, SAMPLE_ROWS = {settings.seed}, {settings.sample_rows}\n"
            f"roles = ex.column_roles(frame, target, {text})\n"
            "text_columns = [c for c, r in roles.items() if r == 'text']\n"
            "sample = ex.data_sample(frame, SAMPLE_ROWS, SEED)\n"
            "sample = sample[sample[target].notna()]\n"
            "frame.shape"
        ),
        new_markdown_cell("## Target distribution and imbalance"),
        new_code_cell(
            "info = ex.target_summary(frame, target)\ndisplay(ex.plot_target(frame, info))\n"
            "{k: v for k, v in info.items() if k != 'statistics'}"
        ),
        new_markdown_cell("## A sample of the data"),
        new_code_cell(f"ex.data_sample(frame, {settings.sample_size}, SEED)"),
        new_markdown_cell("## Columns: type, missing values, cardinality, statistics"),
        new_code_cell(
            "profile = ex.profile_columns(frame, roles, target)\ndisplay(ex.plot_missing(profile))\n"
            "numeric = ex.plot_numeric(frame, roles)\nif numeric is not None:\n    display(numeric)\nprofile"
        ),
        new_markdown_cell("## Duplicate rows"),
        new_code_cell(
            "dups = ex.duplicates(frame, target, text_columns)\n"
            "{k: v for k, v in dups.items() if k != 'examples'}"
        ),
        new_markdown_cell("## Text: lengths and top n-grams per class"),
        new_code_cell(
            "for column in text_columns:\n"
            "    display(ex.text_lengths(frame, column, target))\n"
            "    display(ex.plot_text_lengths(frame, column, target))\n"
            f"    grams = ex.top_ngrams(sample, column, target, top={settings.top_ngrams})\n"
            "    if grams:\n"
            "        display(ex.plot_ngrams(grams, column))"
        ),
        new_markdown_cell("## Correlations: Pearson (numeric) and Cramér's V (categorical vs target)"),
        new_code_cell(
            "matrix = ex.pearson(frame, roles, target)\nassociation = ex.categorical_association(frame, "
            "roles, target)\nfor figure in (ex.plot_pearson(matrix), ex.plot_association(association, target)):\n"
            "    if figure is not None:\n        display(figure)\nassociation"
        ),
        new_markdown_cell("## Anomalous rows (Isolation Forest)"),
        new_code_cell(
            "scores, unusual = ex.anomalies(sample, roles, seed=SEED)\n"
            "if len(scores):\n    display(ex.plot_anomalies(scores))\nunusual"
        ),
        new_markdown_cell("## Prediction power per column, and target leaks"),
        new_code_cell(
            "power = ex.prediction_power(sample, roles, target, seed=SEED)\n"
            "for warning in ex.leakage_warnings(frame, roles, target, power, association):\n"
            "    print('WARNING', warning)\n"
            "metric = 'R²' if info['problem_type'] == 'regression' else 'macro-F1'\n"
            "if len(power):\n    display(ex.plot_power(power, metric))\n"
            "power"
        ),
    ]
    notebook = new_notebook(
        cells=cells,
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        },
    )
    nbformat.validate(notebook)
    return notebook


def write_exploration(
    result: Exploration, out: Path | str, *, spec: Mapping[str, str], settings: ExploreSettings
) -> dict[str, Path]:
    """Write ``exploration.html``, ``exploration.json`` and ``exploration.ipynb`` into ``out``."""
    import nbformat

    from training.reports import write_html, write_json

    out = Path(out)
    paths = {
        "html": write_html(out / "exploration.html", render_exploration_html(result, source=_describe(spec))),
        "json": write_json(out / "exploration.json", {"input": dict(spec), **result.summary}),
    }
    notebook = build_notebook(spec, settings)
    paths["notebook"] = out / "exploration.ipynb"
    nbformat.write(notebook, str(paths["notebook"]))
    return paths


def _describe(spec: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in spec.items())


def execute_notebook(path: Path | str, *, timeout: int = 600, cwd: Path | str | None = None) -> Any:
    """Run a notebook in place with nbclient (a Python kernel from ipykernel); returns the executed notebook."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(str(path), as_version=4)
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(cwd or Path(path).parent)}},
    )
    client.execute()
    nbformat.write(notebook, str(path))
    return notebook

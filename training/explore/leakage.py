"""How well each column alone predicts the target, and the warnings drawn from it: target leaks, data quality."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from training.explore.statistics import TOKEN_PATTERN, top_levels
from training.problem import infer_problem_type, leaks_target

logger = logging.getLogger(__name__)

LEAK_SCORE = 0.95
"""A column that alone reaches this macro-F1 (or R²) is flagged as a possible target leak."""
LEAK_CRAMERS_V = 0.9
IMBALANCE_WARNING = 3.0
MISSING_WARNING = 0.5


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
            x = top_levels(values).fillna("(missing)").to_frame().to_numpy(dtype=object)
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

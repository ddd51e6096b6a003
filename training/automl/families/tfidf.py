"""TF-IDF word n-grams per text column, one-hot categoricals and scaled numerics → a linear model.

Logistic regression for classification, ridge for regression.  Fast, strong on review text, and every piece
converts to standard ONNX operators, so it is the first candidate of every preset and the ``tripod train``
baseline.  The ONNX TF-IDF stage is dense ``(n_samples, F)``, so ``max_features`` trades accuracy for serving
speed (docs/benchmarks.md): 15,000 per text column keeps ONNX faster than scikit-learn at every batch size.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from training.automl.candidate import CandidateModel, OnnxStages, Params, Preset
from training.automl.sklearn_onnx import convert_estimator, convert_transformer, fit_without_orphan_ngrams
from training.explain.linear import LinearExplainer, build_linear_explainer
from training.export import build_inverse_label
from training.problem import Problem

if TYPE_CHECKING:
    import optuna

# ASCII-only word tokens of two or more characters.  scikit-learn's default ``(?u)\b\w\w+\b`` is Unicode-aware
# while onnxruntime's re2 ``\w`` is ASCII-only, and ``\b`` differs too; this pattern tokenizes identically in
# Python ``re`` and re2 (accented letters and emoji split words in both).
TOKEN_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_]+"


class TfidfLinear(CandidateModel):
    """Params: ``max_features`` (per text column), ``ngram_max``, ``min_df``, and ``C`` + ``class_weight``
    (logistic regression) or ``alpha`` (ridge)."""

    family = "tfidf_linear"
    packages = ("scikit-learn", "skl2onnx")

    @classmethod
    def default_params(cls, preset: Preset, problem: Problem) -> Params:
        if problem.is_classification:
            return {"max_features": 15000, "ngram_max": 2, "min_df": 2, "C": 0.5, "class_weight": "balanced"}
        return {"max_features": 15000, "ngram_max": 2, "min_df": 2, "alpha": 3.0}

    @classmethod
    def suggest(cls, trial: optuna.Trial, preset: Preset, problem: Problem) -> Params:
        top = 30000 if preset == "best" else 20000
        params: Params = {
            "max_features": trial.suggest_int("tfidf_max_features", 5000, top, step=2500),
            "ngram_max": trial.suggest_int("tfidf_ngram_max", 1, 3 if preset == "best" else 2),
            "min_df": trial.suggest_int("tfidf_min_df", 1, 3),
        }
        if problem.is_classification:
            params["C"] = trial.suggest_float("tfidf_C", 0.05, 10.0, log=True)
            params["class_weight"] = trial.suggest_categorical("tfidf_class_weight", ["balanced", "none"])
        else:
            params["alpha"] = trial.suggest_float("tfidf_alpha", 0.1, 100.0, log=True)
        return params

    def _column_transformer(
        self, vocabularies: Mapping[str, dict[str, int]] | None = None
    ) -> ColumnTransformer:
        vocabularies = vocabularies or {}
        roles = self.problem.roles
        parts: list[tuple[str, Any, Any]] = [
            (
                f"tfidf_{column}",
                TfidfVectorizer(
                    lowercase=True,
                    token_pattern=TOKEN_PATTERN,
                    ngram_range=(1, int(self.params["ngram_max"])),
                    min_df=int(self.params["min_df"]),
                    max_features=int(self.params["max_features"]),
                    vocabulary=vocabularies.get(column),
                    dtype=np.float32,  # the ONNX graph's precision, so parity differences are rounding only
                ),
                column,
            )
            for column in roles.text
        ]
        if roles.categorical:
            parts.append(
                ("onehot", OneHotEncoder(handle_unknown="ignore", dtype=np.float32), list(roles.categorical))
            )
        if roles.numeric:
            parts.append(
                (
                    "numeric",
                    Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]),
                    list(roles.numeric),
                )
            )
        return ColumnTransformer(parts, remainder="drop", sparse_threshold=1.0)

    def _fit_transformer(self, inputs: pd.DataFrame) -> ColumnTransformer:
        """Fit with orphan n-grams pruned from each vocabulary so the ONNX stage matches (see sklearn_onnx)."""
        return fit_without_orphan_ngrams(self._column_transformer, inputs)

    def fit(
        self,
        train: pd.DataFrame,
        validation: pd.DataFrame,
        *,
        deadline: float | None = None,
        on_epoch: Any = None,
    ) -> TfidfLinear:
        inputs = self.problem.input_frame(train)
        y = self.problem.encode_target(train)
        self.transformer_ = self._fit_transformer(inputs)
        features = self.transformer_.transform(inputs)
        if self.problem.is_classification:
            weight = self.params.get("class_weight")
            self.estimator_ = LogisticRegression(
                C=float(self.params["C"]),
                class_weight=None if weight in (None, "none") else weight,
                max_iter=2000,
                random_state=self.seed,
            ).fit(features, y)
        else:
            self.estimator_ = Ridge(alpha=float(self.params["alpha"]), random_state=self.seed).fit(
                features, y
            )
        self.n_features_ = int(features.shape[1])
        return self

    def transform(self, frame: pd.DataFrame) -> Any:
        """The scikit-learn feature matrix ``(n_samples, n_features)`` (sparse)."""
        return self.transformer_.transform(self.problem.input_frame(frame))

    def predict_scores(self, frame: pd.DataFrame) -> np.ndarray:
        features = self.transform(frame)
        if self.problem.is_classification:
            return self.estimator_.predict_proba(features)
        return self.estimator_.predict(features)

    def to_onnx(self, *, tokenexp: str | None = None) -> OnnxStages:
        """Args:
        tokenexp: tests only: a tokenizer pattern that differs from training, to prove parity is checked.
        """
        classification = self.problem.is_classification
        return OnnxStages(
            transformer=convert_transformer(
                self.transformer_, self.problem.roles.inputs, self.n_features_, tokenexp=tokenexp
            ),
            estimator=convert_estimator(self.estimator_, self.n_features_, classification=classification),
            inverse_label=build_inverse_label(self.problem.labels) if classification else None,
        )

    def explainer(self) -> LinearExplainer:
        """Exact: each feature's share of each class's margin (``training/explain/linear.py``)."""
        return build_linear_explainer(self.problem, self.transformer_, self.estimator_)

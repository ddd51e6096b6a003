"""Gradient-boosted trees (LightGBM) on dense features: TF-IDF → truncated SVD per text column, one-hot
categoricals and raw numerics (NaN kept: LightGBM learns which side missing values go).

Every piece converts to standard ONNX operators: skl2onnx converts the column transformer (through
:mod:`training.automl.sklearn_onnx`, which keeps TF-IDF faithful) and onnxmltools' LightGBM converter,
registered with skl2onnx here, converts the booster to ``TreeEnsembleClassifier`` / ``TreeEnsembleRegressor``.

Training: LightGBM with early stopping on the validation set's log-loss (L2 for regression).  Every
``REPORT_EVERY`` rounds the validation objective (macro-F1 for classification, RMSE for regression: the
search's default objectives) is passed to ``on_epoch``, which may prune the candidate.  A deadline stops
boosting after the current tree and keeps the best iteration so far.

Parity: a tree compares each float32 feature with a threshold, so a feature that differs by one float32 ulp
between scikit-learn's SVD (sparse float32 products) and onnxruntime's (dense ``MatMul``) could take the other
branch and move that tree's leaf value.  :meth:`GradientBoostedTrees.predict_scores` therefore feeds the
trees float32 features, exactly as ONNX does (numerics too: serving sends them as float32), so the only
differences left are the SVD's rounding (measured ≤ 2.1e-7 absolute; only 18–26 % of the values are
bit-identical) and float32 sums of leaf values.  On the bundled reviews test split (2,265 rows, default
params, 362 trees per class) no split flipped: max |Δp| 8.3e-7, labels 100 % equal, so the default 1e-3
tolerance holds with three orders of magnitude to spare.  A flip stays possible on other data (a feature
within ~1e-7 of a threshold); export would then refuse the candidate rather than publish it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from training.automl.candidate import (
    BudgetExceeded,
    CandidateModel,
    EpochCallback,
    OnnxStages,
    Params,
    Preset,
    remaining,
)
from training.automl.families.tfidf import TOKEN_PATTERN
from training.automl.sklearn_onnx import convert_estimator, convert_transformer, fit_without_orphan_ngrams
from training.export import build_inverse_label
from training.problem import Problem

if TYPE_CHECKING:
    import optuna
    from lightgbm import LGBMClassifier, LGBMRegressor

REPORT_EVERY = 10
"""Boosting rounds between two ``on_epoch`` reports (one report = one pruning decision)."""
EARLY_STOPPING_ROUNDS = 30
"""Rounds without a better validation loss before boosting stops."""
MACRO_F1 = "macro_f1"
N_JOBS = 1
"""LightGBM threads.  One: LightGBM's OpenMP threads spin while they wait, so on a 2-core machine shared with
anything else (the search process, a server, tests) two threads measured 10x slower wall time than one, while
on an idle machine two gain at most 2x."""


def register_lightgbm_converters() -> None:
    """Teach skl2onnx to convert ``LGBMClassifier`` / ``LGBMRegressor`` with onnxmltools' converter.

    Idempotent (``overwrite=True``); called before every conversion, so it never runs at import time.
    """
    from lightgbm import LGBMClassifier, LGBMRegressor
    from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    update_registered_converter(
        LGBMClassifier,
        "LightGbmLGBMClassifier",
        calculate_linear_classifier_output_shapes,
        convert_lightgbm,
        options={"nocl": [True, False], "zipmap": [True, False, "columns"]},
    )
    update_registered_converter(
        LGBMRegressor,
        "LightGbmLGBMRegressor",
        calculate_linear_regressor_output_shapes,
        convert_lightgbm,
        options={"split": None},
    )


def macro_f1(y: np.ndarray, predicted: np.ndarray, n_classes: int) -> float:
    """Macro-F1 over ``n_classes`` (a class neither present nor predicted scores 0), cheap enough for every
    boosting round."""
    cells = np.bincount(y * n_classes + predicted, minlength=n_classes * n_classes)
    confusion = cells.reshape(n_classes, n_classes)  # rows: truth, columns: prediction
    true_positive = np.diag(confusion).astype(np.float64)
    denominator = confusion.sum(axis=0) + confusion.sum(axis=1)
    f1 = np.divide(2 * true_positive, denominator, out=np.zeros(n_classes), where=denominator > 0)
    return float(f1.mean())


def capturing_metric(metric: Any, captured: dict[str, np.ndarray]) -> Any:
    """Wrap an eval metric (or none) so each round's validation predictions land in ``captured``."""

    def capture(y_true: np.ndarray, y_pred: np.ndarray) -> Any:
        captured["y_pred"] = y_pred
        if metric is not None:
            return metric(y_true, y_pred)
        return "captured", 0.0, False

    return capture


def macro_f1_metric(n_classes: int) -> Any:
    """A LightGBM ``eval_metric``: macro-F1 of the validation predictions (probabilities ``(n, C)``, or the
    positive class's ``(n,)`` for binary)."""

    def metric(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[str, float, bool]:
        predicted = y_pred.argmax(axis=1) if y_pred.ndim == 2 else (y_pred > 0.5).astype(np.int64)
        return MACRO_F1, macro_f1(np.asarray(y_true, dtype=np.int64), predicted, n_classes), True

    return metric


class _Monitor:
    """One LightGBM callback for early stopping, the deadline and ``on_epoch`` reports.

    Early stopping and the deadline raise LightGBM's ``EarlyStopException`` with the best iteration so far, so
    the booster (and the ONNX dump, which reads ``best_iteration``) keeps exactly the best trees.
    """

    order = 30  # where LightGBM's own early-stopping callback runs: after the evaluation of the round
    before_iteration = False

    def __init__(self, problem: Problem, deadline: float | None, on_epoch: EpochCallback | None) -> None:
        self.problem = problem
        self.deadline = deadline
        self.on_epoch = on_epoch
        self.best_iteration = -1
        self.best_loss = math.inf
        self.best_results: list[Any] = []
        self.stopped_by_deadline = False
        self.captured: dict[str, np.ndarray] = {}
        """Filled by the eval metric of :func:`capturing_metric` each round."""

    def validation_scores(self) -> np.ndarray:
        """This round's validation predictions as ``predict_scores`` gives them, captured by the eval metric."""
        predicted = np.asarray(self.captured["y_pred"])
        if self.problem.problem_type == "binary" and predicted.ndim == 1:
            return np.column_stack([1 - predicted, predicted])
        return predicted

    def __call__(self, env: Any) -> None:
        from lightgbm.callback import EarlyStopException

        if not env.evaluation_result_list:  # no validation rows: boost every round, stop only at the deadline
            self.best_iteration, self.best_results = env.iteration, []
            if remaining(self.deadline) <= 0:
                self.stopped_by_deadline = True
                raise EarlyStopException(self.best_iteration, self.best_results)
            return
        # LightGBM's own metric (log-loss or L2; lower is better) drives early stopping, not the noisier F1
        loss = next(value for _, name, value, *_ in env.evaluation_result_list if name != MACRO_F1)
        if loss < self.best_loss:
            self.best_iteration, self.best_loss = env.iteration, loss
            self.best_results = list(env.evaluation_result_list)
        rounds = env.iteration + 1
        if self.on_epoch is not None and rounds % REPORT_EVERY == 0:
            self.on_epoch(rounds, self.validation_scores())
        if remaining(self.deadline) <= 0:
            self.stopped_by_deadline = True
            raise EarlyStopException(self.best_iteration, self.best_results)
        if env.iteration - self.best_iteration >= EARLY_STOPPING_ROUNDS or rounds == env.end_iteration:
            raise EarlyStopException(self.best_iteration, self.best_results)


class GradientBoostedTrees(CandidateModel):
    """Params: ``svd_components``, ``max_features`` (TF-IDF per text column), ``ngram_max``, ``min_df``,
    ``learning_rate``, ``num_leaves``, ``min_child_samples``, ``colsample_bytree``, ``subsample``,
    ``reg_lambda``, ``max_rounds`` and, for classification, ``class_weight`` (``balanced`` or ``none``)."""

    family = "gbdt"
    packages = ("scikit-learn", "skl2onnx", "lightgbm", "onnxmltools")
    iterative = True
    max_probability_tolerance = 1e-3
    """The default: measured max |Δp| 8.3e-7 on the bundled reviews test split (see the module docstring)."""

    @classmethod
    def default_params(cls, preset: Preset, problem: Problem) -> Params:
        params: Params = {
            "svd_components": 200,
            "max_features": 20000,
            "ngram_max": 2,
            "min_df": 2,
            "learning_rate": 0.1,
            "num_leaves": 31,
            "min_child_samples": 20,
            "colsample_bytree": 0.5,
            "subsample": 0.8,
            "reg_lambda": 1.0,
            "max_rounds": 1000,
        }
        if problem.is_classification:
            params["class_weight"] = "balanced"
        return params

    @classmethod
    def suggest(cls, trial: optuna.Trial, preset: Preset, problem: Problem) -> Params:
        wide = preset == "best"
        params: Params = {
            "svd_components": trial.suggest_int("gbdt_svd_components", 100, 300 if wide else 200, step=50),
            "max_features": trial.suggest_int(
                "gbdt_max_features", 10000, 30000 if wide else 20000, step=5000
            ),
            "ngram_max": trial.suggest_int("gbdt_ngram_max", 1, 2),
            "min_df": trial.suggest_int("gbdt_min_df", 1, 3),
            "learning_rate": trial.suggest_float("gbdt_learning_rate", 0.02 if wide else 0.04, 0.2, log=True),
            "num_leaves": trial.suggest_int("gbdt_num_leaves", 15, 127 if wide else 63, log=True),
            "min_child_samples": trial.suggest_int("gbdt_min_child_samples", 5, 100, log=True),
            "colsample_bytree": trial.suggest_float("gbdt_colsample_bytree", 0.2, 1.0),
            "subsample": trial.suggest_float("gbdt_subsample", 0.5, 1.0),
            "reg_lambda": trial.suggest_float("gbdt_reg_lambda", 1e-3, 10.0, log=True),
            "max_rounds": {"fast": 500, "balanced": 1000, "best": 2000}[preset],
        }
        if problem.is_classification:
            params["class_weight"] = trial.suggest_categorical("gbdt_class_weight", ["balanced", "none"])
        return params

    def _column_transformer(
        self, vocabularies: Mapping[str, dict[str, int]] | None = None
    ) -> ColumnTransformer:
        vocabularies = vocabularies or {}
        roles = self.problem.roles
        parts: list[tuple[str, Any, Any]] = [
            (
                f"text_{column}",
                Pipeline(
                    [
                        (
                            "tfidf",
                            TfidfVectorizer(
                                lowercase=True,
                                token_pattern=TOKEN_PATTERN,
                                ngram_range=(1, int(self.params["ngram_max"])),
                                min_df=int(self.params["min_df"]),
                                max_features=int(self.params["max_features"]),
                                vocabulary=vocabularies.get(column),
                                dtype=np.float32,
                            ),
                        ),
                        (
                            "svd",
                            TruncatedSVD(
                                n_components=self._components(vocabularies.get(column)),
                                random_state=self.seed,
                            ),
                        ),
                    ]
                ),
                column,
            )
            for column in roles.text
        ]
        if roles.categorical:
            # No ``min_frequency``: skl2onnx cannot convert infrequent-category grouping; trees need no
            # pooling of rare categories anyway (``min_child_samples`` keeps them from splitting alone).
            encoder = OneHotEncoder(handle_unknown="ignore", dtype=np.float32, sparse_output=False)
            parts.append(("onehot", encoder, list(roles.categorical)))
        if roles.numeric:
            parts.append(("numeric", "passthrough", list(roles.numeric)))
        return ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0)

    def _components(self, vocabulary: Mapping[str, int] | None) -> int:
        """``svd_components``, but fewer than the vocabulary's terms (SVD needs that; small data has few)."""
        wanted = int(self.params["svd_components"])
        return wanted if vocabulary is None else max(1, min(wanted, len(vocabulary) - 1))

    def _fit_transformer(self, inputs: pd.DataFrame) -> ColumnTransformer:
        """Fit with orphan n-grams pruned from each vocabulary (see sklearn_onnx)."""
        return fit_without_orphan_ngrams(self._column_transformer, inputs)

    def _estimator(self) -> LGBMClassifier | LGBMRegressor:
        from lightgbm import LGBMClassifier, LGBMRegressor

        common: dict[str, Any] = {
            "n_estimators": int(self.params["max_rounds"]),
            "learning_rate": float(self.params["learning_rate"]),
            "num_leaves": int(self.params["num_leaves"]),
            "min_child_samples": int(self.params["min_child_samples"]),
            "colsample_bytree": float(self.params["colsample_bytree"]),
            "subsample": float(self.params["subsample"]),
            "subsample_freq": 1,
            "reg_lambda": float(self.params["reg_lambda"]),
            "random_state": self.seed,
            "n_jobs": N_JOBS,
            "deterministic": True,
            "force_col_wise": True,
            "verbose": -1,
        }
        if self.problem.is_classification:
            weight = self.params.get("class_weight")
            return LGBMClassifier(class_weight=None if weight in (None, "none") else weight, **common)
        return LGBMRegressor(**common)

    def fit(
        self,
        train: pd.DataFrame,
        validation: pd.DataFrame,
        *,
        deadline: float | None = None,
        on_epoch: EpochCallback | None = None,
    ) -> GradientBoostedTrees:
        if remaining(deadline) <= 0:
            raise BudgetExceeded("the deadline passed before fitting started")
        inputs = self.problem.input_frame(train)
        y = self.problem.encode_target(train)
        self.transformer_ = self._fit_transformer(inputs)
        features = self._features(inputs)
        self.n_features_ = int(features.shape[1])
        if remaining(deadline) <= 0:
            raise BudgetExceeded("the deadline passed while fitting the TF-IDF and SVD features")
        y_validation = self.problem.encode_target(validation)
        evaluation: dict[str, Any] = {}
        if len(validation):
            evaluation = {
                "eval_X": (self._features(self.problem.input_frame(validation)),),
                "eval_y": (y_validation,),
                "eval_metric": macro_f1_metric(len(self.problem.labels))
                if self.problem.is_classification
                else None,
            }
        monitor = _Monitor(self.problem, deadline, on_epoch)
        if evaluation:
            evaluation["eval_metric"] = capturing_metric(evaluation["eval_metric"], monitor.captured)
        started = time.monotonic()
        self.estimator_ = self._estimator().fit(features, y, callbacks=[monitor], **evaluation)
        self.fit_seconds_ = time.monotonic() - started
        self.best_iteration_ = monitor.best_iteration + 1
        self.stopped_by_deadline_ = monitor.stopped_by_deadline
        return self

    def _features(self, inputs: pd.DataFrame) -> np.ndarray:
        """Dense float32 features ``(n_samples, n_features)``: what the ONNX transformer hands the trees."""
        return np.asarray(self.transformer_.transform(inputs), dtype=np.float32)

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        return self._features(self.problem.input_frame(frame))

    def predict_scores(self, frame: pd.DataFrame) -> np.ndarray:
        features = self.transform(frame)
        if self.problem.is_classification:
            return np.asarray(self.estimator_.predict_proba(features))
        return np.asarray(self.estimator_.predict(features))

    def to_onnx(self) -> OnnxStages:
        register_lightgbm_converters()
        classification = self.problem.is_classification
        return OnnxStages(
            transformer=convert_transformer(self.transformer_, self.problem.roles.inputs, self.n_features_),
            estimator=convert_estimator(self.estimator_, self.n_features_, classification=classification),
            inverse_label=build_inverse_label(self.problem.labels) if classification else None,
        )

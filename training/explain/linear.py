"""The exact explainer of a linear model: ``explainer.onnx``, its feature list, and the check against ``shap``.

A linear model scores class ``c`` as ``b[c] + Σ_f x[f]·W[c, f]``.  Measured from the all-absent baseline (the
zero feature vector), the Shapley value of feature ``f`` is exactly ``x[f]·W[c, f]``: what
``shap.LinearExplainer`` computes with an all-zero background.  So the explainer is one broadcast product,
exported as an ONNX stage that takes the transformer's ``features``::

    contributions (n_samples, n_classes, n_features) = features[:, None, :] * W[None, :, :]     float32
    base_values   (n_classes,)                       = b                                        float32

and ``base_values + contributions.sum(-1)`` is each class's score (the margin):

* multiclass logistic regression: ``coef_`` and ``intercept_``, the softmax inputs (softmax gives the
  probabilities);
* binary logistic regression (``coef_`` is one row ``w``): class 1 is ``+w, +b`` and class 0 is ``-w, -b``,
  each class's own log-odds, so ``sigmoid(score[c])`` is ``p[c]`` (a softmax of the two is not);
* ridge regression: one row (``n_classes`` = 1), the predicted value.

Why the all-absent baseline: a word that a review does not contain has feature 0, so it contributes exactly
0 to every class; serving needs no training data (no background sample) to explain; and base + Σ is the
model's own score, with nothing left over.

:func:`build_linear_explainer` reads all of it from the fitted scikit-learn objects, and
:func:`check_linear_explainer` proves the written graph against ``shap`` and the model on held-out rows before
export publishes anything.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd
from onnx import TensorProto, helper, numpy_helper
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline as SklearnPipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from services.artifacts import (
    BASE_VALUES,
    CONTRIBUTIONS,
    EXPLAINER_FEATURES_FILE,
    EXPLAINER_FILE,
    FEATURES,
    ExplainedFeature,
    ExplainerCheck,
    ExplainerFeatures,
    TextTokenizer,
)
from services.runtime.pipeline import Pipeline
from services.runtime.schema import Records
from services.runtime.sessions import inference_session
from training.automl.candidate import canonical_stage
from training.automl.sklearn_onnx import OPSET, ExportError
from training.errors import ExplainerError
from training.problem import Problem

logger = logging.getLogger(__name__)

STAGE_NAME = "explainer"
TOLERANCE = 1e-4
"""Largest accepted difference from ``shap`` and from the model's scores, relative to ``max(1, |value|)``
(so an absolute difference for values up to 1, which covers TF-IDF contributions and class margins)."""
CHECK_ROWS = 500
"""Held-out rows the check compares at most (evenly spaced through the frame; the parity check has already
compared every row's probabilities).  Measured on the bundled reviews (3 classes, 15,000 features, 2-core
development machine): the check takes 0.3-0.5 s on 500 rows and 0.6-0.9 s on 1,000, against about 1.2 s for
the whole export without it; importing ``shap`` adds about 1 s once per process whatever the rows.  A linear
graph that is wrong is wrong on any row with a word in it, so 500 rows prove as much as 2,265."""
_CHUNK_VALUES = 1_000_000
"""(row, class, feature) values per chunk: bounds the dense contributions and shap's float64 copy of them
(8 MB each) whatever ``F`` (up to ~45,000 with three text columns) and the number of classes.  Chunks of 4
million values compared about 1.5x slower (they leave the CPU cache)."""


@dataclass(frozen=True, eq=False)
class LinearExplainer:
    """A fitted linear model's exact explainer: everything export writes and checks.

    Attributes:
        problem: The model's problem (labels, input columns).
        transformer: The fitted column transformer (raw inputs → features), for the model's own scores.
        estimator: The fitted linear estimator.
        weights: ``(n_classes, n_features)`` float64: each class's score weights (see the module docstring).
        intercepts: ``(n_classes,)`` float64: each class's score at the all-absent baseline.
        features: What each column of ``features`` is, in order (``explainer_features.json``).
        tokenizers: How each text column's vectorizer cuts words, for serving to locate n-grams.
    """

    problem: Problem
    transformer: ColumnTransformer
    estimator: Any
    weights: np.ndarray
    intercepts: np.ndarray
    features: ExplainerFeatures
    tokenizers: list[TextTokenizer]

    @property
    def n_classes(self) -> int:
        return int(self.weights.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.weights.shape[1])

    def graph(self) -> onnx.ModelProto:
        """``explainer.onnx`` in memory (see the module docstring for its tensors)."""
        return explainer_graph(self.weights, self.intercepts)

    def save(self, directory: Path) -> Path:
        """Write ``explainer.onnx`` and ``explainer_features.json`` into ``directory``.

        Returns:
            The path of ``explainer.onnx``.
        """
        path = directory / EXPLAINER_FILE
        onnx.save_model(canonical_stage(self.graph(), STAGE_NAME), path)
        (directory / EXPLAINER_FEATURES_FILE).write_text(features_json(self.features), encoding="utf-8")
        return path

    def margins(self, frame: pd.DataFrame) -> np.ndarray:
        """Each class's score ``(n_samples, n_classes)`` as the training framework computes it
        (``decision_function``, or ``predict`` for regression): the reference for additivity."""
        x = self.transformer.transform(self.problem.input_frame(frame))
        if not self.problem.is_classification:
            return np.asarray(self.estimator.predict(x), dtype=np.float64).reshape(-1, 1)
        scores = np.asarray(self.estimator.decision_function(x), dtype=np.float64)
        return np.column_stack([-scores, scores]) if scores.ndim == 1 else scores


def build_linear_explainer(
    problem: Problem, transformer: ColumnTransformer, estimator: Any
) -> LinearExplainer:
    """The explainer of a fitted ``ColumnTransformer`` → ``LogisticRegression`` / ``Ridge`` model.

    Raises:
        ExportError: A part of the transformer or the estimator has no exact linear explanation, or the
            feature list does not match the estimator's width.
    """
    weights, intercepts = score_weights(estimator, problem)
    features = explained_features(transformer)
    if len(features) != weights.shape[1]:
        raise ExportError(
            f"the transformer's parts name {len(features)} features but the estimator takes {weights.shape[1]}"
        )
    return LinearExplainer(
        problem=problem,
        transformer=transformer,
        estimator=estimator,
        weights=weights,
        intercepts=intercepts,
        features=ExplainerFeatures(features=features),
        tokenizers=text_tokenizers(transformer),
    )


def score_weights(estimator: Any, problem: Problem) -> tuple[np.ndarray, np.ndarray]:
    """Each class's score weights ``(n_classes, n_features)`` and intercepts ``(n_classes,)``, in float64.

    Raises:
        ExportError: Not a logistic or ridge regression, or its classes are not the problem's class indices.
    """
    coef = np.atleast_2d(np.asarray(estimator.coef_, dtype=np.float64))
    intercept = np.atleast_1d(np.asarray(estimator.intercept_, dtype=np.float64))
    if isinstance(estimator, LogisticRegression) and problem.is_classification:
        expected = list(range(len(problem.labels)))
        if [int(c) for c in estimator.classes_] != expected:
            raise ExportError(
                f"the logistic regression knows classes {list(estimator.classes_)}, not {expected}: "
                "every label must occur in the training data"
            )
        if coef.shape[0] == 1:  # binary: one row of class-1 log-odds; class 0's are their negation
            return np.vstack([-coef, coef]), np.concatenate([-intercept, intercept])
        return coef, intercept
    if isinstance(estimator, Ridge) and not problem.is_classification and coef.shape[0] == 1:
        return coef, intercept.reshape(1)
    raise ExportError(
        f"{type(estimator).__name__} has no exact linear explainer for a {problem.problem_type} model"
    )


def _numeric_step(step: Any) -> bool:
    """Imputation and scaling only: one output column per input column, linear in it."""
    steps = [s for _, s in step.steps] if isinstance(step, SklearnPipeline) else [step]
    return all(isinstance(s, SimpleImputer | StandardScaler) for s in steps)


def explained_features(transformer: ColumnTransformer) -> list[ExplainedFeature]:
    """One entry per output column of a fitted ``ColumnTransformer``, in its output order.

    TF-IDF parts give their n-grams (``get_feature_names_out()``), one-hot parts one entry per category of
    each column (the value as a string), imputed/scaled numeric parts one entry per kept column.

    Raises:
        ExportError: A part whose output columns are not features of the input (e.g. TF-IDF → SVD).
    """
    found: list[ExplainedFeature] = []
    for name, step, columns in transformer.transformers_:
        if isinstance(step, str) and step == "drop":
            continue
        names = [columns] if isinstance(columns, str) else [str(c) for c in columns]
        if not names:
            continue
        if isinstance(step, TfidfVectorizer):
            found += [
                ExplainedFeature(column=names[0], kind="text", term=str(term))
                for term in step.get_feature_names_out()
            ]
        elif isinstance(step, OneHotEncoder):
            if step.drop is not None or step.min_frequency is not None or step.max_categories is not None:
                raise ExportError(
                    f"the {name!r} one-hot part drops or groups categories: no value per column"
                )
            for column, categories in zip(names, step.categories_, strict=True):
                found += [
                    ExplainedFeature(column=column, kind="categorical", term=str(v)) for v in categories
                ]
        elif not isinstance(step, str) and _numeric_step(step):
            found += [
                ExplainedFeature(column=str(column), kind="numeric")
                for column in step.get_feature_names_out(names)
            ]
        else:
            raise ExportError(f"the {name!r} part ({type(step).__name__}) has no exact linear explanation")
    return found


def text_tokenizers(transformer: ColumnTransformer) -> list[TextTokenizer]:
    """How each text column's vectorizer cut words (pattern, lowercasing, longest n-gram)."""
    return [
        TextTokenizer(
            column=columns if isinstance(columns, str) else str(columns[0]),
            token_pattern=str(step.token_pattern),
            lowercase=bool(step.lowercase),
            ngram_max=int(step.ngram_range[1]),
        )
        for _, step, columns in transformer.transformers_
        if isinstance(step, TfidfVectorizer)
    ]


def features_json(features: ExplainerFeatures) -> str:
    """``explainer_features.json``: the model's JSON, one feature per line (tens of thousands of them)."""
    lines = ",\n".join(f"  {feature.model_dump_json()}" for feature in features.features)
    return '{"features": [\n' + lines + "\n]}\n"


def explainer_graph(weights: np.ndarray, intercepts: np.ndarray) -> onnx.ModelProto:
    """``features`` ``(N, F)`` → ``contributions`` ``(N, C, F)`` and ``base_values`` ``(C,)``, float32.

    Only standard operators (Unsqueeze, Mul, Identity), so any ONNX runtime runs it.  The same weights give
    the same bytes: no random names, the IR version chosen as ``training.export.build_inverse_label`` does.
    """
    n_classes, n_features = weights.shape
    initializers = [
        numpy_helper.from_array(np.ascontiguousarray(weights, dtype=np.float32), "weights"),
        numpy_helper.from_array(np.ascontiguousarray(intercepts, dtype=np.float32), "intercepts"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "class_axis"),
    ]
    nodes = [
        helper.make_node("Unsqueeze", [FEATURES, "class_axis"], ["features_per_class"], name="per_class"),
        helper.make_node("Mul", ["features_per_class", "weights"], [CONTRIBUTIONS], name="contributions"),
        helper.make_node("Identity", ["intercepts"], [BASE_VALUES], name="base_values"),
    ]
    graph = helper.make_graph(
        nodes,
        STAGE_NAME,
        [helper.make_tensor_value_info(FEATURES, TensorProto.FLOAT, [None, n_features])],
        [
            helper.make_tensor_value_info(CONTRIBUTIONS, TensorProto.FLOAT, [None, n_classes, n_features]),
            helper.make_tensor_value_info(BASE_VALUES, TensorProto.FLOAT, [n_classes]),
        ],
        initializer=initializers,
    )
    opsets = [helper.make_opsetid("", OPSET)]
    # The lowest IR version for this opset, not onnx's newest: onnxruntime refuses newer IR versions.
    model = helper.make_model(
        graph, opset_imports=opsets, ir_version=helper.find_min_ir_version_for(opsets), producer_name="tripod"
    )
    onnx.checker.check_model(model)
    return model


def check_rows(n_rows: int, max_rows: int) -> np.ndarray:
    """Positions of the rows the check compares: all of them, or ``max_rows`` evenly spaced (deterministic)."""
    if n_rows <= max_rows:
        return np.arange(n_rows)
    return np.linspace(0, n_rows - 1, max_rows).round().astype(np.int64)


def _scaled_diff(actual: np.ndarray, expected: np.ndarray) -> float:
    """Largest ``|actual - expected| / max(1, |expected|)``; infinity when anything is not finite.

    In place on one float64 copy: on a 4-million-value chunk, allocating a fresh array per step took longer
    than ``shap`` itself (profiled on the bundled reviews).
    """
    diff = np.array(actual, dtype=np.float64)
    diff -= expected
    np.abs(diff, out=diff)
    scale = np.abs(expected, dtype=np.float64)
    np.maximum(scale, 1.0, out=scale)
    diff /= scale
    largest = float(diff.max(initial=0.0))  # NaN propagates through max
    return largest if np.isfinite(largest) else float("inf")


def link(scores: np.ndarray, problem_type: str) -> np.ndarray:
    """What the model serves from its scores ``(n_samples, n_classes)``: softmax (multiclass), each class's
    sigmoid (binary), the value itself (regression)."""
    if problem_type == "regression":
        return scores
    if problem_type == "binary":
        return 1.0 / (1.0 + np.exp(-scores))
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def check_linear_explainer(
    explainer: LinearExplainer,
    stage_paths: Mapping[str, Path],
    explainer_path: Path,
    frame: pd.DataFrame,
    *,
    max_rows: int = CHECK_ROWS,
    tolerance: float = TOLERANCE,
) -> ExplainerCheck:
    """Run the written graphs on held-out rows and prove the explainer exact.

    The rows go through ``transformer.onnx`` with the serving runtime, then ``explainer.onnx``; on those same
    features,

    * ``contributions`` and ``base_values`` must equal ``shap.LinearExplainer`` with an all-zero background
      (its per-class layout, ``(n_samples, n_features, n_classes)``);
    * ``base_values + Σ contributions`` must equal the estimator's own margins (``decision_function``, or
      ``predict``), and softmax / sigmoid of it the ONNX classifier's ``probabilities`` (for regression, the
      regressor's ``predictions``),

    each within ``tolerance`` relative to ``max(1, |value|)``.  Rows are compared in chunks that bound memory
    (:data:`_CHUNK_VALUES`); at most ``max_rows`` of them (:data:`CHECK_ROWS`, evenly spaced), because ``shap``
    costs far more per row than the parity check, which has already compared every row.

    Args:
        explainer: The explainer that wrote ``explainer_path``.
        stage_paths: The model's written stage files (``{stage: path}``, as ``OnnxStages.save`` returns).
        explainer_path: The written ``explainer.onnx``.
        frame: Held-out rows (with or without the target).

    Returns:
        The check for the manifest (``passed`` is always True when this returns).

    Raises:
        ExplainerError: A difference is above ``tolerance``, or there are no rows.
    """
    import shap  # a second of import time, paid only by an export that has an explainer

    problem = explainer.problem
    frame = frame.iloc[check_rows(len(frame), max_rows)]
    inputs = problem.input_frame(frame)
    margins = explainer.margins(frame)
    pipeline = Pipeline.from_stage_files(stage_paths, problem.roles.inputs, problem.labels)
    session = inference_session(explainer_path, threads=1)
    n_classes, n_features = explainer.n_classes, explainer.n_features
    reference = shap.LinearExplainer(
        (explainer.weights, explainer.intercepts), shap.maskers.Independent(np.zeros((1, n_features)))
    )
    expected_base = np.asarray(reference.expected_value, dtype=np.float64).reshape(n_classes)
    vs_shap, additivity = 0.0, 0.0
    chunk_rows = max(1, _CHUNK_VALUES // (n_classes * n_features))
    for start in range(0, len(inputs), chunk_rows):
        chunk = inputs.iloc[start : start + chunk_rows]
        features = pipeline.stages.run(
            "transformer", pipeline.validate(Records(chunk.to_numpy(dtype=object).tolist()))
        )
        contributions, base = session.run([CONTRIBUTIONS, BASE_VALUES], {FEATURES: features})
        values = np.asarray(reference.shap_values(features.astype(np.float64)), dtype=np.float64)
        values = values.reshape(len(chunk), n_features, n_classes).transpose(0, 2, 1)
        vs_shap = max(vs_shap, _scaled_diff(contributions, values), _scaled_diff(base, expected_base))
        del values
        scores = base.astype(np.float64) + contributions.sum(axis=2, dtype=np.float64)
        additivity = max(additivity, _scaled_diff(scores, margins[start : start + len(chunk)]))
        if problem.is_classification:
            served = pipeline.stages.run("classifier", features)
        else:
            served = np.asarray(pipeline.stages.run("regressor", features)).reshape(-1, 1)
        additivity = max(additivity, _scaled_diff(link(scores, problem.problem_type), served))
    rows = len(inputs)
    passed = rows > 0 and vs_shap <= tolerance and additivity <= tolerance
    check = ExplainerCheck(
        rows=rows,
        max_abs_diff_vs_shap=vs_shap,
        max_additivity_error=additivity,
        tolerance=tolerance,
        shap_version=str(shap.__version__),
        passed=passed,
    )
    if not passed:
        raise ExplainerError(
            f"{EXPLAINER_FILE} is not exact on {rows} held-out rows: max |Δ| vs shap {vs_shap:.3g}, "
            f"max additivity error {additivity:.3g} (required <= {tolerance:g}, relative to max(1, |value|))"
        )
    return check

"""What the global report explains: a model directory, or a fitted candidate before it is exported.

Either way the report needs the same few things, gathered in :class:`ExplainedModel`: the problem (inputs,
labels), a function that scores rows, the model's identity, and, where an exact explainer applies, its parts:

* a model directory (``tripod explain``): scores come from its ONNX stages through the serving
  :class:`~services.runtime.pipeline.Pipeline`.  When the manifest has an exact ``explainer`` (a linear
  model), the coefficients are read from the classifier graph and the feature names from
  ``explainer_features.json``; the features are the transformer stage's output.  Every other model, trees
  included, is explained through its scores (the ONNX graphs of trees are not something shap reads).
* a fitted candidate (``tripod train`` and ``tripod automl``, before export writes the directory): scores are
  the training framework's ``predict_scores`` (which export's parity check ties to the ONNX stages); a linear
  candidate brings the weights and feature names of the explainer it exports
  (:func:`training.explain.linear.build_linear_explainer`), and a gradient-boosted one is explained by its
  trees.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import pandas as pd
from onnx import helper

from services.artifacts import (
    ExplainerFeatures,
    Manifest,
    ModelArtifact,
    TextTokenizer,
)
from training.explain.global_shap import Feature, Scores
from training.problem import ColumnRoles, Problem

if TYPE_CHECKING:
    from sklearn.compose import ColumnTransformer

    from training.automl.candidate import CandidateModel

SCORE_CHUNK = 4096
"""Rows per pipeline call when scoring a whole sample (the pipeline cuts them into its own smaller chunks)."""
SVD_TERMS = 3
"""Terms named in the label of a truncated-SVD component: those with the largest loadings."""


@dataclass(frozen=True)
class LinearParts:
    """A linear model over features: ``margin[k] = coef[k] · features(x) + intercept[k]``.

    Attributes:
        coef: ``(n_outputs, n_features)``.
        intercept: ``(n_outputs,)``.
        features: Input frame → features ``(n_samples, n_features)``, dense or sparse.
        names: One per feature.
        tokenizers: How each text column is cut into words (for the highlighted examples).
    """

    coef: np.ndarray
    intercept: np.ndarray
    features: Callable[[pd.DataFrame], Any]
    names: list[Feature]
    tokenizers: list[TextTokenizer]


@dataclass(frozen=True)
class TreeParts:
    """A fitted tree ensemble ``shap.TreeExplainer`` reads, and the features it takes."""

    estimator: Any
    features: Callable[[pd.DataFrame], np.ndarray]
    names: list[Feature]


@dataclass(frozen=True)
class ExplainedModel:
    """Everything the global report needs from a model.

    Attributes:
        problem: Target, problem type, labels and input columns.
        family: The candidate family (``tfidf_linear``, ``gbdt``, …).
        identity: Name, version, manifest digest and directory, as the report states them.
        scores: Input frame → class probabilities ``(n_samples, n_classes)`` or values ``(n_samples,)``.
        linear: The exact linear explainer's parts, when the model is linear.
        trees: The tree explainer's parts, when the model is a tree ensemble in memory.
        notes: Facts about how this model is explained, shown in the report.
    """

    problem: Problem
    family: str
    identity: dict[str, Any]
    scores: Scores
    linear: LinearParts | None = None
    trees: TreeParts | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def outputs(self) -> tuple[str, ...]:
        """Class labels in class-index order, or the regression target."""
        return self.problem.labels if self.problem.is_classification else (self.problem.target,)


def manifest_problem(manifest: Manifest) -> Problem:
    """The problem a model directory was trained for, from its manifest."""

    def role(name: str) -> tuple[str, ...]:
        return tuple(column.name for column in manifest.inputs if column.role == name)

    return Problem(
        target=manifest.target,
        problem_type=manifest.problem_type,
        labels=tuple(manifest.labels),
        roles=ColumnRoles(text=role("text"), categorical=role("categorical"), numeric=role("numeric")),
    )


def linear_coefficients(graph: onnx.ModelProto) -> tuple[np.ndarray, np.ndarray]:
    """``(coef (n_outputs, n_features), intercept (n_outputs,))`` of a ``LinearClassifier`` or
    ``LinearRegressor`` graph, one row per class margin.

    skl2onnx writes a binary logistic regression as two rows, ``-w`` and ``w`` (with ``-b`` and ``b``), which
    are exactly the log-odds of each class; a multiclass one as one row per class (the softmax inputs).

    Raises:
        ValueError: the graph has no linear node.
    """
    for node in graph.graph.node:
        if node.domain == "ai.onnx.ml" and node.op_type in ("LinearClassifier", "LinearRegressor"):
            attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            intercept = np.asarray(attributes.get("intercepts", []), dtype=np.float64)
            outputs = len(attributes.get("classlabels_ints", [])) or int(attributes.get("targets", 1))
            coef = np.asarray(attributes["coefficients"], dtype=np.float64).reshape(outputs, -1)
            if intercept.size == 0:
                intercept = np.zeros(outputs)
            return coef, intercept
    raise ValueError(f"the graph {graph.graph.name!r} has no LinearClassifier or LinearRegressor node")


def model_from_directory(model_dir: Path, *, threads: int = 1) -> ExplainedModel:
    """A verified model directory, scored through the serving pipeline.

    Raises:
        ModelIntegrityError: the directory, its manifest or its graphs do not hold together.
    """
    from services.runtime.pipeline import Call, Pipeline
    from services.runtime.schema import Records
    from services.runtime.stages import LocalStages

    artifact = ModelArtifact.from_directory(model_dir)
    manifest = artifact.manifest
    graphs = artifact.graphs
    stages = LocalStages(graphs, threads=threads)
    pipeline = Pipeline(graphs, stages, manifest=manifest)
    problem = manifest_problem(manifest)

    def records(frame: pd.DataFrame) -> Records:
        return Records(problem.input_frame(frame).to_numpy(dtype=object).tolist())

    def scores(frame: pd.DataFrame) -> np.ndarray:
        parts = []
        for start in range(0, len(frame), SCORE_CHUNK):
            batch = pipeline.predict(records(frame.iloc[start : start + SCORE_CHUNK]), Call("explain"))
            answer = batch.values if batch.values is not None else batch.probabilities
            assert answer is not None
            parts.append(answer)
        return np.concatenate(parts) if parts else np.zeros((0, len(problem.labels)))

    def features(frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(stages.run("transformer", pipeline.validate(records(frame))))

    identity = {
        "name": manifest.name,
        "version": manifest.version,
        "manifest_sha256": artifact.manifest_digest,
        "directory": str(artifact.directory),
        "created_at": manifest.created_at,
    }
    linear = None
    notes: list[str] = []
    if manifest.explainer is not None:
        spec = manifest.explainer
        names = ExplainerFeatures.model_validate_json(
            (artifact.directory / spec.features_file).read_text(encoding="utf-8")
        ).features
        estimator = graphs.paths["regressor" if manifest.is_regression else "classifier"]
        coef, intercept = linear_coefficients(onnx.load(str(estimator)))
        linear = LinearParts(
            coef=coef,
            intercept=intercept,
            features=features,
            names=[Feature(f.column, f.kind, f.term) for f in names],
            tokenizers=list(spec.tokenizers),
        )
    elif manifest.candidate.family == "tfidf_linear":
        notes.append(
            "this linear model was exported without explainer_features.json (before Tripod exported "
            "explainers), so it is explained through its scores like any other model"
        )
    elif manifest.candidate.family == "gbdt":
        notes.append(
            "a model directory holds the trees only as ONNX graphs, which shap does not read: the model is "
            "explained through its scores (AutoML explains a fitted gbdt candidate with shap.TreeExplainer)"
        )
    return ExplainedModel(
        problem=problem,
        family=manifest.candidate.family,
        identity=identity,
        scores=scores,
        linear=linear,
        notes=tuple(notes),
    )


def tree_features(transformer: ColumnTransformer) -> list[Feature]:
    """Names of the output columns of a tree family's fitted column transformer, in order: truncated-SVD
    components of each text column (named by their largest loadings), one-hot categories, numeric columns."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import Pipeline as SklearnPipeline
    from sklearn.preprocessing import OneHotEncoder

    features: list[Feature] = []
    for _, step, columns in transformer.transformers_:
        if isinstance(step, str) and step == "drop":
            continue
        names = [columns] if isinstance(columns, str) else [str(c) for c in columns]
        steps = step.steps if isinstance(step, SklearnPipeline) else [("", step)]
        vectorizer = next((s for _, s in steps if isinstance(s, TfidfVectorizer)), None)
        svd = next((s for _, s in steps if isinstance(s, TruncatedSVD)), None)
        if vectorizer is not None and svd is not None:
            terms = vectorizer.get_feature_names_out()
            for k, loadings in enumerate(svd.components_):
                top = np.argsort(-np.abs(loadings), kind="stable")[:SVD_TERMS]
                features.append(Feature(names[0], "component", f"svd {k} ({', '.join(terms[top])})"))
        elif vectorizer is not None:
            features += [Feature(names[0], "text", str(term)) for term in vectorizer.get_feature_names_out()]
        elif isinstance(step, OneHotEncoder):
            for column, categories in zip(names, step.categories_, strict=True):
                features += [Feature(column, "categorical", str(value)) for value in categories]
        else:
            features += [Feature(column, "numeric") for column in names]
    return features


def model_from_candidate(
    candidate: CandidateModel, *, name: str, data_fingerprint: str | None = None
) -> ExplainedModel:
    """A fitted candidate before export.

    The report ships inside the model directory, so it cannot name the version or the manifest digest (the
    manifest lists the report's own digest).  A linear candidate is explained with the explainer it exports
    (:meth:`~training.automl.candidate.CandidateModel.explainer`), a gradient-boosted one by its trees.
    """
    problem = candidate.problem
    identity: dict[str, Any] = {
        "name": name,
        "version": None,
        "manifest_sha256": None,
        "data_fingerprint": data_fingerprint,
        "params": dict(candidate.params),
        "note": "written before export into the model directory's reports/, whose manifest lists this file",
    }
    linear = trees = None
    exact = candidate.explainer()
    if exact is not None:
        fitted = exact

        def linear_features(frame: pd.DataFrame) -> Any:
            return fitted.transformer.transform(problem.input_frame(frame))

        linear = LinearParts(
            coef=exact.weights,
            intercept=exact.intercepts,
            features=linear_features,
            names=[Feature(f.column, f.kind, f.term) for f in exact.features.features],
            tokenizers=list(exact.tokenizers),
        )
    elif candidate.family == "gbdt":
        boosted: Any = candidate
        trees = TreeParts(
            estimator=boosted.estimator_,
            features=boosted.transform,
            names=tree_features(boosted.transformer_),
        )
    return ExplainedModel(
        problem=problem,
        family=candidate.family,
        identity=identity,
        scores=lambda frame: np.asarray(candidate.predict_scores(frame)),
        linear=linear,
        trees=trees,
    )

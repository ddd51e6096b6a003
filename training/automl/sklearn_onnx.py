"""Faithful skl2onnx conversion of scikit-learn column transformers and estimators into Tripod's stages.

Three skl2onnx behaviours matter for parity, and each is handled here once for every family:

* Its TF-IDF tokenizer is re2, whose ``\\w`` and ``\\b`` are ASCII-only, and by default it replaces
  scikit-learn's pattern with separators.  We pass each vectorizer's own (ASCII-only) ``token_pattern`` as
  ``tokenexp`` and an existing locale (``C.UTF-8``) for ``StringNormalizer``.
* onnxruntime's ``TfIdfVectorizer`` only matches an n-gram whose every word is also a unigram of its pool, so
  vocabularies are pruned of such "orphan" n-grams before the final fit (:func:`fit_without_orphan_ngrams`).
* It converts ``sublinear_tf`` as ``log(1 + tf)`` where scikit-learn computes ``1 + log(tf)``; such vectorizers
  are refused up front.

skl2onnx's L2 row normalization uses the ``ai.onnx.ml`` ``Normalizer`` kernel, which took about 60 % of the
transformer's time in profiles; it is rewritten as ``ReduceL2`` → ``Max`` → ``Div`` (same numbers, vectorized).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import Pipeline

from services.artifacts import FEATURES, LABEL, PREDICTIONS, PROBABILITIES, InputColumn
from services.errors import TripodError

OPSET = 21
ML_OPSET = 3
LOCALE = "C.UTF-8"
TARGET_OPSET = {"": OPSET, "ai.onnx.ml": ML_OPSET}


class ExportError(TripodError):
    """The fitted model uses a setting that has no faithful ONNX conversion."""


def orphan_ngrams(vocabulary: Sequence[str]) -> list[str]:
    """N-grams of the vocabulary with a word that is not itself in the vocabulary.

    onnxruntime's ``TfIdfVectorizer`` only matches an n-gram whose every word is also a unigram of its pool, so
    such n-grams would silently count zero in ONNX while scikit-learn counts them (``max_features`` can keep
    "be adjusted" and drop "adjusted").
    """
    words = {term for term in vocabulary if " " not in term}
    return [term for term in vocabulary if " " in term and not all(w in words for w in term.split(" "))]


def _vectorizer_of(step: Any) -> TfidfVectorizer | None:
    """The TF-IDF vectorizer of one column-transformer part (itself, or a step of its pipeline)."""
    steps = step.steps if isinstance(step, Pipeline) else [("", step)]
    return next((s for _, s in steps if isinstance(s, TfidfVectorizer)), None)


def tfidf_vectorizers(transformer: ColumnTransformer) -> list[TfidfVectorizer]:
    """Every fitted TF-IDF vectorizer inside a column transformer, also inside pipelines."""
    found = [_vectorizer_of(step) for _, step, _ in transformer.transformers_]
    return [vectorizer for vectorizer in found if vectorizer is not None]


def fit_without_orphan_ngrams(
    build: Callable[[Mapping[str, dict[str, int]]], ColumnTransformer], inputs: Any
) -> ColumnTransformer:
    """Fit the column transformer ``build({})`` with every TF-IDF vocabulary pruned of orphan n-grams.

    Each vectorizer (also one inside a pipeline, e.g. TF-IDF → SVD) is first fitted alone on its column; its
    vocabulary, without orphans (terms keep their sorted order), is passed back to ``build``, whose transformer
    is then fitted once, so later steps (SVD, the estimator) only ever see the pruned features.

    Args:
        build: ``vocabularies → unfitted ColumnTransformer``; ``vocabularies`` maps each text column (the
            part's column, given as a single name) to the fixed ``vocabulary`` its vectorizer must use, and is
            empty for the probing build.
        inputs: the frame to fit on.
    """
    vocabularies: dict[str, dict[str, int]] = {}
    for _, step, column in build({}).transformers:
        vectorizer = _vectorizer_of(step)
        if vectorizer is None:
            continue
        terms = clone(vectorizer).fit(inputs[column]).get_feature_names_out().tolist()
        orphans = set(orphan_ngrams(terms))
        kept = [term for term in terms if term not in orphans]
        vocabularies[column] = {term: index for index, term in enumerate(kept)}
    return build(vocabularies).fit(inputs)


def check_convertible(vectorizer: TfidfVectorizer) -> None:
    """Refuse vectorizer settings whose ONNX conversion would not reproduce scikit-learn."""
    if vectorizer.sublinear_tf:
        raise ExportError(
            "TfidfVectorizer(sublinear_tf=True) cannot be exported faithfully: skl2onnx computes log(1 + tf) "
            "where scikit-learn computes 1 + log(tf); train with sublinear_tf=False"
        )
    if vectorizer.analyzer != "word" or vectorizer.strip_accents is not None:
        raise ExportError("only TfidfVectorizer(analyzer='word', strip_accents=None) can be exported to ONNX")
    if vectorizer.tokenizer is not None or vectorizer.preprocessor is not None:
        raise ExportError(
            "a TfidfVectorizer with a custom tokenizer or preprocessor cannot be exported to ONNX"
        )
    if orphans := orphan_ngrams(vectorizer.get_feature_names_out().tolist()):
        raise ExportError(
            f"{len(orphans)} n-gram(s) such as {orphans[0]!r} have a word outside the vocabulary; onnxruntime "
            "never matches them, so the ONNX stage would differ from scikit-learn"
        )


def rename_value(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Rename a tensor everywhere it is produced, consumed or listed as a graph output."""
    if old == new:
        return
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]
    for value in graph.output:
        if value.name == old:
            value.name = new


def use_standard_l2_normalizer(model: onnx.ModelProto) -> None:
    """Replace ``ai.onnx.ml.Normalizer(norm="L2")`` nodes by ReduceL2 → Max(eps) → Div.

    scikit-learn's ``normalize`` leaves all-zero rows at zero; dividing by ``max(norm, tiny)`` does the same.
    """
    graph = model.graph
    nodes: list[onnx.NodeProto] = []
    replaced = 0
    for node in graph.node:
        norm = next((a.s for a in node.attribute if a.name == "norm"), b"")
        if node.op_type != "Normalizer" or node.domain != "ai.onnx.ml" or norm != b"L2":
            nodes.append(node)
            continue
        source, target = node.input[0], node.output[0]
        prefix = f"{target}_l2"
        if not replaced:
            graph.initializer.extend(
                [
                    numpy_helper.from_array(np.array([1], dtype=np.int64), "l2_axes"),
                    numpy_helper.from_array(np.array(np.finfo(np.float32).tiny, dtype=np.float32), "l2_eps"),
                ]
            )
        nodes += [
            helper.make_node(
                "ReduceL2", [source, "l2_axes"], [f"{prefix}_norm"], keepdims=1, name=f"{prefix}_reduce"
            ),
            helper.make_node("Max", [f"{prefix}_norm", "l2_eps"], [f"{prefix}_safe"], name=f"{prefix}_max"),
            helper.make_node("Div", [source, f"{prefix}_safe"], [target], name=f"{prefix}_div"),
        ]
        replaced += 1
    del graph.node[:]
    graph.node.extend(nodes)


def set_output_shape(value: onnx.ValueInfoProto, shape: Sequence[int | None]) -> None:
    dims = value.type.tensor_type.shape.dim
    del dims[:]
    for size in shape:
        dim = dims.add()
        if size is not None:
            dim.dim_value = size


def initial_types(inputs: Sequence[InputColumn]) -> list[tuple[str, Any]]:
    """skl2onnx input types in contract order: strings for text and categorical, floats for numeric."""
    return [
        (column.name, StringTensorType([None, 1]) if column.dtype == "string" else FloatTensorType([None, 1]))
        for column in inputs
    ]


def convert_transformer(
    transformer: ColumnTransformer,
    inputs: Sequence[InputColumn],
    n_features: int,
    *,
    tokenexp: str | None = None,
) -> onnx.ModelProto:
    """A fitted ``ColumnTransformer`` as ``transformer.onnx``, output renamed to ``features`` ``[None, F]``.

    Args:
        tokenexp: override of every vectorizer's token pattern; only tests use it, to prove that a mismatching
            tokenizer is caught by the parity check.
    """
    vectorizers = tfidf_vectorizers(transformer)
    for vectorizer in vectorizers:
        check_convertible(vectorizer)
    options = {id(v): {"tokenexp": tokenexp or v.token_pattern, "locale": LOCALE} for v in vectorizers}
    onx = convert_sklearn(
        transformer,
        name="transformer",  # skl2onnx's default is a random uuid4: the same model would give different bytes
        initial_types=initial_types(inputs),
        options=options,
        target_opset=TARGET_OPSET,
    )
    use_standard_l2_normalizer(onx)
    rename_value(onx.graph, onx.graph.output[0].name, FEATURES)
    set_output_shape(onx.graph.output[0], [None, n_features])
    onnx.checker.check_model(onx)
    return onx


def convert_estimator(estimator: Any, n_features: int, *, classification: bool) -> onnx.ModelProto:
    """A fitted scikit-learn (or registered LightGBM) estimator as ``classifier.onnx`` / ``regressor.onnx``."""
    options = {id(estimator): {"zipmap": False}} if classification else {}
    onx = convert_sklearn(
        estimator,
        name="classifier" if classification else "regressor",  # not skl2onnx's random default
        initial_types=[(FEATURES, FloatTensorType([None, n_features]))],
        options=options,
        target_opset=TARGET_OPSET,
    )
    produced = [value.name for value in onx.graph.output]
    names = (LABEL, PROBABILITIES) if classification else (PREDICTIONS,)
    for old, new in zip(produced, names, strict=True):  # skl2onnx order: label, probabilities
        rename_value(onx.graph, old, new)
    onnx.checker.check_model(onx)
    return onx

"""Export a fitted baseline as three ONNX stages, prove parity, and write the model directory.

The stages follow the contract the serving runtime relies on (``services/runtime.py``):

* ``transformer.onnx``: one ``tensor(string)`` input ``[None, 1]`` per text column, named after it →
  ``features`` float32 ``[None, F]``.
* ``classifier.onnx``: ``features`` → ``label`` int64 ``[None]`` and ``probabilities`` float32 ``[None, C]``.
* ``inverse_label.onnx``: ``label`` int64 ``[None]`` → ``predicted_label`` string ``[None]``.

Parity is proven, not assumed: before anything is published, the stages are run through the serving runtime on
the whole test split and compared with scikit-learn's ``predict_proba``.  Two skl2onnx behaviours matter here:

* Its TF-IDF tokenizer is re2, whose ``\\w`` and ``\\b`` are ASCII-only, and by default it replaces
  scikit-learn's default pattern with separators.  We pass each vectorizer's own (ASCII-only) ``token_pattern``
  as ``tokenexp`` and an existing locale (``C.UTF-8``) for ``StringNormalizer``.
* It converts ``sublinear_tf`` as ``log(1 + tf)`` where scikit-learn computes ``1 + log(tf)``, so such
  vectorizers are refused up front instead of failing parity.

skl2onnx's L2 row normalization uses the ``ai.onnx.ml`` ``Normalizer`` kernel, which took about 60 % of the
transformer's time in profiles; it is rewritten as ``ReduceL2`` → ``Max`` → ``Div`` (same numbers, vectorized).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import pandas as pd
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.feature_extraction.text import TfidfVectorizer

from services.artifacts import (
    Candidate,
    InputColumn,
    Manifest,
    Parity,
    StageSpec,
    TensorSpec,
    dump_json,
    next_version_dir,
    point_latest,
    utc_now,
    write_manifest,
)
from services.errors import TripodError
from services.runtime import (
    CLASSIFIER_FILE,
    FEATURES,
    INVERSE_LABEL_FILE,
    LABEL,
    PREDICTED_LABEL,
    PROBABILITIES,
    TRANSFORMER_FILE,
    InferencePipeline,
    text_inputs,
)
from training.errors import ParityError

if TYPE_CHECKING:  # train.py imports this module to export, so import the class only for typing
    from training.train import TextBaseline

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
UNKNOWN_LABEL = "<unknown>"
_PARITY_CHUNK = 512  # rows per runtime call: bounds the dense (rows, F) feature matrix in memory


class ExportError(TripodError):
    """The fitted model uses a setting that has no faithful ONNX conversion."""


@dataclass(frozen=True)
class ExportOptions:
    """How to convert, and how closely ONNX must reproduce scikit-learn.

    Attributes:
        opset: Target opset of the default ONNX domain (``ai.onnx.ml`` follows skl2onnx's choice).
        ml_opset: Opset of ``ai.onnx.ml`` for the inverse-label graph (``LabelEncoder`` with int64 keys needs ≥ 2).
        tokenexp: re2 pattern for the ONNX tokenizer; None uses each vectorizer's own ``token_pattern``, which
            is the only faithful choice (overriding it exists to prove that parity failures are caught).
        locale: Locale of ONNX ``StringNormalizer`` (lower-casing); it must exist where the model runs.
        min_label_agreement: Smallest acceptable share of held-out rows whose predicted labels agree.
        max_probability_tolerance: Largest acceptable absolute difference of any class probability.
    """

    opset: int = 21
    ml_opset: int = 3
    tokenexp: str | None = None
    locale: str = "C.UTF-8"
    min_label_agreement: float = 0.999
    max_probability_tolerance: float = 1e-3


@dataclass(frozen=True)
class OnnxStages:
    """The three graphs, in memory, before they are written."""

    transformer: onnx.ModelProto
    classifier: onnx.ModelProto
    inverse_label: onnx.ModelProto

    def save(self, directory: Path) -> dict[str, Path]:
        """Write the graphs under their contract file names; returns ``{stage: path}``."""
        paths = {
            "transformer": directory / TRANSFORMER_FILE,
            "classifier": directory / CLASSIFIER_FILE,
            "inverse_label": directory / INVERSE_LABEL_FILE,
        }
        for stage, path in paths.items():
            onnx.save_model(getattr(self, stage), path)
        return paths


def _vectorizers(model: TextBaseline) -> list[TfidfVectorizer]:
    return [t for _, t, _ in model.transformer_.transformers_ if isinstance(t, TfidfVectorizer)]


def orphan_ngrams(vocabulary: Sequence[str]) -> list[str]:
    """N-grams of the vocabulary with a word that is not itself in the vocabulary.

    onnxruntime's ``TfIdfVectorizer`` only matches an n-gram whose every word is also a unigram of its pool, so
    such n-grams would silently count zero in ONNX while scikit-learn counts them (``max_features`` can keep
    "be adjusted" and drop "adjusted").  They are removed before the final fit.
    """
    words = {term for term in vocabulary if " " not in term}
    return [term for term in vocabulary if " " in term and not all(w in words for w in term.split(" "))]


def _check_convertible(vectorizer: TfidfVectorizer) -> None:
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


def _rename_value(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Rename a tensor everywhere it is produced, consumed or listed as a graph output."""
    if old == new:
        return
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]
    for value in graph.output:
        if value.name == old:
            value.name = new


def _use_standard_l2_normalizer(model: onnx.ModelProto) -> None:
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


def _set_output_shape(value: onnx.ValueInfoProto, shape: Sequence[int | None]) -> None:
    dims = value.type.tensor_type.shape.dim
    del dims[:]
    for size in shape:
        dim = dims.add()
        if size is not None:
            dim.dim_value = size


def convert_transformer(model: TextBaseline, options: ExportOptions = ExportOptions()) -> onnx.ModelProto:
    """The ``ColumnTransformer`` of TF-IDF vectorizers as ``transformer.onnx``.

    Raises:
        ExportError: A vectorizer uses a setting skl2onnx does not reproduce.
    """
    vectorizers = _vectorizers(model)
    for vectorizer in vectorizers:
        _check_convertible(vectorizer)
    converter_options: dict[Any, dict[str, Any]] = {
        id(v): {"tokenexp": options.tokenexp or v.token_pattern, "locale": options.locale}
        for v in vectorizers
    }
    onx = convert_sklearn(
        model.transformer_,
        initial_types=[(column, StringTensorType([None, 1])) for column in model.text_columns_],
        options=converter_options,
        target_opset={"": options.opset, "ai.onnx.ml": options.ml_opset},
    )
    _use_standard_l2_normalizer(onx)
    _rename_value(onx.graph, onx.graph.output[0].name, FEATURES)
    _set_output_shape(onx.graph.output[0], [None, model.n_features_])
    onnx.checker.check_model(onx)
    return onx


def convert_classifier(model: TextBaseline, options: ExportOptions = ExportOptions()) -> onnx.ModelProto:
    """The logistic regression as ``classifier.onnx``: class index and probabilities, no ZipMap."""
    classifier = model.classifier_
    onx = convert_sklearn(
        classifier,
        initial_types=[(FEATURES, FloatTensorType([None, model.n_features_]))],
        options={id(classifier): {"zipmap": False}},
        target_opset={"": options.opset, "ai.onnx.ml": options.ml_opset},
    )
    produced = [value.name for value in onx.graph.output]
    for old, new in zip(
        produced, (LABEL, PROBABILITIES), strict=True
    ):  # skl2onnx order: label, probabilities
        _rename_value(onx.graph, old, new)
    onnx.checker.check_model(onx)
    return onx


def build_inverse_label(labels: Sequence[str], options: ExportOptions = ExportOptions()) -> onnx.ModelProto:
    """``inverse_label.onnx``: an ``ai.onnx.ml.LabelEncoder`` from class index ``i`` to ``labels[i]``.

    Keeping this a graph (not Python) means any ONNX client reproduces the served labels from the files alone.
    An index outside ``0..len(labels)-1`` maps to ``"<unknown>"``.
    """
    node = helper.make_node(
        "LabelEncoder",
        [LABEL],
        [PREDICTED_LABEL],
        domain="ai.onnx.ml",
        keys_int64s=list(range(len(labels))),
        values_strings=[str(label) for label in labels],
        default_string=UNKNOWN_LABEL,
        name="inverse_label",
    )
    graph = helper.make_graph(
        [node],
        "inverse_label",
        [helper.make_tensor_value_info(LABEL, TensorProto.INT64, [None])],
        [helper.make_tensor_value_info(PREDICTED_LABEL, TensorProto.STRING, [None])],
    )
    opsets = [helper.make_opsetid("", options.opset), helper.make_opsetid("ai.onnx.ml", options.ml_opset)]
    # The lowest IR version for these opsets, not onnx's newest: older onnxruntime builds refuse newer IR.
    onx = helper.make_model(
        graph, opset_imports=opsets, ir_version=helper.find_min_ir_version_for(opsets), producer_name="tripod"
    )
    onnx.checker.check_model(onx)
    return onx


def convert(model: TextBaseline, options: ExportOptions = ExportOptions()) -> OnnxStages:
    """All three stages of a fitted baseline."""
    return OnnxStages(
        transformer=convert_transformer(model, options),
        classifier=convert_classifier(model, options),
        inverse_label=build_inverse_label(model.labels_, options),
    )


def check_parity(
    model: TextBaseline, paths: dict[str, Path], frame: pd.DataFrame, options: ExportOptions = ExportOptions()
) -> Parity:
    """Run the written stages through the serving runtime and compare them with scikit-learn on ``frame``.

    A row's label agrees when the served label string equals scikit-learn's and the classifier graph's
    ``label`` output equals the arg-max of its ``probabilities``.

    Returns:
        The parity record for the manifest (``passed`` is always True when this returns).

    Raises:
        ParityError: Label agreement or the largest probability difference is outside the tolerances.
    """
    pipeline = InferencePipeline.from_files(
        paths["transformer"], paths["classifier"], paths["inverse_label"], text_inputs(model.text_columns_),
        model.labels_,
    )
    text = model.text_frame(frame)
    expected_proba = model.predict_proba(frame)
    expected_labels = np.asarray(model.labels_, dtype=object)[expected_proba.argmax(axis=1)]
    agreeing, max_diff = 0, 0.0
    for start in range(0, len(text), _PARITY_CHUNK):
        chunk = text.iloc[start : start + _PARITY_CHUNK]
        expected = expected_labels[start : start + len(chunk)]
        batch = pipeline.predict_columns({c: chunk[c].to_numpy(dtype=object) for c in chunk.columns})
        # Serving reads the arg-max of ``probabilities``; the classifier's own ``label`` output must agree with it
        # too, for clients that use the graph directly.
        features = pipeline.transformer.transform(chunk.to_numpy(dtype=object))
        label_output = pipeline.estimator.run({FEATURES: features})[LABEL]
        agree = (np.asarray(batch.labels, dtype=object) == expected) & (label_output == batch.indices)
        agreeing += int(agree.sum())
        diff = np.abs(batch.probabilities.astype(np.float64) - expected_proba[start : start + len(chunk)])
        max_diff = max(max_diff, float(diff.max(initial=0.0)))
    rows = len(text)
    agreement = agreeing / rows if rows else 0.0
    passed = (
        rows > 0
        and agreement >= options.min_label_agreement
        and max_diff <= options.max_probability_tolerance
    )
    parity = Parity(
        rows=rows,
        label_agreement=agreement,
        max_abs_probability_diff=max_diff,
        min_label_agreement=options.min_label_agreement,
        max_probability_tolerance=options.max_probability_tolerance,
        passed=passed,
    )
    if not passed:
        raise ParityError(
            f"ONNX stages do not match scikit-learn on {rows} held-out rows: label agreement {agreement:.4f} "
            f"(required >= {options.min_label_agreement}), max |Δprobability| {max_diff:.3g} "
            f"(required <= {options.max_probability_tolerance:g})"
        )
    return parity


def _dtype_name(elem_type: int) -> str:
    if elem_type == TensorProto.STRING:
        return "string"
    return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).name


def _tensor_specs(values: Iterable[onnx.ValueInfoProto]) -> list[TensorSpec]:
    specs = []
    for value in values:
        tensor = value.type.tensor_type
        shape = [dim.dim_value if dim.HasField("dim_value") else None for dim in tensor.shape.dim]
        specs.append(TensorSpec(name=value.name, dtype=_dtype_name(tensor.elem_type), shape=shape))
    return specs


def stage_spec(file: str, model: onnx.ModelProto) -> StageSpec:
    """The manifest's description of a stage, read from the graph itself so it cannot drift."""
    return StageSpec(
        file=file, inputs=_tensor_specs(model.graph.input), outputs=_tensor_specs(model.graph.output)
    )


def library_versions(options: ExportOptions) -> dict[str, str]:
    """Versions that produced the model, and the opsets it targets."""
    import onnxruntime
    import skl2onnx
    import sklearn

    return {
        "scikit-learn": sklearn.__version__,
        "skl2onnx": skl2onnx.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "onnx_opset": str(options.opset),
        "onnx_ml_opset": str(options.ml_opset),
    }


def export_model(
    model: TextBaseline,
    *,
    model_root: Path,
    target: str,
    parity_frame: pd.DataFrame,
    data_fingerprint: str,
    metrics: dict[str, float],
    metrics_report: dict[str, Any],
    family: str = "tfidf_logreg",
    options: ExportOptions = ExportOptions(),
) -> Path:
    """Convert, prove parity, and publish ``model_root/v<N>`` with its manifest; then repoint ``latest``.

    The stages are written to a staging directory first, so a failed parity check leaves no half-written
    version behind and does not take a version number.

    Args:
        model: The fitted baseline.
        model_root: ``models/<name>``; the model's name is its last component.
        target: The label column the model predicts.
        parity_frame: Held-out rows (the test split) for the parity check.
        data_fingerprint: :func:`training.data.fingerprint` of the training table.
        metrics: Flat metrics for the manifest.
        metrics_report: The full evaluation, written as ``metrics.json``.
        family: Candidate family recorded in the manifest.
        options: Conversion settings and parity tolerances.

    Returns:
        The version directory.

    Raises:
        ExportError: The model cannot be converted faithfully.
        ParityError: The ONNX stages disagree with scikit-learn beyond the tolerances.
    """
    model_root = Path(model_root)
    model_root.mkdir(parents=True, exist_ok=True)
    stages = convert(model, options)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=model_root))
    try:
        paths = stages.save(staging)
        parity = check_parity(model, paths, parity_frame, options)
        logger.info(
            "parity on %d rows: label agreement %.4f, max |Δp| %.2g",
            parity.rows,
            parity.label_agreement,
            parity.max_abs_probability_diff,
        )
        dump_json(staging / METRICS_FILE, metrics_report)
        version_dir = next_version_dir(model_root)
        for path in sorted(staging.iterdir()):
            path.replace(version_dir / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    labels = model.labels_
    manifest = Manifest(
        name=model_root.name,
        version=version_dir.name,
        created_at=utc_now(),
        problem_type="binary" if len(labels) == 2 else "multiclass",
        target=target,
        inputs=[InputColumn(name=column, dtype="string", role="text") for column in model.text_columns_],
        labels=labels,
        stages={
            "transformer": stage_spec(TRANSFORMER_FILE, stages.transformer),
            "classifier": stage_spec(CLASSIFIER_FILE, stages.classifier),
            "inverse_label": stage_spec(INVERSE_LABEL_FILE, stages.inverse_label),
        },
        metrics=metrics,
        parity=parity,
        data_fingerprint=data_fingerprint,
        candidate=Candidate(family=family, params=model.params_.as_params()),
        libraries=library_versions(options),
    )
    write_manifest(version_dir, manifest)
    point_latest(model_root, version_dir)
    return version_dir

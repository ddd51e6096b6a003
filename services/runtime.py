"""The ONNX inference runtime: transformer → classifier → inverse-label, run by onnxruntime.

Regression models have two stages (transformer → regressor) and answer ``predicted_value``.

This is the one inference code path.  The BentoML stage services, ``tripod predict`` (batch over files), the
export parity check and the in-process benchmarks all call these classes, so they cannot disagree.  Each stage
has the same shape: it is built from one ONNX file, knows its input and output names, and maps named arrays to
named arrays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from services.artifacts import InputColumn, Manifest, load_manifest
from services.errors import InvalidInput, SchemaError

TRANSFORMER_FILE = "transformer.onnx"
CLASSIFIER_FILE = "classifier.onnx"
INVERSE_LABEL_FILE = "inverse_label.onnx"

FEATURES = "features"
LABEL = "label"
PROBABILITIES = "probabilities"
PREDICTED_LABEL = "predicted_label"
PREDICTIONS = "predictions"
REGRESSOR_FILE = "regressor.onnx"


def session_options(threads: int, *, custom_ops: bool = False) -> ort.SessionOptions:
    """One intra-op thread per stage by default: servers scale with workers, not with threads per call."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if custom_ops:  # tokenizer graphs (transformer candidates) use onnxruntime-extensions' operators
        from onnxruntime_extensions import get_library_path

        options.register_custom_ops_library(get_library_path())
    return options


def inference_session(path: Path, threads: int) -> ort.InferenceSession:
    """Open a graph, loading onnxruntime-extensions only for graphs that need its operators.

    Registering the extensions library costs about two seconds, so plain graphs are opened without it and
    only a graph that fails to load is retried with it; if that fails too, the first error is the one raised.
    """
    providers = ["CPUExecutionProvider"]
    try:
        return ort.InferenceSession(str(path), session_options(threads), providers=providers)
    except Exception as plain_error:  # onnxruntime raises its own exception types for unknown operators
        try:
            return ort.InferenceSession(
                str(path), session_options(threads, custom_ops=True), providers=providers
            )
        except Exception:
            raise plain_error from None


class OnnxStage:
    """One ONNX graph of the pipeline, loaded once and run many times."""

    def __init__(self, path: Path, *, threads: int = 1) -> None:
        self.path = Path(path)
        self.session = inference_session(self.path, threads)
        self.input_names = [node.name for node in self.session.get_inputs()]
        self.output_names = [node.name for node in self.session.get_outputs()]

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph on named inputs and return every named output."""
        outputs = self.session.run(self.output_names, dict(feeds))
        return dict(zip(self.output_names, outputs, strict=True))


class TransformerStage(OnnxStage):
    """Raw input columns → the single ``features`` tensor the estimator stage takes.

    ``features`` is float32 ``(n_samples, n_features)`` for vectorizers, or int64 ``(n_samples, max_tokens)``
    token ids for tokenizer graphs; either way one tensor, so stages batch and travel as one array.
    """

    def __init__(self, path: Path, *, threads: int = 1) -> None:
        super().__init__(path, threads=threads)
        self.numeric = [node.type == "tensor(float)" for node in self.session.get_inputs()]

    def transform(self, columns: np.ndarray) -> np.ndarray:
        """Args:
        columns: object array ``(n_samples, n_inputs)`` in manifest input order: strings for string
            columns, floats (NaN when missing) for numeric ones.
        """
        feeds = {
            name: columns[:, [i]].astype(np.float32) if numeric else columns[:, [i]]
            for i, (name, numeric) in enumerate(zip(self.input_names, self.numeric, strict=True))
        }
        return self.run(feeds)[FEATURES]


class ClassifierStage(OnnxStage):
    """Features → class probabilities ``(n_samples, n_classes)``."""

    def classify(self, features: np.ndarray) -> np.ndarray:
        return self.run({FEATURES: features})[PROBABILITIES]


class RegressorStage(OnnxStage):
    """Features → predicted values ``(n_samples,)``."""

    def regress(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(self.run({FEATURES: features})[PREDICTIONS], dtype=np.float64).reshape(-1)


class InverseLabelStage(OnnxStage):
    """Class index ``(n_samples,)`` → label strings ``(n_samples,)``, as an ONNX graph."""

    def inverse(self, indices: np.ndarray) -> np.ndarray:
        return self.run({LABEL: np.asarray(indices, dtype=np.int64)})[PREDICTED_LABEL]


def class_indices(probabilities: np.ndarray) -> np.ndarray:
    """The predicted class index of each row: the first class of highest probability."""
    return np.asarray(probabilities).argmax(axis=1).astype(np.int64)


@dataclass(frozen=True)
class PredictionBatch:
    """The pipeline's answer for ``n_samples`` rows: labels and probabilities, or regression values."""

    labels: np.ndarray | None = None
    """``(n_samples,)`` predicted label strings (classification)."""
    probabilities: np.ndarray | None = None
    """``(n_samples, n_classes)`` class probabilities, columns in ``class_names`` order (classification)."""
    class_names: tuple[str, ...] = ()
    values: np.ndarray | None = None
    """``(n_samples,)`` predicted values (regression)."""

    @property
    def indices(self) -> np.ndarray:
        if self.probabilities is None:
            raise ValueError("a regression batch has no class indices")
        return class_indices(self.probabilities)

    def records(self) -> list[dict[str, object]]:
        """JSON-ready rows in the wire shape of :func:`format_predictions` / :func:`format_values`."""
        if self.values is not None:
            return format_values(self.values)
        assert self.labels is not None and self.probabilities is not None
        return format_predictions(self.labels, self.probabilities, self.class_names)


def format_predictions(
    labels: Sequence[str] | np.ndarray, probabilities: np.ndarray, class_names: Sequence[str]
) -> list[dict[str, object]]:
    """Classification rows: ``predicted_label``, its ``probability``, and every label's ``probabilities``."""
    rows = np.asarray(probabilities, dtype=np.float64)
    best = rows.max(axis=1)
    return [
        {
            "predicted_label": str(label),
            "probability": float(top),
            "probabilities": dict(zip(class_names, map(float, row), strict=True)),
        }
        for label, top, row in zip(labels, best, rows, strict=True)
    ]


def format_values(values: np.ndarray) -> list[dict[str, object]]:
    """Regression rows: ``predicted_value``."""
    return [{"predicted_value": float(value)} for value in np.asarray(values, dtype=np.float64).reshape(-1)]


def coerce_value(value: object, column: InputColumn, where: str) -> object:
    """Check one field against its column type: a string, or a number (``None`` → NaN) for numeric columns.

    Args:
        where: how to name the field in an error, e.g. ``"record 3: field 'age'"``.

    Raises:
        SchemaError: the value has the wrong type.
    """
    if column.dtype == "string":
        if isinstance(value, str):
            return value
        raise SchemaError(f"{where} must be a string, got {type(value).__name__}")
    if value is None:
        return float("nan")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise SchemaError(f"{where} must be a number or null, got {type(value).__name__}")


def csv_value(text: str, column: InputColumn, where: str) -> object:
    """A CSV field for its column: text as is; numeric columns parse it, an empty field is a missing number.

    Raises:
        SchemaError: a numeric field that is not a number, named by ``where``.
    """
    if column.dtype == "string":
        return text
    if not text.strip():
        return float("nan")
    try:
        return float(text)
    except ValueError:
        raise SchemaError(f"{where} must be a number, got {text[:40]!r}") from None


def records_to_columns(records: Sequence[Mapping[str, object]], inputs: Sequence[InputColumn]) -> np.ndarray:
    """Validate records against the input schema and stack them into an object array ``(n_samples, n_inputs)``.

    Every field must be present with its column's type; unknown fields are refused so that a misspelt column
    name is reported instead of silently predicting on an empty value.

    Raises:
        SchemaError: naming the record index and the field.
    """
    if not records:
        raise SchemaError("records must hold at least one record")
    names = [column.name for column in inputs]
    expected = set(names)
    columns = np.empty((len(records), len(inputs)), dtype=object)
    for index, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise SchemaError(f"record {index}: expected an object with fields {names}")
        unknown = sorted(set(record) - expected)
        if unknown:
            raise SchemaError(f"record {index}: unknown field(s) {unknown}; the model takes {names}")
        for position, column in enumerate(inputs):
            if column.name not in record:
                raise SchemaError(f"record {index}: field {column.name!r} is required")
            columns[index, position] = coerce_value(
                record[column.name], column, f"record {index}: field {column.name!r}"
            )
    return columns


def clip_text(columns: np.ndarray, inputs: Sequence[InputColumn], max_chars: int) -> np.ndarray:
    """Cut every string field to ``max_chars`` characters and refuse text that is not valid Unicode.

    The cut bounds the transformer's work per record whatever a client sends (a TF-IDF answer depends on
    the words, and the first ``max_chars`` characters carry them).  A lone surrogate (JSON allows
    ``"\\ud800"``) cannot become UTF-8 for onnxruntime, so it is the client's mistake, named by record and
    field.

    Args:
        columns: object array ``(n_samples, n_inputs)`` in manifest input order; string fields are replaced
            in place when cut.

    Raises:
        InvalidInput: a string field holds a lone surrogate.
    """
    for position, column in enumerate(inputs):
        if column.dtype != "string":
            continue
        for index, value in enumerate(columns[:, position]):
            if len(value) > max_chars:
                value = columns[index, position] = value[:max_chars]
            if not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError as exc:
                    raise InvalidInput(
                        f"record {index}: field {column.name!r} is not valid Unicode text "
                        f"(character {exc.start}: {exc.reason})"
                    ) from exc
    return columns


def text_inputs(names: Sequence[str]) -> list[InputColumn]:
    """Input columns that are all free text, the common case for callers that only know column names."""
    return [InputColumn(name=name, dtype="string", role="text") for name in names]


class InferencePipeline:
    """The stages of one model directory, run in-process."""

    def __init__(
        self,
        transformer: TransformerStage,
        estimator: ClassifierStage | RegressorStage,
        inverse_label: InverseLabelStage | None,
        inputs: Sequence[InputColumn],
        class_names: Sequence[str],
        manifest: Manifest | None = None,
    ) -> None:
        self.transformer = transformer
        self.estimator = estimator
        self.inverse_label = inverse_label
        self.inputs = list(inputs)
        self.input_names = [column.name for column in self.inputs]
        self.class_names = tuple(class_names)
        self.manifest = manifest

    @property
    def is_regression(self) -> bool:
        return isinstance(self.estimator, RegressorStage)

    @classmethod
    def from_files(
        cls,
        transformer: Path,
        estimator: Path,
        inverse_label: Path | None,
        inputs: Sequence[InputColumn],
        labels: Sequence[str],
        *,
        threads: int = 1,
    ) -> InferencePipeline:
        """Build from stage files that have no manifest yet (export's parity check); no inverse label = regression."""
        return cls(
            TransformerStage(transformer, threads=threads),
            ClassifierStage(estimator, threads=threads)
            if inverse_label
            else RegressorStage(estimator, threads=threads),
            InverseLabelStage(inverse_label, threads=threads) if inverse_label else None,
            inputs,
            labels,
        )

    @classmethod
    def from_directory(cls, model_dir: Path, *, threads: int = 1) -> InferencePipeline:
        """Load a model directory after verifying every file against its manifest digest."""
        model_dir = Path(model_dir).resolve()
        manifest = load_manifest(model_dir)
        stages = manifest.stages
        regression = manifest.problem_type == "regression"
        pipeline = cls.from_files(
            model_dir / stages["transformer"].file,
            model_dir / stages["regressor" if regression else "classifier"].file,
            None if regression else model_dir / stages["inverse_label"].file,
            manifest.inputs,
            manifest.labels,
            threads=threads,
        )
        pipeline.manifest = manifest
        return pipeline

    def predict_columns(self, columns: Mapping[str, np.ndarray]) -> PredictionBatch:
        """Predict from named 1-D columns ``{name: (n_samples,)}``, already of their column types."""
        stacked = np.stack([np.asarray(columns[name], dtype=object) for name in self.input_names], axis=1)
        return self.predict_array(stacked)

    def predict_array(self, columns: np.ndarray) -> PredictionBatch:
        """Predict from an object array ``(n_samples, n_inputs)`` in manifest input order."""
        features = self.transformer.transform(columns)
        if isinstance(self.estimator, RegressorStage):
            return PredictionBatch(values=self.estimator.regress(features))
        assert self.inverse_label is not None
        probabilities = self.estimator.classify(features)
        labels = self.inverse_label.inverse(class_indices(probabilities))
        return PredictionBatch(labels, probabilities, self.class_names)

    def predict_records(self, records: Sequence[Mapping[str, object]]) -> list[dict[str, object]]:
        return self.predict_array(records_to_columns(records, self.inputs)).records()

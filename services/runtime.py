"""The ONNX inference runtime: transformer → classifier → inverse-label, run by onnxruntime.

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

from services.artifacts import Manifest, load_manifest
from services.errors import SchemaError

TRANSFORMER_FILE = "transformer.onnx"
CLASSIFIER_FILE = "classifier.onnx"
INVERSE_LABEL_FILE = "inverse_label.onnx"

FEATURES = "features"
LABEL = "label"
PROBABILITIES = "probabilities"
PREDICTED_LABEL = "predicted_label"


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
            return ort.InferenceSession(str(path), session_options(threads, custom_ops=True), providers=providers)
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
    """Raw input columns → feature matrix ``(n_samples, n_features)``."""

    def transform(self, columns: np.ndarray) -> np.ndarray:
        """Args:
            columns: object array ``(n_samples, n_inputs)`` of strings, columns in manifest input order.
        """
        feeds = {name: columns[:, [i]] for i, name in enumerate(self.input_names)}
        return self.run(feeds)[FEATURES]


class ClassifierStage(OnnxStage):
    """Feature matrix → class probabilities ``(n_samples, n_classes)``."""

    def classify(self, features: np.ndarray) -> np.ndarray:
        return self.run({FEATURES: np.asarray(features, dtype=np.float32)})[PROBABILITIES]


class InverseLabelStage(OnnxStage):
    """Class index ``(n_samples,)`` → label strings ``(n_samples,)``, as an ONNX graph."""

    def inverse(self, indices: np.ndarray) -> np.ndarray:
        return self.run({LABEL: np.asarray(indices, dtype=np.int64)})[PREDICTED_LABEL]


def class_indices(probabilities: np.ndarray) -> np.ndarray:
    """The predicted class index of each row: the first class of highest probability."""
    return np.asarray(probabilities).argmax(axis=1).astype(np.int64)


@dataclass(frozen=True)
class PredictionBatch:
    """The pipeline's answer for ``n_samples`` rows."""

    labels: np.ndarray
    """``(n_samples,)`` predicted label strings."""
    probabilities: np.ndarray
    """``(n_samples, n_classes)`` class probabilities, columns in ``class_names`` order."""
    class_names: tuple[str, ...]

    @property
    def indices(self) -> np.ndarray:
        return class_indices(self.probabilities)

    def records(self) -> list[dict[str, object]]:
        """JSON-ready rows: ``predicted_label``, ``probability`` of that label, and every label's probability."""
        return format_predictions(self.labels, self.probabilities, self.class_names)


def format_predictions(
    labels: Sequence[str] | np.ndarray, probabilities: np.ndarray, class_names: Sequence[str]
) -> list[dict[str, object]]:
    """The wire shape of predictions, shared by every route and by ``tripod predict``."""
    rounded = np.asarray(probabilities, dtype=np.float64)
    best = rounded.max(axis=1)
    return [
        {
            "predicted_label": str(label),
            "probability": float(top),
            "probabilities": dict(zip(class_names, map(float, row), strict=True)),
        }
        for label, top, row in zip(labels, best, rounded, strict=True)
    ]


def records_to_columns(records: Sequence[Mapping[str, object]], input_names: Sequence[str]) -> np.ndarray:
    """Validate records against the input schema and stack them into ``(n_samples, n_inputs)`` strings.

    Every field must be present and a string; unknown fields are refused so that a misspelt column name is
    reported instead of silently predicting on an empty text.

    Raises:
        SchemaError: naming the record index and the field.
    """
    if not records:
        raise SchemaError("records must hold at least one record")
    expected = set(input_names)
    columns = np.empty((len(records), len(input_names)), dtype=object)
    for index, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise SchemaError(f"record {index}: expected an object with fields {sorted(expected)}")
        unknown = sorted(set(record) - expected)
        if unknown:
            raise SchemaError(f"record {index}: unknown field(s) {unknown}; the model takes {list(input_names)}")
        for position, name in enumerate(input_names):
            if name not in record:
                raise SchemaError(f"record {index}: field {name!r} is required")
            value = record[name]
            if not isinstance(value, str):
                raise SchemaError(
                    f"record {index}: field {name!r} must be a string, got {type(value).__name__}"
                )
            columns[index, position] = value
    return columns


class InferencePipeline:
    """The three stages of one model directory, run in-process."""

    def __init__(
        self,
        transformer: TransformerStage,
        classifier: ClassifierStage,
        inverse_label: InverseLabelStage,
        input_names: Sequence[str],
        class_names: Sequence[str],
        manifest: Manifest | None = None,
    ) -> None:
        self.transformer = transformer
        self.classifier = classifier
        self.inverse_label = inverse_label
        self.input_names = list(input_names)
        self.class_names = tuple(class_names)
        self.manifest = manifest

    @classmethod
    def from_files(
        cls,
        transformer: Path,
        classifier: Path,
        inverse_label: Path,
        input_names: Sequence[str],
        labels: Sequence[str],
        *,
        threads: int = 1,
    ) -> InferencePipeline:
        """Build from stage files that have no manifest yet: the export parity check uses this."""
        return cls(
            TransformerStage(transformer, threads=threads),
            ClassifierStage(classifier, threads=threads),
            InverseLabelStage(inverse_label, threads=threads),
            input_names,
            labels,
        )

    @classmethod
    def from_directory(cls, model_dir: Path, *, threads: int = 1) -> InferencePipeline:
        """Load a model directory after verifying every file against its manifest digest."""
        model_dir = Path(model_dir).resolve()
        manifest = load_manifest(model_dir)
        stages = manifest.stages
        pipeline = cls.from_files(
            model_dir / stages["transformer"].file,
            model_dir / stages["classifier"].file,
            model_dir / stages["inverse_label"].file,
            manifest.input_names,
            manifest.labels,
            threads=threads,
        )
        pipeline.manifest = manifest
        return pipeline

    def predict_columns(self, columns: Mapping[str, np.ndarray]) -> PredictionBatch:
        """Predict from named 1-D columns of strings, ``{name: (n_samples,)}``."""
        stacked = np.stack([np.asarray(columns[name], dtype=object) for name in self.input_names], axis=1)
        return self.predict_array(stacked)

    def predict_array(self, columns: np.ndarray) -> PredictionBatch:
        """Predict from an object array ``(n_samples, n_inputs)`` in manifest input order."""
        probabilities = self.classifier.classify(self.transformer.transform(columns))
        labels = self.inverse_label.inverse(class_indices(probabilities))
        return PredictionBatch(labels, probabilities, self.class_names)

    def predict_records(self, records: Sequence[Mapping[str, object]]) -> list[dict[str, object]]:
        return self.predict_array(records_to_columns(records, self.input_names)).records()

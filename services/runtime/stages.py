"""The ONNX stages of a model directory, opened once, checked against the manifest, run many times.

Every stage has the same shape: built from one ONNX file, it knows its input and output names and maps named
arrays to named arrays.  :class:`LocalStages` holds the stages of one model in this process and checks, when
it opens them, what the digests cannot: that the manifest describes these graphs (names, types, widths), that
the stages fit each other, and that ``inverse_label.onnx`` emits exactly the manifest's labels in order.  A
manifest whose label order was reversed, or whose transformer and classifier were swapped, is refused here
with one line naming the mismatch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnxruntime as ort

from services.artifacts import (
    FEATURES,
    LABEL,
    PREDICTED_LABEL,
    PREDICTIONS,
    PROBABILITIES,
    InputColumn,
    ModelGraphs,
    StageName,
    StageSpec,
)
from services.errors import ModelIntegrityError
from services.runtime.sessions import inference_session

ONNX_TYPES = {"string": "tensor(string)", "float": "tensor(float)"}


class OnnxStage:
    """One ONNX graph of the pipeline."""

    def __init__(self, session: ort.InferenceSession, name: str) -> None:
        self.session = session
        self.name = name
        self.inputs = {node.name: node for node in session.get_inputs()}
        self.outputs = {node.name: node for node in session.get_outputs()}
        self.output_names = list(self.outputs)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph on named inputs and return every named output."""
        return dict(zip(self.output_names, self.session.run(self.output_names, feeds), strict=True))

    def require(self, inputs: Sequence[str], outputs: Sequence[str]) -> None:
        """Refuse a graph without exactly these inputs or without these outputs."""
        if sorted(self.inputs) != sorted(inputs) or not set(outputs) <= set(self.outputs):
            raise ModelIntegrityError(
                f"the {self.name} stage takes {sorted(self.inputs)} and gives {sorted(self.outputs)}; "
                f"a {self.name} must take {sorted(inputs)} and give {sorted(outputs)}: "
                "the manifest's stages do not fit the graphs"
            )

    def matches(self, spec: StageSpec) -> None:
        """Refuse a graph whose tensor names differ from what the manifest says about it."""
        declared = (sorted(t.name for t in spec.inputs), sorted(t.name for t in spec.outputs))
        if declared != (sorted(self.inputs), sorted(self.outputs)):
            raise ModelIntegrityError(
                f"the manifest says {spec.file} takes {declared[0]} and gives {declared[1]}, "
                f"but the graph takes {sorted(self.inputs)} and gives {sorted(self.outputs)}"
            )

    def width(self, name: str, *, output: bool) -> int | None:
        """The static last dimension of a tensor, if the graph fixes it."""
        node = (self.outputs if output else self.inputs)[name]
        last = node.shape[-1] if node.shape else None
        return last if isinstance(last, int) and last > 0 else None


class TransformerStage(OnnxStage):
    """Raw input columns → the single ``features`` tensor the estimator stage takes.

    ``features`` is float32 ``(n_samples, n_features)`` for vectorizers, or int64 ``(n_samples, max_tokens)``
    token ids for tokenizer graphs; either way one tensor, so stages batch and travel as one array.
    """

    def __init__(self, session: ort.InferenceSession, inputs: Sequence[InputColumn]) -> None:
        super().__init__(session, "transformer")
        self.require([column.name for column in inputs], [FEATURES])
        for column in inputs:
            actual = self.inputs[column.name].type
            if actual != ONNX_TYPES[column.dtype]:
                raise ModelIntegrityError(
                    f"input column {column.name!r} is {column.dtype} in the manifest but {actual} in the "
                    "transformer graph"
                )
        self.columns = [(column.name, column.dtype == "float") for column in inputs]

    def transform(self, columns: np.ndarray) -> np.ndarray:
        """Args:
        columns: object array ``(n_samples, n_inputs)`` in manifest input order: strings for string
            columns, floats (NaN when missing) for numeric ones.
        """
        feeds = {
            name: columns[:, [i]].astype(np.float32) if numeric else columns[:, [i]]
            for i, (name, numeric) in enumerate(self.columns)
        }
        return self.run(feeds)[FEATURES]


class ClassifierStage(OnnxStage):
    """Features → class probabilities ``(n_samples, n_classes)``."""

    def __init__(self, session: ort.InferenceSession) -> None:
        super().__init__(session, "classifier")
        self.require([FEATURES], [PROBABILITIES])

    def classify(self, features: np.ndarray) -> np.ndarray:
        return self.run({FEATURES: features})[PROBABILITIES]


class RegressorStage(OnnxStage):
    """Features → predicted values ``(n_samples,)``."""

    def __init__(self, session: ort.InferenceSession) -> None:
        super().__init__(session, "regressor")
        self.require([FEATURES], [PREDICTIONS])

    def regress(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(self.run({FEATURES: features})[PREDICTIONS], dtype=np.float64).reshape(-1)


class InverseLabelStage(OnnxStage):
    """Class index ``(n_samples,)`` → label strings ``(n_samples,)``, as an ONNX graph."""

    def __init__(self, session: ort.InferenceSession, labels: Sequence[str]) -> None:
        super().__init__(session, "inverse_label")
        self.require([LABEL], [PREDICTED_LABEL])
        emitted = [str(label) for label in self.inverse(np.arange(len(labels)))]
        if emitted != list(labels):
            raise ModelIntegrityError(
                f"inverse_label.onnx maps class indices 0..{len(labels) - 1} to {emitted}, but the manifest's "
                f"labels are {list(labels)}"
            )

    def inverse(self, indices: np.ndarray) -> np.ndarray:
        return self.run({LABEL: np.asarray(indices, dtype=np.int64)})[PREDICTED_LABEL]


def class_indices(probabilities: np.ndarray) -> np.ndarray:
    """The predicted class index of each row: the first class of highest probability."""
    return np.asarray(probabilities).argmax(axis=1).astype(np.int64)


def open_stage(graphs: ModelGraphs, stage: StageName, threads: int) -> OnnxStage:
    """One stage of a model, checked against what the manifest says of it (a stage service opens only its
    own; :class:`LocalStages` opens them all and also checks how they fit together).

    Raises:
        ModelIntegrityError: the model has no such stage, or the graph does not fit.
    """
    if stage not in graphs.paths:
        raise ModelIntegrityError(f"the model has no {stage} stage; its stages are {sorted(graphs.paths)}")
    session = inference_session(graphs.paths[stage], threads)
    opened: OnnxStage
    if stage == "transformer":
        opened = TransformerStage(session, graphs.inputs)
    elif stage == "classifier":
        opened = ClassifierStage(session)
    elif stage == "regressor":
        opened = RegressorStage(session)
    else:
        opened = InverseLabelStage(session, graphs.labels)
    if graphs.specs is not None:
        opened.matches(graphs.specs[stage])
    return opened


PROBE_TEXT = "This dress is lovely but the fabric is thinner than I expected, so I am returning it. " * 6
"""A long review (about 100 words): the cost of a demanding single record, measured at start-up."""


class LocalStages:
    """The stages of one model, run in this process.

    ``run(stage, value)`` is the one call the pipeline makes per stage.  ``inline`` says whether the stages
    are light enough to run on a server's event loop (set from the pipeline's start-up probe).
    """

    local = True

    def __init__(self, graphs: ModelGraphs, *, threads: int = 1) -> None:
        self.graphs = graphs
        self.regression = graphs.is_regression
        self.stages: dict[str, OnnxStage] = {
            stage: open_stage(graphs, stage, threads) for stage in graphs.paths
        }
        estimator = self.stages["regressor" if self.regression else "classifier"]
        transformer = self.stages["transformer"]
        produced, taken = transformer.outputs[FEATURES].type, estimator.inputs[FEATURES].type
        widths = (transformer.width(FEATURES, output=True), estimator.width(FEATURES, output=False))
        if produced != taken or (None not in widths and widths[0] != widths[1]):
            raise ModelIntegrityError(
                f"the transformer gives features {produced} of width {widths[0]}, the {estimator.name} takes "
                f"{taken} of width {widths[1]}: the stages do not fit each other"
            )
        self._check_classes()
        self.inline = False

    def run(self, stage: str, value: np.ndarray) -> Any:
        """Run one stage: ``transformer`` (columns), ``classifier``/``regressor`` (features) or
        ``inverse_label`` (class indices)."""
        runner = self.stages[stage]
        if isinstance(runner, TransformerStage):
            return runner.transform(value)
        if isinstance(runner, ClassifierStage):
            return runner.classify(value)
        if isinstance(runner, RegressorStage):
            return runner.regress(value)
        assert isinstance(runner, InverseLabelStage)
        return runner.inverse(value)

    def probe_record(self) -> np.ndarray:
        """One long record ``(1, n_inputs)``: text for string columns, 0 for numeric ones."""
        inputs = self.graphs.inputs
        return np.array([[PROBE_TEXT if c.dtype == "string" else 0.0 for c in inputs]], dtype=object)

    def _check_classes(self) -> None:
        """Run the probe record once: the classifier must give one probability per manifest label.  (It also
        warms the sessions, so a first client does not pay for onnxruntime's lazy initialisation.)"""
        features = self.run("transformer", self.probe_record())
        if self.regression:
            values = self.run("regressor", features)
            if len(values) != 1:
                raise ModelIntegrityError(f"the regressor gives {len(values)} values for one record")
            return
        labels = self.graphs.labels
        probabilities = np.asarray(self.run("classifier", features))
        if probabilities.shape != (1, len(labels)):
            raise ModelIntegrityError(
                f"the classifier gives {probabilities.shape[-1]} class probabilities per record, but the "
                f"manifest has {len(labels)} labels"
            )

"""THE orchestrator: decoded records → validated, clipped columns → the stages → predictions.

Every caller goes through :class:`Pipeline`: the HTTP protocols (``predict_async``), ``tripod predict``,
``tripod bias --model``, export's parity check and the benchmarks (``predict``).  The order of the stages is
written once, in :meth:`Pipeline._flow`, a generator that yields each stage call; a synchronous and an
asynchronous driver run it, so the stages can live in this process (:class:`~services.runtime.stages.LocalStages`)
or behind BentoML stage services (``services/http/stages.py``) without a second copy of the sequence.

Large calls run in bounded chunks (``chunk_rows``): a dense TF-IDF feature matrix is 60 KB per record, so a
10,000-record request in one piece needed 600 MB for features alone and left onnxruntime holding more than
1 GB; in chunks the peak stays near one chunk's worth.  The chunks of an async call run on a thread, so health
checks are answered while a big request runs.

Hooks: :class:`Observer` objects see each stage's duration and each finished call (with its validated
columns and answer).  Metrics attach here today; data capture attaches here later, without touching the stage
code.  Explanations (``services/runtime/explain``) are a second entry point over the same flow: the exact
explainer reads the features the flow computed (a tap on the transformer's output), the model-agnostic one
runs its masked records through the same stages.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from services.artifacts import InputColumn, Manifest, ModelArtifact, ModelGraphs
from services.errors import InvalidInput, PayloadTooLarge
from services.runtime.explain.explanation import Explanation
from services.runtime.explain.linear import LinearExplainer
from services.runtime.explain.options import ExplainOptions
from services.runtime.explain.sampling import SamplingExplainer, SamplingPlan
from services.runtime.limits import DEFAULT_LIMITS, Limits
from services.runtime.predictions import PredictionBatch, concat
from services.runtime.schema import Decoded, InputSchema
from services.runtime.stages import LocalStages, class_indices

Flow = Generator[tuple[str, Any], Any, PredictionBatch]
ExplainFlow = Generator[
    tuple[np.ndarray, list[np.ndarray] | None], PredictionBatch, tuple[PredictionBatch, list[Explanation]]
]


@dataclass
class Call:
    """One call of the pipeline, as observers see it.

    Attributes:
        route: where it came from (``/predict``, ``/invocations``, ``cli``, …).
        columns: the validated, clipped inputs ``(n_samples, n_inputs)``, set once validated.
        started: ``time.perf_counter()`` when the call began.
    """

    route: str = ""
    columns: np.ndarray | None = None
    started: float = field(default_factory=time.perf_counter)


class Observer:
    """A hook on the pipeline.  Subclass and override what you need; the base methods do nothing.

    Observers run inline on the request path (on the event loop, or on a worker thread for heavy models), so
    they must be quick and must not raise.
    """

    def stage_done(self, stage: str, seconds: float) -> None:
        """A stage (``transformer``, ``classifier``, ``inverse_label``, ``regressor``), the schema check
        (``validate``), or a protocol step timed with :meth:`Pipeline.timed` (``decode``, ``encode``) took
        ``seconds``."""

    def call_done(self, call: Call, batch: PredictionBatch) -> None:
        """A call finished: ``call.columns`` were answered by ``batch`` (rows in the same order)."""


class StageRunner(Protocol):
    """Where the stages run: in this process, or behind BentoML stage services."""

    local: bool
    inline: bool
    regression: bool

    def run(self, stage: str, value: Any) -> Any: ...


class RemoteStages(StageRunner, Protocol):
    def run_async(self, stage: str, value: Any) -> Awaitable[Any]: ...


class _Timer:
    """Times a block into every observer's :meth:`Observer.stage_done` (a slotted class rather than a
    ``contextlib`` generator: the entry worker times several blocks per request, and the generator machinery
    cost more than the timing itself under py-spy)."""

    __slots__ = ("name", "observers", "started")

    def __init__(self, name: str, observers: Sequence[Observer]) -> None:
        self.name = name
        self.observers = observers
        self.started = 0.0

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, *_: object) -> None:
        seconds = time.perf_counter() - self.started
        for observer in self.observers:
            observer.stage_done(self.name, seconds)


class Pipeline:
    """One model's inference path.  Build it once per process; it is safe to call from several threads."""

    def __init__(
        self,
        graphs: ModelGraphs,
        stages: StageRunner,
        *,
        manifest: Manifest | None = None,
        limits: Limits = DEFAULT_LIMITS,
        observers: Sequence[Observer] = (),
    ) -> None:
        self.graphs = graphs
        self._manifest = manifest
        self.stages = stages
        self.limits = limits
        self.observers: tuple[Observer, ...] = tuple(observers)
        self.schema = InputSchema(graphs.inputs, max_text_chars=limits.max_text_chars)
        self.regression = graphs.is_regression
        self.class_names = tuple(graphs.labels)
        self.sampler = SamplingExplainer(graphs.inputs, regression=self.regression)
        self._linear: LinearExplainer | None = None
        self._linear_lock = threading.Lock()

    @classmethod
    def from_directory(
        cls,
        model_dir: Path,
        *,
        threads: int = 1,
        limits: Limits = DEFAULT_LIMITS,
        observers: Sequence[Observer] = (),
    ) -> Pipeline:
        """Verify a model directory and open its stages in this process.

        Raises:
            ModelIntegrityError: the directory, its manifest or its graphs do not hold together.
        """
        artifact = ModelArtifact.from_directory(model_dir)
        graphs = artifact.graphs
        stages = LocalStages(graphs, threads=threads)
        return cls(graphs, stages, manifest=artifact.manifest, limits=limits, observers=observers)

    @classmethod
    def from_stage_files(
        cls,
        paths: Mapping[str, Path],
        inputs: Sequence[InputColumn],
        labels: Sequence[str],
        *,
        threads: int = 1,
        limits: Limits = DEFAULT_LIMITS,
    ) -> Pipeline:
        """Open stage files that have no manifest yet: export's parity check and the search's latency
        measurement run the serving code on what they are about to publish."""
        graphs = ModelGraphs.from_files(paths, inputs, labels)
        return cls(graphs, LocalStages(graphs, threads=threads), limits=limits)

    @property
    def manifest(self) -> Manifest:
        """The manifest of the model directory this pipeline serves."""
        if self._manifest is None:
            raise ValueError("a pipeline built from stage files has no manifest")
        return self._manifest

    @property
    def input_names(self) -> list[str]:
        return self.schema.names

    def add_observer(self, observer: Observer) -> None:
        self.observers = (*self.observers, observer)

    def timed(self, step: str) -> _Timer:
        """Time a protocol step (``decode``, ``encode``) into the observers, like a stage."""
        return _Timer(step, self.observers)

    # -- entry points -------------------------------------------------------------------------------------

    def validate(self, decoded: Decoded) -> np.ndarray:
        """The record limit, then the schema: validated, clipped columns ``(n_samples, n_inputs)``.

        Raises:
            PayloadTooLarge: more records than ``max_records``.
            SchemaError, InvalidInput: see :meth:`InputSchema.columns`.
        """
        limit = self.limits.max_records
        if limit is not None and len(decoded) > limit:
            raise PayloadTooLarge(f"{len(decoded)} records is more than the limit of {limit}")
        with _Timer("validate", self.observers):
            return self.schema.columns(decoded)

    def predict(self, decoded: Decoded, call: Call | None = None) -> PredictionBatch:
        """Predict synchronously, in this thread (local stages only)."""
        call = call or Call()
        call.columns = columns = self.validate(decoded)
        batch = concat([self._drive(chunk) for chunk in self._chunks(columns)])
        self._done(call, batch)
        return batch

    async def predict_async(self, decoded: Decoded, call: Call | None = None) -> PredictionBatch:
        """Predict without blocking the event loop for long.

        A light local call of one chunk runs right here: handing 0.1 ms of work to a thread costs more than
        the work, and the thread then waits up to the interpreter's 5 ms switch interval for the loop to
        release the GIL (measured: stage times grew from 0.3 to 2-6 ms under concurrency).  Heavy local stages,
        and every chunk of a call that needs several, run on a thread (onnxruntime releases the GIL, so the
        loop keeps answering other requests and health checks meanwhile); remote stages are awaited.
        """
        call = call or Call()
        return await self.predict_columns_async(self.validate(decoded), call)

    async def predict_columns_async(self, columns: np.ndarray, call: Call | None = None) -> PredictionBatch:
        """:meth:`predict_async` of columns another pipeline with the same inputs validated (a shadow
        variant answers the copy of a request this way, without decoding it again)."""
        call = call or Call()
        call.columns = columns
        chunks = self._chunks(columns)
        parts = []
        for chunk in chunks:
            if not self.stages.local:
                parts.append(await self._drive_async(chunk))
            elif self.stages.inline and len(chunks) == 1:
                parts.append(self._drive(chunk))
            else:
                parts.append(await asyncio.to_thread(self._drive, chunk))
        batch = concat(parts)
        self._done(call, batch)
        return batch

    def probe_ms(self, repeats: int = 5) -> float:
        """Median milliseconds of all stages on one long record (local stages), measured at start-up to
        decide whether they may run on the event loop."""
        assert isinstance(self.stages, LocalStages)
        record = self.stages.probe_record()
        timings = []
        for _ in range(repeats):
            started = time.perf_counter()
            self._drive(record)
            timings.append(1000 * (time.perf_counter() - started))
        return float(np.median(timings))

    # -- explanations -------------------------------------------------------------------------------------

    @property
    def has_exact_explainer(self) -> bool:
        """Whether the model was exported with ``explainer.onnx`` (linear models)."""
        return self._manifest is not None and self._manifest.explainer is not None

    def explain(
        self, decoded: Decoded, options: ExplainOptions, call: Call | None = None
    ) -> tuple[PredictionBatch, list[Explanation]]:
        """Predict and explain synchronously (local stages): the answers and one explanation per record.

        Raises:
            InvalidInput: ``method=linear`` for a model without an exact explainer, or a record with more
                fields than the sampling budget can give a share.
        """
        call = call or Call()
        call.columns = self.validate(decoded)
        flow = self._explain_flow(call.columns, options)
        request = next(flow)
        while True:
            try:
                request = flow.send(self._drive(*request))
            except StopIteration as finished:
                batch, explained = finished.value
                break
        self._done(call, batch)
        return batch, explained

    async def explain_async(
        self, decoded: Decoded, options: ExplainOptions, call: Call | None = None
    ) -> tuple[PredictionBatch, list[Explanation]]:
        """:meth:`explain` without blocking the event loop for long: right here when the stages are light (see
        :meth:`predict_async`) and the exact explainer answers one chunk (it is one small graph more than a
        prediction), on a thread for other local calls (sampling is many model calls), awaited stage by stage
        for remote stages."""
        if self.stages.local:
            light = self.stages.inline and len(decoded) <= self.limits.chunk_rows
            if light and self._explainer(options) is not None:
                return self.explain(decoded, options, call)
            return await asyncio.to_thread(self.explain, decoded, options, call)
        call = call or Call()
        call.columns = self.validate(decoded)
        flow = self._explain_flow(call.columns, options)
        request = next(flow)
        while True:
            try:
                request = flow.send(await self._drive_async(*request))
            except StopIteration as finished:
                batch, explained = finished.value
                break
        self._done(call, batch)
        return batch, explained

    def _explain_flow(self, columns: np.ndarray, options: ExplainOptions) -> ExplainFlow:
        """What an explanation runs, written once: yields ``(rows, tap)`` for the stages and receives their
        answer; returns the records' answers and explanations.  The exact explainer taps each chunk's
        features; sampling runs its masked records through the same stages."""
        linear = self._explainer(options)
        batches: list[PredictionBatch] = []
        explained: list[Explanation] = []
        for chunk in self._chunks(columns):
            tap: list[np.ndarray] = []
            batch = yield chunk, tap
            batches.append(batch)
            if linear is not None:
                explained += linear.explain(chunk, tap[0])
                continue
            plans = [self.sampler.plan(row, options) for row in chunk]
            rows = _evaluation_rows(plans, len(self.input_names))
            parts = []
            for part in self._chunks(rows) if len(rows) else []:
                parts.append((yield part, None))
            explained += self._finish(plans, parts, batch)
        return concat(batches), explained

    def _explainer(self, options: ExplainOptions) -> LinearExplainer | None:
        """The exact explainer when the options and the model allow it; None means sampling."""
        if options.method == "sampling" or (options.method == "auto" and not self.has_exact_explainer):
            return None
        if not self.has_exact_explainer:
            raise InvalidInput(
                "this model has no exact explainer (only linear models are exported with one); "
                "use method=sampling or method=auto"
            )
        with self._linear_lock:
            if self._linear is None:
                spec = self.manifest.explainer
                assert spec is not None
                outputs = 1 if self.regression else len(self.class_names)
                directory = self.graphs.paths["transformer"].parent
                self._linear = LinearExplainer(directory, spec, self.graphs.inputs, outputs)
            return self._linear

    def _finish(
        self, plans: Sequence[SamplingPlan], parts: Sequence[PredictionBatch], batch: PredictionBatch
    ) -> list[Explanation]:
        outputs = _outputs(concat(parts)) if parts else np.zeros((0, 1))
        full = _outputs(batch)
        explained = []
        start = 0
        for plan, record in zip(plans, full, strict=True):
            count = len(plan.rows)
            explained.append(plan.finish(outputs[start : start + count], record))
            start += count
        return explained

    # -- the flow -----------------------------------------------------------------------------------------

    def _flow(self, columns: np.ndarray, tap: list[np.ndarray] | None = None) -> Flow:
        """The stage sequence, the only place it is written: yields ``(stage, input)``, receives its output.

        Args:
            tap: receives the features (the exact explainer reads them).
        """
        features = yield "transformer", columns
        if tap is not None:
            tap.append(features)
        if self.regression:
            values = yield "regressor", features
            return PredictionBatch(values=np.asarray(values, dtype=np.float64).reshape(-1))
        probabilities = yield "classifier", features
        labels = yield "inverse_label", class_indices(probabilities)
        return PredictionBatch(np.asarray(labels, dtype=object), np.asarray(probabilities), self.class_names)

    def _drive(self, columns: np.ndarray, tap: list[np.ndarray] | None = None) -> PredictionBatch:
        flow = self._flow(columns, tap)
        stage, value = next(flow)
        while True:
            with _Timer(stage, self.observers):
                output = self.stages.run(stage, value)
            try:
                stage, value = flow.send(output)
            except StopIteration as finished:
                return finished.value

    async def _drive_async(self, columns: np.ndarray, tap: list[np.ndarray] | None = None) -> PredictionBatch:
        stages = self.stages
        assert hasattr(stages, "run_async")
        flow = self._flow(columns, tap)
        stage, value = next(flow)
        while True:
            with _Timer(stage, self.observers):
                output = await stages.run_async(stage, value)
            try:
                stage, value = flow.send(output)
            except StopIteration as finished:
                return finished.value

    def _chunks(self, columns: np.ndarray) -> list[np.ndarray]:
        size = self.limits.chunk_rows
        if len(columns) <= size:
            return [columns]
        return [columns[start : start + size] for start in range(0, len(columns), size)]

    def _done(self, call: Call, batch: PredictionBatch) -> None:
        for observer in self.observers:
            observer.call_done(call, batch)


def _evaluation_rows(plans: Sequence[SamplingPlan], n_inputs: int) -> np.ndarray:
    """Every plan's rows, one array ``(n_evaluations, n_inputs)``."""
    if not plans:
        return np.empty((0, n_inputs), dtype=object)
    return np.concatenate([plan.rows for plan in plans]).reshape(-1, n_inputs)


def _outputs(batch: PredictionBatch) -> np.ndarray:
    """What the sampling method explains: class probabilities ``(n, C)``, or values ``(n, 1)``."""
    if batch.values is not None:
        return np.asarray(batch.values, dtype=np.float64).reshape(-1, 1)
    assert batch.probabilities is not None
    return np.asarray(batch.probabilities, dtype=np.float64)

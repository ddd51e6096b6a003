"""The BentoML pipeline: Transformer → Classifier → InverseLabel stages behind the ``Tripod`` entry.

The entry service validates requests, runs the three ONNX stages and shapes the answer.  Where the stages run
is a deployment choice (``TRIPOD_STAGES``), the code path is the same:

- ``local`` (default): every entry worker holds the three stage sessions (:class:`InferencePipeline`, the
  runtime batch transform and the benchmarks use) and runs them: on the event loop when a start-up probe
  finds them light, on a thread otherwise (:meth:`Tripod.run_pipeline`).  For CPU models whose stages
  take well under a millisecond (TF-IDF: 0.1 ms for all three) this is the fast choice: a hop between
  BentoML services costs 4.5-6 ms and ships the features between processes (1.9 MB of dense TF-IDF per 32
  reviews), measured in docs/benchmarks.md.
- ``services``: each stage is its own BentoML service with adaptive batching, composed with
  ``bentoml.depends``, so a heavy stage (a transformer encoder) batches across requests and can be given more
  workers without touching the others.

BentoML fixes batching, worker counts and dependencies when the classes are declared, so this module reads
:class:`ServingSettings` once, at import, and nowhere else.

The entry service speaks three protocols over one inference path, :meth:`Tripod.run_pipeline`:

- ``POST /predict``: Tripod's own JSON records (a typed BentoML API);
- ``POST /invocations``, ``GET /ping``, ``GET /execution-parameters``: the SageMaker container contract;
- ``/v2/...``: the Open Inference Protocol (KServe v2, Triton's HTTP API).

The last two need GET routes and raw bodies (CSV, JSON Lines, binary tensors), so they live in a FastAPI
app mounted on the entry service; its routes are methods, so they reach the stages through ``self``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any

import bentoml
import numpy as np
from bentoml.validators import ContentType
from fastapi import FastAPI, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from services import oip, sagemaker
from services.artifacts import Manifest, load_manifest
from services.errors import ModelNotFound, PayloadTooLarge
from services.http_errors import install_error_handlers, maps_errors
from services.limits import BodyLimitMiddleware
from services.metrics import tripod_metrics
from services.runtime import (
    ClassifierStage,
    InferencePipeline,
    InverseLabelStage,
    PredictionBatch,
    RegressorStage,
    TransformerStage,
    class_indices,
    clip_text,
    format_predictions,
    format_values,
    records_to_columns,
)
from services.settings import ServingSettings

logger = logging.getLogger("tripod.service")
SETTINGS = ServingSettings.from_env()
STAGE_SERVICES = SETTINGS.stages == "services"
_STAGE = {
    "workers": SETTINGS.stage_workers,
    "threads": SETTINGS.threads,
    "traffic": {"timeout": SETTINGS.timeout_s},
}
READY_TIMEOUT_S = 1
"""How long a readiness route waits for the stages: SageMaker wants ``/ping`` answered within 2 s."""
MAX_CONCURRENT_TRANSFORMS_PER_WORKER = 4
"""What ``/execution-parameters`` advises per entry worker; see docs/api.md for the measurement."""


def _batching(stage: str) -> dict[str, Any]:
    return {"batchable": True, **SETTINGS.batching(stage)}


def _stage_path(stage: str) -> tuple[Manifest, Path]:
    manifest = load_manifest(SETTINGS.model_dir)
    return manifest, SETTINGS.model_dir.resolve() / manifest.stages[stage].file  # type: ignore[index]


def _tripod_version() -> str:
    try:
        return version("tripod")
    except PackageNotFoundError:  # running from a Bento's source tree, not an install
        return "unknown"


class ClassPrediction(BaseModel):
    """One record's answer from a classification model."""

    predicted_label: str = Field(description="the most probable label")
    probability: float = Field(description="probability of predicted_label")
    probabilities: dict[str, float] = Field(description="probability of every label")


class ValuePrediction(BaseModel):
    """One record's answer from a regression model."""

    predicted_value: float


Prediction = ClassPrediction | ValuePrediction
Predictions = Annotated[list[Prediction], ContentType("application/json")]
"""``/predict``'s answer.  The declared content type matters for speed: without it BentoML derives the media
type from the answer model's JSON schema on every response, which for this union took a fifth of the entry
worker's time (py-spy, 32-review requests; docs/benchmarks.md)."""


@bentoml.service(name="tripod_transformer", **_STAGE)
class Transformer:
    """Raw columns ``(n_samples, n_inputs)`` → features ``(n_samples, n_features)``."""

    def __init__(self) -> None:
        _, path = _stage_path("transformer")
        self.stage = TransformerStage(path, threads=SETTINGS.onnx_threads)
        settle_heap()

    @bentoml.api(**_batching("transformer"))
    def transform(self, columns: np.ndarray) -> np.ndarray:
        return self.stage.transform(columns)


@bentoml.service(name="tripod_classifier", **_STAGE)
class Classifier:
    """The algorithm stage: features → class probabilities ``(n_samples, n_classes)``, or for a regression
    model (whose second stage is ``regressor.onnx``) predicted values ``(n_samples,)``."""

    def __init__(self) -> None:
        manifest = load_manifest(SETTINGS.model_dir)
        regression = manifest.problem_type == "regression"
        _, path = _stage_path("regressor" if regression else "classifier")
        self.stage = (RegressorStage if regression else ClassifierStage)(path, threads=SETTINGS.onnx_threads)
        settle_heap()

    @bentoml.api(**_batching("classifier"))
    def classify(self, features: np.ndarray) -> np.ndarray:
        if isinstance(self.stage, RegressorStage):
            return self.stage.regress(features)
        return self.stage.classify(features)


@bentoml.service(name="tripod_inverse_label", **_STAGE)
class InverseLabel:
    """Class indices ``(n_samples,)`` → label strings.  A regression model has no such stage: the service
    still starts (the entry declares it statically) but is never called."""

    def __init__(self) -> None:
        manifest = load_manifest(SETTINGS.model_dir)
        self.stage = None
        if "inverse_label" in manifest.stages:
            _, path = _stage_path("inverse_label")
            self.stage = InverseLabelStage(path, threads=SETTINGS.onnx_threads)
        settle_heap()

    @bentoml.api(**_batching("inverse_label"))
    def inverse(self, indices: np.ndarray) -> list[str]:
        if self.stage is None:
            raise RuntimeError("a regression model has no inverse-label stage")
        return [str(label) for label in self.stage.inverse(indices)]


protocols = FastAPI(title="Tripod protocols", docs_url=None, redoc_url=None, openapi_url=None)
install_error_handlers(protocols)

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": oip.ErrorBody, "description": description}
    for status, description in {
        400: "undecodable body, invalid UTF-8, or a bad request parameter",
        404: "no model of that name",
        406: "Accept names no type this route produces",
        413: "body or record count over the limit",
        415: "unsupported Content-Type",
        422: "a record does not fit the input schema (names the record and field)",
    }.items()
}
_TEXT_SCHEMA = {"schema": {"type": "string"}}
_RECORD_SCHEMA: dict[str, Any] = {"oneOf": [{"type": "object"}, {"type": "array"}]}
_INVOCATIONS_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            sagemaker.CSV: _TEXT_SCHEMA,
            sagemaker.JSON: {
                "schema": {
                    "oneOf": [
                        {
                            "type": "object",
                            "properties": {"instances": {"type": "array", "items": _RECORD_SCHEMA}},
                            "required": ["instances"],
                        },
                        {"type": "array", "items": _RECORD_SCHEMA},
                    ]
                }
            },
            sagemaker.JSONLINES: _TEXT_SCHEMA,
        },
    }
}
_INFER_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": oip.inline_schema(oip.InferenceRequest)}},
    }
}


@bentoml.asgi_app(protocols)
@bentoml.service(name="tripod", workers=SETTINGS.workers, traffic={"timeout": SETTINGS.timeout_s})
class Tripod:
    """The entry service: decodes requests of every protocol, runs the three stages, encodes the answers."""

    if STAGE_SERVICES:
        transformer = bentoml.depends(Transformer)
        classifier = bentoml.depends(Classifier)
        inverse_label = bentoml.depends(InverseLabel)

    def __init__(self) -> None:
        self.manifest = load_manifest(SETTINGS.model_dir)
        self.regression = self.manifest.problem_type == "regression"
        self.local: InferencePipeline | None = None
        if STAGE_SERVICES:
            for stage in (self.transformer, self.classifier, self.inverse_label):
                keep_client_session(stage)
        else:
            self.local = InferencePipeline.from_directory(SETTINGS.model_dir, threads=SETTINGS.onnx_threads)
            self.probe_ms = probe_ms(self.local)
            self.inline = self.probe_ms < SETTINGS.inline_below_ms
            logger.info(
                "stages run in this worker, %s: %.2f ms for a long record (inline below %g ms)",
                "on the event loop" if self.inline else "on a thread",
                self.probe_ms,
                SETTINGS.inline_below_ms,
            )
        self.metrics = tripod_metrics()
        self.metrics.model_info.labels(
            model=self.manifest.name, version=self.manifest.version, candidate=self.manifest.candidate.family
        ).set(1)
        settle_heap()

    async def run_pipeline(self, columns: np.ndarray) -> PredictionBatch:
        """The one inference path of every protocol: limits, then transformer → classifier → inverse label.

        Args:
            columns: validated object array ``(n_samples, n_inputs)`` in manifest input order.

        Raises:
            PayloadTooLarge: more records than ``max_records``.
            InvalidInput: a text field that is not valid Unicode.
        """
        n = len(columns)
        check_record_count(n)
        columns = clip_text(columns, self.manifest.inputs, SETTINGS.max_text_chars)
        self.metrics.request_records.observe(n)
        if self.local is not None:
            # A light model (TF-IDF: 0.1-0.3 ms) runs right here: handing it to a thread would cost more than
            # the work, and the thread then waits for the event loop to let go of the GIL (up to its 5 ms
            # switch interval) -- measured as stage times growing from 0.3 to 2-6 ms under concurrency.
            # A heavy one (a transformer encoder) runs on a thread so the loop keeps taking requests.
            if self.inline:
                batch = self._run_local(columns)
            else:
                batch = await asyncio.to_thread(self._run_local, columns)
        else:
            batch = await self._run_services(columns)
        self.metrics.count_predictions(self.manifest.name, self.manifest.version, batch.labels, n)
        return batch

    def _run_local(self, columns: np.ndarray) -> PredictionBatch:
        """The stages in this worker, timed one by one like the remote ones (on a thread for a heavy model:
        onnxruntime releases the GIL, so the event loop keeps parsing requests meanwhile)."""
        assert self.local is not None
        with self.metrics.timed("transformer"):
            features = self.local.transformer.transform(columns)
        if self.regression:
            with self.metrics.timed("regressor"):
                return PredictionBatch(values=self.local.estimator.regress(features))  # type: ignore[union-attr]
        with self.metrics.timed("classifier"):
            scores = self.local.estimator.classify(features)  # type: ignore[union-attr]
        assert self.local.inverse_label is not None
        with self.metrics.timed("inverse_label"):
            labels = np.asarray(self.local.inverse_label.inverse(class_indices(scores)), dtype=object)
        return PredictionBatch(labels, scores, tuple(self.manifest.labels))

    async def _run_services(self, columns: np.ndarray) -> PredictionBatch:
        """The stages as BentoML services (``TRIPOD_STAGES=services``), each batching across requests."""
        with self.metrics.timed("transformer"):
            features = await self.transformer.to_async.transform(columns)
        with self.metrics.timed("regressor" if self.regression else "classifier"):
            scores = await self.classifier.to_async.classify(features)
        if self.regression:
            return PredictionBatch(values=np.asarray(scores, dtype=np.float64).reshape(-1))
        with self.metrics.timed("inverse_label"):
            labels = np.asarray(
                await self.inverse_label.to_async.inverse(class_indices(scores)), dtype=object
            )
        return PredictionBatch(labels, np.asarray(scores), tuple(self.manifest.labels))

    async def stages_ready(self) -> bool:
        """Whether every stage service answers its readiness probe (in-process stages always do)."""
        from _bentoml_impl.client import RemoteProxy

        if not STAGE_SERVICES:
            return True
        proxies = [getattr(self, name) for name in ("transformer", "classifier", "inverse_label")]
        probes = [proxy.is_ready(READY_TIMEOUT_S) for proxy in proxies if isinstance(proxy, RemoteProxy)]
        return all(await asyncio.gather(*probes))

    def _model(self, name: str, model_version: str | None = None) -> Manifest:
        if name != self.manifest.name or model_version not in (None, "", self.manifest.version):
            wanted = name if not model_version else f"{name} version {model_version}"
            raise ModelNotFound(
                f"no model {wanted!r}; this server serves {self.manifest.name!r} {self.manifest.version}"
            )
        return self.manifest

    @bentoml.api(route="/predict")
    @maps_errors
    async def predict(self, records: list[dict[str, Any]]) -> Predictions:
        """Predict a label for each record; its fields are the model's input columns."""
        check_record_count(len(records))
        with self.metrics.timed("decode"):
            columns = records_to_columns(records, self.manifest.inputs)
        batch = await self.run_pipeline(columns)
        if batch.values is not None:
            return [ValuePrediction(**row) for row in format_values(batch.values)]
        assert batch.labels is not None and batch.probabilities is not None
        return [
            ClassPrediction(**row)
            for row in format_predictions(batch.labels, batch.probabilities, batch.class_names)
        ]

    # SageMaker container contract ---------------------------------------------------------------------------

    @protocols.get("/ping", tags=["SageMaker"], summary="SageMaker health check: 200 with an empty body")
    @maps_errors
    async def ping(self) -> Response:
        return Response(status_code=200 if await self.stages_ready() else 503)

    @protocols.post(
        "/invocations",
        tags=["SageMaker"],
        summary="SageMaker inference: CSV, JSON or JSON Lines records in; Accept picks the answer",
        openapi_extra=_INVOCATIONS_BODY,
        responses={200: {"content": {t: {} for t in sagemaker.ACCEPT_TYPES}}, **_ERRORS},
    )
    @maps_errors
    async def invocations(
        self,
        request: Request,
        keys: str | None = Query(
            None,
            description="comma-separated answer keys: predicted_label, probability, probabilities, labels",
        ),
    ) -> Response:
        headers = request.headers
        answer = sagemaker.answer_format(headers.get("accept"), SETTINGS.default_accept)
        chosen = sagemaker.response_keys(
            keys if keys is not None else headers.get(sagemaker.RESPONSE_KEYS_HEADER),
            SETTINGS.response_keys,
            regression=self.regression,
        )
        body = await request.body()
        with self.metrics.timed("decode"):
            columns = sagemaker.decode_body(body, headers.get("content-type"), self.manifest.inputs)
        batch = await self.run_pipeline(columns)
        with self.metrics.timed("encode"):
            content = sagemaker.encode_answer(sagemaker.answer_records(batch, chosen), answer)
        echo = (
            {sagemaker.CUSTOM_ATTRIBUTES: attributes}
            if (attributes := headers.get(sagemaker.CUSTOM_ATTRIBUTES))
            else {}
        )
        return Response(content, media_type=answer, headers=echo)

    @protocols.get(
        "/execution-parameters", tags=["SageMaker"], summary="SageMaker batch transform parameters"
    )
    @maps_errors
    async def execution_parameters(self) -> dict[str, object]:
        return sagemaker.execution_parameters(
            max_concurrent_transforms=MAX_CONCURRENT_TRANSFORMS_PER_WORKER * SETTINGS.workers,
            max_request_bytes=SETTINGS.max_request_bytes,
        )

    # Open Inference Protocol v2 -----------------------------------------------------------------------------

    @protocols.get("/v2", tags=["Open Inference Protocol"], response_model=oip.ServerMetadata)
    @maps_errors
    async def server_metadata(self) -> oip.ServerMetadata:
        return oip.ServerMetadata(name="tripod", version=_tripod_version(), extensions=["binary_tensor_data"])

    @protocols.get("/v2/health/live", tags=["Open Inference Protocol"])
    @maps_errors
    async def server_live(self) -> dict[str, bool]:
        return {"live": True}

    @protocols.get("/v2/health/ready", tags=["Open Inference Protocol"])
    @maps_errors
    async def server_ready(self) -> Response:
        ready = await self.stages_ready()
        return Response(
            f'{{"ready": {str(ready).lower()}}}',
            status_code=200 if ready else 503,
            media_type="application/json",
        )

    @protocols.get(
        "/v2/models/{model_name}",
        tags=["Open Inference Protocol"],
        response_model=oip.ModelMetadata,
        responses=_ERRORS,
    )
    @maps_errors
    async def model_metadata(self, model_name: str) -> oip.ModelMetadata:
        return oip.model_metadata(self._model(model_name))

    @protocols.get(
        "/v2/models/{model_name}/versions/{model_version}",
        tags=["Open Inference Protocol"],
        response_model=oip.ModelMetadata,
        responses=_ERRORS,
    )
    @maps_errors
    async def model_version_metadata(self, model_name: str, model_version: str) -> oip.ModelMetadata:
        return oip.model_metadata(self._model(model_name, model_version))

    @protocols.get("/v2/models/{model_name}/ready", tags=["Open Inference Protocol"], responses=_ERRORS)
    @maps_errors
    async def model_ready(self, model_name: str) -> Response:
        return await self._model_ready(model_name, None)

    @protocols.get(
        "/v2/models/{model_name}/versions/{model_version}/ready",
        tags=["Open Inference Protocol"],
        responses=_ERRORS,
    )
    @maps_errors
    async def model_version_ready(self, model_name: str, model_version: str) -> Response:
        return await self._model_ready(model_name, model_version)

    async def _model_ready(self, model_name: str, model_version: str | None) -> Response:
        manifest = self._model(model_name, model_version)
        ready = await self.stages_ready()
        body = f'{{"name": "{manifest.name}", "ready": {str(ready).lower()}}}'
        return Response(body, status_code=200 if ready else 503, media_type="application/json")

    @protocols.post(
        "/v2/models/{model_name}/infer",
        tags=["Open Inference Protocol"],
        openapi_extra=_INFER_BODY,
        responses={200: {"model": oip.InferenceResponse}, **_ERRORS},
    )
    @maps_errors
    async def infer(self, model_name: str, request: Request) -> Response:
        return await self._infer(model_name, None, request)

    @protocols.post(
        "/v2/models/{model_name}/versions/{model_version}/infer",
        tags=["Open Inference Protocol"],
        openapi_extra=_INFER_BODY,
        responses={200: {"model": oip.InferenceResponse}, **_ERRORS},
    )
    @maps_errors
    async def infer_version(self, model_name: str, model_version: str, request: Request) -> Response:
        return await self._infer(model_name, model_version, request)

    async def _infer(self, model_name: str, model_version: str | None, request: Request) -> Response:
        manifest = self._model(model_name, model_version)
        body = await request.body()
        with self.metrics.timed("decode"):
            message, binary = oip.parse_request(body, request.headers.get(oip.HEADER_LENGTH))
            columns = oip.decode_inputs(message, binary, manifest.inputs)
        batch = await self.run_pipeline(columns)
        with self.metrics.timed("encode"):
            content, header_length = oip.encode_response(message, batch, manifest)
        if header_length is None:
            return Response(content, media_type="application/json")
        return Response(
            content, media_type="application/octet-stream", headers={oip.HEADER_LENGTH: str(header_length)}
        )


def keep_client_session(stage: object) -> None:
    """Stop BentoML's stage client from replacing its HTTP session while calls are in flight.

    BentoML 1.4.39's client swaps its aiohttp session every 100 calls (or 300 s) and closes the old one at
    once, which aborts the calls still running on it: with 8 concurrent clients 14 of 172 requests failed with
    a 500 (``ClientOSError``/``ServerDisconnectedError``, measured with ``benchmarks/serving_batching.py``;
    see bentoml/BentoML#5540 and #4971).  Stages are reached over a local socket, so one session for the life
    of the worker is safe.  A no-op for in-process stages and for clients without that attribute.
    """
    manager = getattr(getattr(stage, "_async", None), "_session_manager", None)
    if manager is not None and hasattr(manager, "max_requests") and hasattr(manager, "max_age"):
        manager.max_requests = sys.maxsize
        manager.max_age = float("inf")


PROBE_TEXT = "This dress is lovely but the fabric is thinner than I expected, so I am returning it. " * 6
"""A long review (about 100 words), for :func:`probe_ms`: the cost of a demanding single record."""


def probe_ms(pipeline: InferencePipeline, repeats: int = 5) -> float:
    """Median milliseconds of the three stages on one long record, measured at start-up (it also warms the
    sessions, so the first client does not pay for onnxruntime's lazy initialisation)."""
    record = np.array([[PROBE_TEXT if c.dtype == "string" else 0.0 for c in pipeline.inputs]], dtype=object)
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        pipeline.predict_array(record)
        timings.append(1000 * (time.perf_counter() - started))
    return float(np.median(timings))


def settle_heap() -> None:
    """Keep the garbage collector from stalling requests: freeze what start-up built, and after every full
    collection freeze its survivors.

    A full collection walks every tracked object that is not frozen, and a serving worker keeps creating
    long-lived ones after start-up (routes, caches, metric children).  Measured with ``benchmarks/
    serving_compare.py`` (single reviews, open loop at half the maximum rate): p99 204 ms with Python's
    defaults, 123 ms with 140x rarer young collections, 29.5 ms with the collector off, 25.5 ms with this.
    What survives a full collection is long-lived by then; freezing it means the next full collection only
    walks what came after.  Garbage without cycles is still freed at once by reference counting; the cost is
    that a cycle made unreachable after its objects were frozen is never reclaimed.
    """
    gc.collect()
    gc.freeze()
    if _freeze_survivors not in gc.callbacks:
        gc.callbacks.append(_freeze_survivors)


def _freeze_survivors(phase: str, info: dict[str, int]) -> None:
    if phase == "stop" and info.get("generation") == 2:
        gc.freeze()


def check_record_count(n: int) -> None:
    if n > SETTINGS.max_records:
        raise PayloadTooLarge(f"{n} records is more than the limit of {SETTINGS.max_records}")


Tripod.add_asgi_middleware(BodyLimitMiddleware, max_bytes=SETTINGS.max_request_bytes)

"""The ``tripod`` entry service: one pipeline per worker, and every protocol mounted on it.

Where the stages run is a deployment choice (``TRIPOD_STAGES``); the code path is the same:

- ``local`` (default): every entry worker holds the stage sessions and runs them — on the event loop when a
  start-up probe finds them light, on a thread otherwise.  For CPU models whose stages take well under a
  millisecond (TF-IDF: 0.1 ms for all three) this is the fast choice: a hop between BentoML services costs
  4.5-6 ms and ships the features between processes (1.9 MB of dense TF-IDF per 32 reviews), measured in
  docs/benchmarks.md.
- ``services``: each stage is its own BentoML service with adaptive batching (``services/http/stages.py``),
  composed with ``bentoml.depends``, so a heavy stage batches across requests and scales apart.

Protocols: ``POST /predict`` is a typed BentoML API here; the SageMaker contract and the Open Inference
Protocol need GET routes and raw bodies (CSV, JSON Lines, binary tensors), so they are FastAPI routers
(``services/http/sagemaker.py``, ``services/http/oip.py``) on an app mounted on this service.  Every route
reaches the same :class:`~services.runtime.pipeline.Pipeline` through :class:`ServingState`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

import bentoml
from fastapi import FastAPI
from fastapi.responses import Response

from services.artifacts import ModelArtifact
from services.http import auth, explain, logs, oip, protocol, sagemaker, timeouts, variants
from services.http.config import SETTINGS, STAGE_SERVICES, VARIANTS
from services.http.errors import JsonErrorsMiddleware, install_error_handlers
from services.http.fast_predict import FastPredictMiddleware, predict_records
from services.http.limits import RequestBodyMiddleware
from services.http.predict import Predictions
from services.http.requestid import RequestContextMiddleware, RequestLogObserver
from services.http.stages import STAGE_ROLES, ServiceStages, stage_services
from services.http.state import ServingState
from services.http.swap import ModelSlot, ModelWatcher
from services.http.tracing import service_tracing
from services.http.variants import ShadowInputs, Variant, Variants, VariantsWatcher
from services.http.worker import die_with_parent, settle_heap
from services.monitoring import capture
from services.monitoring.metrics import (
    MetricsObserver,
    TrafficMetricsMiddleware,
    metrics_text,
    tripod_metrics,
)
from services.monitoring.variants import served_variants
from services.runtime.memory import ReleaseMemory
from services.runtime.pipeline import Observer, Pipeline, StageRunner
from services.runtime.stages import LocalStages

logger = logging.getLogger("tripod.service")

# uvicorn must use Tripod's protocol (header deadline, JSON framing errors) and BentoML Tripod's request timeout
# (which frees each request when it ends) in this worker; BentoML imports this module before it builds uvicorn's
# configuration and the app's middleware, which is the only moment to say so.
protocol.install(SETTINGS.read_timeout_s)
timeouts.install()
logs.install(
    SETTINGS.log_format, access_log=SETTINGS.access_log
)  # BentoML configured the worker's logging before importing this module

app = FastAPI(title="Tripod protocols", docs_url=None, redoc_url=None, openapi_url=None)
install_error_handlers(app)
app.include_router(sagemaker.router)
app.include_router(oip.router)
app.include_router(explain.router)


@app.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    """Prometheus text format: Tripod's and BentoML's metrics of every process of the server."""
    content, media_type = metrics_text()
    return Response(content, media_type=media_type)


def _all_ready(remotes: list[ServiceStages]) -> Callable[[], Awaitable[bool]]:
    """Readiness: every stage service of every variant answers (always, for stages in this process)."""

    async def ready() -> bool:
        return all([await remote.ready() for remote in remotes])

    return ready


def _swapped(variant: str) -> Callable[[Pipeline, Pipeline], None]:
    """Metrics after a variant's model swap: the old version's info gauge to 0, one swap counted."""

    def note(old: Pipeline, _new: Pipeline) -> None:
        metrics = tripod_metrics()
        before = old.manifest
        metrics.child(metrics.model_info, before.name, before.version, before.candidate.family, variant).set(
            0
        )
        metrics.child(metrics.model_swaps, "swapped", variant).inc()

    return note


def _refused(variant: str) -> Callable[[str], None]:
    """Metrics after a variant's refused model swap: one refusal counted."""

    def note(_reason: str) -> None:
        metrics = tripod_metrics()
        metrics.child(metrics.model_swaps, "refused", variant).inc()

    return note


class _Tripod:
    """The entry service: decodes requests of every protocol, runs the pipeline, encodes the answers.

    With stage services, ``transformer_<i>``, ``classifier_<i>`` and ``inverse_label_<i>`` are the stage
    services of variant ``i`` (declared below, before BentoML reads the class)."""

    def __init__(self) -> None:
        die_with_parent()
        specs = served_variants(
            SETTINGS.variants, SETTINGS.model_dir
        )  # VARIANTS, unless a test swapped SETTINGS
        artifacts = [ModelArtifact.from_directory(spec.model) for spec in specs]
        manifest = artifacts[0].manifest
        remotes: list[ServiceStages | None] = [None] * len(specs)
        if STAGE_SERVICES:
            remotes = [
                ServiceStages(
                    *(getattr(self, f"{role}_{index}") for role in STAGE_ROLES),
                    regression=artifact.manifest.is_regression,
                )
                for index, artifact in enumerate(artifacts)
            ]
        ready = _all_ready([remote for remote in remotes if remote is not None])
        self.shadowed = any(spec.shadow for spec in specs)
        metrics = tripod_metrics()
        served: list[Variant] = []
        for spec, artifact, remote in zip(specs, artifacts, remotes, strict=True):
            build = functools.partial(self._pipeline, variant=spec.name, shadow=spec.shadow, remote=remote)
            slot = ModelSlot(build(artifact), artifact.directory)
            served.append(Variant(spec.name, slot, spec.shadow))
            if SETTINGS.model_poll_s > 0 and remote is None:
                ModelWatcher(
                    slot,
                    spec.model,
                    build,
                    interval_s=SETTINGS.model_poll_s,
                    on_swap=_swapped(spec.name),
                    on_refused=_refused(spec.name),
                ).start()
        self.variants = variants.VARIANTS = Variants(
            sorted(served, key=lambda variant: variant.shadow),
            {spec.name: spec.weight for spec in specs if not spec.shadow},
            seed=SETTINGS.variant_seed,
            shadow_limit=SETTINGS.shadow_max_in_flight,
            on_shadow_dropped=lambda name: metrics.child(metrics.shadow_dropped, name).inc(),
        )
        self.state = ServingState(variants=self.variants, settings=SETTINGS, ready=ready)
        auth.GUARD = None if SETTINGS.auth_keys is None else auth.Guard(SETTINGS.auth_keys)
        if SETTINGS.variants is not None and SETTINGS.model_poll_s > 0:
            VariantsWatcher(self.variants, SETTINGS.variants, interval_s=SETTINGS.model_poll_s).start()
        if SETTINGS.capture_destination:
            capture.WRITER = capture.CaptureWriter(
                SETTINGS.capture_destination,
                endpoint=SETTINGS.capture_endpoint or manifest.name,
                percent=SETTINGS.capture_percent,
                max_queue=SETTINGS.capture_queue,
                flush_seconds=SETTINGS.capture_flush_s,
                on_drop=lambda name: metrics.child(metrics.capture_dropped, name).inc(),
                on_write=lambda name, n: metrics.child(metrics.capture_records, name).inc(n),
            )
        settle_heap()

    def _pipeline(
        self, artifact: ModelArtifact, *, variant: str, shadow: bool, remote: ServiceStages | None
    ) -> Pipeline:
        """The pipeline of a verified model: its stages opened (or its stage services), its observers, and
        for local stages the probe that decides where they run.  Start-up and every model swap use it."""
        manifest = artifact.manifest
        stages: StageRunner = (
            remote if remote is not None else LocalStages(artifact.graphs, threads=SETTINGS.onnx_threads)
        )
        observer = MetricsObserver(manifest.name, manifest.version, manifest.candidate.family, variant)
        observers: list[Observer] = [
            observer,
            RequestLogObserver(manifest.version),
            ReleaseMemory(SETTINGS.chunk_rows),
        ]
        if self.shadowed and not shadow:
            observers.append(ShadowInputs())
        pipeline = Pipeline(
            artifact.graphs, stages, manifest=manifest, limits=SETTINGS.limits(), observers=observers
        )
        if isinstance(stages, LocalStages):
            probe_ms = pipeline.probe_ms()
            stages.inline = probe_ms < SETTINGS.inline_below_ms
            logger.info(
                "%s %s (%s): stages run in this worker, %s: %.2f ms for a long record (inline below %g ms)",
                manifest.name,
                manifest.version,
                variant,
                "on the event loop" if stages.inline else "on a thread",
                probe_ms,
                SETTINGS.inline_below_ms,
            )
        return pipeline

    @bentoml.on_shutdown
    def flush_capture(self) -> None:
        """Write every captured exchange still queued before the worker exits (after the drain)."""
        if capture.WRITER is not None:
            capture.WRITER.close()

    @bentoml.api(route="/predict")
    async def predict(self, records: list[dict[str, Any]]) -> Predictions:
        """Predict a label for each record; its fields are the model's input columns."""
        # A plain body never gets here (fast_predict.py); an error answer is a Response BentoML sends as it is.
        return cast(Predictions, await predict_records(self.state, records))


if STAGE_SERVICES:  # BentoML finds dependencies among the class's attributes when the service is declared
    for _index, _spec in enumerate(VARIANTS):
        _declared = stage_services(_spec.model, "" if SETTINGS.variants is None else f"_{_index}")
        for _role, _service in _declared.items():
            setattr(_Tripod, f"{_role}_{_index}", bentoml.depends(_service))

_TLS: dict[str, Any] = (
    {}
    if SETTINGS.ssl_certfile is None
    else {
        "ssl": {"enabled": True, "certfile": str(SETTINGS.ssl_certfile), "keyfile": str(SETTINGS.ssl_keyfile)}
    }
)
Tripod = bentoml.asgi_app(app)(
    bentoml.service(
        name="tripod",
        workers=SETTINGS.workers,
        traffic={"timeout": SETTINGS.timeout_s},
        # BentoML labels its traffic metrics by raw path; Tripod's middleware labels by route template.
        metrics={"enabled": False},
        # No span is built for nobody: tracing runs only when an exporter is configured (services/http/tracing.py).
        tracing=service_tracing(),
        # In JSON mode Tripod's access line (services/http/requestid.py) carries BentoML's facts as fields.
        logging={"access": {"enabled": SETTINGS.access_log and SETTINGS.log_format == "text"}},
        **_TLS,
    )(_Tripod)
)
# bentoml.service returns a Service object, though its type hints keep the class's type.
SERVICE = cast("bentoml.Service[_Tripod]", Tripod)
# Outermost first: the request gets its id (on every answer, in every log line), metrics see every answer (and
# the variant it names), the caller's key is checked, then the variant is chosen, then every error becomes
# JSON, then the body is bounded, then data capture sees the body as the routes do, then a plain /predict is
# answered without BentoML's per-request API machinery (services/http/fast_predict.py).
SERVICE.add_asgi_middleware(RequestContextMiddleware)
SERVICE.add_asgi_middleware(TrafficMetricsMiddleware)
SERVICE.add_asgi_middleware(auth.AuthMiddleware)
SERVICE.add_asgi_middleware(variants.VariantMiddleware)
SERVICE.add_asgi_middleware(JsonErrorsMiddleware)
SERVICE.add_asgi_middleware(
    RequestBodyMiddleware,
    max_bytes=SETTINGS.max_request_bytes,
    read_timeout_s=SETTINGS.read_timeout_s,
    json_paths=("/predict", "/explain"),
)
SERVICE.add_asgi_middleware(capture.CaptureMiddleware, errors=SETTINGS.capture_errors)
SERVICE.add_asgi_middleware(FastPredictMiddleware)

"""Tripod's Prometheus metrics: the pipeline's (an observer) and HTTP traffic's (a middleware), and /metrics.

BentoML runs every worker in Prometheus multiprocess mode (it sets ``PROMETHEUS_MULTIPROC_DIR`` before a
worker starts) and ``/metrics`` merges the files of all processes.  A metric created in the process that only
imports the service module, or before that variable is set, lives in memory and never reaches ``/metrics``:
the usual way custom metrics go missing with several workers.  So the metrics are created on first use,
inside a worker, once per process; the model-info gauge uses the ``max`` mode so that N workers show one
series.

HTTP traffic is labelled by route *template* (``/v2/models/{model_name}/infer``), never by the raw path, and
every path no route matches shares the label ``unmatched``.  BentoML's own traffic middleware labels by raw
path, so 3,000 requests to distinct unknown paths grew ``/metrics`` from 5 KB to 11 MB and the worker by
211 MB; the entry service turns BentoML's traffic metrics off and uses :class:`TrafficMetricsMiddleware`.
"""

from __future__ import annotations

import functools
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from services.runtime.pipeline import Call, Observer
from services.runtime.predictions import PredictionBatch

STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
RECORD_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
UNMATCHED = "unmatched"
"""The route label of every request no route matched (unknown paths)."""
NOT_WORK = frozenset(
    {"/metrics", "/livez", "/readyz", "/healthz", "/ping", "/v2/health/live", "/v2/health/ready"}
)
"""Paths that are probes or scrapes, not inference work."""
INVOKED_VARIANT_HEADER = b"x-amzn-invoked-production-variant"
"""The answer header naming the variant that answered (SageMaker's), set by the variant middleware."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class TripodMetrics:
    """Tripod's metrics of one process.

    Label children are looked up once and kept (``labels()`` takes a lock and builds a key on every call).
    Every label value comes from a bounded set: stages, route templates, status codes, model labels.
    """

    predictions: Any
    """``tripod_predictions_total{model,version,label,variant}``: records answered, by predicted label."""
    stage_duration: Any
    """``tripod_stage_duration_seconds{stage,variant}``: seconds per call in each stage, seen from the
    pipeline."""
    request_records: Any
    """``tripod_request_records{variant}``: records per call that reached the model."""
    model_info: Any
    """``tripod_model_info{model,version,candidate,variant}``: 1 for each model being served."""
    http_requests: Any
    """``tripod_http_requests_total{route,method,status,variant}``: answered HTTP requests (``variant`` empty
    for probes, scrapes and requests refused before a variant was chosen)."""
    http_duration: Any
    """``tripod_http_request_duration_seconds{route,method,variant}``: seconds from the request to the last
    byte."""
    http_in_flight: Any
    """``tripod_http_requests_in_flight``: requests being handled now, health checks and scrapes excluded,
    summed over live workers (what an autoscaler on concurrency reads).  The one metric without a ``variant``
    label: it is counted before the variant is chosen, and an autoscaler scales pods, not variants."""
    model_swaps: Any
    """``tripod_model_swaps_total{outcome,variant}``: model pointer moves handled, ``swapped`` or
    ``refused``."""
    capture_records: Any
    """``tripod_capture_records_total{variant}``: exchanges written by data capture."""
    capture_dropped: Any
    """``tripod_capture_dropped_total{variant}``: exchanges data capture dropped (queue full, or a write
    failed)."""
    shadow_dropped: Any
    """``tripod_shadow_dropped_total{variant}``: copies of requests a shadow variant did not get (too many
    shadow calls running)."""
    _children: dict[tuple[Any, ...], Any] = field(default_factory=dict, repr=False)

    def child(self, metric: Any, *values: str) -> Any:
        """The metric's child for these label values (the metric itself when it has no labels)."""
        key = (metric, *values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values) if values else metric
        return found


@functools.cache
def tripod_metrics() -> TripodMetrics:
    """The process's metrics, created on first call (in a worker, after BentoML set up multiprocess mode)."""
    from prometheus_client import Counter, Gauge, Histogram

    return TripodMetrics(
        predictions=Counter(
            "tripod_predictions",
            "Records answered, by predicted label",
            ["model", "version", "label", "variant"],
        ),
        stage_duration=Histogram(
            "tripod_stage_duration_seconds",
            "Seconds a call spends in each stage",
            ["stage", "variant"],
            buckets=STAGE_BUCKETS,
        ),
        request_records=Histogram(
            "tripod_request_records", "Records per call", ["variant"], buckets=RECORD_BUCKETS
        ),
        model_info=Gauge(
            "tripod_model_info",
            "The models being served (value 1)",
            ["model", "version", "candidate", "variant"],
            multiprocess_mode="max",
        ),
        http_requests=Counter(
            "tripod_http_requests",
            "HTTP requests answered, by route template",
            ["route", "method", "status", "variant"],
        ),
        http_duration=Histogram(
            "tripod_http_request_duration_seconds",
            "Seconds from receiving an HTTP request to its last byte, by route template",
            ["route", "method", "variant"],
            buckets=REQUEST_BUCKETS,
        ),
        model_swaps=Counter(
            "tripod_model_swaps",
            "Model pointer moves handled without a restart, by outcome",
            ["outcome", "variant"],
        ),
        capture_records=Counter("tripod_capture_records", "Exchanges written by data capture", ["variant"]),
        capture_dropped=Counter(
            "tripod_capture_dropped",
            "Exchanges data capture dropped (its queue was full, or a write failed)",
            ["variant"],
        ),
        shadow_dropped=Counter(
            "tripod_shadow_dropped",
            "Copies of requests a shadow variant did not get (too many shadow calls running)",
            ["variant"],
        ),
        http_in_flight=Gauge(
            "tripod_http_requests_in_flight",
            "HTTP requests being handled now (health checks and scrapes excluded)",
            multiprocess_mode="livesum",
        ),
    )


class MetricsObserver(Observer):
    """The pipeline's metrics: stage durations, records per call, answers by label."""

    def __init__(self, model: str, version: str, candidate: str, variant: str) -> None:
        self.metrics = tripod_metrics()
        self.model, self.version, self.variant = model, version, variant
        self.metrics.child(self.metrics.model_info, model, version, candidate, variant).set(1)
        self._records = self.metrics.child(self.metrics.request_records, variant)

    def stage_done(self, stage: str, seconds: float) -> None:
        self.metrics.child(self.metrics.stage_duration, stage, self.variant).observe(seconds)

    def call_done(self, call: Call, batch: PredictionBatch) -> None:
        n = len(batch)
        self._records.observe(n)
        counts = Counter({"": n}) if batch.labels is None else Counter(map(str, batch.labels))
        for label, count in counts.items():
            self.metrics.child(self.metrics.predictions, self.model, self.version, label, self.variant).inc(
                count
            )


def route_template(scope: Scope) -> str:
    """The template of the route that handled the request, or :data:`UNMATCHED`.

    Starlette's routers record the matched route in ``scope["route"]`` (the innermost one wins, through
    mounts); a mount alone means no route inside it matched.
    """
    route = scope.get("route")
    path = getattr(route, "path", None)
    if not path or not hasattr(route, "endpoint"):
        return UNMATCHED
    return str(path)


class TrafficMetricsMiddleware:
    """Counts and times HTTP requests by route template and answering variant, and tracks the inference requests in flight (health
    checks and scrapes excluded, so an autoscaler reading the gauge sees only work)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        metrics = tripod_metrics()
        started = time.perf_counter()
        status = 500  # what the client sees if the application fails before answering
        variant = ""

        async def send_and_note(message: Message) -> None:
            nonlocal status, variant
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", ()):
                    if name == INVOKED_VARIANT_HEADER:
                        variant = value.decode("latin-1")
            await send(message)

        in_flight = None if scope["path"] in NOT_WORK else metrics.child(metrics.http_in_flight)
        if in_flight is not None:
            in_flight.inc()
        try:
            await self.app(scope, receive, send_and_note)
        finally:
            if in_flight is not None:
                in_flight.dec()
            route, method = route_template(scope), scope["method"]
            metrics.child(metrics.http_requests, route, method, str(status), variant).inc()
            metrics.child(metrics.http_duration, route, method, variant).observe(
                time.perf_counter() - started
            )


def _registry() -> Any:
    """Every process's metrics merged (BentoML's multiprocess mode), or this process's alone."""
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:  # a single process (in-process tests)
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return registry


def metrics_text() -> tuple[bytes, str]:
    """All metrics in Prometheus text format (what ``GET /metrics`` answers) and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return generate_latest(_registry()), CONTENT_TYPE_LATEST


def metric_totals(prefix: str = "tripod_") -> dict[str, float]:
    """Tripod's samples summed over processes, keyed ``name{label=value,...}`` (buckets left out), for
    answers built from metrics (Triton's statistics)."""
    totals: dict[str, float] = {}
    for metric in _registry().collect():
        for sample in metric.samples:
            if not sample.name.startswith(prefix) or "le" in sample.labels:
                continue
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            key = f"{sample.name}{{{labels}}}" if labels else sample.name
            totals[key] = totals.get(key, 0.0) + sample.value
    return totals

"""Tripod's own Prometheus metrics, beside BentoML's built-in request counters and latency histograms.

BentoML runs every worker in Prometheus multiprocess mode (it sets ``PROMETHEUS_MULTIPROC_DIR`` before a
worker starts) and ``/metrics`` merges the files of all workers.  A metric created in the process that only
imports the service module, or before that variable is set, lives in memory and never reaches ``/metrics``:
the usual way custom metrics go missing with several workers.  So the metrics are created on first use, inside
a worker, once per process; the model-info gauge uses the ``max`` mode so that N workers show one series.
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
RECORD_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)


class StageTimer:
    """Times one block into a stage's histogram child.  A small class rather than ``contextlib``'s
    generator-based manager: the entry worker times four blocks per request, and the generator machinery
    cost more than the timing itself (py-spy, single-review requests)."""

    __slots__ = ("child", "started")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.started = 0.0

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, *_: object) -> None:
        self.child.observe(time.perf_counter() - self.started)


@dataclass(frozen=True)
class TripodMetrics:
    """The four Tripod metrics of one process.

    Label children are looked up once and kept (``labels()`` takes a lock and builds a key on every call);
    the model and version labels are fixed per process, so only stage and predicted label vary.
    """

    predictions: Any
    """``tripod_predictions_total{model,version,label}``: records answered, by predicted label."""
    stage_duration: Any
    """``tripod_stage_duration_seconds{stage}``: seconds per request in each stage, seen from the entry."""
    request_records: Any
    """``tripod_request_records``: records per request that reached the model."""
    model_info: Any
    """``tripod_model_info{model,version,candidate}``: 1 for the model being served."""
    _children: dict[tuple[Any, ...], Any] = field(default_factory=dict, repr=False)

    def _child(self, metric: Any, **labels: str) -> Any:
        key = (metric, *labels.values())
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(**labels)
        return child

    def timed(self, stage: str) -> StageTimer:
        return StageTimer(self._child(self.stage_duration, stage=stage))

    def count_predictions(
        self, model: str, version: str, labels: Sequence[str] | np.ndarray | None, n: int
    ) -> None:
        """Count ``n`` answered records; ``labels`` is ``None`` for a regression model (label ``""``)."""
        counts = Counter({"": n}) if labels is None else Counter(map(str, labels))
        for label, count in counts.items():
            self._child(self.predictions, model=model, version=version, label=label).inc(count)


@functools.cache
def tripod_metrics() -> TripodMetrics:
    """The process's metrics, created on first call (in a worker, after BentoML set up multiprocess mode)."""
    from prometheus_client import Counter, Gauge, Histogram

    return TripodMetrics(
        predictions=Counter(
            "tripod_predictions", "Records answered, by predicted label", ["model", "version", "label"]
        ),
        stage_duration=Histogram(
            "tripod_stage_duration_seconds",
            "Seconds a request spends in each stage",
            ["stage"],
            buckets=STAGE_BUCKETS,
        ),
        request_records=Histogram("tripod_request_records", "Records per request", buckets=RECORD_BUCKETS),
        model_info=Gauge(
            "tripod_model_info",
            "The model being served (value 1)",
            ["model", "version", "candidate"],
            multiprocess_mode="max",
        ),
    )

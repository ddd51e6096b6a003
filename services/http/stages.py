"""The three stages as BentoML services (``TRIPOD_STAGES=services``), and how the pipeline calls them.

Each model the entry serves (each production variant) gets its own three stage services, declared by
:func:`stage_services`; rows of different models never share a batch.

Each stage service opens only its own graph (checked against the manifest) and batches across requests
(adaptive batching, ``max_batch_size``/``max_latency_ms``), with its own process count: the topology for a
heavy encoder that should scale apart from the entry workers.  :class:`ServiceStages` is what the entry's
pipeline holds instead of local sessions: the same ``run``-per-stage interface, awaited.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bentoml
import numpy as np

from services.artifacts import ModelArtifact, ModelGraphs
from services.http.config import SETTINGS
from services.http.worker import die_with_parent, settle_heap
from services.runtime.stages import (
    ClassifierStage,
    InverseLabelStage,
    RegressorStage,
    TransformerStage,
    open_stage,
)

READY_TIMEOUT_S = 1
"""How long a readiness route waits for the stages: SageMaker wants ``/ping`` answered within 2 s."""
_STAGE = {
    "workers": SETTINGS.stage_workers,
    "threads": SETTINGS.threads,
    "traffic": {"timeout": SETTINGS.timeout_s},
}


def _batching(stage: str) -> dict[str, Any]:
    return {"batchable": True, **SETTINGS.batching(stage)}


STAGE_ROLES = ("transformer", "classifier", "inverse_label")
"""The stage services of one model, in pipeline order."""


@dataclass(frozen=True)
class StageServices:
    """The three stage services of one model directory."""

    transformer: Any
    classifier: Any
    inverse_label: Any

    def items(self) -> list[tuple[str, Any]]:
        return [(role, getattr(self, role)) for role in STAGE_ROLES]


def stage_services(model_dir: Path, suffix: str = "") -> StageServices:
    """Declare the stage services of one model directory, named ``tripod_<stage><suffix>``.

    Called at import, once per model the entry serves (a production variant each, suffix ``_<index>``): BentoML
    starts every stage process by importing the entry module and finding its service by name, so the same
    declarations are made in every process, from the same settings."""

    def graphs() -> ModelGraphs:
        """This stage process's one verified load of the model directory."""
        die_with_parent()
        return ModelArtifact.from_directory(model_dir).graphs

    @bentoml.service(name=f"tripod_transformer{suffix}", **_STAGE)
    class Transformer:
        """Raw columns ``(n_samples, n_inputs)`` → features ``(n_samples, n_features)``."""

        def __init__(self) -> None:
            self.stage = open_stage(graphs(), "transformer", SETTINGS.onnx_threads)
            settle_heap()

        @bentoml.api(**_batching("transformer"))
        def transform(self, columns: np.ndarray) -> np.ndarray:
            assert isinstance(self.stage, TransformerStage)
            return self.stage.transform(columns)

    @bentoml.service(name=f"tripod_classifier{suffix}", **_STAGE)
    class Classifier:
        """The algorithm stage: features → class probabilities ``(n_samples, n_classes)``, or for a regression
        model (whose second stage is ``regressor.onnx``) predicted values ``(n_samples,)``."""

        def __init__(self) -> None:
            loaded = graphs()
            self.stage = open_stage(
                loaded, "regressor" if loaded.is_regression else "classifier", SETTINGS.onnx_threads
            )
            settle_heap()

        @bentoml.api(**_batching("classifier"))
        def classify(self, features: np.ndarray) -> np.ndarray:
            if isinstance(self.stage, RegressorStage):
                return self.stage.regress(features)
            assert isinstance(self.stage, ClassifierStage)
            return self.stage.classify(features)

    @bentoml.service(name=f"tripod_inverse_label{suffix}", **_STAGE)
    class InverseLabel:
        """Class indices ``(n_samples,)`` → label strings.  A regression model has no such stage: the service
        still starts (the entry declares it statically) but is never called."""

        def __init__(self) -> None:
            loaded = graphs()
            self.stage = (
                None if loaded.is_regression else open_stage(loaded, "inverse_label", SETTINGS.onnx_threads)
            )
            settle_heap()

        @bentoml.api(**_batching("inverse_label"))
        def inverse(self, indices: np.ndarray) -> list[str]:
            if not isinstance(self.stage, InverseLabelStage):
                raise RuntimeError("a regression model has no inverse-label stage")
            return [str(label) for label in self.stage.inverse(indices)]

    return StageServices(Transformer, Classifier, InverseLabel)


class ServiceStages:
    """The stage services behind the pipeline's stage interface (awaited; never run synchronously)."""

    local = False
    inline = False

    def __init__(self, transformer: Any, classifier: Any, inverse_label: Any, *, regression: bool) -> None:
        self.regression = regression
        self.proxies = (transformer, classifier, inverse_label)
        for proxy in self.proxies:
            keep_client_session(proxy)
        # (proxy, method): BentoML's clients grow their methods only once connected, so they are looked up per call.
        self.calls = {
            "transformer": (transformer, "transform"),
            "classifier": (classifier, "classify"),
            "regressor": (classifier, "classify"),
            "inverse_label": (inverse_label, "inverse"),
        }

    def run(self, stage: str, value: Any) -> Any:
        raise RuntimeError("stage services are called asynchronously (Pipeline.predict_async)")

    async def run_async(self, stage: str, value: Any) -> Any:
        proxy, method = self.calls[stage]
        output = await getattr(proxy.to_async, method)(value)
        return np.asarray(output, dtype=object) if stage == "inverse_label" else output

    async def ready(self) -> bool:
        """Whether every stage service answers its readiness probe."""
        from _bentoml_impl.client import RemoteProxy

        probes = [proxy.is_ready(READY_TIMEOUT_S) for proxy in self.proxies if isinstance(proxy, RemoteProxy)]
        return all(await asyncio.gather(*probes))


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

"""The BentoML pipeline: Transformer → Classifier → InverseLabel stage services behind the ``Tripod`` entry.

Each stage is its own BentoML service with adaptive batching, so a busy stage can be given more workers
without touching the others; the entry service validates requests, calls the stages through
``bentoml.depends`` and shapes the answer.  BentoML fixes batching and worker counts when the classes are
declared, so this module reads :class:`ServingSettings` once, at import, and nowhere else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bentoml
import numpy as np
from pydantic import BaseModel, Field

from services.artifacts import Manifest, load_manifest
from services.errors import PayloadTooLarge
from services.http_errors import maps_errors
from services.limits import BodyLimitMiddleware
from services.runtime import (
    ClassifierStage,
    InverseLabelStage,
    RegressorStage,
    TransformerStage,
    class_indices,
    format_predictions,
    format_values,
    records_to_columns,
)
from services.settings import ServingSettings

SETTINGS = ServingSettings.from_env()
_BATCHING = {"batchable": True, "max_batch_size": SETTINGS.max_batch_size, "max_latency_ms": SETTINGS.max_latency_ms}
_STAGE = {"workers": SETTINGS.stage_workers, "traffic": {"timeout": SETTINGS.timeout_s}}


def _stage_path(stage: str) -> tuple[Manifest, Path]:
    manifest = load_manifest(SETTINGS.model_dir)
    return manifest, SETTINGS.model_dir.resolve() / manifest.stages[stage].file  # type: ignore[index]


class ClassPrediction(BaseModel):
    """One record's answer from a classification model."""

    predicted_label: str = Field(description="the most probable label")
    probability: float = Field(description="probability of predicted_label")
    probabilities: dict[str, float] = Field(description="probability of every label")


class ValuePrediction(BaseModel):
    """One record's answer from a regression model."""

    predicted_value: float


Prediction = ClassPrediction | ValuePrediction


@bentoml.service(name="tripod_transformer", **_STAGE)
class Transformer:
    """Raw columns ``(n_samples, n_inputs)`` → features ``(n_samples, n_features)``."""

    def __init__(self) -> None:
        _, path = _stage_path("transformer")
        self.stage = TransformerStage(path, threads=SETTINGS.onnx_threads)

    @bentoml.api(**_BATCHING)
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

    @bentoml.api(**_BATCHING)
    def classify(self, features: np.ndarray) -> np.ndarray:
        if isinstance(self.stage, RegressorStage):
            return self.stage.regress(features)
        return self.stage.classify(features)


@bentoml.service(name="tripod_inverse_label", **_STAGE)
class InverseLabel:
    """Class indices ``(n_samples,)`` → label strings."""

    def __init__(self) -> None:
        _, path = _stage_path("inverse_label")
        self.stage = InverseLabelStage(path, threads=SETTINGS.onnx_threads)

    @bentoml.api(**_BATCHING)
    def inverse(self, indices: np.ndarray) -> list[str]:
        return [str(label) for label in self.stage.inverse(indices)]


@bentoml.service(name="tripod", workers=SETTINGS.workers, traffic={"timeout": SETTINGS.timeout_s})
class Tripod:
    """The entry service: validates records, runs the three stages, answers in the Tripod JSON shape."""

    transformer = bentoml.depends(Transformer)
    classifier = bentoml.depends(Classifier)
    inverse_label = bentoml.depends(InverseLabel)

    def __init__(self) -> None:
        self.manifest = load_manifest(SETTINGS.model_dir)

    @bentoml.api(route="/predict")
    @maps_errors
    async def predict(self, records: list[dict[str, Any]]) -> list[Prediction]:
        """Predict a label for each record; its fields are the model's input columns."""
        if len(records) > SETTINGS.max_records:
            raise PayloadTooLarge(f"{len(records)} records is more than the limit of {SETTINGS.max_records}")
        columns = records_to_columns(records, self.manifest.inputs)
        features = await self.transformer.to_async.transform(columns)
        scores = await self.classifier.to_async.classify(features)
        if self.manifest.problem_type == "regression":
            return [ValuePrediction(**row) for row in format_values(scores)]
        labels = await self.inverse_label.to_async.inverse(class_indices(scores))
        return [ClassPrediction(**row) for row in format_predictions(labels, scores, self.manifest.labels)]


Tripod.add_asgi_middleware(BodyLimitMiddleware, max_bytes=SETTINGS.max_request_bytes)

"""Tripod's stages fused: the three ONNX graphs merged into one (``serving_artifacts.fuse_stages``), served
by one service.

The variant that shows what running three graphs costs: the same validation (``InputSchema``), the same
onnxruntime settings (one intra-op thread) and the same answer encoding (``predict_answer``) as
``POST /predict``, but one graph.  BentoML's defaults otherwise (one worker, one thread, no adaptive
batching).

Environment: ``FUSED_ONNX`` (the merged graph), ``FUSED_MODEL_DIR`` (the model directory it was merged from,
for the input schema and label order; its digests are verified).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import bentoml
import numpy as np

from services.artifacts import ModelArtifact
from services.http.predict import Predictions, predict_answer
from services.runtime.limits import DEFAULT_MAX_TEXT_CHARS
from services.runtime.predictions import PredictionBatch
from services.runtime.schema import InputSchema, Records
from services.runtime.sessions import inference_session


@bentoml.service(name="tripod_fused")
class FusedPipeline:
    def __init__(self) -> None:
        self.manifest = ModelArtifact.from_directory(Path(os.environ["FUSED_MODEL_DIR"])).manifest
        self.schema = InputSchema(self.manifest.inputs, max_text_chars=DEFAULT_MAX_TEXT_CHARS)
        self.session = inference_session(Path(os.environ["FUSED_ONNX"]), threads=1)
        self.input_names = [node.name for node in self.session.get_inputs()]

    @bentoml.api(route="/predict")
    def predict(self, records: list[dict[str, Any]]) -> Predictions:
        columns = self.schema.columns(Records(records))
        feeds = {name: columns[:, [i]] for i, name in enumerate(self.input_names)}
        probabilities, labels = self.session.run(["probabilities", "predicted_label"], feeds)
        labels = np.asarray(labels, dtype=object)
        return predict_answer(PredictionBatch(labels, probabilities, tuple(self.manifest.labels)))

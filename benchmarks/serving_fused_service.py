"""Tripod's stages fused: the three ONNX graphs merged into one (``serving_artifacts.fuse_stages``), served
by one service.

The variant that shows what the three-process pipeline costs: the same validation (``records_to_columns``,
``clip_text``), the same onnxruntime settings (one intra-op thread) and the same answer
(``format_predictions``) as ``POST /predict``, but one graph in one process, so no record crosses a process
boundary between stages.  BentoML's defaults otherwise (one worker, one thread, no adaptive batching).

Environment: ``FUSED_ONNX`` (the merged graph), ``FUSED_MODEL_DIR`` (the model directory it was merged from,
for the input schema and label order; its digests are verified).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import bentoml
import numpy as np
from bentoml.validators import ContentType

from services.artifacts import load_manifest
from services.runtime import clip_text, format_predictions, inference_session, records_to_columns

MAX_TEXT_CHARS = 20_000  # Tripod's default TRIPOD_MAX_TEXT_CHARS

Answer = Annotated[list[dict[str, Any]], ContentType("application/json")]
"""Declared as Tripod declares ``/predict``'s answer, so BentoML skips deriving the media type from the
answer's JSON schema on every response (``services.service.Predictions``)."""


@bentoml.service(name="tripod_fused")
class FusedPipeline:
    def __init__(self) -> None:
        self.manifest = load_manifest(Path(os.environ["FUSED_MODEL_DIR"]))
        self.session = inference_session(Path(os.environ["FUSED_ONNX"]), threads=1)
        self.input_names = [node.name for node in self.session.get_inputs()]

    @bentoml.api(route="/predict")
    def predict(self, records: list[dict[str, Any]]) -> Answer:
        columns = clip_text(
            records_to_columns(records, self.manifest.inputs), self.manifest.inputs, MAX_TEXT_CHARS
        )
        feeds = {name: columns[:, [i]] for i, name in enumerate(self.input_names)}
        probabilities, labels = self.session.run(["probabilities", "predicted_label"], feeds)
        return format_predictions(np.asarray(labels), probabilities, self.manifest.labels)

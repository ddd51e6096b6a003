"""A Tripod model directory's three ONNX stages run with onnxruntime alone: what a peer model server serves.

The peer servers of the serving benchmark (MLServer, KServe, Ray Serve, PyTriton) run in virtual environments
of their own, without Tripod's packages, so they cannot import ``services/``.  This module is what a user of
those servers would write around the exported files: read ``manifest.json``, open the three graphs with the
same session options Tripod uses (one intra-op thread, arena on, memory patterns off), and chain them —
input columns → ``features`` → ``probabilities`` → argmax → ``predicted_label``.  It answers the same labels
as Tripod's runtime on the same records (checked by the benchmark on held-out reviews).

Standard library, numpy and onnxruntime (+ onnxruntime-extensions for tokenizer graphs) only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

STAGES = ("transformer", "classifier", "inverse_label")


def _options(custom_ops: bool) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = True
    options.enable_mem_pattern = False
    if custom_ops:  # tokenizer graphs (MiniLM) use onnxruntime-extensions' operators
        from onnxruntime_extensions import get_library_path

        options.register_custom_ops_library(get_library_path())
    return options


def _session(path: Path) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(str(path), _options(False), providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - an unknown operator: the graph needs the extensions library
        return ort.InferenceSession(str(path), _options(True), providers=["CPUExecutionProvider"])


class OnnxPipeline:
    """The three stages of one exported classifier; thread-safe (onnxruntime sessions are)."""

    def __init__(self, model_dir: str | Path) -> None:
        directory = Path(model_dir)
        manifest = json.loads((directory / "manifest.json").read_text())
        self.inputs: list[str] = [column["name"] for column in manifest["inputs"]]
        self.numeric = {column["name"] for column in manifest["inputs"] if column["dtype"] == "float"}
        self.labels: list[str] = [str(label) for label in manifest["labels"]]
        files = {stage: directory / manifest["stages"][stage]["file"] for stage in STAGES}
        self.sessions = {stage: _session(path) for stage, path in files.items()}

    def columns(self, records: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
        """Records → the transformer's feeds, one ``(n, 1)`` column per input (missing text is "")."""
        return self.feeds({name: [record.get(name) for record in records] for name in self.inputs})

    def feeds(self, columns: Mapping[str, Sequence[Any]]) -> dict[str, np.ndarray]:
        """Column lists (as a tensor protocol carries them) → the transformer's feeds."""
        out = {}
        for name in self.inputs:
            values = columns[name]
            if name in self.numeric:
                out[name] = np.asarray(
                    [np.nan if v is None else float(v) for v in values], dtype=np.float32
                ).reshape(-1, 1)
            else:
                out[name] = np.asarray(
                    ["" if v is None else v.decode() if isinstance(v, bytes) else str(v) for v in values],
                    dtype=object,
                ).reshape(-1, 1)
        return out

    def run(self, feeds: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Feeds → ``(predicted labels (n,) object array, probabilities (n, C) float32)``."""
        (features,) = self.sessions["transformer"].run(["features"], dict(feeds))
        (probabilities,) = self.sessions["classifier"].run(["probabilities"], {"features": features})
        indices = np.asarray(probabilities).argmax(axis=1).astype(np.int64)
        (labels,) = self.sessions["inverse_label"].run(["predicted_label"], {"label": indices})
        return np.asarray(labels, dtype=object).reshape(-1), np.asarray(probabilities, dtype=np.float32)

    def predict(self, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Records → Tripod's ``/predict`` answer rows (label, its probability, every probability)."""
        labels, probabilities = self.run(self.columns(records))
        return [
            {
                "predicted_label": str(label),
                "probability": float(row.max()),
                "probabilities": dict(zip(self.labels, map(float, row), strict=True)),
            }
            for label, row in zip(labels, probabilities, strict=True)
        ]

"""The inverse-label stage is an ONNX graph that maps class indices to label strings (training/export.py)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from services.artifacts import LABEL, PREDICTED_LABEL
from training.export import UNKNOWN_LABEL, build_inverse_label


def _session(labels: list[str]) -> ort.InferenceSession:
    return ort.InferenceSession(
        build_inverse_label(labels).SerializeToString(), providers=["CPUExecutionProvider"]
    )


@pytest.mark.parametrize(
    "labels",
    [["negative", "positive"], ["negative", "neutral", "positive"], ["0", "10", "2", "ça va", "😍"]],
    ids=["binary", "three-class", "unicode-and-digit-strings"],
)
def test_each_index_maps_to_its_label(labels: list[str]) -> None:
    indices = np.array([*range(len(labels)), 0, len(labels) - 1], dtype=np.int64)
    (predicted,) = _session(labels).run([PREDICTED_LABEL], {LABEL: indices})
    assert predicted.tolist() == [labels[i] for i in indices]


def test_an_index_outside_the_labels_maps_to_unknown() -> None:
    (predicted,) = _session(["a", "b"]).run([PREDICTED_LABEL], {LABEL: np.array([2, -1], dtype=np.int64)})
    assert predicted.tolist() == [UNKNOWN_LABEL, UNKNOWN_LABEL]


def test_the_graph_follows_the_stage_contract() -> None:
    session = _session(["a", "b", "c"])
    (given,), (produced,) = session.get_inputs(), session.get_outputs()
    assert (given.name, given.type, given.shape[1:]) == (LABEL, "tensor(int64)", [])
    assert (produced.name, produced.type, produced.shape[1:]) == (PREDICTED_LABEL, "tensor(string)", [])

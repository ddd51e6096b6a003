"""The benchmark's variants answer like Tripod: the fused graph, the fused service and the hand-written
scikit-learn service are built from one fitted model, so a throughput ratio compares like with like.

The services are called as classes (BentoML's first way of testing a service); serving them over HTTP is the
benchmark's short form (``test_serving_compare.py``, slow).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from services.runtime.pipeline import Pipeline
from services.runtime.predictions import PredictionBatch
from services.runtime.schema import Records
from tests.conftest import SAMPLE_ROWS
from tests.load.conftest import load_benchmark


@pytest.fixture(scope="module")
def artifacts() -> ModuleType:
    return load_benchmark("serving_artifacts")


@pytest.fixture(scope="module")
def tfidf(
    artifacts: ModuleType, prepared_reviews_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Any:
    return artifacts.prepare_tfidf(
        prepared_reviews_path, tmp_path_factory.mktemp("bench"), sample=SAMPLE_ROWS, sample_records=100
    )


@pytest.fixture(scope="module")
def expected(tfidf: Any) -> PredictionBatch:
    pipeline = Pipeline.from_directory(tfidf.model_dir)
    batch = pipeline.predict(Records(tfidf.records))
    assert batch.labels is not None and batch.probabilities is not None
    return batch


def test_records_are_held_out_and_fixed(tfidf: Any, held_out: list[dict[str, str]]) -> None:
    assert tfidf.records[:50] == held_out[:50]  # the same test split as trained_model_dir's
    assert len(tfidf.records) == 100 and set(tfidf.records[0]) == {"review_body"}


def test_fused_graph_computes_what_the_three_stages_compute(
    artifacts: ModuleType, tfidf: Any, expected: PredictionBatch
) -> None:
    assert expected.labels is not None and expected.probabilities is not None
    session = ort.InferenceSession(str(tfidf.fused_onnx))
    texts = np.array([[r["review_body"]] for r in tfidf.records], dtype=object)
    probabilities, labels = session.run(["probabilities", "predicted_label"], {"review_body": texts})
    np.testing.assert_allclose(probabilities, expected.probabilities, atol=1e-6)
    assert labels.tolist() == expected.labels.tolist()
    assert [o.name for o in artifacts.fuse_stages(tfidf.model_dir).graph.output] == [
        "probabilities",
        "predicted_label",
    ]


def test_fused_service_answers_like_predict(
    tfidf: Any, expected: PredictionBatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FUSED_ONNX", str(tfidf.fused_onnx))
    monkeypatch.setenv("FUSED_MODEL_DIR", str(tfidf.model_dir))
    service = load_benchmark("serving_fused_service").FusedPipeline()
    answers = service.predict(tfidf.records)
    assert json.loads(bytes(answers.body)) == expected.records()


def test_handwritten_sklearn_service_has_the_same_weights(
    tfidf: Any, expected: PredictionBatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert expected.labels is not None and expected.probabilities is not None
    monkeypatch.setenv("SKLEARN_PIPELINE", str(tfidf.sklearn_pickle))
    service = load_benchmark("serving_sklearn_service").HandWrittenSklearn()
    answers = service.predict(tfidf.records)
    assert [a["predicted_label"] for a in answers] == expected.labels.tolist()
    got = np.array([list(a["probabilities"].values()) for a in answers])
    assert np.abs(got - expected.probabilities).max() < 1e-3  # ONNX parity's tolerance


def test_request_bodies_cycle_through_the_records(artifacts: ModuleType, tfidf: Any, tmp_path: Path) -> None:
    import json

    path = artifacts.write_bodies(tmp_path / "b.jsonl", tfidf.records, 32, count=5)
    bodies = [json.loads(json.loads(line)) for line in path.read_text().splitlines()]
    assert len(bodies) == 5 and all(len(b["records"]) == 32 for b in bodies)
    assert bodies[3]["records"][4] == tfidf.records[(3 * 32 + 4) % 100]

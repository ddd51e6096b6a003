"""The one orchestrator (``services/runtime/pipeline.py``): chunks, sync and async entry points, stage
runners behind one interface, observers, limits."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.errors import PayloadTooLarge
from services.runtime.limits import Limits
from services.runtime.pipeline import Call, Observer, Pipeline
from services.runtime.predictions import PredictionBatch
from services.runtime.schema import Records

TEXTS = ["Love it, fits perfectly", "Returned it, cheap fabric", "", "It's okay I guess", "x" * 30_000] * 7


def _records(pipeline: Pipeline) -> Records:
    return Records([{pipeline.input_names[0]: text} for text in TEXTS])


@pytest.fixture(scope="module")
def pipeline(trained_model_dir: Path) -> Pipeline:
    return Pipeline.from_directory(trained_model_dir)


def _same(a: PredictionBatch, b: PredictionBatch) -> None:
    assert a.labels is not None and b.labels is not None
    assert a.labels.tolist() == b.labels.tolist()
    np.testing.assert_array_equal(a.probabilities, b.probabilities)


def test_chunked_calls_answer_exactly_as_one_piece(trained_model_dir: Path, pipeline: Pipeline) -> None:
    chunked = Pipeline.from_directory(trained_model_dir, limits=Limits(chunk_rows=3))
    _same(chunked.predict(_records(chunked)), pipeline.predict(_records(pipeline)))


def test_the_async_entry_point_answers_as_the_sync_one(pipeline: Pipeline) -> None:
    _same(asyncio.run(pipeline.predict_async(_records(pipeline))), pipeline.predict(_records(pipeline)))


class Recorder(Observer):
    def __init__(self) -> None:
        self.stages: list[str] = []
        self.calls: list[tuple[str, int, int]] = []

    def stage_done(self, stage: str, seconds: float) -> None:
        assert seconds >= 0
        self.stages.append(stage)

    def call_done(self, call: Call, batch: PredictionBatch) -> None:
        assert call.columns is not None
        self.calls.append((call.route, len(call.columns), len(batch)))


def test_observers_see_every_stage_of_every_chunk_and_every_call(trained_model_dir: Path) -> None:
    recorder = Recorder()
    pipeline = Pipeline.from_directory(trained_model_dir, limits=Limits(chunk_rows=20), observers=[recorder])
    pipeline.predict(_records(pipeline), Call("test"))
    assert recorder.stages == ["validate", *["transformer", "classifier", "inverse_label"] * 2]
    assert recorder.calls == [("test", len(TEXTS), len(TEXTS))]
    with pipeline.timed("decode"):
        pass
    assert recorder.stages[-1] == "decode"


def test_text_is_clipped_on_every_path_so_a_long_review_gets_one_answer(pipeline: Pipeline) -> None:
    column = pipeline.input_names[0]
    long, clipped = "great " * 5_000, ("great " * 5_000)[: pipeline.limits.max_text_chars]
    answers = pipeline.predict(Records([{column: long}, {column: clipped}]))
    assert answers.probabilities is not None
    np.testing.assert_array_equal(answers.probabilities[0], answers.probabilities[1])


def test_more_records_than_the_limit_are_refused_before_any_work(trained_model_dir: Path) -> None:
    limited = Pipeline.from_directory(trained_model_dir, limits=Limits(max_records=5))
    with pytest.raises(PayloadTooLarge, match="35 records is more than the limit of 5"):
        limited.predict(_records(limited))


class AwaitedStages:
    """Stage services' shape (awaited calls) over local sessions, as ``services/http/stages.py`` provides."""

    local = False
    inline = False

    def __init__(self, local: Any) -> None:
        self.local_stages = local
        self.regression = local.regression
        self.awaited: list[str] = []

    def run(self, stage: str, value: Any) -> Any:
        raise AssertionError("remote stages are never run synchronously")

    async def run_async(self, stage: str, value: Any) -> Any:
        self.awaited.append(stage)
        await asyncio.sleep(0)
        return self.local_stages.run(stage, value)


def test_remote_stages_behind_the_same_interface_give_the_same_answers(pipeline: Pipeline) -> None:
    remote = AwaitedStages(pipeline.stages)
    through_services = Pipeline(pipeline.graphs, remote, manifest=pipeline.manifest)
    _same(
        asyncio.run(through_services.predict_async(_records(pipeline))), pipeline.predict(_records(pipeline))
    )
    assert remote.awaited == ["transformer", "classifier", "inverse_label"]


def test_a_call_of_several_chunks_lets_the_event_loop_serve_others_meanwhile(trained_model_dir: Path) -> None:
    pipeline = Pipeline.from_directory(trained_model_dir, limits=Limits(chunk_rows=2))
    pipeline.stages.inline = True  # even light stages leave the loop when a call needs several chunks
    ticks = 0

    async def heartbeat(done: asyncio.Event) -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0)

    async def scenario() -> None:
        done = asyncio.Event()
        beating = asyncio.create_task(heartbeat(done))
        await pipeline.predict_async(_records(pipeline))
        done.set()
        await beating

    asyncio.run(scenario())
    assert ticks >= len(TEXTS) // 2  # at least one turn of the loop per chunk


def test_the_start_up_probe_times_a_long_record_through_every_stage(pipeline: Pipeline) -> None:
    assert 0 < pipeline.probe_ms(repeats=3) < 60_000

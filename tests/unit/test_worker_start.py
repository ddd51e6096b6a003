"""The serving workers' start-up: garbage-collector settings and the probe that picks where local stages run
(``services.service``)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from services.service import _freeze_survivors, settle_heap


@pytest.fixture
def clean_gc() -> Iterator[None]:
    yield
    while _freeze_survivors in gc.callbacks:
        gc.callbacks.remove(_freeze_survivors)
    gc.unfreeze()


def test_start_up_objects_and_survivors_of_full_collections_are_frozen(clean_gc: None) -> None:
    settle_heap()
    settle_heap()  # a second service in the same process registers nothing twice
    assert gc.callbacks.count(_freeze_survivors) == 1
    frozen_at_start = gc.get_freeze_count()
    assert frozen_at_start > 0
    kept = [[i] for i in range(10_000)]  # long-lived, GC-tracked objects created after start-up
    gc.collect(1)  # a young collection freezes nothing
    assert gc.get_freeze_count() == frozen_at_start
    gc.collect()
    assert gc.get_freeze_count() >= frozen_at_start + len(kept)


def test_garbage_without_cycles_is_still_freed_after_settling(clean_gc: None) -> None:
    import weakref

    class Payload:
        pass

    settle_heap()
    payload = Payload()
    ref = weakref.ref(payload)
    del payload
    assert ref() is None


def test_the_start_up_probe_times_a_long_record_through_every_stage(trained_model_dir) -> None:
    from services.runtime import InferencePipeline
    from services.service import probe_ms

    pipeline = InferencePipeline.from_directory(trained_model_dir)
    elapsed = probe_ms(pipeline, repeats=3)
    assert 0 < elapsed < 60_000


def test_predict_declares_its_answer_media_type_so_bentoml_never_derives_it_per_response() -> None:
    """Without a declared type BentoML builds the answer model's JSON schema on every response to find it
    (a fifth of the worker's time at 32 reviews per request, docs/benchmarks.md)."""
    from unittest import mock

    from services.service import Tripod

    spec = Tripod.apis["predict"].output_spec
    with mock.patch.object(spec, "model_json_schema", side_effect=AssertionError("schema built")):
        assert spec.mime_type() == "application/json"


def test_stage_timer_records_one_observation_per_block() -> None:
    from services.metrics import StageTimer

    seen: list[float] = []

    class Child:
        def observe(self, seconds: float) -> None:
            seen.append(seconds)

    timer = StageTimer(Child())
    with pytest.raises(ValueError), timer:
        raise ValueError("a failing stage is still timed")
    with timer:
        pass
    assert len(seen) == 2 and all(s >= 0 for s in seen)

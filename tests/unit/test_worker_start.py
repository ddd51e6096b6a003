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

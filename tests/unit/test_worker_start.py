"""The serving workers' tuning (``services/http/worker.py``): garbage-collector settings, memory given back
after big calls, dying with the parent; and how ``/predict`` encodes its answer."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from services.http.worker import _freeze_survivors, settle_heap
from services.runtime.predictions import PredictionBatch


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
    assert gc.get_freeze_count() > 0
    # Only the collections this test asks for: an automatic full collection (set off by these allocations, or
    # by another thread of the test session) would freeze survivors at a moment the test does not control.
    gc.disable()
    try:
        kept = [[i] for i in range(10_000)]  # long-lived, GC-tracked objects created after start-up
        # Another thread of the session may free a frozen object meanwhile (a refcount reaching zero takes it
        # out of the permanent generation), so the counts may drop by a few, never rise without a full one.
        frozen_before = gc.get_freeze_count()
        gc.collect(1)  # a young collection freezes nothing
        assert gc.get_freeze_count() <= frozen_before
        gc.collect()
        assert gc.get_freeze_count() >= frozen_before + len(kept) - 100
    finally:
        gc.enable()


def test_garbage_without_cycles_is_still_freed_after_settling(clean_gc: None) -> None:
    import weakref

    class Payload:
        pass

    settle_heap()
    payload = Payload()
    ref = weakref.ref(payload)
    del payload
    assert ref() is None


def test_predict_encodes_its_answer_once_as_json_and_keeps_the_declared_schema() -> None:
    """BentoML sends a returned Response as it is; otherwise it validates, dumps and re-dumps the rows (a tenth
    of a 32-review request, 120 ms of event loop for 10,000 records)."""
    import json

    from starlette.responses import Response

    from services.http.predict import predict_answer
    from services.http.service import SERVICE

    batch = PredictionBatch(
        np.array(["pos", "neg"], dtype=object), np.array([[0.25, 0.75], [0.9, 0.1]]), ("neg", "pos")
    )
    response = predict_answer(batch)
    assert isinstance(response, Response) and response.media_type == "application/json"
    assert json.loads(bytes(response.body)) == batch.records()
    schema = SERVICE.apis["predict"].output_spec.model_json_schema()
    assert "predicted_label" in json.dumps(schema)


def test_memory_is_given_back_only_after_calls_of_several_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.runtime.memory import ReleaseMemory
    from services.runtime.pipeline import Call

    trims: list[int] = []
    release = ReleaseMemory(chunk_rows=64)
    monkeypatch.setattr(release, "_trim", trims.append)
    release.call_done(Call(), PredictionBatch(values=np.zeros(64)))
    assert trims == []
    release.call_done(Call(), PredictionBatch(values=np.zeros(65)))
    assert trims == [0]


def test_a_worker_gets_sigterm_when_its_parent_dies(tmp_path: Path) -> None:
    """The reason ``tripod serve`` killed with SIGKILL leaves no server behind: its children ask for this."""
    import subprocess
    import sys
    import time

    marker = tmp_path / "terminated"
    child = (
        "import signal, sys, time, pathlib\n"
        "from services.http.worker import die_with_parent\n"
        f"signal.signal(signal.SIGTERM, lambda *_: (pathlib.Path({str(marker)!r}).write_text('x'), sys.exit(0)))\n"
        "die_with_parent()\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n"
    )
    parent = (
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen([sys.executable, '-c', {child!r}], stdout=subprocess.PIPE)\n"
        "p.stdout.readline()\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(30)\n"
    )
    outer = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True)
    assert outer.stdout is not None
    outer.stdout.readline()
    outer.kill()
    outer.wait()
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists()

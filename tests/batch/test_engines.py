"""The in-process engine: worker processes answer mini-batches as ``/invocations`` would, refuse bad records
with their status, and a worker that dies fails only the answers it held."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from services.batch.engines import InProcessEngine, RecordsRefused


@pytest.fixture
def engine(trained_model_dir: Path) -> Iterator[InProcessEngine]:
    running = InProcessEngine(
        trained_model_dir, content_type="text/csv", accept="text/csv", keys=None, workers=1
    )
    try:
        yield running
    finally:
        running.close()


def test_a_worker_answers_a_csv_mini_batch_one_line_per_record(engine: InProcessEngine) -> None:
    answer = engine.submit(b"lovely dress\nawful fit\n").result(timeout=120)

    lines = answer.decode().splitlines()
    assert len(lines) == 2 and all(
        line.split(",")[0] in {"positive", "neutral", "negative"} for line in lines
    )


def test_a_refused_record_raises_with_its_status_and_reason(engine: InProcessEngine) -> None:
    with pytest.raises(RecordsRefused) as caught:
        engine.submit(b"fine,but,three fields\n").result(timeout=120)

    assert caught.value.status == 422 and "expected 1 value(s)" in caught.value.message


def test_a_worker_killed_fails_its_answers_and_the_next_request_gets_a_fresh_worker(
    engine: InProcessEngine,
) -> None:
    engine.submit(b"warm up\n").result(timeout=120)
    (worker,) = [p for p in psutil.Process().children() if "spawn_main" in " ".join(p.cmdline())]

    in_flight = engine.submit(b"a long review of a dress that fits\n" * 50_000)
    worker.send_signal(signal.SIGKILL)
    with pytest.raises(Exception, match="terminated abruptly"):
        in_flight.result(timeout=120)

    assert engine.submit(b"after the restart\n").result(timeout=120).count(b"\n") == 1

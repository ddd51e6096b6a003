"""A running server follows its model pointer: a promoted version is verified and swapped in under load with
no failed request; a tampered version is refused, counted and logged while the old one keeps serving."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness.models import model_version_copy
from harness.server import RunningServer, running_server
from services.artifacts import point_latest


def _served_version(server: RunningServer) -> str:
    answer = httpx.get(f"{server.url}/v2/models/reviews", timeout=10).json()
    return str(answer["versions"][0])


def _metric(server: RunningServer, prefix: str) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix))


@pytest.fixture
def registry(trained_model_dir: Path, tmp_path: Path) -> Path:
    root = tmp_path / "registry" / "reviews"
    root.mkdir(parents=True)
    v1 = model_version_copy(trained_model_dir, root, "v1")
    model_version_copy(trained_model_dir, root, "v2")
    broken = model_version_copy(trained_model_dir, root, "v3")
    data = bytearray((broken / "classifier.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (broken / "classifier.onnx").write_bytes(bytes(data))
    point_latest(root, v1)
    return root


@pytest.fixture
def server(registry: Path, tmp_path: Path) -> Iterator[RunningServer]:
    env = {"TRIPOD_MODEL_POLL_S": "0.2"}
    with running_server(registry / "latest", env=env, log_path=tmp_path / "server.log") as running:
        yield running


def _wait_for(predicate, timeout_s: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_a_moved_pointer_is_served_without_a_restart_and_no_request_fails(
    server: RunningServer, registry: Path
) -> None:
    assert _served_version(server) == "v1"
    outcomes: Counter[int] = Counter()
    stop = threading.Event()

    def client() -> None:
        body = {"records": [{"review_body": "Lovely dress, runs small"}]}
        with httpx.Client(timeout=30) as http:
            while not stop.is_set() and sum(outcomes.values()) < 5_000:
                outcomes[http.post(f"{server.url}/predict", json=body).status_code] += 1

    clients = [threading.Thread(target=client) for _ in range(4)]
    for thread in clients:
        thread.start()
    try:
        time.sleep(0.5)
        point_latest(registry, registry / "v2")
        assert _wait_for(lambda: _served_version(server) == "v2")
        time.sleep(0.5)  # keep the load on after the swap
    finally:
        stop.set()
        for thread in clients:
            thread.join(30)
    assert set(outcomes) == {200} and outcomes[200] > 20, outcomes
    assert _metric(server, 'tripod_model_swaps_total{outcome="swapped",variant="AllTraffic"}') == 1
    assert (
        _metric(
            server,
            'tripod_model_info{candidate="tfidf_linear",model="reviews",variant="AllTraffic",version="v2"}',
        )
        == 1
    )


def test_a_tampered_version_is_refused_and_the_old_one_keeps_serving(
    server: RunningServer, registry: Path, tmp_path: Path
) -> None:
    point_latest(registry, registry / "v3")
    assert _wait_for(
        lambda: _metric(server, 'tripod_model_swaps_total{outcome="refused",variant="AllTraffic"}') == 1
    )
    time.sleep(1.0)  # several more polls: the same refused version is not tried (nor counted) again
    assert _metric(server, 'tripod_model_swaps_total{outcome="refused",variant="AllTraffic"}') == 1
    assert _served_version(server) == "v1"
    answer = httpx.post(f"{server.url}/predict", json={"records": [{"review_body": "nice"}]}, timeout=30)
    assert answer.status_code == 200
    log = (tmp_path / "server.log").read_text()
    assert "model swap refused, still serving v1: classifier.onnx does not match its sha256" in log
    point_latest(registry, registry / "v2")  # a good version after a bad one is taken
    assert _wait_for(lambda: _served_version(server) == "v2")


def test_promote_then_rollback_under_load_fails_no_request_and_the_server_follows(
    server: RunningServer, registry: Path
) -> None:
    def models(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "tripod.cli", "models", *args, "--registry", str(registry.parent)]
        done = [*command, "--name", "reviews"]
        return subprocess.run(done, capture_output=True, text=True, timeout=120, check=False)

    outcomes: Counter[int] = Counter()
    stop = threading.Event()

    def client() -> None:
        body = {"records": [{"review_body": "Soft fabric, true to size"}]}
        with httpx.Client(timeout=30) as http:
            while not stop.is_set() and sum(outcomes.values()) < 5_000:
                outcomes[http.post(f"{server.url}/predict", json=body).status_code] += 1

    clients = [threading.Thread(target=client) for _ in range(2)]
    for thread in clients:
        thread.start()
    try:
        promoted = models("promote", "--version", "v2", "--reason", "canary looked fine")
        assert promoted.returncode == 0, promoted.stderr
        assert _wait_for(lambda: _served_version(server) == "v2")
        refused = models("promote", "--version", "v3")  # the tampered one: refused, latest stays on v2
        assert refused.returncode == 2 and refused.stderr.startswith("tripod: error: ")
        rolled = models("rollback", "--reason", "back to v1")
        assert rolled.returncode == 0, rolled.stderr
        assert _wait_for(lambda: _served_version(server) == "v1")
    finally:
        stop.set()
        for thread in clients:
            thread.join(30)
    assert set(outcomes) == {200} and outcomes[200] > 20, outcomes
    assert _metric(server, 'tripod_model_swaps_total{outcome="swapped",variant="AllTraffic"}') == 2
    history = [line for line in (registry / "history.jsonl").read_text().splitlines() if line]
    assert len(history) == 2 and '"rollback"' in history[-1]

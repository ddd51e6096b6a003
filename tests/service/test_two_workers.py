"""A server started the way SageMaker starts the container (``services/http/entrypoint.py serve``) with two entry
workers: the protocols still hold, and ``/metrics`` shows exact Tripod counts however requests were spread."""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import numpy as np
import psutil
import pytest
import tritonclient.http as triton
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from harness.server import LOOPBACK, RunningServer, free_port, running_command, running_server
from services.monitoring.variants import DEFAULT_VARIANT
from services.runtime.cores import cpu_budget
from services.runtime.pipeline import Pipeline
from services.runtime.schema import Records

ROOT = Path(__file__).resolve().parents[2]
TEXTS = [
    "Love it, fits perfectly",
    "Terrible, ripped after one wash",
    "It's okay I guess",
    "",
    "Gorgeous color!",
]


@pytest.fixture(scope="module")
def bentoml_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bentoml_home")


@pytest.fixture(scope="module")
def sagemaker_server(
    trained_model_dir: Path, bentoml_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    port = free_port()
    env = {
        "BENTOML_HOST": LOOPBACK,  # the entry point binds 0.0.0.0 in a container; tests stay on loopback
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "SAGEMAKER_MODEL_SERVER_WORKERS": "2",
        "TRIPOD_MODEL_DIR": str(trained_model_dir),
        "BENTOML_HOME": str(bentoml_home),
    }
    command = [sys.executable, str(ROOT / "services" / "http" / "entrypoint.py"), "serve"]
    log = tmp_path_factory.mktemp("sagemaker_server") / "server.log"
    with running_command(command, port, env=env, log_path=log) as server:
        yield server


def _entry_worker_pids(server: RunningServer) -> list[int]:
    children = psutil.Process(server.pid).children(recursive=True)
    return [p.pid for p in children if "--service-name tripod " in " ".join(p.cmdline()) + " "]


def test_the_entrypoint_serves_the_sagemaker_contract_with_two_entry_workers(
    sagemaker_server: RunningServer, pipeline: Pipeline, column: str
) -> None:
    assert len(_entry_worker_pids(sagemaker_server)) == 2
    ping = httpx.get(f"{sagemaker_server.url}/ping", timeout=2)
    assert (ping.status_code, ping.content) == (200, b"")
    response = httpx.post(
        f"{sagemaker_server.url}/invocations",
        content=b'great\n"Awful,\nripped"\n',
        headers={"content-type": "text/csv", "accept": "application/jsonlines"},
        timeout=30,
    )
    expected = pipeline.predict(Records([["great"], ["Awful,\nripped"]]))
    assert expected.labels is not None
    assert [line.split('"')[3] for line in response.text.splitlines()] == list(expected.labels)
    bad = httpx.post(
        f"{sagemaker_server.url}/invocations",
        content=b"x",
        headers={"content-type": "text/plain"},
        timeout=30,
    )
    assert bad.status_code == 415 and "error" in bad.json()
    with triton.InferenceServerClient(urlparse(sagemaker_server.url).netloc) as client:
        assert client.is_server_ready()
        tensor = triton.InferInput(column, [2], "BYTES")
        tensor.set_data_from_numpy(np.array(["great", "Awful,\nripped"], dtype=object))
        result = client.infer(pipeline.manifest.name, [tensor])
        assert [label.decode() for label in result.as_numpy("predicted_label")] == list(expected.labels)


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_every_prediction_exactly_across_two_workers(
    sagemaker_server: RunningServer,
    pipeline: Pipeline,
    column: str,
    bentoml_home: Path,
    tmp_path: Path,
) -> None:
    assert pipeline.manifest is not None
    name, version = pipeline.manifest.name, pipeline.manifest.version
    url = sagemaker_server.url
    before = _samples(httpx.get(f"{url}/metrics", timeout=10).text)

    def send(i: int) -> tuple[int, list[str]]:
        texts = [f"{TEXTS[(i + j) % len(TEXTS)]} {i}" for j in range(1 + i % 4)]  # 1..4 records per request
        if i % 3 == 0:
            response = httpx.post(
                f"{url}/predict", json={"records": [{column: t} for t in texts]}, timeout=30
            )
            labels = [row["predicted_label"] for row in response.json()]
        elif i % 3 == 1:
            response = httpx.post(
                f"{url}/invocations?keys=predicted_label",
                timeout=30,
                json={"instances": [{column: t} for t in texts]},
            )
            labels = [row["predicted_label"] for row in response.json()["predictions"]]
        else:
            body = {"inputs": [{"name": column, "shape": [len(texts)], "datatype": "BYTES", "data": texts}]}
            response = httpx.post(f"{url}/v2/models/{name}/infer", json=body, timeout=30)
            labels = response.json()["outputs"][0]["data"]
        assert response.status_code == 200, response.text
        return len(texts), labels

    requests = 36
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(send, range(requests)))
    for _ in range(3):  # refused requests predict nothing and count nothing
        assert (
            httpx.post(f"{url}/invocations", content=b"", headers={"content-type": "text/csv"}).status_code
            == 422
        )
    records = sum(n for n, _ in answers)
    by_label = Counter(label for _, labels in answers for label in labels)

    for _ in range(4):  # each scrape may land on either worker: every one must show the whole server
        after = _samples(httpx.get(f"{url}/metrics", timeout=10).text)

        def delta(metric: str, scraped: dict[Any, float] = after, **labels: str) -> float:
            key = (metric, frozenset({**labels, "variant": DEFAULT_VARIANT}.items()))
            return scraped.get(key, 0.0) - before.get(key, 0.0)

        for label in pipeline.class_names:
            assert (
                delta("tripod_predictions_total", model=name, version=version, label=label) == by_label[label]
            )
        assert delta("tripod_request_records_count") == requests
        assert delta("tripod_request_records_sum") == records
        assert delta("tripod_request_records_bucket", le="2.0") == sum(1 for n, _ in answers if n <= 2)
        for stage in ("transformer", "classifier", "inverse_label"):
            assert delta("tripod_stage_duration_seconds_count", stage=stage) == requests
        # /predict's body is decoded by BentoML; the other protocols' by Tripod's codecs, refused bodies too.
        decoded = sum(1 for i in range(requests) if i % 3 != 0)
        assert delta("tripod_stage_duration_seconds_count", stage="decode") == decoded + 3
        assert delta("tripod_stage_duration_seconds_count", stage="validate") == requests + 3
        info = {k: v for k, v in after.items() if k[0] == "tripod_model_info"}
        assert info == {
            (
                "tripod_model_info",
                frozenset(
                    {
                        "model": name,
                        "version": version,
                        "candidate": pipeline.manifest.candidate.family,
                        "variant": DEFAULT_VARIANT,
                    }.items()
                ),
            ): 1.0
        }

    # Both entry workers answered predictions, so the exact totals above really merged two processes.
    per_worker = []
    for pid in _entry_worker_pids(sagemaker_server):
        alone = tmp_path / str(pid)
        alone.mkdir()
        for file in (bentoml_home / "prometheus_multiproc_dir").glob(f"counter_{pid}.db"):
            shutil.copy(file, alone)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))
        per_worker.append(
            sum(
                registry.get_sample_value(
                    "tripod_predictions_total",
                    {"model": name, "version": version, "label": label, "variant": DEFAULT_VARIANT},
                )
                or 0
                for label in pipeline.class_names
            )
        )
    assert len(per_worker) == 2 and all(count > 0 for count in per_worker), per_worker
    earlier = sum(v for (metric, _), v in before.items() if metric == "tripod_predictions_total")
    assert sum(per_worker) == earlier + records


def test_the_entry_service_starts_one_worker_per_usable_core_by_default(
    trained_model_dir: Path, column: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TRIPOD_WORKERS", raising=False)  # the suite pins one worker (tests/conftest.py)
    env = {"BENTOML_HOME": str(tmp_path / "bentoml")}
    with running_server(trained_model_dir, env=env, log_path=tmp_path / "server.log") as server:
        assert len(_entry_worker_pids(server)) == cpu_budget() == len(os.sched_getaffinity(0))
        answer = httpx.post(f"{server.url}/predict", json={"records": [{column: "great"}]}, timeout=30)
        assert answer.status_code == 200

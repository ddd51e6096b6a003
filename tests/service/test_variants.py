"""Production variants on a real server: weights, sticky keys, named variants, shadows that are captured and
never returned, OIP versions, exact per-variant metrics with two workers, and weights changed while serving."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.models import model_version_copy
from harness.server import RunningServer, running_server
from services.monitoring.variants import VariantTable
from tests.cli import error_line, run_cli

INVOKED = "x-amzn-invoked-production-variant"


def _write_variants(path: Path, variants: list[dict[str, Any]]) -> None:
    """Replace the file atomically, as a ConfigMap update or an editor's save-and-rename does."""
    staged = path.with_suffix(".tmp")
    staged.write_text(json.dumps({"variants": variants}))
    staged.replace(path)


@pytest.fixture(scope="module")
def versions(trained_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("variants") / "reviews"
    for version in ("v1", "v2", "v3"):
        model_version_copy(trained_model_dir, root, version)
    return root


@pytest.fixture(scope="module")
def server(versions: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, Path]]:
    """Variants ``current`` (v1, weight 4), ``candidate`` (v2, weight 1) and the shadow ``next`` (v3), with
    data capture on; the choice is seeded."""
    folder = tmp_path_factory.mktemp("variants-server")
    config = versions / "variants.json"
    _write_variants(
        config,
        [
            {"name": "current", "model": "v1", "weight": 4},
            {"name": "candidate", "model": "v2", "weight": 1},
            {"name": "next", "model": "v3", "shadow": True},
        ],
    )
    capture = folder / "capture"
    env = {
        "TRIPOD_VARIANTS": str(config),
        "TRIPOD_VARIANT_SEED": "11",
        "TRIPOD_CAPTURE_DESTINATION": str(capture),
        "TRIPOD_CAPTURE_FLUSH_S": "0.1",
    }
    with running_server(versions / "v1", env=env, log_path=folder / "server.log") as running:
        yield running, capture


def _predict(client: httpx.Client, column: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return client.post("/predict", json={"records": [{column: "Lovely dress, runs small."}]}, headers=headers)


def test_requests_are_shared_by_weight_within_binomial_tolerance(
    server: tuple[RunningServer, Path], column: str
) -> None:
    running, _ = server
    n = 3_000  # a few thousand requests: 4 standard deviations are ±88 around 600
    with httpx.Client(base_url=running.url, timeout=30) as client:
        seen = Counter(_predict(client, column).headers[INVOKED] for _ in range(n))
    assert set(seen) == {"current", "candidate"}  # never the shadow
    assert abs(seen["candidate"] - n / 5) < 4 * (n * 0.2 * 0.8) ** 0.5, seen


def test_a_sticky_key_keeps_its_variant_and_keys_land_where_the_table_says(
    server: tuple[RunningServer, Path], column: str
) -> None:
    running, _ = server
    table = VariantTable.build({"current": 4, "candidate": 1})
    with httpx.Client(base_url=running.url, timeout=30) as client:
        for i in range(60):
            key = f"customer-{i}"
            answers = {
                _predict(client, column, {"X-Tripod-Variant-Key": key}).headers[INVOKED] for _ in range(3)
            }
            assert answers == {table.sticky(key)}


@pytest.mark.parametrize("header", ["X-Amzn-SageMaker-Target-Variant", "X-Tripod-Target-Variant"])
def test_a_target_variant_header_pins_every_protocol(
    server: tuple[RunningServer, Path], column: str, header: str
) -> None:
    running, _ = server
    pinned = {header: "candidate"}
    with httpx.Client(base_url=running.url, timeout=30) as client:
        for _ in range(20):
            assert _predict(client, column, pinned).headers[INVOKED] == "candidate"
        answer = client.post(
            "/invocations", content=b"Lovely dress\n", headers={**pinned, "content-type": "text/csv"}
        )
        assert answer.status_code == 200 and answer.headers[INVOKED] == "candidate"


@pytest.mark.parametrize(
    ("name", "message"),
    [("blue", "no variant 'blue'"), ("next", "'next' is a shadow")],
    ids=["unknown", "shadow"],
)
def test_an_unknown_or_shadow_target_variant_is_a_json_400(
    server: tuple[RunningServer, Path], column: str, name: str, message: str
) -> None:
    running, _ = server
    with httpx.Client(base_url=running.url, timeout=30) as client:
        answer = _predict(client, column, {"X-Amzn-SageMaker-Target-Variant": name})
    assert answer.status_code == 400 and message in answer.json()["error"]


def test_oip_lists_variants_as_versions_and_a_version_path_pins_one(
    server: tuple[RunningServer, Path], column: str
) -> None:
    running, _ = server
    with httpx.Client(base_url=running.url, timeout=30) as client:
        assert client.get("/v2/models/reviews").json()["versions"] == ["current", "candidate"]
        index = client.post("/v2/repository/index").json()
        assert [(entry["version"], entry["state"]) for entry in index] == [
            ("current", "READY"),
            ("candidate", "READY"),
        ]
        body = {"inputs": [{"name": column, "shape": [1], "datatype": "BYTES", "data": ["Lovely dress"]}]}
        for version, variant in (
            ("candidate", "candidate"),
            ("v1", "current"),
        ):  # a variant, or its model version
            answer = client.post(f"/v2/models/reviews/versions/{version}/infer", json=body)
            assert answer.status_code == 200 and answer.headers[INVOKED] == variant
            assert answer.json()["model_version"] in (version, "v1", "v2")
        assert client.post("/v2/models/reviews/versions/v9/infer", json=body).status_code == 404


def test_the_shadow_answers_a_copy_that_is_captured_and_never_returned(
    server: tuple[RunningServer, Path], column: str
) -> None:
    running, capture = server
    ids = [f"shadow-check-{i}" for i in range(10)]
    with httpx.Client(base_url=running.url, timeout=30) as client:
        for inference_id in ids:
            answer = _predict(client, column, {"X-Amzn-SageMaker-Inference-Id": inference_id})
            assert answer.headers[INVOKED] != "next" and isinstance(answer.json(), list)

    def captured(variant: str) -> dict[str, dict[str, Any]]:
        found = {}
        for path in (capture / "reviews" / variant).rglob("*.jsonl"):
            for line in path.read_text().splitlines():
                record = json.loads(line)
                found[record["eventMetadata"].get("inferenceId")] = record
        return found

    deadline = time.monotonic() + 20
    while not set(ids) <= set(captured("next")) and time.monotonic() < deadline:
        time.sleep(0.1)
    shadows = captured("next")
    answering = {**captured("current"), **captured("candidate")}
    for inference_id in ids:
        shadow, primary = shadows[inference_id], answering[inference_id]
        assert shadow["captureData"]["endpointInput"] == primary["captureData"]["endpointInput"]
        output = shadow["captureData"]["endpointOutput"]
        assert output["observedContentType"] == "application/json"
        assert json.loads(output["data"])[0]["predicted_label"] in ("negative", "neutral", "positive")
    metrics = httpx.get(f"{running.url}/metrics", timeout=10).text
    assert (
        'tripod_model_info{candidate="tfidf_linear",model="reviews",variant="next",version="v3"} 1.0'
        in metrics
    )


def _samples(text: str, prefix: str) -> dict[str, float]:
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(prefix)
    }


def test_two_workers_count_each_variant_exactly_and_follow_new_weights_without_a_failed_request(
    versions: Path, tmp_path: Path, column: str
) -> None:
    config = tmp_path / "variants.json"
    _write_variants(
        config,
        [
            {"name": "blue", "model": str(versions / "v1"), "weight": 1},
            {"name": "green", "model": str(versions / "v2"), "weight": 1},
        ],
    )
    env = {"TRIPOD_VARIANTS": str(config), "TRIPOD_WORKERS": "2", "TRIPOD_MODEL_POLL_S": "0.2"}
    with (
        running_server(versions / "v1", env=env, log_path=tmp_path / "server.log") as running,
        httpx.Client(base_url=running.url, timeout=30) as client,
    ):
        for variant, count in (("blue", 30), ("green", 20)):
            for _ in range(count):
                assert _predict(client, column, {"X-Tripod-Target-Variant": variant}).status_code == 200
        for _ in range(4):  # each scrape may land on either worker; each must show the whole server
            text = client.get("/metrics").text
            requests = _samples(text, "tripod_http_requests_total{")
            records = _samples(text, "tripod_request_records_count{")
            for variant, count in (("blue", 30), ("green", 20)):
                key = f'tripod_http_requests_total{{method="POST",route="/predict",status="200",variant="{variant}"}}'
                assert requests[key] == count
                assert records[f'tripod_request_records_count{{variant="{variant}"}}'] == count

        failures: list[str] = []
        seen: list[str] = []
        stop = threading.Event()

        def load() -> None:
            with httpx.Client(base_url=running.url, timeout=30) as loader:
                while not stop.is_set():
                    answer = _predict(loader, column)
                    if answer.status_code != 200:
                        failures.append(answer.text)
                    seen.append(answer.headers.get(INVOKED, ""))

        thread = threading.Thread(target=load)
        thread.start()
        try:
            time.sleep(0.5)
            _write_variants(
                config,
                [
                    {"name": "blue", "model": str(versions / "v1"), "weight": 0},
                    {"name": "green", "model": str(versions / "v2"), "weight": 1},
                ],
            )
            time.sleep(1.5)  # both workers poll every 0.2 s
            mark = len(seen)
            time.sleep(1.0)
        finally:
            stop.set()
            thread.join(30)
        assert not failures
        assert set(seen[mark:]) == {"green"} and len(seen) > mark


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param('{"variants": [{"name": "a", "model": "absent"}]}', "absent", id="missing-model"),
        pytest.param(
            '{"variants": [{"name": "a", "model": "v1", "weight": 0}]}', "weight above 0", id="zero"
        ),
        pytest.param('{"variants": [', "is not valid JSON", id="malformed"),
        pytest.param(
            '{"variants": [{"name": "a", "model": "v1"}, {"name": "b", "model": "v1", "shadow": true}]}',
            None,
            id="valid",
        ),
    ],
)
def test_serve_checks_the_variants_file_before_starting(
    versions: Path,
    tmp_path: Path,
    content: str,
    message: str | None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = versions / f"variants-{tmp_path.name}.json"
    config.write_text(content)
    if message is None:  # a good file: the server starts and names each variant
        with running_server(versions / "v1", env={"TRIPOD_VARIANTS": str(config)}) as running:
            assert httpx.get(f"{running.url}/readyz", timeout=10).status_code == 200
        return
    code, _, err = run_cli(["serve", "--variants", str(config)], monkeypatch, capsys)
    assert code == 2 and message in error_line(err), err


def test_with_stage_services_each_variant_has_its_own_stages_and_a_shadow_still_runs(
    versions: Path, tmp_path: Path, column: str
) -> None:
    """``TRIPOD_STAGES=services``: every variant's rows go to its own three stage services (so rows of two
    models never share a batch), and the answers match the same models served in-process."""
    config = tmp_path / "variants.json"
    _write_variants(
        config,
        [
            {"name": "blue", "model": str(versions / "v1"), "weight": 1},
            {"name": "green", "model": str(versions / "v2"), "weight": 1},
            {"name": "next", "model": str(versions / "v3"), "shadow": True},
        ],
    )
    env = {"TRIPOD_VARIANTS": str(config), "TRIPOD_STAGES": "services"}
    texts = ["Lovely dress, runs small.", "Awful fabric, sent it back.", "It is fine."]
    with (
        running_server(versions / "v1", env=env, log_path=tmp_path / "server.log") as running,
        httpx.Client(base_url=running.url, timeout=60) as client,
    ):
        answers = {}
        for variant in ("blue", "green"):
            response = client.post(
                "/predict",
                json={"records": [{column: text} for text in texts]},
                headers={"X-Tripod-Target-Variant": variant},
            )
            assert response.status_code == 200 and response.headers[INVOKED] == variant
            answers[variant] = [row["predicted_label"] for row in response.json()]
        seen = Counter(_predict(client, column).headers[INVOKED] for _ in range(40))
        assert set(seen) == {"blue", "green"}

        def shadow_predictions() -> float:
            text = client.get("/metrics").text
            return sum(
                _samples(text, "tripod_predictions_total{").get(k, 0.0)
                for k in _samples(text, "tripod_predictions_total{")
                if 'variant="next"' in k
            )

        deadline = time.monotonic() + 20
        while shadow_predictions() < 3 * 2 + 40 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert shadow_predictions() == 3 * 2 + 40
    from services.runtime.pipeline import Pipeline
    from services.runtime.schema import Records

    local = Pipeline.from_directory(versions / "v1").predict(Records([{column: text} for text in texts]))
    assert answers["blue"] == answers["green"] == [row["predicted_label"] for row in local.records()]

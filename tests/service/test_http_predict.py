"""The BentoML pipeline over real HTTP: same answers as the in-process runtime, clear 4xx for bad input."""

from __future__ import annotations

import json
import urllib.request

import httpx
import numpy as np
import pytest

from harness.server import RunningServer
from services.runtime.pipeline import Pipeline
from services.runtime.schema import Records

REVIEWS = [
    "I love this dress, it fits perfectly and the fabric is gorgeous.",
    "Cheap material, the zipper broke on the first day. Returned.",
    "It's fine. Nothing special, runs a little large.",
    "",
    "Très jolie robe — I’m obsessed 😍",
]


def _records(texts: list[str], column: str) -> list[dict[str, str]]:
    return [{column: text} for text in texts]


def test_http_predictions_equal_the_in_process_runtime(server: RunningServer, pipeline: Pipeline) -> None:
    column = pipeline.input_names[0]
    response = httpx.post(f"{server.url}/predict", json={"records": _records(REVIEWS, column)}, timeout=30)
    assert response.status_code == 200
    served = response.json()
    local = pipeline.predict(Records(_records(REVIEWS, column))).records()
    assert [row["predicted_label"] for row in served] == [row["predicted_label"] for row in local]
    for got, want in zip(served, local, strict=True):
        assert set(got["probabilities"]) == set(pipeline.class_names)
        np.testing.assert_allclose(
            [got["probabilities"][c] for c in pipeline.class_names],
            [want["probabilities"][c] for c in pipeline.class_names],
            atol=1e-6,
        )
        assert got["probability"] == pytest.approx(max(got["probabilities"].values()), abs=1e-6)


def test_concurrent_requests_are_batched_without_mixing_answers(
    server: RunningServer, pipeline: Pipeline
) -> None:
    import concurrent.futures

    column = pipeline.input_names[0]
    texts = [f"{REVIEWS[i % 3]} #{i}" for i in range(24)]
    expected = [
        row["predicted_label"] for row in pipeline.predict(Records(_records(texts, column))).records()
    ]

    def one(text: str) -> str:
        response = httpx.post(f"{server.url}/predict", json={"records": [{column: text}]}, timeout=30)
        response.raise_for_status()
        return response.json()[0]["predicted_label"]

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(one, texts)) == expected


@pytest.mark.parametrize("path", ["/livez", "/readyz"])
def test_health_routes_answer_200(server: RunningServer, path: str) -> None:
    assert httpx.get(f"{server.url}{path}", timeout=10).status_code == 200


def test_metrics_are_prometheus_text(server: RunningServer, pipeline: Pipeline) -> None:
    httpx.post(
        f"{server.url}/predict", json={"records": _records(REVIEWS[:1], pipeline.input_names[0])}, timeout=30
    )
    response = httpx.get(f"{server.url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert (
        'tripod_http_requests_total{method="POST",route="/predict",status="200",variant="AllTraffic"}'
        in response.text
    )
    assert "tripod_http_requests_in_flight" in response.text


def test_requests_to_unknown_paths_share_one_metrics_label(server: RunningServer) -> None:
    """Labels come from route templates: 1,000 distinct unknown paths add one series, not 1,000."""
    before = httpx.get(f"{server.url}/metrics", timeout=10).text
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for i in range(1_000):
            assert client.get(f"/no/such/path/{i}").status_code == 404
            assert client.get(f"/v2/models/other-{i}/ready").status_code == 404
    after = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert 'route="unmatched",status="404"' in after
    assert 'route="/v2/models/{model_name}/ready",status="404"' in after
    assert "/no/such/path/" not in after and "other-" not in after
    assert len(after) < len(before) + 6_000


BAD_BODIES = [
    pytest.param(b'{"records": [{"review_body": "unfinished"', 400, "Invalid JSON", id="malformed-json"),
    pytest.param(b'{"records": [{"review_body": "\xff\xfe"}]}', 400, "Invalid JSON", id="invalid-utf8"),
    pytest.param(b'{"rows": []}', 400, "records", id="records-missing"),
    pytest.param(b'{"records": []}', 422, "holds no records", id="empty-list"),
    pytest.param(b'{"records": [{}]}', 422, "record 0: field '{col}' is required", id="missing-field"),
    pytest.param(
        b'{"records": [{"{col}": 42}]}',
        422,
        "record 0: field '{col}' must be a string, got int",
        id="wrong-type",
    ),
    pytest.param(b'{"records": [{"{col}": null}]}', 422, "must be a string, got NoneType", id="null-text"),
    pytest.param(
        b'{"records": [{"{col}": "ok", "stars": 5}]}', 422, "unknown field(s) ['stars']", id="unknown-field"
    ),
    pytest.param(b'{"records": "nope"}', 400, "records", id="records-not-a-list"),
]


@pytest.mark.parametrize(("body", "status", "message"), BAD_BODIES)
def test_bad_input_gets_a_4xx_json_error_and_the_server_stays_healthy(
    server: RunningServer, pipeline: Pipeline, body: bytes, status: int, message: str
) -> None:
    column = pipeline.input_names[0]
    body = body.replace(b"{col}", column.encode())
    response = httpx.post(
        f"{server.url}/predict", content=body, headers={"content-type": "application/json"}, timeout=30
    )
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()  # a JSON body, not an HTML page or an empty answer
    assert message.replace("{col}", column) in response.text
    good = httpx.post(f"{server.url}/predict", json={"records": [{column: "great"}]}, timeout=30)
    assert good.status_code == 200


def test_a_10_mb_body_is_refused_with_413_and_a_json_error(server: RunningServer, pipeline: Pipeline) -> None:
    body = json.dumps({"records": [{pipeline.input_names[0]: "a" * 10_000_000}]}).encode()
    request = urllib.request.Request(
        f"{server.url}/predict", data=body, headers={"content-type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30)
    assert caught.value.code == 413
    assert "larger than the limit" in json.loads(caught.value.read())["error"]
    assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200

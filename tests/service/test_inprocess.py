"""The fast tier: the entry service's ASGI app in this process (``SERVICE.to_asgi()`` behind Starlette's test
client), every protocol's routes and error shapes, no server to start.  The real-server tests beside it prove
the same app behind uvicorn, BentoML's workers and the stage services."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

from services.runtime.pipeline import Pipeline
from services.runtime.schema import Records


@pytest.fixture(scope="module")
def app(trained_model_dir: Path) -> Iterator[TestClient]:
    import services.http.service as service
    from services.settings import ServingSettings

    configured = service.SETTINGS
    service.SETTINGS = ServingSettings(model_dir=trained_model_dir)
    try:
        with TestClient(service.SERVICE.to_asgi(), raise_server_exceptions=False) as client:
            yield client
    finally:
        service.SETTINGS = configured


def _probabilities(rows: list[dict[str, object]], labels: tuple[str, ...]) -> np.ndarray:
    return np.asarray([[row["probabilities"][label] for label in labels] for row in rows], dtype=np.float32)  # type: ignore[index]


def test_predict_answers_what_the_pipeline_answers(app: TestClient, pipeline: Pipeline, column: str) -> None:
    texts = ["Love it", "Cheap fabric", ""]
    response = app.post("/predict", json={"records": [{column: t} for t in texts]})
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    expected = pipeline.predict(Records([[t] for t in texts]))
    assert [row["predicted_label"] for row in response.json()] == expected.labels.tolist()  # type: ignore[union-attr]
    np.testing.assert_array_equal(
        _probabilities(response.json(), pipeline.class_names),
        expected.probabilities.astype(np.float32),  # type: ignore[union-attr]
    )


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/csv", b'"Love it, really"\r\n"Awful"\r\n'),
        ("application/json", b'{"instances": [{"review_body": "Love it, really"}, ["Awful"]]}'),
        ("application/jsonlines", b'{"review_body": "Love it, really"}\n{"features": ["Awful"]}\n'),
    ],
)
@pytest.mark.parametrize("accept", ["application/json", "application/jsonlines", "text/csv"])
def test_invocations_take_every_format_and_answer_in_every_format(
    app: TestClient, pipeline: Pipeline, content_type: str, body: bytes, accept: str
) -> None:
    response = app.post(
        "/invocations", content=body, headers={"content-type": content_type, "accept": accept}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(accept)
    labels = pipeline.predict(Records([["Love it, really"], ["Awful"]])).labels.tolist()  # type: ignore[union-attr]
    if accept == "application/json":
        got = [row["predicted_label"] for row in response.json()["predictions"]]
    elif accept == "application/jsonlines":
        got = [json.loads(line)["predicted_label"] for line in response.text.splitlines()]
    else:
        got = [line.split(",")[0] for line in response.text.splitlines()]
    assert got == labels


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "message"),
    [
        (
            "post",
            "/predict",
            {"content": b'{"records": [{"review_body": 1}]}'},
            422,
            "must be a string, got int",
        ),
        ("post", "/predict", {"content": b'{"records": []}'}, 422, "holds no records"),
        (
            "post",
            "/invocations",
            {"content": b"x", "headers": {"content-type": "image/png"}},
            415,
            "not supported",
        ),
        (
            "post",
            "/invocations",
            {"content": b"[" * 999, "headers": {"content-type": "application/json"}},
            400,
            "JSON",
        ),
        (
            "post",
            "/invocations?keys=bogus",
            {"content": b"x", "headers": {"content-type": "text/csv"}},
            400,
            "bogus",
        ),
        ("post", "/v2/models/reviews/infer", {"content": b'{"inputs": 3}'}, 400, "invalid inference request"),
        ("get", "/v2/models/nope", {}, 404, "no model 'nope'"),
        ("get", "/no/such/route", {}, 404, "Not Found"),
        ("put", "/invocations", {}, 405, "Method Not Allowed"),
    ],
)
def test_every_error_is_json_with_its_status(
    app: TestClient, method: str, path: str, kwargs: dict[str, object], status: int, message: str
) -> None:
    response = getattr(app, method)(path, **kwargs)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert message in response.json()["error"]


def test_health_metadata_and_metrics_routes(app: TestClient, pipeline: Pipeline) -> None:
    assert app.get("/ping").status_code == 200
    assert app.get("/v2/health/ready").json() == {"ready": True}
    assert app.get(f"/v2/models/{pipeline.manifest.name}").json()["versions"] == [pipeline.manifest.version]
    assert app.get("/execution-parameters").json()["BatchStrategy"] == "MULTI_RECORD"
    assert app.post("/v2/repository/index").json()[0]["state"] == "READY"
    metrics = app.get("/metrics")
    assert metrics.status_code == 200 and "tripod_model_info" in metrics.text


def test_the_openapi_document_describes_every_protocol(app: TestClient) -> None:
    paths = app.get("/docs.json").json()["paths"]
    assert {"/predict", "/invocations", "/ping", "/v2/models/{model_name}/infer"} <= set(paths)
    answer = json.dumps(paths["/predict"]["post"]["responses"]["200"])
    assert "predicted_label" in answer or "$ref" in answer

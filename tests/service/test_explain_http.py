"""Explanations over real HTTP, in both stage topologies: ``/explain``, KServe's ``:explain`` and Clarify's
switch on ``/invocations`` answer what the in-process pipeline answers, point at the request's characters, and
refuse bad input with a JSON 4xx after which the next request still succeeds."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import numpy as np
import pytest

from harness.server import RunningServer
from services.runtime.explain.options import explain_options
from services.runtime.pipeline import Pipeline
from services.runtime.schema import Records

REVIEWS = [
    "I love this dress, it fits perfectly and the fabric is gorgeous.",
    "Cheap material, the zipper broke on the first day. Returned.",
    "😍 Très jolie robe — I’m obsessed, LOVE it",
    "",
]


def _post(server: RunningServer, path: str, body: object, **params: str) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, params=params, timeout=60)


def _records(column: str, texts: list[str] = REVIEWS) -> list[dict[str, str]]:
    return [{column: text} for text in texts]


@pytest.mark.parametrize("method", ["auto", "sampling"])
def test_explain_answers_the_in_process_pipeline_with_every_contribution(
    server: RunningServer, pipeline: Pipeline, column: str, method: str
) -> None:
    response = _post(server, "/explain", {"records": _records(column)}, method=method, top_k="1000", seed="3")
    assert response.status_code == 200, response.text
    served = response.json()
    options = explain_options(method=method, top_k=1000, seed=3, labels=pipeline.class_names)
    batch, explained = pipeline.explain(Records(_records(column)), options)
    local = [e.json(options, pipeline.class_names, i) for e, i in zip(explained, batch.indices, strict=True)]
    assert batch.labels is not None
    assert [row["predicted_label"] for row in served] == list(batch.labels)
    for row, want, text in zip(served, local, REVIEWS, strict=True):
        got = row["explanation"]
        assert got["method"] == want["method"]
        (explained_class,) = got["classes"]
        assert explained_class["label"] == row["predicted_label"]
        contributions = explained_class["contributions"]
        total = sum(c["contribution"] for c in contributions)
        assert total == pytest.approx(explained_class["value"] - explained_class["base_value"], abs=1e-5)
        np.testing.assert_allclose(
            [c["contribution"] for c in contributions],
            [c["contribution"] for c in want["classes"][0]["contributions"]],
            atol=1e-5,
        )
        for part in contributions:  # a word group is the text itself; an n-gram, its words lower-cased
            shown = text[part["start"] : part["end"]]
            assert shown == part["token"] or re.findall(r"\w+", shown.lower()) == part["token"].split()


def test_explain_all_classes_gives_one_entry_per_label(
    server: RunningServer, pipeline: Pipeline, column: str
) -> None:
    response = _post(server, "/explain", {"records": _records(column)[:1]}, **{"class": "all", "top_k": "3"})
    assert response.status_code == 200
    classes = response.json()[0]["explanation"]["classes"]
    assert [entry["label"] for entry in classes] == list(pipeline.class_names)
    assert all(len(entry["contributions"]) <= 3 for entry in classes)


def test_kserve_explain_takes_instances_and_names_the_model(
    server: RunningServer, pipeline: Pipeline, column: str
) -> None:
    name = pipeline.manifest.name
    response = _post(server, f"/v1/models/{name}:explain", {"instances": _records(column)[:2]})
    assert response.status_code == 200
    rows = response.json()["explanations"]
    assert len(rows) == 2 and all("explanation" in row for row in rows)
    missing = _post(server, "/v1/models/nope:explain", {"instances": _records(column)[:1]})
    assert missing.status_code == 404 and "nope" in missing.json()["error"]


def test_invocations_with_enable_explanations_answers_clarify_shaped_json(
    server: RunningServer, column: str
) -> None:
    body = "\n".join(json.dumps(r) for r in _records(column)[:2])
    headers = {
        "content-type": "application/jsonlines",
        "accept": "text/csv",
        "X-Amzn-SageMaker-Enable-Explanations": "`true`",
    }
    response = httpx.post(f"{server.url}/invocations", content=body, headers=headers, timeout=60)
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
    answer = response.json()
    assert answer["version"] == "1.0"
    assert answer["predictions"]["content_type"] == "text/csv"
    assert len(answer["predictions"]["data"].strip().splitlines()) == 2
    ((method, explanations),) = answer["explanations"].items()
    assert len(explanations) == 2 and all(e["method"] == method for e in explanations)

    plain = httpx.post(
        f"{server.url}/invocations",
        content=body,
        headers={**headers, "X-Amzn-SageMaker-Enable-Explanations": "`false`"},
        timeout=60,
    )
    assert plain.status_code == 200 and plain.headers["content-type"].startswith("text/csv")


BAD: list[tuple[str, dict[str, str], bytes, dict[str, str], int, str]] = [
    ("not json", {}, b"{", {}, 400, "not valid JSON"),
    ("deep nesting", {}, b"[" * 5000 + b"]" * 5000, {}, 400, "not valid JSON"),
    ("huge integer", {}, b'{"records": [{"x": ' + b"9" * 5000 + b"}]}", {}, 400, "not valid JSON"),
    ("invalid utf-8", {}, b'{"records": [{"x": "\xff"}]}', {}, 400, "UTF-8"),
    ("no records", {}, b'{"instances": []}', {}, 400, '{"records": [...]}'),
    ("extra field", {}, b'{"records": [], "more": 1}', {}, 400, "unknown top-level field"),
    ("unknown column", {}, b'{"records": [{"nope": "x"}]}', {}, 422, "unknown field"),
    ("wrong type", {}, b'{"records": [{"review_body": ["x"]}]}', {}, 422, "record 0"),
    ("bad class", {"class": "excellent"}, b'{"records": []}', {}, 400, "class must be one of"),
    ("bad budget", {"budget": "99999"}, b'{"records": []}', {}, 400, "budget must be between"),
    ("wrong media type", {}, b'{"records": []}', {"content-type": "text/plain"}, 415, ""),
]


@pytest.mark.parametrize(
    ("name", "params", "body", "headers", "status", "message"), BAD, ids=[b[0] for b in BAD]
)
def test_bad_explain_requests_get_a_json_4xx_and_the_next_request_succeeds(
    server: RunningServer,
    column: str,
    name: str,
    params: dict[str, str],
    body: bytes,
    headers: dict[str, str],
    status: int,
    message: str,
) -> None:
    sent = {"content-type": "application/json", **headers}
    response = httpx.post(f"{server.url}/explain", content=body, params=params, headers=sent, timeout=60)
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()
    assert message in error["error"]
    after = _post(server, "/explain", {"records": _records(column)[:1]})
    assert after.status_code == 200


def test_more_records_than_the_explanation_limit_is_413(server: RunningServer, column: str) -> None:
    response = _post(server, "/explain", {"records": _records(column, ["ok"] * 101)})
    assert response.status_code == 413 and "limit of 100" in response.json()["error"]


def test_an_enable_explanations_expression_tripod_cannot_evaluate_is_400(
    server: RunningServer, column: str
) -> None:
    response = httpx.post(
        f"{server.url}/invocations",
        content=json.dumps(_records(column)[:1]),
        headers={"content-type": "application/json", "X-Amzn-SageMaker-Enable-Explanations": "[0]>`0.5`"},
        timeout=60,
    )
    assert response.status_code == 400 and "JMESPath literals" in response.json()["error"]


def test_explain_counts_in_the_metrics_by_route(server: RunningServer, column: str) -> None:
    _post(server, "/explain", {"records": _records(column)[:1]})
    metrics = httpx.get(f"{server.url}/metrics", timeout=30).text
    assert 'route="/explain"' in metrics

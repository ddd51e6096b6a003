"""The SageMaker container contract over real HTTP: content types × Accept, response keys, ping, limits."""

from __future__ import annotations

import csv
import io
import json
import time
from typing import Any

import httpx
import numpy as np
import pytest

from harness.server import RunningServer
from services.runtime.limits import Limits
from services.runtime.pipeline import Pipeline
from services.runtime.schema import Records

TEXTS = [
    'Fits great, "true to size", love it',
    "Awful.\nThe seams split on day one,\r\nreturned it",
    "It's okay, I guess",
    "",
    "Très jolie robe — I’m obsessed 😍",
]
DEFAULT_KEYS = ["predicted_label", "probability"]


def _csv(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows(
        rows
    )  # RFC 4180: CRLF line ends, quotes doubled, fields with , " or newlines quoted
    return out.getvalue().encode()


def _bodies(column: str) -> dict[str, tuple[str, bytes]]:
    records = [{column: text} for text in TEXTS]
    return {
        "csv": ("text/csv", _csv([[text] for text in TEXTS])),
        "json-instances": ("application/json", json.dumps({"instances": records}).encode()),
        "json-list": ("application/json", json.dumps(records).encode()),
        "json-positional": (
            "application/json",
            json.dumps({"instances": [[text] for text in TEXTS]}).encode(),
        ),
        "json-features": (
            "application/json",
            json.dumps({"instances": [{"features": [t]} for t in TEXTS]}).encode(),
        ),
        "jsonlines": ("application/jsonlines", "".join(json.dumps(r) + "\n" for r in records).encode()),
    }


def _answers(response: httpx.Response, kind: str, keys: list[str]) -> list[dict[str, Any]]:
    """Decode an /invocations answer back to records, whatever its type."""
    assert response.headers["content-type"].startswith(kind)
    if kind == "application/json":
        return response.json()["predictions"]
    if kind == "application/jsonlines":
        return [json.loads(line) for line in response.text.splitlines()]
    rows = list(csv.reader(io.StringIO(response.text, newline="")))
    decoded = []
    for row in rows:
        assert len(row) == len(keys)
        record: dict[str, Any] = {}
        for key, value in zip(keys, row, strict=True):
            record[key] = (
                json.loads(value)
                if key in ("probabilities", "labels")
                else (float(value) if key == "probability" else value)
            )
        decoded.append(record)
    return decoded


def _expected(pipeline: Pipeline, texts: list[str]) -> list[dict[str, Any]]:
    batch = pipeline.predict(Records([[t] for t in texts]))
    assert batch.labels is not None and batch.probabilities is not None
    return [
        {
            "predicted_label": str(label),
            "probability": float(row.max()),
            "probabilities": row.tolist(),
            "labels": list(pipeline.class_names),
        }
        for label, row in zip(batch.labels, batch.probabilities, strict=True)
    ]


@pytest.mark.parametrize("accept", [None, "application/json", "application/jsonlines", "text/csv"])
@pytest.mark.parametrize(
    "body", ["csv", "json-instances", "json-list", "json-positional", "json-features", "jsonlines"]
)
def test_every_content_type_and_accept_gives_the_in_process_answers(
    server: RunningServer, pipeline: Pipeline, column: str, body: str, accept: str | None
) -> None:
    content_type, content = _bodies(column)[body]
    headers = {"content-type": content_type, **({"accept": accept} if accept else {})}
    response = httpx.post(f"{server.url}/invocations", content=content, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    got = _answers(response, accept or "application/json", DEFAULT_KEYS)
    want = _expected(pipeline, TEXTS)
    assert [set(row) for row in got] == [set(DEFAULT_KEYS)] * len(TEXTS)
    assert [row["predicted_label"] for row in got] == [row["predicted_label"] for row in want]
    np.testing.assert_allclose(
        [row["probability"] for row in got], [row["probability"] for row in want], atol=1e-6
    )


@pytest.mark.parametrize(
    "keys",
    [
        ["predicted_label"],
        ["probabilities", "labels"],
        ["labels", "predicted_label", "probability", "probabilities"],
    ],
    ids=["label-only", "probabilities-and-labels", "all-keys-reordered"],
)
@pytest.mark.parametrize("via", ["query", "header"])
@pytest.mark.parametrize("accept", ["application/json", "application/jsonlines", "text/csv"])
def test_response_keys_are_chosen_per_request(
    server: RunningServer, pipeline: Pipeline, keys: list[str], via: str, accept: str
) -> None:
    params = {"keys": ",".join(keys)} if via == "query" else {}
    headers = {"content-type": "text/csv", "accept": accept}
    if via == "header":
        headers["x-tripod-response-keys"] = ",".join(keys)
    response = httpx.post(
        f"{server.url}/invocations",
        params=params,
        content=_csv([[t] for t in TEXTS[:3]]),
        headers=headers,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    got = _answers(response, accept, keys)
    want = _expected(pipeline, TEXTS[:3])
    for got_row, want_row in zip(got, want, strict=True):
        assert list(got_row) == keys
        for key in keys:
            if key in ("probability", "probabilities"):
                np.testing.assert_allclose(got_row[key], want_row[key], atol=1e-6)
            else:
                assert got_row[key] == want_row[key]


def test_csv_answers_quote_list_values_as_json_arrays(server: RunningServer, pipeline: Pipeline) -> None:
    response = httpx.post(
        f"{server.url}/invocations?keys=predicted_label,labels",
        content=b"great\n",
        headers={"content-type": "text/csv", "accept": "text/csv"},
        timeout=30,
    )
    label = _expected(pipeline, ["great"])[0]["predicted_label"]
    assert (
        response.text == f'{label},"{json.dumps(list(pipeline.class_names)).replace(chr(34), chr(34) * 2)}"\n'
    )


def test_accept_quality_and_wildcards_are_honoured(server: RunningServer) -> None:
    post = lambda accept: httpx.post(  # noqa: E731
        f"{server.url}/invocations",
        content=b"great\n",
        headers={"content-type": "text/csv", "accept": accept},
        timeout=30,
    )
    assert (
        post("text/csv;q=0.5, application/jsonlines")
        .headers["content-type"]
        .startswith("application/jsonlines")
    )
    assert post("text/*").headers["content-type"].startswith("text/csv")
    assert post("*/*").headers["content-type"].startswith("application/json")
    assert post("image/png, text/csv;q=0.1").headers["content-type"].startswith("text/csv")


def test_blank_csv_lines_are_skipped_and_an_empty_text_is_a_quoted_field(
    server: RunningServer, pipeline: Pipeline
) -> None:
    response = httpx.post(
        f"{server.url}/invocations",
        content=b'\r\ngreat\r\n\r\n""\r\n',
        headers={"content-type": "text/csv"},
        timeout=30,
    )
    assert [row["predicted_label"] for row in response.json()["predictions"]] == [
        row["predicted_label"] for row in _expected(pipeline, ["great", ""])
    ]


def test_custom_attributes_are_passed_through(server: RunningServer) -> None:
    attributes = "trace_id=abc-123,tenant=acme"
    response = httpx.post(
        f"{server.url}/invocations",
        content=b"great\n",
        timeout=30,
        headers={"content-type": "text/csv", "X-Amzn-SageMaker-Custom-Attributes": attributes},
    )
    assert response.status_code == 200
    assert response.headers["X-Amzn-SageMaker-Custom-Attributes"] == attributes
    plain = httpx.post(
        f"{server.url}/invocations", content=b"great\n", headers={"content-type": "text/csv"}, timeout=30
    )
    assert "X-Amzn-SageMaker-Custom-Attributes" not in plain.headers


def test_ping_answers_200_with_an_empty_body_within_2_seconds(server: RunningServer) -> None:
    started = time.perf_counter()
    response = httpx.get(f"{server.url}/ping", timeout=2)
    assert time.perf_counter() - started < 2
    assert response.status_code == 200
    assert response.content == b""


def test_execution_parameters_describe_batch_transform_limits(server: RunningServer) -> None:
    response = httpx.get(f"{server.url}/execution-parameters", timeout=10)
    assert response.status_code == 200
    assert response.json() == {
        "MaxConcurrentTransforms": 4,
        "BatchStrategy": "MULTI_RECORD",
        "MaxPayloadInMB": 6,
    }


def test_over_long_text_is_cut_to_max_text_chars_before_the_transformer(
    server: RunningServer, pipeline: Pipeline, column: str
) -> None:
    head = "Awful cheap fabric, ripped, returned. " * 600  # 22,800 characters: past the 20,000 cut
    text = head + " Love it, perfect, gorgeous, great fit!" * 3000
    response = httpx.post(
        f"{server.url}/invocations?keys=probabilities", json={"instances": [{column: text}]}, timeout=30
    )
    assert response.status_code == 200, response.text
    got = response.json()["predictions"][0]["probabilities"]
    np.testing.assert_allclose(got, _expected(pipeline, [text[:20_000]])[0]["probabilities"], atol=1e-6)
    uncut = Pipeline(pipeline.graphs, pipeline.stages, limits=Limits(max_text_chars=1_000_000))
    assert uncut.predict(Records([[text]])).probabilities is not None
    assert not np.allclose(got, uncut.predict(Records([[text]])).probabilities[0], atol=1e-3)  # type: ignore[index]


def _too_many_records() -> bytes:
    return b"ok\n" * 10_001


LIMITS = [
    pytest.param(
        "text/csv", b"a" * (6 * 1024 * 1024 + 1), None, 413, "larger than the limit", id="body-over-6-MiB"
    ),
    pytest.param(
        "text/csv",
        _too_many_records(),
        None,
        413,
        "10001 records is more than the limit of 10000",
        id="too-many-records",
    ),
    pytest.param(
        "text/plain", b"great", None, 415, "Content-Type 'text/plain' is not supported", id="text-plain"
    ),
    pytest.param(None, b"great", None, 415, "Content-Type is required", id="no-content-type"),
    pytest.param("text/csv; charset=latin-1", b"great", None, 415, "charset 'latin-1'", id="latin-1"),
    pytest.param("text/csv", b"great", "image/png", 406, "names no type", id="accept-png"),
    pytest.param("text/csv", b"caf\xe9 \xff\n", None, 400, "not UTF-8", id="csv-invalid-utf8"),
    pytest.param("application/json", b'{"instances": [', None, 400, "not valid JSON", id="malformed-json"),
    pytest.param("application/json", b'{"rows": 1}', None, 400, '{"instances": [...]}', id="json-envelope"),
    pytest.param(
        "application/json",
        b'{"instances": [{"{col}": "\\ud800"}]}',
        None,
        400,
        "not valid JSON",  # strict JSON: a lone surrogate escape is not text
        id="lone-surrogate",
    ),
    pytest.param(
        "application/jsonlines",
        b'{"{col}": "ok"}\n{nope\n',
        None,
        400,
        "line 2 is not valid JSON",
        id="jsonlines-bad-line",
    ),
    pytest.param("text/csv", b'"unterminated\n', None, 400, "not valid CSV", id="csv-unterminated-quote"),
    pytest.param(
        "text/csv", b"ok\nok,extra\n", None, 422, "record 1: expected 1 value(s)", id="csv-extra-field"
    ),
    pytest.param(
        "application/json",
        b'[{"{col}": "ok"}, {"{col}": 5}]',
        None,
        422,
        "record 1: field '{col}' must be a string, got int",
        id="json-wrong-type",
    ),
    pytest.param(
        "application/json",
        b'[{"{col}": "ok"}, {}]',
        None,
        422,
        "record 1: field '{col}' is required",
        id="json-missing-field",
    ),
    pytest.param(
        "application/json",
        b'[{"{col}": "ok", "stars": 5}]',
        None,
        422,
        "unknown field(s) ['stars']",
        id="json-unknown-field",
    ),
    pytest.param("application/json", b"[]", None, 422, "holds no records", id="json-empty-list"),
    pytest.param("text/csv", b"", None, 422, "holds no records", id="empty-body"),
]


@pytest.mark.parametrize(("content_type", "body", "accept", "status", "message"), LIMITS)
def test_each_limit_answers_its_status_with_a_json_error_and_the_next_request_succeeds(
    server: RunningServer,
    column: str,
    content_type: str | None,
    body: bytes,
    accept: str | None,
    status: int,
    message: str,
) -> None:
    headers = {k: v for k, v in {"content-type": content_type, "accept": accept}.items() if v}
    response = httpx.post(
        f"{server.url}/invocations",
        content=body.replace(b"{col}", column.encode()),
        headers=headers,
        timeout=60,
    )
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert message.replace("{col}", column) in response.json()["error"]
    good = httpx.post(
        f"{server.url}/invocations", content=b"great\n", headers={"content-type": "text/csv"}, timeout=30
    )
    assert good.status_code == 200


def test_an_unknown_response_key_is_a_400(server: RunningServer) -> None:
    response = httpx.post(
        f"{server.url}/invocations?keys=predicted_label,predicted_value",
        content=b"great\n",
        headers={"content-type": "text/csv"},
        timeout=30,
    )
    assert response.status_code == 400
    assert "['predicted_value'] are not available" in response.json()["error"]

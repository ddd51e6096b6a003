"""``POST /predict`` answered by the fast path (services/http/fast_predict.py) is the route's answer, byte for byte;
what the fast path does not take goes to BentoML's route."""

from __future__ import annotations

import httpx
import pytest

from harness.server import RunningServer
from services.http.fast_predict import plain_records

# BentoML's input model ignores keys it does not declare, so an extra key sends the same records down the route.
VIA_THE_ROUTE = {"note": "any other key makes the body BentoML's route's"}
ANSWER_HEADERS = ("content-type", "content-length", "server", "x-amzn-invoked-production-variant")


def _post(server: RunningServer, body: object) -> httpx.Response:
    return httpx.post(f"{server.url}/predict", json=body, timeout=30)


@pytest.mark.parametrize(
    "records",
    [
        [{"review": "great"}],  # an unknown column: the pipeline's 422
        [],  # no records
        [{"text": "x"}] * 3,
    ],
    ids=["unknown-column", "empty", "several-unknown"],
)
def test_a_pipeline_error_gets_the_routes_answer_on_the_fast_path(
    default_server: RunningServer, records: list[dict[str, str]]
) -> None:
    fast = _post(default_server, {"records": records})
    routed = _post(default_server, {"records": records, **VIA_THE_ROUTE})
    assert (fast.status_code, fast.content) == (routed.status_code, routed.content)
    assert fast.status_code >= 400 or records == []


def test_the_fast_path_answers_the_routes_bytes_and_headers(
    default_server: RunningServer, column: str
) -> None:
    records = [{column: "Love it, fits perfectly"}, {column: "Ripped after one wash"}, {column: ""}]
    fast = _post(default_server, {"records": records})
    routed = _post(default_server, {"records": records, **VIA_THE_ROUTE})
    assert fast.status_code == routed.status_code == 200
    assert fast.content == routed.content
    assert [fast.headers.get(h) for h in ANSWER_HEADERS] == [routed.headers.get(h) for h in ANSWER_HEADERS]
    assert fast.headers["x-request-id"] != routed.headers["x-request-id"]


def test_bodies_that_are_not_plain_records_are_left_to_the_route() -> None:
    assert plain_records(b'{"records": [{"a": "x"}, {}]}') == [{"a": "x"}, {}]
    assert plain_records(b'{"records": []}') == []
    for body in (
        b'{"records": [{"a": "x"}], "other": 1}',  # another key
        b'[{"a": "x"}]',  # not the envelope
        b'{"records": {"a": "x"}}',  # not a list
        b'{"records": [["x"]]}',  # a record that is not an object
        b'{"records": [{"a": "x"}]',  # malformed
        b"\xff\xfe",  # not UTF-8
        b"[" * 500 + b"]" * 500,  # deeper than the parser allows
        b"",
    ):
        assert plain_records(body) is None, body

"""Fuzzing on loopback: schemathesis against the served OpenAPI document, and hypothesis-generated bodies
for ``/invocations``.  Bounded counts, derandomized so a failure reproduces; the contract is zero 5xx, a JSON
error body for every 4xx of Tripod's protocol routes, and a healthy server afterwards."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.core.result import Ok

from harness.server import RunningServer
from services.runtime.pipeline import Pipeline

schemathesis.serializer.alias("text/csv", "text/plain")
schemathesis.serializer.alias("application/jsonlines", "text/plain")

PROTOCOL_PREFIXES = ("/invocations", "/v2", "/ping", "/execution-parameters")
BOUNDED = settings(
    max_examples=30,
    deadline=None,
    database=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


def _check(response_status: int, path: str, content_type: str, text: str, request: str) -> None:
    assert response_status < 500, f"{response_status} for {request}: {text[:500]}"
    unrouted = response_status == 404 and text == "Not Found"  # BentoML's router: no route matches the path
    if response_status >= 400 and path.startswith(PROTOCOL_PREFIXES) and not unrouted:
        assert content_type.startswith("application/json"), f"{response_status} {content_type} for {request}"
        assert isinstance(json.loads(text)["error"], str)


def _assert_healthy(server: RunningServer, column: str) -> None:
    assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200
    good = httpx.post(f"{server.url}/invocations", json=[{column: "great"}], timeout=30)
    assert good.status_code == 200, good.text


def _fuzz(url: str, path: str, strategies: list[Any], *, examples: int) -> int:
    """Send up to ``examples`` generated cases of one operation; returns how many were sent."""
    sent = 0

    @settings(BOUNDED, max_examples=examples)
    @given(case=st.one_of(strategies))
    def fuzz(case: schemathesis.Case) -> None:
        nonlocal sent
        response = case.call(base_url=url, timeout=30)
        sent += 1
        content_type = {k.lower(): v for k, v in response.headers.items()}.get("content-type", [""])
        _check(response.status_code, path, content_type[0], response.text, case.as_curl_command())

    fuzz()
    return sent


def test_schemathesis_finds_no_5xx_in_the_served_openapi_document(
    default_server: RunningServer, pipeline: Pipeline, column: str
) -> None:
    server = default_server
    assert pipeline.manifest is not None
    schema = schemathesis.openapi.from_url(f"{server.url}/docs.json")
    real = {"model_name": pipeline.manifest.name, "model_version": pipeline.manifest.version}
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # every operation of the document loads
        operations.append(result.ok())
    assert {"/invocations", "/ping", "/v2/models/{model_name}/infer", "/predict"} <= {
        op.path for op in operations
    }
    seen = 0
    for operation in operations:
        has_input = bool(operation.path_parameters or operation.query or operation.body)
        strategies = []
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            if not has_input and mode is schemathesis.GenerationMode.NEGATIVE:
                continue
            for media_type in [body.media_type for body in operation.body] or [None]:
                strategies.append(operation.as_strategy(mode, media_type=media_type))
                if operation.path_parameters:  # also aim at the served model, or every case is a 404
                    names = {p.name for p in operation.path_parameters}
                    strategies.append(
                        operation.as_strategy(
                            mode,
                            media_type=media_type,
                            path_parameters={k: v for k, v in real.items() if k in names},
                        )
                    )

        seen += _fuzz(server.url, operation.path, strategies, examples=30 if has_input else 1)
    assert seen >= 200
    _assert_healthy(server, column)


_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=60)
# Printable ASCII without padding: h11 refuses header values with leading or trailing blanks.
_HEADER_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40).map(str.strip)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_TEXT, children, max_size=4),
    max_leaves=12,
)


@st.composite
def _invocation(draw: st.DrawFn, column: str) -> tuple[dict[str, str], bytes]:
    kind = draw(st.sampled_from(["csv", "json", "jsonlines", "bytes"]))
    if kind == "csv":
        rows = draw(st.lists(st.lists(_TEXT, min_size=0, max_size=3), max_size=6))
        out = io.StringIO()
        csv.writer(out).writerows(rows)
        body = out.getvalue().encode()
    elif kind == "json":
        records = st.one_of(st.fixed_dictionaries({column: _TEXT | _JSON}), _JSON)
        body = json.dumps(
            draw(
                st.one_of(
                    st.lists(records, max_size=5).map(lambda r: {"instances": r}),
                    st.lists(records, max_size=5),
                    _JSON,
                )
            )
        ).encode()
    elif kind == "jsonlines":
        lines = draw(st.lists(st.one_of(st.fixed_dictionaries({column: _TEXT}), _JSON), max_size=5))
        body = "".join(json.dumps(line) + "\n" for line in lines).encode()
    else:
        body = draw(st.binary(max_size=300))
    content_type = draw(
        st.one_of(
            st.sampled_from(
                [
                    "text/csv",
                    "application/json",
                    "application/jsonlines",
                    "text/csv; charset=utf-8",
                    "application/json; charset=latin-1",
                    "text/plain",
                    "application/x-ndjson",
                ]
            ),
            _HEADER_TEXT,
        )
    )
    headers = {"content-type": content_type}
    if draw(st.booleans()):
        headers["accept"] = draw(
            st.one_of(
                st.sampled_from(
                    ["text/csv", "application/jsonlines", "*/*", "text/*;q=0.2, application/json", "a/b"]
                ),
                _HEADER_TEXT,
            )
        )
    if draw(st.booleans()):
        headers["x-tripod-response-keys"] = draw(
            st.one_of(
                st.sampled_from(["predicted_label", "labels,probabilities", "probability,nope", ",,"]),
                _HEADER_TEXT,
            )
        )
    return headers, body


def test_generated_invocations_bodies_never_get_a_5xx(default_server: RunningServer, column: str) -> None:
    server = default_server
    statuses: set[int] = set()
    with httpx.Client(base_url=server.url, timeout=30) as client:

        @settings(BOUNDED, max_examples=200)
        @given(request=_invocation(column))
        def fuzz(request: tuple[dict[str, str], bytes]) -> None:
            headers, body = request
            response = client.post("/invocations", content=body, headers=headers)
            statuses.add(response.status_code)
            _check(
                response.status_code,
                "/invocations",
                response.headers.get("content-type", ""),
                response.text,
                f"{headers} {body[:200]!r}",
            )

        fuzz()
    assert (
        200 in statuses and {400, 415, 422} <= statuses
    )  # the generator reaches the decoders, not only 415s
    _assert_healthy(server, column)

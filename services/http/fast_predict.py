"""``POST /predict`` answered without BentoML's per-request API machinery, when the request needs none of it.

``/predict`` is a typed BentoML API (``services/http/service.py``): BentoML publishes its schema, OpenAPI document
and typed client from it.  Serving each request through it, though, means a Starlette request object, route
matching, two exception layers, BentoML's context, a pydantic model of the envelope and its wrapper around the
answer — 215 µs of the entry worker's 640 µs of CPU per single-review request, three times the three ONNX
stages (CPU time per request, docs/benchmarks.md "Ahead of the peers").

:class:`FastPredictMiddleware`, the innermost middleware, answers the requests that need none of that: a body
that is one JSON object whose only key is ``records``, a list of objects — exactly what the API's input model
accepts.  It parses the body once, runs the pipeline of the request's variant (chosen by the variant middleware,
as for the route), and answers with the route's own encoder, status and headers.  Everything else — malformed
JSON, another envelope, a record that is not an object — goes on to BentoML's route with the body replayed, so
every such error answer stays the route's.  A pipeline error (unknown columns, too many records, too long a
text) gets the route's error answer: both paths call :func:`predict_records`.  Every middleware
outside this one (request id, metrics, keys, variants, error JSON, body limits, data capture) sees the request
as before.
"""

from __future__ import annotations

from typing import Any, cast

import bentoml
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from services.codecs.json_records import parse_json
from services.errors import TripodError
from services.http.errors import maps_errors
from services.http.limits import replay_body
from services.http.predict import Predictions, predict_answer
from services.http.state import ServingState
from services.runtime.pipeline import Call
from services.runtime.schema import Records

ROUTE = "/predict"


async def _answered_by_the_middleware(_: object) -> None:
    """Stands for the route's endpoint in ``scope["route"]`` (never called)."""


PREDICT_ROUTE = Route(ROUTE, _answered_by_the_middleware, methods=["POST"])
SERVER_HEADER = "BentoML Service/tripod"
"""What BentoML's route puts in ``Server`` (kept, so both paths answer alike)."""


def plain_records(body: bytes) -> list[dict[str, Any]] | None:
    """The records of a ``{"records": [{…}, …]}`` body; None for any other body (BentoML's route answers it)."""
    try:
        payload = parse_json(body)
    except TripodError:
        return None
    if not isinstance(payload, dict) or len(payload) != 1:
        return None
    records = payload.get("records")
    if not isinstance(records, list) or not all(isinstance(record, dict) for record in records):
        return None
    return records


class FastPredictMiddleware:
    """Answers plain ``POST /predict`` requests itself; passes everything else on (module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != ROUTE or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        body = await _body(receive)
        if body is None:  # the client went away while sending
            return
        records = plain_records(body)
        if records is None:
            await self.app(scope, replay_body(body, receive), send)
            return
        scope["route"] = PREDICT_ROUTE  # as Starlette's router records it: metrics label by route template
        answer = cast(Response, await predict_records(bentoml.get_current_service().state, records))
        answer.headers["server"] = SERVER_HEADER
        await answer(scope, receive, send)


@maps_errors
async def predict_records(state: ServingState, records: list[dict[str, Any]]) -> Predictions:
    """``/predict``'s answer to these records, from the pipeline of the request's variant — the route and the
    fast path both call this (errors answered as every route answers them)."""
    batch = await state.pipeline.predict_async(Records(records), Call(ROUTE))
    return predict_answer(batch)


async def _body(receive: Receive) -> bytes | None:
    """The whole body (the body-limit middleware outside has already read and bounded it)."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)

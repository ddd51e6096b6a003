"""The SageMaker container contract: ``POST /invocations``, ``GET /ping``, ``GET /execution-parameters``.

``/invocations`` takes ``text/csv`` (no header, fields in manifest order), ``application/json``
(``{"instances": [...]}`` or a list) or ``application/jsonlines``; ``Accept`` picks the answer format; the
keys of each answer come from ``?keys=``, ``X-Tripod-Response-Keys`` or the server default
(``TRIPOD_RESPONSE_KEYS``, Autopilot's ``SAGEMAKER_INFERENCE_OUTPUT``).  ``X-Amzn-SageMaker-Custom-Attributes``
is echoed.  Decoding and encoding are the shared codecs; the records go through the one pipeline.

``X-Amzn-SageMaker-Enable-Explanations: `true``` (what ``InvokeEndpoint``'s ``EnableExplanations`` sends)
adds explanations as SageMaker Clarify's online explainability does: the answer becomes JSON with the model's
answer as a string under ``predictions`` (in the ``Accept`` format) and one explanation per record under
``explanations`` (docs/explain.md).  Only the JMESPath literals ```true``` and ```false``` are evaluated.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from services.codecs.answers import answer_rows, encode_answer, response_keys
from services.codecs.bodies import decode_body
from services.codecs.json_records import encode_json
from services.codecs.media import ACCEPT_TYPES, CSV, JSON, JSONLINES, answer_format
from services.errors import InvalidInput
from services.http.errors import ERROR_RESPONSES, maps_errors
from services.http.explain import ExplainQuery, explain_records, explanation_objects
from services.http.state import ServingState, serving_state
from services.runtime.pipeline import Call

CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
RESPONSE_KEYS_HEADER = "X-Tripod-Response-Keys"
ENABLE_EXPLANATIONS = "X-Amzn-SageMaker-Enable-Explanations"
MAX_CONCURRENT_TRANSFORMS_PER_WORKER = 4
"""What ``/execution-parameters`` advises per entry worker; see docs/api.md for the measurement."""

router = APIRouter(tags=["SageMaker"])
State = Annotated[ServingState, Depends(serving_state)]

_TEXT_SCHEMA = {"schema": {"type": "string"}}
_RECORD_SCHEMA: dict[str, Any] = {"oneOf": [{"type": "object"}, {"type": "array"}]}
_INVOCATIONS_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            CSV: _TEXT_SCHEMA,
            JSON: {
                "schema": {
                    "oneOf": [
                        {
                            "type": "object",
                            "properties": {"instances": {"type": "array", "items": _RECORD_SCHEMA}},
                            "required": ["instances"],
                        },
                        {"type": "array", "items": _RECORD_SCHEMA},
                    ]
                }
            },
            JSONLINES: _TEXT_SCHEMA,
        },
    }
}


def execution_parameters(*, max_concurrent_transforms: int, max_request_bytes: int) -> dict[str, object]:
    """What SageMaker batch transform asks ``GET /execution-parameters`` for."""
    return {
        "MaxConcurrentTransforms": max_concurrent_transforms,
        "BatchStrategy": "MULTI_RECORD",
        "MaxPayloadInMB": max(1, max_request_bytes // (1024 * 1024)),
    }


def explanations_enabled(value: str | None) -> bool:
    """Whether ``X-Amzn-SageMaker-Enable-Explanations`` asks for explanations.

    Raises:
        InvalidInput: an expression other than the literals ```true``` / ```false``` (also accepted bare).
    """
    if value is None:
        return False
    literal = value.strip().strip("`").strip().lower()
    if literal in ("true", "false"):
        return literal == "true"
    raise InvalidInput(
        f"{ENABLE_EXPLANATIONS}: Tripod evaluates only the JMESPath literals `true` and `false`, got {value[:64]!r}"
    )


@router.get("/ping", summary="SageMaker health check: 200 with an empty body")
@maps_errors
async def ping(state: State) -> Response:
    return Response(status_code=200 if await state.ready() else 503)


@router.post(
    "/invocations",
    summary="SageMaker inference: CSV, JSON or JSON Lines records in; Accept picks the answer",
    openapi_extra=_INVOCATIONS_BODY,
    responses={200: {"content": {t: {} for t in ACCEPT_TYPES}}, **ERROR_RESPONSES},
)
@maps_errors
async def invocations(
    state: State,
    request: Request,
    options: ExplainQuery,
    keys: str | None = Query(
        None, description="comma-separated answer keys: predicted_label, probability, probabilities, labels"
    ),
) -> Response:
    headers = request.headers
    pipeline, settings = state.pipeline, state.settings
    answer = answer_format(headers.get("accept"), settings.default_accept)
    chosen = response_keys(
        keys if keys is not None else headers.get(RESPONSE_KEYS_HEADER),
        settings.response_keys,
        regression=pipeline.regression,
    )
    body = await request.body()
    with pipeline.timed("decode"):
        records = decode_body(body, headers.get("content-type"))
    echo = {CUSTOM_ATTRIBUTES: attributes} if (attributes := headers.get(CUSTOM_ATTRIBUTES)) else {}
    if explanations_enabled(headers.get(ENABLE_EXPLANATIONS)):
        chosen_options = options.resolve(state)
        batch, explained = await explain_records(state, records, chosen_options, "/invocations")
        content = encode_answer(answer_rows(batch, chosen), answer)
        method = explained[0].method if explained else "none"
        clarify = {
            "version": "1.0",
            "predictions": {"content_type": answer, "data": content.decode("utf-8")},
            "explanations": {method: explanation_objects(pipeline, batch, explained, chosen_options)},
        }
        return Response(encode_json(clarify), media_type="application/json", headers=echo)
    batch = await pipeline.predict_async(records, Call("/invocations"))
    with pipeline.timed("encode"):
        content = encode_answer(answer_rows(batch, chosen), answer)
    return Response(content, media_type=answer, headers=echo)


@router.get("/execution-parameters", summary="SageMaker batch transform parameters")
@maps_errors
async def get_execution_parameters(state: State) -> dict[str, object]:
    settings = state.settings
    return execution_parameters(
        max_concurrent_transforms=MAX_CONCURRENT_TRANSFORMS_PER_WORKER * settings.workers,
        max_request_bytes=settings.max_request_bytes,
    )

"""Explanations over HTTP: ``POST /explain``, KServe's ``POST /v1/models/{name}:explain``, and SageMaker
Clarify's switch on ``/invocations`` (``X-Amzn-SageMaker-Enable-Explanations``, in ``sagemaker.py``).

Every route decodes its body with the shared codecs and calls ``Pipeline.explain_async``, so an explanation
obeys every rule of a prediction (body size, JSON depth, schema, text cut) and adds its own: at most
``TRIPOD_EXPLAIN_MAX_RECORDS`` records per request (each costs up to ``budget`` model calls) and a budget no
larger than ``TRIPOD_EXPLAIN_MAX_BUDGET``.  Query parameters: ``class`` (``predicted``, ``all`` or a label),
``top_k``, ``method`` (``auto``, ``linear``, ``sampling``), ``budget``, ``seed``.  docs/explain.md has the
answer's shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from services.codecs.json_records import INSTANCES, encode_json, parse_json
from services.codecs.text import utf8_text
from services.errors import InvalidInput, ModelNotFound, PayloadTooLarge
from services.http.errors import ERROR_RESPONSES, maps_errors
from services.http.state import ServingState, serving_state
from services.runtime.explain.explanation import Explanation
from services.runtime.explain.options import ExplainOptions, explain_options
from services.runtime.pipeline import Call, Pipeline
from services.runtime.predictions import PredictionBatch
from services.runtime.schema import Records

RECORDS = "records"

router = APIRouter(tags=["Explanations"])
State = Annotated[ServingState, Depends(serving_state)]


def _records_body(key: str) -> dict[str, Any]:
    """OpenAPI for a JSON body ``{key: [records]}``."""
    schema = {
        "type": "object",
        "properties": {key: {"type": "array", "items": {"type": "object"}}},
        "required": [key],
    }
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


@dataclass(frozen=True)
class Options:
    """The explanation's query parameters as sent; :meth:`resolve` checks them against the model."""

    raw: dict[str, str | None]

    def resolve(self, state: ServingState) -> ExplainOptions:
        return explain_options(
            **self.raw,
            labels=state.pipeline.class_names,
            max_budget=state.settings.explain_max_budget,
        )


async def explain_query(
    target: str | None = Query(None, alias="class", description="predicted (default), all, or a label"),
    top_k: str | None = Query(None, description="contributions per class, largest first (default 10)"),
    method: str | None = Query(None, description="auto (default), linear or sampling"),
    budget: str | None = Query(None, description="sampling: model evaluations per record (default 64)"),
    seed: str | None = Query(None, description="sampling: the seed (default 0)"),
) -> Options:
    """The query parameters (an async dependency: FastAPI would run a plain one on its thread pool)."""
    return Options({"target": target, "top_k": top_k, "method": method, "budget": budget, "seed": seed})


ExplainQuery = Annotated[Options, Depends(explain_query)]
"""A route's explanation options."""


def records_of(body: bytes, key: str) -> Records:
    """The records of a JSON body ``{key: [...]}``.

    Raises:
        InvalidInput: not UTF-8 JSON, or not an object with a ``key`` list.
    """
    payload = parse_json(utf8_text(body))
    if not isinstance(payload, dict) or not isinstance(payload.get(key), list):
        raise InvalidInput(f'expected a JSON object {{"{key}": [...]}}')
    unknown = sorted(set(payload) - {key})
    if unknown:
        raise InvalidInput(f"unknown top-level field {unknown[0][:80]!r}; expected only {key!r}")
    return Records(payload[key])


async def explain_records(
    state: ServingState, records: Records, options: ExplainOptions, route: str
) -> tuple[PredictionBatch, list[Explanation]]:
    """The pipeline's answers and explanations, within the explanation record limit."""
    limit = state.settings.explain_max_records
    if len(records) > limit:
        raise PayloadTooLarge(f"{len(records)} records is more than the limit of {limit} for explanations")
    return await state.pipeline.explain_async(records, options, Call(route))


def explanation_objects(
    pipeline: Pipeline, batch: PredictionBatch, explained: list[Explanation], options: ExplainOptions
) -> list[dict[str, Any]]:
    """Each record's ``explanation`` object, for the classes the options chose."""
    predicted = batch.indices.tolist() if not pipeline.regression else [None] * len(batch)
    return [
        explanation.json(options, pipeline.class_names, index)
        for explanation, index in zip(explained, predicted, strict=True)
    ]


async def explained_rows(
    state: ServingState, records: Records, options: ExplainOptions, route: str
) -> list[dict[str, Any]]:
    """Each record's answer (as ``/predict`` gives it) with its ``explanation``."""
    batch, explained = await explain_records(state, records, options, route)
    objects = explanation_objects(state.pipeline, batch, explained, options)
    return [{**row, "explanation": found} for row, found in zip(batch.records(), objects, strict=True)]


@router.post(
    "/explain",
    summary="Predict and explain: each record's answer with the contributions of its words and fields",
    openapi_extra=_records_body(RECORDS),
    responses=ERROR_RESPONSES,
)
@maps_errors
async def explain(state: State, request: Request, options: ExplainQuery) -> Response:
    records = records_of(await request.body(), RECORDS)
    rows = await explained_rows(state, records, options.resolve(state), "/explain")
    return Response(encode_json(rows), media_type="application/json")


@router.post(
    "/v1/models/{model_name}:explain",
    summary="KServe V1 explain: {instances: [...]} in, {explanations: [...]} out",
    openapi_extra=_records_body(INSTANCES),
    responses=ERROR_RESPONSES,
)
@maps_errors
async def kserve_explain(state: State, request: Request, model_name: str, options: ExplainQuery) -> Response:
    served = state.pipeline.manifest.name
    if model_name != served:
        raise ModelNotFound(f"model {model_name[:80]!r} is not served here; this server serves {served!r}")
    records = records_of(await request.body(), INSTANCES)
    rows = await explained_rows(state, records, options.resolve(state), "/v1/models/{model_name}:explain")
    return Response(encode_json({"explanations": rows}), media_type="application/json")

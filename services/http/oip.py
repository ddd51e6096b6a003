"""The Open Inference Protocol v2 routes (KServe v2, Triton's HTTP API), with Triton's model configuration,
model repository and statistics extensions, so every call ``tritonclient`` offers gets a JSON answer.

Health, server and model metadata, readiness and ``infer`` (JSON or binary tensors; request bodies may be
gzip or deflate, which ``tritonclient`` offers) are the core protocol.  ``/config`` describes the model as a
Triton model configuration; ``/v2/repository/index`` lists the one model this server holds; ``/stats`` gives
Triton's inference statistics from Tripod's Prometheus metrics, summed over every worker.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel

from services.artifacts import Manifest
from services.codecs.json_records import encode_json
from services.codecs.oip import (
    HEADER_LENGTH,
    PREDICTED_LABEL,
    PREDICTED_VALUE,
    PROBABILITIES,
    InferenceRequest,
    InferenceResponse,
    check_outputs,
    decode_inputs,
    encode_response,
    parse_request,
)
from services.errors import ModelNotFound, SchemaError
from services.http.errors import ERROR_RESPONSES, maps_errors
from services.http.requestid import adopt_body_id
from services.http.state import ServingState, serving_state
from services.monitoring.metrics import metric_totals
from services.monitoring.variants import current_variant
from services.runtime.pipeline import Call

router = APIRouter(tags=["Open Inference Protocol"])
State = Annotated[ServingState, Depends(serving_state)]
EXTENSIONS = ["binary_tensor_data", "model_configuration", "model_repository", "statistics"]
PLATFORM = "onnxruntime_onnx"


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def model_routes(method: str, suffix: str = "", **options: Any) -> Callable[[Endpoint], Endpoint]:
    """Register an endpoint at ``/v2/models/{model_name}<suffix>`` and at its versioned twin
    ``/v2/models/{model_name}/versions/{model_version}<suffix>``, as the protocol defines every model route
    (on the first, ``model_version`` is absent)."""

    def register(endpoint: Endpoint) -> Endpoint:
        for path in ("/v2/models/{model_name}", "/v2/models/{model_name}/versions/{model_version}"):
            router.add_api_route(path + suffix, endpoint, methods=[method], **options)
        return endpoint

    return register


def _tripod_version() -> str:
    try:
        return version("tripod")
    except PackageNotFoundError:  # running from a Bento's source tree, not an install
        return "unknown"


def model_tensors(manifest: Manifest) -> tuple[list[TensorMetadata], list[TensorMetadata]]:
    """The model's input and output tensors as the protocol names them."""
    inputs = [
        TensorMetadata(name=c.name, datatype="BYTES" if c.dtype == "string" else "FP32", shape=[-1])
        for c in manifest.inputs
    ]
    if manifest.is_regression:
        outputs = [TensorMetadata(name=PREDICTED_VALUE, datatype="FP32", shape=[-1])]
    else:
        outputs = [
            TensorMetadata(name=PREDICTED_LABEL, datatype="BYTES", shape=[-1]),
            TensorMetadata(name=PROBABILITIES, datatype="FP32", shape=[-1, len(manifest.labels)]),
        ]
    return inputs, outputs


def model_metadata(manifest: Manifest, versions: list[str]) -> ModelMetadata:
    inputs, outputs = model_tensors(manifest)
    return ModelMetadata(
        name=manifest.name, versions=versions, platform=PLATFORM, inputs=inputs, outputs=outputs
    )


def model_config(manifest: Manifest) -> dict[str, Any]:
    """The model as a Triton model configuration (what ``get_model_config`` reads)."""
    inputs, outputs = model_tensors(manifest)

    def entry(tensor: TensorMetadata) -> dict[str, Any]:
        return {
            "name": tensor.name,
            "data_type": f"TYPE_{'STRING' if tensor.datatype == 'BYTES' else tensor.datatype}",
            "dims": tensor.shape,
        }

    return {
        "name": manifest.name,
        "platform": PLATFORM,
        "backend": "onnxruntime",
        "version_policy": {"specific": {"versions": [manifest.version]}},
        "max_batch_size": 0,
        "input": [entry(t) for t in inputs],
        "output": [entry(t) for t in outputs],
        "parameters": {"candidate": {"string_value": manifest.candidate.family}},
    }


def check_datatypes(request: InferenceRequest, manifest: Manifest) -> None:
    """Each input tensor has the datatype the model's metadata advertises for it: ``BYTES`` for a string
    column, a numeric type for a numeric one.

    Raises:
        SchemaError: naming the input and both types.
    """
    columns = {column.name: column for column in manifest.inputs}
    for tensor in request.inputs:
        column = columns.get(tensor.name)
        if column is None:
            continue  # the schema names unknown inputs
        if column.dtype == "string" and tensor.datatype != "BYTES":
            raise SchemaError(f"input {tensor.name!r} must be BYTES, got {tensor.datatype!r}")
        if column.dtype == "float" and tensor.datatype == "BYTES":
            raise SchemaError(f"input {tensor.name!r} must be a numeric type (FP32), got 'BYTES'")


def served_model(state: ServingState, name: str, model_version: str | None = None) -> Manifest:
    """The manifest if ``name`` (and ``model_version``, when given) is what this server serves.

    Raises:
        ModelNotFound: another name or version.
    """
    manifest = state.pipeline.manifest
    if name != manifest.name or model_version not in (None, "", manifest.version, current_variant()):
        wanted = name if not model_version else f"{name} version {model_version}"
        raise ModelNotFound(f"no model {wanted!r}; this server serves {manifest.name!r} {manifest.version}")
    return manifest


def _json(payload: object, status: int = 200) -> Response:
    return Response(encode_json(payload), status_code=status, media_type="application/json")


@router.get("/v2", response_model=ServerMetadata)
@maps_errors
async def server_metadata() -> ServerMetadata:
    return ServerMetadata(name="tripod", version=_tripod_version(), extensions=EXTENSIONS)


@router.get("/v2/health/live")
@maps_errors
async def server_live() -> dict[str, bool]:
    return {"live": True}


@router.get("/v2/health/ready")
@maps_errors
async def server_ready(state: State) -> Response:
    ready = await state.ready()
    return _json({"ready": ready}, 200 if ready else 503)


# Before /v2/models/{model_name}, which would otherwise take "stats" for a model name.
@router.get("/v2/models/stats")
@maps_errors
async def all_model_statistics(state: State) -> dict[str, Any]:
    return inference_statistics(_served(state))


@model_routes("GET", response_model=ModelMetadata, responses=ERROR_RESPONSES)
@maps_errors
async def get_model_metadata(
    state: State, model_name: str, model_version: str | None = None
) -> ModelMetadata:
    return model_metadata(served_model(state, model_name, model_version), state.variants.versions())


@model_routes("GET", "/ready", responses=ERROR_RESPONSES)
@maps_errors
async def model_ready(state: State, model_name: str, model_version: str | None = None) -> Response:
    return await _ready(state, model_name, model_version)


async def _ready(state: ServingState, model_name: str, model_version: str | None) -> Response:
    manifest = served_model(state, model_name, model_version)
    ready = await state.ready()
    return _json({"name": manifest.name, "ready": ready}, 200 if ready else 503)


@model_routes("GET", "/config", responses=ERROR_RESPONSES)
@maps_errors
async def get_model_config(state: State, model_name: str, model_version: str | None = None) -> dict[str, Any]:
    return model_config(served_model(state, model_name, model_version))


@router.post("/v2/repository/index")
@maps_errors
async def repository_index(state: State) -> list[dict[str, str]]:
    """One entry per answering variant (the version is the variant's name, or the model's version when the
    server has no variants file)."""
    ready = await state.ready()
    return [
        {
            "name": manifest.name,
            "version": version,
            "state": "READY" if ready else "UNAVAILABLE",
            "reason": "",
        }
        for manifest, version, _ in _served(state)
    ]


def inference_statistics(served: list[tuple[Manifest, str, str]]) -> dict[str, Any]:
    """Triton's statistics, one entry per ``(manifest, version, variant)``, from the metrics every worker
    writes.

    ``inference_count`` counts records, ``execution_count`` calls of the pipeline; ``compute_input`` is
    decoding, ``compute_infer`` the stages, ``compute_output`` encoding (nanoseconds, summed).
    """
    totals = metric_totals()

    def entry(manifest: Manifest, version: str, variant: str) -> dict[str, Any]:
        calls = int(totals.get(f"tripod_request_records_count{{variant={variant}}}", 0))

        def duration(*stages: str) -> dict[str, int]:
            keys = [f"{{stage={stage},variant={variant}}}" for stage in stages]
            seconds = sum(totals.get(f"tripod_stage_duration_seconds_sum{key}", 0.0) for key in keys)
            count = max(
                (int(totals.get(f"tripod_stage_duration_seconds_count{key}", 0)) for key in keys), default=0
            )
            return {"count": count, "ns": int(seconds * 1e9)}

        infer = duration("transformer", "classifier", "inverse_label", "regressor")
        return {
            "name": manifest.name,
            "version": version,
            "last_inference": int(time.time() * 1000) if calls else 0,
            "inference_count": int(totals.get(f"tripod_request_records_sum{{variant={variant}}}", 0)),
            "execution_count": calls,
            "inference_stats": {
                "success": {"count": calls, "ns": infer["ns"]},
                "fail": {"count": 0, "ns": 0},
                "queue": {"count": 0, "ns": 0},
                "compute_input": duration("decode"),
                "compute_infer": infer,
                "compute_output": duration("encode"),
            },
            "batch_stats": [],
        }

    return {"model_stats": [entry(*item) for item in served]}


def _served(state: ServingState) -> list[tuple[Manifest, str, str]]:
    """``(manifest, OIP version, variant name)`` of every answering variant."""
    variants = state.variants
    return [
        (variant.slot.pipeline.manifest, version, variant.name)
        for variant, version in zip(variants.answering, variants.versions(), strict=True)
    ]


@model_routes("GET", "/stats", responses=ERROR_RESPONSES)
@maps_errors
async def model_statistics(state: State, model_name: str, model_version: str | None = None) -> dict[str, Any]:
    served_model(state, model_name, model_version)
    if not model_version:
        return inference_statistics(_served(state))
    return inference_statistics([entry for entry in _served(state) if entry[2] == current_variant()])


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A model's JSON schema with every ``$ref`` inlined, for an OpenAPI ``requestBody`` written by hand."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(definitions[node["$ref"].rsplit("/", 1)[-1]])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return resolve(schema)


_INFER_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": inline_schema(InferenceRequest)}},
    }
}


@model_routes(
    "POST",
    "/infer",
    openapi_extra=_INFER_BODY,
    responses={200: {"model": InferenceResponse}, **ERROR_RESPONSES},
)
@maps_errors
async def infer(
    state: State, model_name: str, request: Request, model_version: str | None = None
) -> Response:
    return await _infer(state, model_name, model_version, request)


async def _infer(
    state: ServingState, model_name: str, model_version: str | None, request: Request
) -> Response:
    pipeline = state.pipeline
    manifest = served_model(state, model_name, model_version)
    body = await request.body()
    with pipeline.timed("decode"):
        message, binary = parse_request(body, request.headers.get(HEADER_LENGTH))
        adopt_body_id(message.id)
        check_outputs(message, pipeline.regression)
        check_datatypes(message, manifest)
        tensors = decode_inputs(message, binary)
    batch = await pipeline.predict_async(tensors, Call("/v2/models/{model_name}/infer"))
    with pipeline.timed("encode"):
        content, header_length = encode_response(message, batch, manifest.name, manifest.version)
    if header_length is None:
        return Response(content, media_type="application/json")
    return Response(
        content, media_type="application/octet-stream", headers={HEADER_LENGTH: str(header_length)}
    )

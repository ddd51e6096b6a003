"""The Open Inference Protocol (KServe v2 / Triton HTTP): typed messages and the tensor codec.

Inputs: one tensor per input column, named as the column, shape ``[n]`` or ``[n, 1]``: ``BYTES`` for string
columns, a numeric type (``FP32`` advertised) for numeric ones.  Outputs: ``predicted_label`` (``BYTES``,
``[n]``) and ``probabilities`` (``FP32``, ``[n, n_classes]``, columns in label order) for classification,
``predicted_value`` (``FP32``, ``[n]``) for regression.  Tensors travel as JSON ``data`` or, with Triton's
binary tensor data extension (what ``tritonclient`` sends by default), as raw bytes after the JSON header
(``Inference-Header-Content-Length``); answers use binary for the outputs that ask for it.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.artifacts import InputColumn, Manifest
from services.errors import InvalidInput, SchemaError
from services.runtime import PredictionBatch, coerce_value

HEADER_LENGTH = "Inference-Header-Content-Length"
PREDICTED_LABEL = "predicted_label"
PROBABILITIES = "probabilities"
PREDICTED_VALUE = "predicted_value"
NUMERIC_TYPES = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
_LENGTH = struct.Struct("<I")


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")


class RequestInput(_Message):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    data: Any = Field(None, description="row-major tensor contents; absent when sent as binary data")


class RequestOutput(_Message):
    name: str
    parameters: dict[str, Any] = Field(default_factory=dict)


class InferenceRequest(_Message):
    """``POST /v2/models/{name}/infer`` (the JSON part when binary tensor data follows)."""

    id: str = ""
    parameters: dict[str, Any] = Field(default_factory=dict)
    inputs: list[RequestInput]
    outputs: list[RequestOutput] = Field(default_factory=list)


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


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str
    id: str
    outputs: list[ResponseOutput]


class ErrorBody(BaseModel):
    error: str


def model_metadata(manifest: Manifest) -> ModelMetadata:
    inputs = [
        TensorMetadata(name=c.name, datatype="BYTES" if c.dtype == "string" else "FP32", shape=[-1])
        for c in manifest.inputs
    ]
    if manifest.problem_type == "regression":
        outputs = [TensorMetadata(name=PREDICTED_VALUE, datatype="FP32", shape=[-1])]
    else:
        outputs = [
            TensorMetadata(name=PREDICTED_LABEL, datatype="BYTES", shape=[-1]),
            TensorMetadata(name=PROBABILITIES, datatype="FP32", shape=[-1, len(manifest.labels)]),
        ]
    return ModelMetadata(
        name=manifest.name,
        versions=[manifest.version],
        platform="onnxruntime_onnx",
        inputs=inputs,
        outputs=outputs,
    )


def parse_request(body: bytes, header_length: str | None) -> tuple[InferenceRequest, bytes]:
    """Split the JSON header from trailing binary tensor data and validate it.

    Raises:
        InvalidInput: a bad header length, JSON that does not parse, or a message of the wrong shape.
    """
    binary = b""
    if header_length is not None:
        if not header_length.strip().isdigit() or int(header_length) > len(body):
            raise InvalidInput(f"{HEADER_LENGTH} must be a byte count within the body, got {header_length!r}")
        split = int(header_length)
        body, binary = body[:split], body[split:]
    try:
        return InferenceRequest.model_validate_json(body), binary
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise InvalidInput(f"invalid inference request: {where}: {first['msg']}") from exc


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    flat: list[Any] = []
    for item in data:
        flat.extend(_flatten(item))
    return flat


def _deserialize_bytes(raw: bytes, name: str) -> list[bytes]:
    items, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InvalidInput(f"input {name!r}: binary BYTES data ends inside an element length")
        (size,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        if offset + size > len(raw):
            raise InvalidInput(f"input {name!r}: binary BYTES element {len(items)} is longer than the data")
        items.append(raw[offset : offset + size])
        offset += size
    return items


def _tensor_values(tensor: RequestInput, binary: bytes, offset: int) -> tuple[list[Any], int]:
    """The tensor's flat elements and the offset of the next binary tensor."""
    size = tensor.parameters.get("binary_data_size")
    if size is None:
        if tensor.data is None:
            raise SchemaError(f"input {tensor.name!r} has neither data nor binary_data_size")
        return _flatten(tensor.data), offset
    if not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(binary):
        raise InvalidInput(f"input {tensor.name!r}: binary_data_size {size!r} does not fit the binary data")
    raw = binary[offset : offset + size]
    if tensor.datatype == "BYTES":
        values: list[Any] = _deserialize_bytes(raw, tensor.name)
    else:
        dtype = np.dtype(NUMERIC_TYPES[tensor.datatype])
        if size % dtype.itemsize:
            raise InvalidInput(
                f"input {tensor.name!r}: {size} bytes is not a whole number of {tensor.datatype}"
            )
        values = np.frombuffer(raw, dtype=dtype.newbyteorder("<")).tolist()
    return values, offset + size


def _column_value(value: Any, tensor: RequestInput, column: InputColumn, index: int) -> object:
    where = f"record {index}: input {tensor.name!r}"
    if column.dtype == "string" and isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"{where} is not UTF-8 text (byte {exc.start}: {exc.reason})") from exc
    return coerce_value(value, column, where)


def decode_inputs(request: InferenceRequest, binary: bytes, inputs: Sequence[InputColumn]) -> np.ndarray:
    """The request's input tensors as an object array ``(n_samples, n_inputs)`` in manifest order.

    Raises:
        InvalidInput: binary data that does not match its declared sizes, or BYTES that are not UTF-8.
        SchemaError: a missing, unknown, repeated or mistyped input, a bad shape, or inputs of unequal length.
    """
    names = [column.name for column in inputs]
    by_name: dict[str, RequestInput] = {}
    for tensor in request.inputs:
        if tensor.name in by_name:
            raise SchemaError(f"input {tensor.name!r} is given twice")
        by_name[tensor.name] = tensor
    unknown = sorted(set(by_name) - set(names))
    if unknown:
        raise SchemaError(f"unknown input(s) {unknown}; the model takes {names}")
    flat: dict[str, list[Any]] = {}
    offset = 0
    for tensor in request.inputs:  # binary tensors follow the header in request order
        column = inputs[names.index(tensor.name)]
        expected = "BYTES" if column.dtype == "string" else "a numeric type"
        if (column.dtype == "string") != (tensor.datatype == "BYTES") or (
            tensor.datatype != "BYTES" and tensor.datatype not in NUMERIC_TYPES
        ):
            raise SchemaError(f"input {tensor.name!r} must be {expected}, got {tensor.datatype!r}")
        shape = tensor.shape
        if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)) or shape[0] < 0:
            raise SchemaError(f"input {tensor.name!r} must have shape [n] or [n, 1], got {shape}")
        values, offset = _tensor_values(tensor, binary, offset)
        if len(values) != shape[0]:
            raise SchemaError(f"input {tensor.name!r} has shape {shape} but {len(values)} element(s)")
        flat[tensor.name] = values
    for name in names:
        if name not in flat:
            raise SchemaError(f"input {name!r} is required; the model takes {names}")
    lengths = {len(values) for values in flat.values()}
    if len(lengths) > 1:
        raise SchemaError(
            f"inputs have different lengths {sorted(lengths)}; each must hold one element per record"
        )
    n = lengths.pop()
    if n == 0:
        raise SchemaError("inputs must hold at least one record")
    columns = np.empty((n, len(inputs)), dtype=object)
    for position, (name, column) in enumerate(zip(names, inputs, strict=True)):
        tensor = by_name[name]
        for index, value in enumerate(flat[name]):
            columns[index, position] = _column_value(value, tensor, column, index)
    return columns


def _requested(request: InferenceRequest, available: Sequence[str]) -> list[tuple[str, bool]]:
    """``(output name, as binary)`` for each output to return."""
    default_binary = bool(request.parameters.get("binary_data_output", False))
    if not request.outputs:
        return [(name, default_binary) for name in available]
    chosen = []
    for output in request.outputs:
        if output.name not in available:
            raise InvalidInput(f"unknown output {output.name!r}; the model has {list(available)}")
        chosen.append((output.name, bool(output.parameters.get("binary_data", default_binary))))
    return chosen


def _serialize_bytes(values: Sequence[str]) -> bytes:
    return b"".join(_LENGTH.pack(len(encoded)) + encoded for encoded in (v.encode("utf-8") for v in values))


def encode_response(
    request: InferenceRequest, batch: PredictionBatch, manifest: Manifest
) -> tuple[bytes, int | None]:
    """The response body and, when any output is binary, the length of its JSON header."""
    if batch.values is not None:
        values = np.asarray(batch.values, dtype=np.float32).reshape(-1)
        tensors: dict[str, tuple[str, list[int], Any]] = {PREDICTED_VALUE: ("FP32", [len(values)], values)}
    else:
        assert batch.labels is not None and batch.probabilities is not None
        labels = [str(label) for label in batch.labels]
        probabilities = np.asarray(batch.probabilities, dtype=np.float32)
        tensors = {
            PREDICTED_LABEL: ("BYTES", [len(labels)], labels),
            PROBABILITIES: ("FP32", list(probabilities.shape), probabilities),
        }
    outputs, blobs = [], []
    for name, binary in _requested(request, list(tensors)):
        datatype, shape, data = tensors[name]
        if binary:
            blob = (
                _serialize_bytes(data) if datatype == "BYTES" else np.ascontiguousarray(data, "<f4").tobytes()
            )
            blobs.append(blob)
            outputs.append(
                ResponseOutput(
                    name=name, shape=shape, datatype=datatype, parameters={"binary_data_size": len(blob)}
                )
            )
        else:
            flat = data if datatype == "BYTES" else np.asarray(data, dtype=np.float64).reshape(-1).tolist()
            outputs.append(ResponseOutput(name=name, shape=shape, datatype=datatype, data=flat))
    response = InferenceResponse(
        model_name=manifest.name, model_version=manifest.version, id=request.id, outputs=outputs
    )
    header = json.dumps(response.model_dump(exclude_none=True)).encode()
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)


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

"""The Open Inference Protocol (KServe v2 / Triton HTTP): typed messages and the tensor codec.

Inputs: one tensor per input column, named as the column, shape ``[n]`` or ``[n, 1]``: ``BYTES`` for string
columns, a numeric type (``FP32`` advertised) for numeric ones.  Outputs: ``predicted_label`` (``BYTES``,
``[n]``) and ``probabilities`` (``FP32``, ``[n, n_classes]``, columns in label order) for classification,
``predicted_value`` (``FP32``, ``[n]``) for regression.  Tensors travel as JSON ``data`` (flat or nested as
the shape) or, with Triton's binary tensor data extension (what ``tritonclient`` sends by default), as raw
bytes after the JSON header (``Inference-Header-Content-Length``); answers use binary for the outputs that ask
for it.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.codecs.json_records import encode_json
from services.errors import InvalidInput, SchemaError
from services.runtime.predictions import PredictionBatch
from services.runtime.schema import Tensors

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


def _flat(data: Any, tensor: RequestInput) -> list[Any]:
    """JSON ``data`` as a flat list: flat already, or nested one level as ``[n, 1]`` (never deeper, so a
    hostile nesting cannot recurse)."""
    if not isinstance(data, list):
        raise SchemaError(f"input {tensor.name!r}: data must be a list")
    if len(tensor.shape) == 2 and data and all(isinstance(item, list) for item in data):
        if any(len(item) != 1 for item in data):
            raise SchemaError(f"input {tensor.name!r}: rows of shape {tensor.shape} hold one element each")
        return [item[0] for item in data]
    return data


def _deserialize_bytes(raw: bytes, name: str) -> list[bytes]:
    items: list[bytes] = []
    offset = 0
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


def _values(tensor: RequestInput, binary: bytes, offset: int) -> tuple[list[Any], int]:
    """The tensor's flat elements and the offset of the next binary tensor."""
    if tensor.datatype != "BYTES" and tensor.datatype not in NUMERIC_TYPES:
        raise SchemaError(f"input {tensor.name!r} has unknown datatype {tensor.datatype!r}")
    size = tensor.parameters.get("binary_data_size")
    if size is None:
        if tensor.data is None:
            raise SchemaError(f"input {tensor.name!r} has neither data nor binary_data_size")
        values = _flat(tensor.data, tensor)
    elif not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(binary):
        raise InvalidInput(f"input {tensor.name!r}: binary_data_size {size!r} does not fit the binary data")
    else:
        raw = binary[offset : offset + size]
        offset += size
        if tensor.datatype == "BYTES":
            values = _deserialize_bytes(raw, tensor.name)
        else:
            dtype = np.dtype(NUMERIC_TYPES[tensor.datatype])
            if size % dtype.itemsize:
                raise InvalidInput(
                    f"input {tensor.name!r}: {size} bytes is not a whole number of {tensor.datatype}"
                )
            values = np.frombuffer(raw, dtype=dtype.newbyteorder("<")).tolist()
    if tensor.datatype == "BYTES":
        values = [_text(value, tensor.name, index) for index, value in enumerate(values)]
    return values, offset


def _text(value: Any, name: str, index: int) -> Any:
    """A BYTES element as text: binary elements are UTF-8 bytes; JSON ones are strings already."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(
                f"record {index}: input {name!r} is not UTF-8 text (byte {exc.start}: {exc.reason})"
            ) from exc
    return value


def decode_inputs(request: InferenceRequest, binary: bytes) -> Tensors:
    """The request's input tensors as flat lists by name (the schema checks names and types).

    Raises:
        InvalidInput: binary data that does not match its declared sizes, or BYTES that are not UTF-8.
        SchemaError: a repeated input, a bad shape, or a shape that disagrees with the data.
    """
    columns: dict[str, list[Any]] = {}
    offset = 0
    for tensor in request.inputs:  # binary tensors follow the header in request order
        if tensor.name in columns:
            raise SchemaError(f"input {tensor.name!r} is given twice")
        shape = tensor.shape
        if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)) or shape[0] < 0:
            raise SchemaError(f"input {tensor.name!r} must have shape [n] or [n, 1], got {shape}")
        values, offset = _values(tensor, binary, offset)
        if len(values) != shape[0]:
            raise SchemaError(f"input {tensor.name!r} has shape {shape} but {len(values)} element(s)")
        columns[tensor.name] = values
    return Tensors(columns)


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


def check_outputs(request: InferenceRequest, regression: bool) -> None:
    """Refuse an unknown requested output before any work is done.

    Raises:
        InvalidInput: naming the output.
    """
    _requested(request, [PREDICTED_VALUE] if regression else [PREDICTED_LABEL, PROBABILITIES])


def _serialize_bytes(values: Sequence[str]) -> bytes:
    return b"".join(_LENGTH.pack(len(encoded)) + encoded for encoded in (v.encode("utf-8") for v in values))


def encode_response(
    request: InferenceRequest, batch: PredictionBatch, model_name: str, model_version: str
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
        model_name=model_name, model_version=model_version, id=request.id, outputs=outputs
    )
    header = encode_json(response.model_dump(exclude_none=True))
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)

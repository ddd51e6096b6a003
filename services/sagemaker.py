"""The SageMaker container contract: decode ``/invocations`` bodies, negotiate the answer, encode answers.

Pure functions over bytes and strings; the entry service (``services/service.py``) routes requests through
them and runs the one inference path in between.

Request bodies (``Content-Type``):

- ``text/csv``: one record per row, no header, fields in manifest input order, RFC 4180 quoting (quoted fields
  may hold commas, quotes and newlines); blank lines are skipped, so an empty text is written ``""``.
- ``application/json``: ``{"instances": [...]}`` or a bare list; each record an object keyed by input column,
  or a list of values in manifest order (``{"features": [...]}`` is read as such a list).
- ``application/jsonlines``: one such record per line; blank lines are skipped.

Answers (``Accept``): ``application/json`` ``{"predictions": [...]}``, ``application/jsonlines`` (one object
per line) or ``text/csv`` (one row per record, no header, keys in the requested order; lists as JSON arrays).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence

import numpy as np

from services.artifacts import InputColumn
from services.errors import InvalidInput, NotAcceptable, SchemaError, UnsupportedMediaType
from services.runtime import PredictionBatch, csv_value, records_to_columns

CSV = "text/csv"
JSON = "application/json"
JSONLINES = "application/jsonlines"
CONTENT_TYPES = {
    CSV: CSV,
    JSON: JSON,
    JSONLINES: JSONLINES,
    "application/jsonl": JSONLINES,
    "application/x-jsonlines": JSONLINES,
    "application/x-ndjson": JSONLINES,
}
ACCEPT_TYPES = (JSON, JSONLINES, CSV)
CLASSIFICATION_KEYS = ("predicted_label", "probability", "probabilities", "labels")
REGRESSION_KEYS = ("predicted_value",)
CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
RESPONSE_KEYS_HEADER = "X-Tripod-Response-Keys"
FEATURES = "features"


def parse_media_type(value: str) -> tuple[str, dict[str, str]]:
    """``'Text/CSV; charset=UTF-8'`` → ``('text/csv', {'charset': 'utf-8'})``."""
    kind, *params = value.split(";")
    parsed = {}
    for param in params:
        name, _, val = param.partition("=")
        parsed[name.strip().lower()] = val.strip().strip('"').lower()
    return kind.strip().lower(), parsed


def request_format(content_type: str | None) -> str:
    """The body format named by ``Content-Type``.

    Raises:
        UnsupportedMediaType: absent, not one of :data:`CONTENT_TYPES`, or a charset other than UTF-8.
    """
    supported = ", ".join(sorted(CONTENT_TYPES))
    if not content_type:
        raise UnsupportedMediaType(f"Content-Type is required; send one of {supported}")
    kind, params = parse_media_type(content_type)
    if kind not in CONTENT_TYPES:
        raise UnsupportedMediaType(f"Content-Type {kind!r} is not supported; send one of {supported}")
    charset = params.get("charset", "utf-8")
    if charset not in ("utf-8", "utf8"):
        raise UnsupportedMediaType(f"charset {charset!r} is not supported; bodies are UTF-8")
    return CONTENT_TYPES[kind]


def answer_format(accept: str | None, default: str) -> str:
    """The answer type for ``Accept``: the supported type of highest quality, ``default`` for ``*/*``.

    Raises:
        NotAcceptable: no listed type can be produced.
    """
    if not accept or not accept.strip():
        return default
    ranges: list[tuple[float, int, str]] = []
    for position, item in enumerate(accept.split(",")):
        kind, params = parse_media_type(item)
        try:
            quality = float(params.get("q", "1"))
        except ValueError:
            quality = 0.0
        if kind and quality > 0:
            ranges.append((-quality, position, kind))
    for _, _, kind in sorted(ranges):
        if kind in ("*/*", "*"):
            return default
        if kind in CONTENT_TYPES and CONTENT_TYPES[kind] in ACCEPT_TYPES:
            return CONTENT_TYPES[kind]
        family = kind.removesuffix("/*")
        if kind.endswith("/*"):
            matching = [t for t in (default, *ACCEPT_TYPES) if t.startswith(family + "/")]
            if matching:
                return matching[0]
    raise NotAcceptable(
        f"Accept {accept!r} names no type this route produces; use one of {', '.join(ACCEPT_TYPES)}"
    )


def response_keys(requested: str | None, default: str, *, regression: bool) -> list[str]:
    """The keys of each answer record: ``requested`` (comma-separated) or the default.

    Raises:
        InvalidInput: a requested key the model cannot answer.
    """
    allowed = REGRESSION_KEYS if regression else CLASSIFICATION_KEYS
    if requested is None or not requested.strip():
        keys = [key for key in default.split(",") if key in allowed]
        return keys or list(allowed[:2])
    keys = list(dict.fromkeys(key.strip() for key in requested.split(",") if key.strip()))
    unknown = [key for key in keys if key not in allowed]
    if unknown or not keys:
        raise InvalidInput(
            f"response keys {unknown or requested!r} are not available; this model answers {list(allowed)}"
        )
    return keys


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"the body is not UTF-8 text (byte {exc.start}: {exc.reason})") from exc


def _positional(values: Sequence[object], inputs: Sequence[InputColumn], index: int) -> dict[str, object]:
    names = [column.name for column in inputs]
    if len(values) != len(inputs):
        raise SchemaError(
            f"record {index}: expected {len(inputs)} value(s) in the order {names}, got {len(values)}"
        )
    return dict(zip(names, values, strict=True))


def _record(item: object, inputs: Sequence[InputColumn], index: int) -> object:
    """A JSON record: an object keyed by column, a list in manifest order, or ``{"features": [...]}``."""
    names = {column.name for column in inputs}
    if isinstance(item, list):
        return _positional(item, inputs, index)
    if (
        isinstance(item, dict)
        and set(item) == {FEATURES}
        and FEATURES not in names
        and isinstance(item[FEATURES], list)
    ):
        return _positional(item[FEATURES], inputs, index)
    return item  # records_to_columns checks objects and refuses anything else, naming the record


def decode_csv(text: str, inputs: Sequence[InputColumn]) -> np.ndarray:
    rows: list[list[object]] = []
    try:
        for row in csv.reader(io.StringIO(text, newline=""), strict=True):
            if not row:
                continue
            index = len(rows)
            if len(row) != len(inputs):
                names = [column.name for column in inputs]
                raise SchemaError(
                    f"record {index}: expected {len(inputs)} field(s) in the order {names}, got {len(row)}"
                )
            rows.append(
                [
                    csv_value(value, column, f"record {index}: field {column.name!r}")
                    for value, column in zip(row, inputs, strict=True)
                ]
            )
    except csv.Error as exc:
        raise InvalidInput(f"the body is not valid CSV (record {len(rows)}: {exc})") from exc
    if not rows:
        raise SchemaError("the body holds no records")
    columns = np.empty((len(rows), len(inputs)), dtype=object)
    columns[:] = rows
    return columns


def decode_json(text: str, inputs: Sequence[InputColumn]) -> np.ndarray:
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"the body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from exc
    if isinstance(payload, dict) and "instances" in payload:
        payload = payload["instances"]
    if not isinstance(payload, list):
        raise InvalidInput('expected {"instances": [...]} or a JSON list of records')
    return records_to_columns([_record(item, inputs, i) for i, item in enumerate(payload)], inputs)  # type: ignore[misc]


def decode_jsonlines(text: str, inputs: Sequence[InputColumn]) -> np.ndarray:
    records = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"line {line_number} is not valid JSON ({exc.msg})") from exc
        records.append(_record(item, inputs, len(records)))
    if not records:
        raise SchemaError("the body holds no records")
    return records_to_columns(records, inputs)  # type: ignore[arg-type]


def decode_body(body: bytes, content_type: str | None, inputs: Sequence[InputColumn]) -> np.ndarray:
    """Decode an ``/invocations`` body into an object array ``(n_samples, n_inputs)`` in manifest order.

    Raises:
        UnsupportedMediaType: see :func:`request_format`.
        InvalidInput: not UTF-8, or not parseable as its content type.
        SchemaError: no records, or a record that does not fit the input schema (named by index and field).
    """
    kind = request_format(content_type)
    text = _text(body)
    if kind == CSV:
        return decode_csv(text, inputs)
    if kind == JSON:
        return decode_json(text, inputs)
    return decode_jsonlines(text, inputs)


def answer_records(batch: PredictionBatch, keys: Sequence[str]) -> list[dict[str, object]]:
    """One dict per record with exactly ``keys``: labels and probabilities are lists in label order."""
    if batch.values is not None:
        return [{"predicted_value": float(value)} for value in np.asarray(batch.values, dtype=np.float64)]
    assert batch.labels is not None and batch.probabilities is not None
    labels = list(batch.class_names)
    probabilities = np.asarray(batch.probabilities, dtype=np.float64)
    records = []
    for label, row in zip(batch.labels, probabilities, strict=True):
        full: dict[str, object] = {
            "predicted_label": str(label),
            "probability": float(row.max()),
            "probabilities": [float(p) for p in row],
            "labels": labels,
        }
        records.append({key: full[key] for key in keys})
    return records


def _csv_field(value: object) -> object:
    return json.dumps(value) if isinstance(value, list) else value


def encode_answer(records: Sequence[Mapping[str, object]], kind: str) -> bytes:
    """Serialize answer records as ``kind`` (one of :data:`ACCEPT_TYPES`)."""
    if kind == JSON:
        return json.dumps({"predictions": list(records)}).encode()
    if kind == JSONLINES:
        return "".join(json.dumps(record) + "\n" for record in records).encode()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerows([_csv_field(value) for value in record.values()] for record in records)
    return out.getvalue().encode()


def execution_parameters(*, max_concurrent_transforms: int, max_request_bytes: int) -> dict[str, object]:
    """What SageMaker batch transform asks ``GET /execution-parameters`` for."""
    return {
        "MaxConcurrentTransforms": max_concurrent_transforms,
        "BatchStrategy": "MULTI_RECORD",
        "MaxPayloadInMB": max(1, max_request_bytes // (1024 * 1024)),
    }

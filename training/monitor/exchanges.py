"""A captured exchange as rows of input values and predicted labels, decoded by the server's own codecs.

Requests are Tripod's: ``/predict`` and ``/explain`` (``{"records": [...]}``), ``/invocations`` (CSV without a
header, JSON ``{"instances": [...]}`` or a list, JSON Lines), KServe's ``:explain`` and the Open Inference
Protocol's JSON ``inputs``.  Bodies are parsed by ``services/codecs`` and records turned into columns by
``services/runtime/schema.py``'s :class:`InputSchema`, so a record is read here exactly as the server read
it: the same CSV quoting, the same ``{"features": [...]}`` lists, the same text cut.

A record the schema refuses (a server that captures its 4xx answers, or a client ahead of the model) is
still looked at field by field, so the monitor can say *what* was wrong: which input was absent, which
field the model does not take, which value had the wrong type.  Absent inputs are marked, and extra fields
named (a positional record's surplus values as ``column N``).

Answers: ``/predict``'s JSON list, ``/invocations``' ``{"predictions": [...]}``, JSON Lines or CSV rows (the
predicted label is the field that is one of the model's labels), Clarify's wrapped answer, KServe's
``{"explanations": [...]}`` and OIP's ``predicted_label`` output.  An error answer (``{"error": …}``) has no
predictions.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.codecs.bodies import decode_body
from services.codecs.json_records import INSTANCES, parse_json
from services.codecs.media import CSV, JSON, JSONLINES, request_format
from services.codecs.oip import decode_inputs, parse_request
from services.codecs.text import utf8_text
from services.errors import TripodError
from services.runtime.schema import FEATURES, Decoded, InputSchema, Records, Tensors
from training.monitor.capture import Body

RECORDS = "records"
"""``/predict``'s and ``/explain``'s key."""


@dataclass(frozen=True, slots=True)
class DecodedRequest:
    """The records of one request.

    Attributes:
        rows: ``(n_records, n_inputs)`` values in manifest order: strings and floats (NaN or None = missing)
            where a record fits the schema, the raw value otherwise.
        absent: ``(n_records, n_inputs)`` the record did not carry the input at all.
        fits: ``(n_records,)`` the schema accepted the record as the server would.
        extra: per record, the fields it carried that the model does not take.
        problem: the schema's message for the first record that did not fit.
    """

    rows: np.ndarray
    absent: np.ndarray
    fits: np.ndarray
    extra: list[list[str]]
    problem: str | None = None

    def __len__(self) -> int:
        return len(self.rows)


class UndecodableBody(ValueError):
    """A request or answer body the server's codecs cannot read (the message says why)."""


def decode_request(body: Body, schema: InputSchema) -> DecodedRequest:
    """The records of a request body.

    Raises:
        UndecodableBody: the body is not a format the server reads (bad JSON, bad CSV, unknown content type).
    """
    try:
        decoded = _decoded(body)
    except TripodError as exc:
        raise UndecodableBody(str(exc)) from exc
    n_inputs = len(schema.inputs)
    try:
        rows = schema.columns(decoded)
    except TripodError as exc:
        return _field_by_field(decoded, schema, str(exc))
    n = len(rows)
    return DecodedRequest(
        rows=rows,
        absent=np.zeros((n, n_inputs), dtype=bool),
        fits=np.ones(n, dtype=bool),
        extra=[[] for _ in range(n)],
    )


def _decoded(body: Body) -> Decoded:
    kind = request_format(body.content_type)
    if kind != JSON:
        return decode_body(body.data, body.content_type)
    payload = parse_json(utf8_text(body.data))
    if isinstance(payload, dict) and RECORDS in payload:
        if not isinstance(payload[RECORDS], list):
            raise UndecodableBody('"records" is not a list')
        return Records(payload[RECORDS])
    if isinstance(payload, dict) and "inputs" in payload and INSTANCES not in payload:
        request, binary = parse_request(body.data, None)
        return decode_inputs(request, binary)
    if isinstance(payload, dict) and INSTANCES in payload:
        payload = payload[INSTANCES]
    if not isinstance(payload, list):
        raise UndecodableBody(
            'expected {"records": [...]}, {"instances": [...]}, {"inputs": [...]} or a list'
        )
    return Records(payload)


def _field_by_field(decoded: Decoded, schema: InputSchema, problem: str) -> DecodedRequest:
    """Records the schema refused as a whole: each record through the schema alone, and what a refused one
    carried, field by field."""
    if isinstance(decoded, Tensors):
        items: list[object] = []
        names = list(decoded.columns)
        n = len(decoded)
        for index in range(n):
            items.append({name: _at(decoded.columns[name], index) for name in names})
        decoded = Records(items)
    n_inputs = len(schema.inputs)
    n = len(decoded.items)
    rows = np.empty((n, n_inputs), dtype=object)
    absent = np.zeros((n, n_inputs), dtype=bool)
    fits = np.zeros(n, dtype=bool)
    extra: list[list[str]] = []
    for row, item in enumerate(decoded.items):
        single = Records([item], text=decoded.text, header=decoded.header, unknown=decoded.unknown)
        try:
            rows[row] = schema.columns(single)[0]
            fits[row] = True
            extra.append([])
            continue
        except TripodError:
            pass
        values, missing, surplus = _raw_fields(item, schema, decoded.text, decoded.header)
        rows[row], absent[row] = values, missing
        extra.append(surplus)
    return DecodedRequest(rows=rows, absent=absent, fits=fits, extra=extra, problem=problem)


def _at(values: Sequence[object], index: int) -> object:
    return values[index] if index < len(values) else None


def _raw_fields(
    item: object, schema: InputSchema, text: bool, header: Sequence[str] | None
) -> tuple[list[object], list[bool], list[str]]:
    """What one record carried for each input (None when absent), which inputs were absent, and the fields the
    model does not take; shapes as :meth:`InputSchema.columns` reads them."""
    names = schema.names
    n_inputs = len(names)
    if isinstance(item, Mapping) and len(item) == 1 and FEATURES in item and FEATURES not in schema.expected:
        item = item[FEATURES]
    if n_inputs == 1 and header is None and not isinstance(item, Mapping | list | tuple):
        item = [item]
    if isinstance(item, Mapping):
        values = [
            _raw_value(item.get(name), column.dtype, text)
            for name, column in zip(names, schema.inputs, strict=True)
        ]
        missing = [name not in item for name in names]
        surplus = sorted(str(key) for key in item if key not in schema.expected)
        return values, missing, surplus
    if isinstance(item, list | tuple):
        if header is not None:
            by_name = dict(zip(header, item, strict=False))
            values = [
                _raw_value(by_name.get(n), c.dtype, text) for n, c in zip(names, schema.inputs, strict=True)
            ]
            return values, [name not in by_name for name in names], []
        values = [
            _raw_value(item[i] if i < len(item) else None, column.dtype, text)
            for i, column in enumerate(schema.inputs)
        ]
        missing = [i >= len(item) for i in range(n_inputs)]
        surplus = [f"column {i + 1}" for i in range(n_inputs, len(item))]
        return values, missing, surplus
    return [None] * n_inputs, [True] * n_inputs, []


def _raw_value(value: object, dtype: str, text: bool) -> object:
    """A refused record's value as the profile types it: CSV text in a numeric column is a number if it reads
    as one (an empty field is missing)."""
    if text and dtype == "float" and isinstance(value, str):
        if not value.strip():
            return None
        try:
            number = float(value)
        except ValueError:
            return value
        return number if math.isfinite(number) else value
    return value


# -- answers ---------------------------------------------------------------------------------------------------


def decode_answer(body: Body, labels: Sequence[str]) -> list[str | None] | None:
    """Each record's predicted label from an answer body; None for an error answer or one that cannot be read.

    A record whose label cannot be found is None in the list.
    """
    try:
        kind = request_format(body.content_type)
        text = utf8_text(body.data)
    except TripodError:
        return None
    if kind == CSV:
        return _csv_labels(text, labels)
    try:
        if kind == JSONLINES:
            return [_label(parse_json(line)) for line in text.splitlines() if line.strip()]
        return _json_labels(parse_json(text), labels)
    except TripodError:
        return None


def _json_labels(payload: Any, labels: Sequence[str]) -> list[str | None] | None:
    if isinstance(payload, list):
        return [_label(row) for row in payload]
    if not isinstance(payload, dict) or "error" in payload:
        return None
    predictions = payload.get("predictions")
    if isinstance(predictions, list):
        return [_label(row) for row in predictions]
    if isinstance(predictions, dict) and isinstance(predictions.get("data"), str):  # Clarify's wrapped answer
        inner = Body(str(predictions.get("content_type") or JSON), predictions["data"].encode("utf-8"))
        return decode_answer(inner, labels)
    if isinstance(payload.get("explanations"), list):  # KServe's :explain
        return [_label(row) for row in payload["explanations"]]
    outputs = payload.get("outputs")
    if isinstance(outputs, list):  # the Open Inference Protocol
        for output in outputs:
            if isinstance(output, dict) and output.get("name") == "predicted_label":
                data = output.get("data")
                return (
                    [str(v) if isinstance(v, str) else None for v in data] if isinstance(data, list) else None
                )
    return None


def _label(row: Any) -> str | None:
    if isinstance(row, dict):
        label = row.get("predicted_label")
        return label if isinstance(label, str) else None
    return row if isinstance(row, str) else None


def _csv_labels(text: str, labels: Sequence[str]) -> list[str | None] | None:
    known = set(labels)
    try:
        rows = [row for row in csv.reader(io.StringIO(text, newline="")) if row]
    except csv.Error:
        return None
    return [next((field for field in row if field in known), None) for row in rows]

"""A tiny writer of data capture files for tests, from SageMaker's format (docs/monitoring.md):

``<root>/<endpoint>/<variant>/yyyy/mm/dd/hh/<file>.jsonl``, one object per exchange::

    {"captureData": {"endpointInput": {"observedContentType", "mode": "INPUT", "data", "encoding"},
                     "endpointOutput": {"observedContentType", "mode": "OUTPUT", "data", "encoding"}},
     "eventMetadata": {"eventId", "inferenceId", "inferenceTime"}, "eventVersion": "0"}

Written from the format, not from the serving writer, so the reader is tested against the format itself.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

JSON, CSV, JSONLINES = "application/json", "text/csv", "application/jsonlines"


@dataclass(frozen=True)
class Exchange:
    """One request and its answer, as bodies."""

    request_type: str
    request: bytes
    answer_type: str | None
    answer: bytes | None
    time: datetime
    inference_id: str | None = None


def _side(content_type: str, body: bytes, mode: str, encoding: str | None = None) -> dict[str, str]:
    if encoding is None:
        encoding = "CSV" if content_type == CSV else "JSON" if content_type in (JSON, JSONLINES) else "BASE64"
    data = base64.b64encode(body).decode("ascii") if encoding == "BASE64" else body.decode("utf-8")
    return {"observedContentType": content_type, "mode": mode, "data": data, "encoding": encoding}


def capture_record(exchange: Exchange, *, encoding: str | None = None) -> dict[str, Any]:
    """The capture object of one exchange (``encoding`` forces JSON/CSV/BASE64 on both sides)."""
    data = {"endpointInput": _side(exchange.request_type, exchange.request, "INPUT", encoding)}
    if exchange.answer is not None and exchange.answer_type is not None:
        data["endpointOutput"] = _side(exchange.answer_type, exchange.answer, "OUTPUT", encoding)
    metadata = {"eventId": str(uuid.uuid4())}
    if exchange.inference_id is not None:
        metadata["inferenceId"] = exchange.inference_id
    metadata["inferenceTime"] = exchange.time.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"captureData": data, "eventMetadata": metadata, "eventVersion": "0"}


def capture_path(
    root: Path | str, when: datetime, name: str, endpoint: str = "reviews", variant: str = "AllTraffic"
) -> str:
    return f"{str(root).rstrip('/')}/{endpoint}/{variant}/{when:%Y/%m/%d/%H}/{name}"


def write_capture(
    root: Path,
    exchanges: Sequence[Exchange],
    *,
    endpoint: str = "reviews",
    variant: str = "AllTraffic",
    per_file: int = 500,
    extra_lines: Sequence[str] = (),
) -> list[Path]:
    """Write exchanges into hour folders, ``per_file`` lines a file; ``extra_lines`` (malformed ones) go into
    the first file."""
    by_hour: dict[str, list[str]] = {}
    for exchange in exchanges:
        hour = f"{exchange.time:%Y/%m/%d/%H}"
        by_hour.setdefault(hour, []).append(json.dumps(capture_record(exchange), ensure_ascii=False))
    paths = []
    extras = list(extra_lines)
    for hour, lines in sorted(by_hour.items()):
        for start in range(0, len(lines), per_file):
            path = root / endpoint / variant / hour / f"capture-{start // per_file:04d}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            chunk = lines[start : start + per_file] + extras
            extras = []
            path.write_text("\n".join(chunk) + "\n", encoding="utf-8")
            paths.append(path)
    return paths


# -- bodies as Tripod's routes send and answer them ------------------------------------------------------


def predict_exchange(
    records: Sequence[Mapping[str, Any]],
    labels: Sequence[str],
    when: datetime,
    inference_id: str | None = None,
) -> Exchange:
    """``/predict``: ``{"records": [...]}`` in, a list of ``{predicted_label, probability, probabilities}`` out."""
    answer = [
        {"predicted_label": label, "probability": 0.9, "probabilities": {label: 0.9}} for label in labels
    ]
    return Exchange(
        JSON,
        json.dumps({"records": list(records)}).encode(),
        JSON,
        json.dumps(answer).encode(),
        when,
        inference_id,
    )


def invocations_csv_exchange(
    rows: Sequence[Sequence[Any]], labels: Sequence[str], when: datetime, inference_id: str | None = None
) -> Exchange:
    """``/invocations`` CSV in (no header), CSV out (``predicted_label,probability``)."""
    body, answer = io.StringIO(), io.StringIO()
    csv.writer(body, lineterminator="\n").writerows(rows)
    csv.writer(answer, lineterminator="\n").writerows([[label, 0.9] for label in labels])
    return Exchange(CSV, body.getvalue().encode(), CSV, answer.getvalue().encode(), when, inference_id)


def invocations_json_exchange(
    instances: Sequence[Any], labels: Sequence[str], when: datetime, inference_id: str | None = None
) -> Exchange:
    """``/invocations`` JSON in (``{"instances": [...]}``), ``{"predictions": [...]}`` out."""
    answer = {"predictions": [{"predicted_label": label, "probability": 0.9} for label in labels]}
    return Exchange(
        JSON,
        json.dumps({"instances": list(instances)}).encode(),
        JSON,
        json.dumps(answer).encode(),
        when,
        inference_id,
    )


def invocations_jsonlines_exchange(
    records: Sequence[Any], labels: Sequence[str], when: datetime, inference_id: str | None = None
) -> Exchange:
    """``/invocations`` JSON Lines in and out."""
    body = "".join(json.dumps(record) + "\n" for record in records)
    answer = "".join(json.dumps({"predicted_label": label, "probability": 0.9}) + "\n" for label in labels)
    return Exchange(JSONLINES, body.encode(), JSONLINES, answer.encode(), when, inference_id)

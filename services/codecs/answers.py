"""Answers in SageMaker's shapes: rows with the chosen keys, encoded as JSON, JSON Lines or CSV.

``application/json``: ``{"predictions": [...]}``; ``application/jsonlines``: one object per line;
``text/csv``: one row per record, no header, keys in the requested order, lists as JSON arrays.  Files
written by ``tripod predict`` and, later, batch-transform outputs use the same encoders.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from services.codecs.csv_records import encode_csv
from services.codecs.json_records import encode_json, encode_jsonlines
from services.codecs.keys import CLASSIFICATION_KEYS, REGRESSION_KEYS
from services.codecs.media import CSV, JSON, JSONLINES
from services.errors import InvalidInput
from services.runtime.predictions import PredictionBatch


def answer_rows(batch: PredictionBatch, keys: Sequence[str]) -> list[dict[str, Any]]:
    """One dict per record with exactly ``keys``: labels and probabilities are lists in label order."""
    if batch.values is not None:
        return [{"predicted_value": float(value)} for value in np.asarray(batch.values, dtype=np.float64)]
    assert batch.labels is not None and batch.probabilities is not None
    probabilities = np.asarray(batch.probabilities, dtype=np.float64)
    # Whole-array conversions, then one small dict per row (a per-row numpy call cost 2 µs a record).
    columns: dict[str, list[Any]] = {}
    for key in keys:
        if key == "predicted_label":
            columns[key] = [str(label) for label in batch.labels.tolist()]
        elif key == "probability":
            columns[key] = probabilities.max(axis=1).tolist()
        elif key == "probabilities":
            columns[key] = probabilities.tolist()
        else:
            columns[key] = [list(batch.class_names)] * len(probabilities)
    return [dict(zip(keys, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def encode_answer(rows: Sequence[Mapping[str, object]], kind: str) -> bytes:
    """Serialize answer rows as ``kind`` (JSON, JSON Lines or CSV)."""
    if kind == JSON:
        return encode_json({"predictions": list(rows)})
    if kind == JSONLINES:
        return encode_jsonlines(rows)
    assert kind == CSV, kind
    return encode_csv(rows)


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

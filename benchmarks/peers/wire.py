"""The request bodies and answers of each peer's protocol, for the same records (Tripod side of the benchmark).

Every variant of the serving benchmark is sent the same held-out reviews in the same groups; only the envelope
differs, as each server's protocol requires:

- ``records``: Tripod's ``POST /predict`` — ``{"records": [{column: value}]}`` → ``[{"predicted_label": …}]``
  (Ray Serve's deployment takes the same body: it has no protocol of its own);
- ``v1``: KServe's V1 protocol — ``{"instances": [{column: value}]}`` → ``{"predictions": [label]}``;
- ``v2``: the Open Inference Protocol (MLServer, KServe V2, Triton) — one ``BYTES`` tensor ``(n, 1)`` per input
  column → the ``predicted_label`` output tensor;
- ``v2_pandas``: the same protocol with MLServer's ``pd`` content type, as its scikit-learn runtime needs to
  hand a pandas DataFrame to a fitted pipeline; the answer is the ``predict`` output.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Records = Sequence[Mapping[str, Any]]


def _records(records: Records, columns: Sequence[str]) -> dict[str, Any]:
    return {"records": [dict(record) for record in records]}


def _records_labels(answer: Any) -> list[str]:
    return [str(row["predicted_label"]) for row in answer]


def _text(value: Any) -> str:
    """A field as a BYTES element: a missing or null field is empty text, as Tripod reads it."""
    return "" if value is None else str(value)


def _v1(records: Records, columns: Sequence[str]) -> dict[str, Any]:
    return {"instances": [dict(record) for record in records]}


def _v1_labels(answer: Any) -> list[str]:
    return [
        str(row if not isinstance(row, dict) else row["predicted_label"]) for row in answer["predictions"]
    ]


def _v2(records: Records, columns: Sequence[str]) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": name,
                "shape": [len(records), 1],
                "datatype": "BYTES",
                "data": [_text(record.get(name)) for record in records],
            }
            for name in columns
        ]
    }


def _v2_pandas(records: Records, columns: Sequence[str]) -> dict[str, Any]:
    return {
        "parameters": {"content_type": "pd"},
        "inputs": [
            {
                "name": name,
                "shape": [len(records)],
                "datatype": "BYTES",
                "data": [_text(record.get(name)) for record in records],
            }
            for name in columns
        ],
    }


def _v2_output(name: str) -> Callable[[Any], list[str]]:
    def labels(answer: Any) -> list[str]:
        (output,) = [out for out in answer["outputs"] if out["name"] == name]
        return [str(value) for value in output["data"]]

    return labels


@dataclass(frozen=True)
class Wire:
    """How one protocol carries a group of records and where its answer keeps the labels."""

    name: str
    encode: Callable[[Records, Sequence[str]], dict[str, Any]]
    labels: Callable[[Any], list[str]]


WIRES = {
    "records": Wire("records", _records, _records_labels),
    "v1": Wire("v1", _v1, _v1_labels),
    "v2": Wire("v2", _v2, _v2_output("predicted_label")),
    "v2_pandas": Wire("v2_pandas", _v2_pandas, _v2_output("predict")),
}

"""The protocol codecs without a server: regression answers, Accept negotiation, binary OIP tensors."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from services import oip, sagemaker
from services.artifacts import InputColumn
from services.errors import InvalidInput, NotAcceptable, SchemaError
from services.runtime import PredictionBatch

TEXT = InputColumn(name="review_body", dtype="string", role="text")
AGE = InputColumn(name="age", dtype="float", role="numeric")


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "application/json"),
        ("", "application/json"),
        ("*/*", "application/json"),
        ("text/csv", "text/csv"),
        ("Application/JSONLines; charset=utf-8", "application/jsonlines"),
        ("application/x-ndjson", "application/jsonlines"),
        ("text/csv;q=0.2, application/json;q=0.9", "application/json"),
        ("image/png, text/*", "text/csv"),
        ("text/csv;q=0, application/*", "application/json"),
    ],
)
def test_accept_negotiation(accept: str | None, expected: str) -> None:
    assert sagemaker.answer_format(accept, "application/json") == expected


def test_an_accept_nothing_can_satisfy_is_406() -> None:
    with pytest.raises(NotAcceptable, match="names no type"):
        sagemaker.answer_format("image/png, text/html", "application/json")


def test_regression_answers_carry_the_value_in_every_format() -> None:
    batch = PredictionBatch(values=np.array([4.5, 1.25]))
    keys = sagemaker.response_keys(None, "predicted_label,probability", regression=True)
    assert keys == ["predicted_value"]
    records = sagemaker.answer_records(batch, keys)
    assert json.loads(sagemaker.encode_answer(records, sagemaker.JSON)) == {
        "predictions": [{"predicted_value": 4.5}, {"predicted_value": 1.25}]
    }
    assert sagemaker.encode_answer(records, sagemaker.CSV) == b"4.5\n1.25\n"
    with pytest.raises(InvalidInput, match=r"\['probability'\] are not available"):
        sagemaker.response_keys("probability", "predicted_value", regression=True)


def test_csv_numeric_columns_parse_numbers_and_empty_fields_are_missing() -> None:
    columns = sagemaker.decode_body(b'"great, really",34\n"",\n', "text/csv", [TEXT, AGE])
    assert columns[0].tolist() == ["great, really", 34.0]
    assert columns[1, 0] == "" and np.isnan(columns[1, 1])
    with pytest.raises(SchemaError, match="record 0: field 'age' must be a number"):
        sagemaker.decode_body(b"great,old\n", "text/csv", [TEXT, AGE])


def _bytes_tensor(values: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(v)) + v for v in values)


def test_oip_binary_inputs_and_regression_outputs() -> None:
    texts = _bytes_tensor([b"great", "très".encode()])
    header = {
        "id": "r1",
        "inputs": [
            {
                "name": "review_body",
                "shape": [2, 1],
                "datatype": "BYTES",
                "parameters": {"binary_data_size": len(texts)},
            },
            {"name": "age", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 8}},
        ],
        "parameters": {"binary_data_output": True},
    }
    raw = json.dumps(header).encode()
    body = raw + texts + np.array([30, 41], dtype="<f4").tobytes()
    request, binary = oip.parse_request(body, str(len(raw)))
    columns = oip.decode_inputs(request, binary, [TEXT, AGE])
    assert columns.tolist() == [["great", 30.0], ["très", 41.0]]
    content, length = oip.encode_response(request, PredictionBatch(values=np.array([4.5, 2.0])), _manifest())
    assert length is not None
    answer = json.loads(content[:length])
    assert answer["id"] == "r1"
    assert answer["outputs"] == [
        {"name": "predicted_value", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 8}}
    ]
    assert np.frombuffer(content[length:], dtype="<f4").tolist() == [4.5, 2.0]


def test_oip_model_metadata_of_a_regression_model() -> None:
    metadata = oip.model_metadata(_manifest())
    assert [(t.name, t.datatype) for t in metadata.inputs] == [("review_body", "BYTES"), ("age", "FP32")]
    assert [(t.name, t.datatype, t.shape) for t in metadata.outputs] == [("predicted_value", "FP32", [-1])]


def _manifest():  # a regression manifest with a text and a numeric input
    from services.artifacts import Candidate, Manifest, Parity, StageSpec

    stage = StageSpec(file="x.onnx", inputs=[], outputs=[])
    parity = Parity(
        rows=1,
        label_agreement=1,
        max_abs_probability_diff=0,
        min_label_agreement=1,
        max_probability_tolerance=1,
        passed=True,
    )
    return Manifest(
        name="rating",
        version="v1",
        created_at="now",
        problem_type="regression",
        target="rating",
        inputs=[TEXT, AGE],
        labels=[],
        stages={"transformer": stage, "regressor": stage},
        metrics={},
        parity=parity,
        data_fingerprint="x",
        candidate=Candidate(family="tfidf_linear", params={}),
        libraries={},
    )

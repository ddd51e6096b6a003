"""The codecs without a server: Accept negotiation, answers in every format, OIP tensors, and the same
parsing rules for a request body and for a file (``services/codecs``)."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from services.artifacts import Candidate, InputColumn, Manifest, Parity, StageSpec
from services.batch.files import read_chunks
from services.codecs import oip
from services.codecs.answers import answer_rows, encode_answer, response_keys
from services.codecs.bodies import decode_body
from services.codecs.csv_records import MAX_CSV_FIELD_CHARS
from services.codecs.media import CSV, JSON, answer_format
from services.errors import InvalidInput, NotAcceptable, TripodError
from services.http.oip import model_metadata
from services.runtime.predictions import PredictionBatch
from services.runtime.schema import InputSchema, Records

TEXT = InputColumn(name="review_body", dtype="string", role="text")
AGE = InputColumn(name="age", dtype="float", role="numeric")
SCHEMA = InputSchema([TEXT], max_text_chars=20_000)


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
    assert answer_format(accept, "application/json") == expected


def test_an_accept_nothing_can_satisfy_is_406() -> None:
    with pytest.raises(NotAcceptable, match="names no type"):
        answer_format("image/png, text/html", "application/json")


def test_regression_answers_carry_the_value_in_every_format() -> None:
    batch = PredictionBatch(values=np.array([4.5, 1.25]))
    keys = response_keys(None, "predicted_label,probability", regression=True)
    assert keys == ["predicted_value"]
    rows = answer_rows(batch, keys)
    assert json.loads(encode_answer(rows, JSON)) == {
        "predictions": [{"predicted_value": 4.5}, {"predicted_value": 1.25}]
    }
    assert encode_answer(rows, CSV) == b"4.5\n1.25\n"
    with pytest.raises(InvalidInput, match=r"\['probability'\] are not available"):
        response_keys("probability", "predicted_value", regression=True)


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
    tensors = oip.decode_inputs(request, binary)
    assert InputSchema([TEXT, AGE], max_text_chars=100).columns(tensors).tolist() == [
        ["great", 30.0],
        ["très", 41.0],
    ]
    content, length = oip.encode_response(
        request, PredictionBatch(values=np.array([4.5, 2.0])), "rating", "v1"
    )
    assert length is not None
    answer = json.loads(content[:length])
    assert answer["id"] == "r1"
    assert answer["outputs"] == [
        {"name": "predicted_value", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 8}}
    ]
    assert np.frombuffer(content[length:], dtype="<f4").tolist() == [4.5, 2.0]


def test_oip_json_data_may_be_flat_or_nested_by_rows_but_never_deeper() -> None:
    flat = oip.InferenceRequest.model_validate(
        {"inputs": [{"name": "review_body", "shape": [2, 1], "datatype": "BYTES", "data": ["a", "b"]}]}
    )
    nested = flat.model_copy(update={"inputs": [flat.inputs[0].model_copy(update={"data": [["a"], ["b"]]})]})
    assert (
        oip.decode_inputs(flat, b"").columns
        == oip.decode_inputs(nested, b"").columns
        == {"review_body": ["a", "b"]}
    )
    deeper = flat.model_copy(
        update={"inputs": [flat.inputs[0].model_copy(update={"data": [[["a"]], [["b"]]]})]}
    )
    with pytest.raises(TripodError):
        SCHEMA.columns(oip.decode_inputs(deeper, b""))


def test_oip_model_metadata_of_a_regression_model() -> None:
    stage = StageSpec(file="x.onnx", inputs=[], outputs=[])
    parity = Parity(
        rows=1,
        label_agreement=1,
        max_abs_probability_diff=0,
        min_label_agreement=1,
        max_probability_tolerance=1,
        passed=True,
    )
    manifest = Manifest(
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
    metadata = model_metadata(manifest, [manifest.version])
    assert [(t.name, t.datatype) for t in metadata.inputs] == [("review_body", "BYTES"), ("age", "FP32")]
    assert [(t.name, t.datatype, t.shape) for t in metadata.outputs] == [("predicted_value", "FP32", [-1])]


# The same content as a request body (no CSV header) and as a file (a CSV header): the same answer or the same
# error.  Each case: (format, records as text without a header, expected error or None).
DEEP = "[" * 1000 + "]" * 1000
SAME_RULES = [
    pytest.param(
        "jsonl", json.dumps({"review_body": "fine"}) + "\n" + DEEP + "\n", "recursion limit", id="deep-json"
    ),
    pytest.param("jsonl", '{"review_body": ' + "1" * 4301 + "}\n", "number out of range", id="huge-integer"),
    pytest.param("jsonl", '{"review_body": "a\\u0000b"}\n', "NUL", id="json-nul"),
    pytest.param("jsonl", '{"review_body": "a"}\n{"review_body": NaN}\n', "not valid JSON", id="json-nan"),
    pytest.param("csv", '"a field\n', "a quoted field is not closed", id="unterminated-quote"),
    pytest.param("csv", "x" * (MAX_CSV_FIELD_CHARS + 1) + "\n", "longer than", id="huge-field"),
    pytest.param("csv", "a\x00b\n", "NUL", id="csv-nul"),
]


def _from_body(kind: str, text: str) -> np.ndarray:
    content_type = "text/csv" if kind == "csv" else "application/jsonlines"
    return SCHEMA.columns(decode_body(text.encode(), content_type))


def _from_file(kind: str, text: str) -> np.ndarray:
    body = ("review_body\n" + text) if kind == "csv" else text
    chunks = list(read_chunks(io.StringIO(body, newline=""), Path(f"input.{kind}"), 1 << 20))
    records = chunks[0]
    return SCHEMA.columns(
        Records(records.items, text=records.text, header=records.header, unknown=records.unknown)
    )


@pytest.mark.parametrize(("kind", "text", "error"), SAME_RULES)
def test_a_body_and_a_file_with_the_same_records_get_the_same_error(kind: str, text: str, error: str) -> None:
    failures = []
    for decode in (_from_body, _from_file):
        with pytest.raises(TripodError, match=error) as raised:
            decode(kind, text)
        failures.append(type(raised.value))
    assert failures[0] is failures[1]


@pytest.mark.parametrize(
    ("plain", "variant"),
    [
        pytest.param('"great, fits"\n"a\nb"\n', '\ufeff"great, fits"\r\n"a\nb"\r\n', id="csv-bom-crlf"),
        pytest.param(
            '{"review_body": "great"}\n', '\ufeff{"review_body": "great"}\r\n\r\n', id="jsonl-bom-crlf"
        ),
    ],
)
def test_a_byte_order_mark_and_crlf_change_nothing_on_either_path(plain: str, variant: str) -> None:
    kind = "csv" if plain.startswith('"') else "jsonl"
    expected = _from_body(kind, plain).tolist()
    assert _from_body(kind, variant).tolist() == expected
    assert _from_file(kind, variant.removeprefix("\ufeff")).tolist() == expected


def test_invalid_utf8_is_refused_naming_the_byte() -> None:
    with pytest.raises(InvalidInput, match=r"not UTF-8 text \(byte 2"):
        decode_body(b"ok\xff\n", "text/csv")

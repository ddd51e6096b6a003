"""Reading data capture: lines in SageMaker's format, files in hour folders, and every request and answer shape
of Tripod's routes decoded as the server decodes it."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from services.artifacts import InputColumn
from services.runtime.schema import InputSchema
from tests.capture_files import (
    CSV,
    JSON,
    JSONLINES,
    Exchange,
    capture_record,
    invocations_csv_exchange,
    invocations_json_exchange,
    invocations_jsonlines_exchange,
    predict_exchange,
    write_capture,
)
from training.monitor.capture import (
    Body,
    ReadTally,
    list_capture_files,
    parse_line,
    parse_time,
    read_exchanges,
)
from training.monitor.errors import MonitorError
from training.monitor.exchanges import UndecodableBody, decode_answer, decode_request

T0 = datetime(2026, 12, 2, 14, 3, 5, tzinfo=UTC)
LABELS = ["negative", "neutral", "positive"]
TEXT_ONLY = InputSchema([InputColumn(name="review_body", dtype="string", role="text")], max_text_chars=50)
MIXED = InputSchema(
    [
        InputColumn(name="review_body", dtype="string", role="text"),
        InputColumn(name="age", dtype="float", role="numeric"),
    ],
    max_text_chars=1000,
)


def _line(exchange: Exchange, encoding: str | None = None) -> bytes:
    return json.dumps(capture_record(exchange, encoding=encoding)).encode() + b"\n"


@pytest.mark.parametrize("encoding", ["JSON", "BASE64"], ids=["json", "base64"])
def test_a_capture_line_gives_its_bodies_metadata_and_time(encoding: str) -> None:
    exchange = predict_exchange([{"review_body": "Lovely dress"}], ["positive"], T0, inference_id="abc")
    parsed = parse_line(_line(exchange, encoding))
    assert parsed.request == Body(JSON, exchange.request)
    assert parsed.answer == Body(JSON, exchange.answer or b"")
    assert (parsed.inference_id, parsed.time) == ("abc", T0)
    assert parsed.event_id is not None


def test_a_line_without_output_or_time_keeps_what_it_has() -> None:
    record = capture_record(Exchange(CSV, b"a review\n", None, None, T0))
    del record["eventMetadata"]["inferenceTime"]
    hour = datetime(2026, 12, 2, 14, tzinfo=UTC)
    parsed = parse_line(json.dumps(record).encode(), hour)
    assert parsed.answer is None and parsed.inference_id is None
    assert parsed.time == hour  # the file's hour folder stands in


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "no captureData"),
        (b'{"captureData": {}}', "no endpointInput"),
        (b'{"captureData": {"endpointInput": {"data": 3}}}', "no data string"),
        (
            b'{"captureData": {"endpointInput": {"data": "x", "encoding": "XML"}}}',
            "is not JSON, CSV or BASE64",
        ),
        (b'{"captureData": {"endpointInput": {"data": "*", "encoding": "BASE64"}}}', "not base64"),
        (
            (
                b'{"captureData": {"endpointInput": {"data": "x", "encoding": "CSV"}}, '
                b'"eventMetadata": {"inferenceTime": "yesterday"}}'
            ),
            "not an ISO-8601 time",
        ),
    ],
    ids=[
        "not-json",
        "not-object",
        "no-input",
        "data-not-string",
        "unknown-encoding",
        "bad-base64",
        "bad-time",
    ],
)
def test_malformed_lines_are_refused_with_a_reason(line: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_line(line)


def test_times_are_read_as_utc() -> None:
    assert parse_time("2026-12-02T14:00:00Z", "x") == datetime(2026, 12, 2, 14, tzinfo=UTC)
    assert parse_time("2026-12-02T15:00:00+01:00", "x") == datetime(2026, 12, 2, 14, tzinfo=UTC)
    assert parse_time("2026-12-02", "x") == datetime(2026, 12, 2, tzinfo=UTC)
    with pytest.raises(MonitorError, match="--since must be an ISO-8601 time"):
        parse_time("last tuesday", "--since")


def _hours(root: Path, hours: int = 5, per_hour: int = 4) -> list[Exchange]:
    start = datetime(2026, 12, 2, 10, tzinfo=UTC)
    exchanges = [
        predict_exchange(
            [{"review_body": f"review {h}-{i}"}], ["positive"], start + timedelta(hours=h, minutes=15 * i)
        )
        for h in range(hours)
        for i in range(per_hour)
    ]
    write_capture(root, exchanges)
    (root / "reviews" / "AllTraffic" / "README.txt").write_text("not capture", encoding="utf-8")
    return exchanges


def test_files_are_pruned_by_hour_folder_and_records_by_inference_time(tmp_path: Path) -> None:
    _hours(tmp_path)
    since, until = datetime(2026, 12, 2, 11, 30, tzinfo=UTC), datetime(2026, 12, 2, 13, tzinfo=UTC)
    files, pruned = list_capture_files(str(tmp_path), since, until)
    assert [f.hour for f in files] == [datetime(2026, 12, 2, h, tzinfo=UTC) for h in (11, 12)]
    assert pruned == 3  # hours 10, 13 and 14
    assert {(f.endpoint, f.variant) for f in files} == {("reviews", "AllTraffic")}
    tally = ReadTally()
    times = [e.time for f in files for e in read_exchanges(f, tally, since, until)]
    assert times == [datetime(2026, 12, 2, 11, 30, tzinfo=UTC), datetime(2026, 12, 2, 11, 45, tzinfo=UTC)] + [
        datetime(2026, 12, 2, 12, 15 * i, tzinfo=UTC) for i in range(4)
    ]
    assert (tally.files, tally.exchanges, tally.outside_window) == (2, 6, 2)
    assert tally.by_variant == {"reviews/AllTraffic": 6}


def test_a_variant_folder_is_a_prefix_too(tmp_path: Path) -> None:
    _hours(tmp_path, hours=2)
    files, pruned = list_capture_files(str(tmp_path / "reviews" / "AllTraffic"))
    assert len(files) == 2 and pruned == 0
    assert (files[0].endpoint, files[0].variant) == ("reviews", "AllTraffic")


def test_malformed_lines_are_counted_and_quoted_not_fatal(tmp_path: Path) -> None:
    exchanges = [predict_exchange([{"review_body": "fine"}], ["positive"], T0) for _ in range(3)]
    write_capture(tmp_path, exchanges, extra_lines=["garbage", '{"captureData": 5}'])
    (files, _) = list_capture_files(str(tmp_path))
    tally = ReadTally()
    assert len([e for f in files for e in read_exchanges(f, tally)]) == 3
    assert (tally.lines, tally.malformed) == (5, 2)
    assert tally.examples[0].startswith("reviews/AllTraffic/2026/12/02/14/capture-0000.jsonl:4: not JSON")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "nowhere", "no input objects"),
        (lambda p: p, "no capture files"),
    ],
    ids=["missing", "empty"],
)
def test_a_prefix_without_capture_is_an_error(tmp_path: Path, make, message: str) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
    with pytest.raises(MonitorError, match=message):
        list_capture_files(str(make(tmp_path)))


# -- requests and answers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "exchange",
    [
        predict_exchange([{"review_body": "Nice"}, {"review_body": "Bad"}], LABELS[:2], T0),
        invocations_csv_exchange([["Nice"], ["Bad, really"]], LABELS[:2], T0),
        invocations_json_exchange([{"review_body": "Nice"}, {"features": ["Bad"]}], LABELS[:2], T0),
        invocations_json_exchange(["Nice", "Bad"], LABELS[:2], T0),
        invocations_jsonlines_exchange([{"review_body": "Nice"}, "Bad"], LABELS[:2], T0),
    ],
    ids=["predict", "csv", "json-instances", "json-bare-values", "jsonlines"],
)
def test_every_route_shape_decodes_to_records_and_labels(exchange: Exchange) -> None:
    request = decode_request(Body(exchange.request_type, exchange.request), TEXT_ONLY)
    assert request.fits.all() and not request.absent.any() and request.extra == [[], []]
    assert request.rows[0, 0] == "Nice" and request.rows[1, 0].startswith("Bad")
    assert decode_answer(Body(exchange.answer_type or "", exchange.answer or b""), LABELS) == LABELS[:2]


def test_open_inference_protocol_and_clarify_answers() -> None:
    body = {"inputs": [{"name": "review_body", "shape": [1], "datatype": "BYTES", "data": ["Nice"]}]}
    request = decode_request(Body(JSON, json.dumps(body).encode()), TEXT_ONLY)
    assert request.rows.tolist() == [["Nice"]]
    oip = {
        "model_name": "m",
        "outputs": [{"name": "predicted_label", "shape": [1], "datatype": "BYTES", "data": ["neutral"]}],
    }
    assert decode_answer(Body(JSON, json.dumps(oip).encode()), LABELS) == ["neutral"]
    clarify = {
        "version": "1.0",
        "predictions": {"content_type": CSV, "data": "negative,0.7\n"},
        "explanations": {},
    }
    assert decode_answer(Body(JSON, json.dumps(clarify).encode()), LABELS) == ["negative"]
    kserve = {"explanations": [{"predicted_label": "positive", "explanation": {}}]}
    assert decode_answer(Body(JSON, json.dumps(kserve).encode()), LABELS) == ["positive"]


def test_texts_are_cut_as_the_server_cuts_them() -> None:
    request = decode_request(Body(CSV, ("x" * 80 + "\n").encode()), TEXT_ONLY)
    assert len(request.rows[0, 0]) == 50


def test_records_that_do_not_fit_are_read_field_by_field() -> None:
    body = {
        "records": [
            {"review_body": "fits", "age": 30},
            {"review_body": "no age"},
            {"review_body": "extra", "age": 41, "<b>colour</b>": "red"},
            {"review_body": 5, "age": "old"},
        ]
    }
    request = decode_request(Body(JSON, json.dumps(body).encode()), MIXED)
    assert request.fits.tolist() == [True, False, False, False]
    assert request.absent.tolist() == [[False, False], [False, True], [False, False], [False, False]]
    assert request.extra == [[], [], ["<b>colour</b>"], []]
    assert request.rows.tolist() == [["fits", 30.0], ["no age", None], ["extra", 41], [5, "old"]]
    assert "unknown field" in (request.problem or "") or "required" in (request.problem or "")


def test_csv_rows_with_too_many_or_too_few_fields() -> None:
    request = decode_request(Body(CSV, b"a text,33\nonly text\nthree,1,extra\n,\n"), MIXED)
    assert request.fits.tolist() == [True, False, False, True]
    assert request.absent[:, 1].tolist() == [False, True, False, False]
    assert request.extra == [[], [], ["column 3"], []]
    assert np.isnan(request.rows[3, 1])


@pytest.mark.parametrize(
    ("content_type", "body", "reason"),
    [
        ("text/plain", b"hello", "not supported"),
        (JSON, b"{oops", "not valid JSON"),
        (JSON, b'{"records": 3}', "not a list"),
        (JSON, b'{"something": []}', "expected"),
        (CSV, b'"unterminated\n', "not valid CSV"),
        (JSONLINES, b"\xff\xfe", "not UTF-8"),
    ],
    ids=["content-type", "json", "records-not-list", "unknown-object", "csv", "utf8"],
)
def test_undecodable_requests_say_why(content_type: str, body: bytes, reason: str) -> None:
    with pytest.raises(UndecodableBody, match=reason):
        decode_request(Body(content_type, body), TEXT_ONLY)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        (JSON, b'{"error": "record 0: field \'review_body\' is required"}'),
        (JSON, b"not json"),
        ("application/octet-stream", base64.b64decode("AAEC")),
    ],
    ids=["error-answer", "not-json", "binary"],
)
def test_answers_without_predictions_are_none(content_type: str, body: bytes) -> None:
    assert decode_answer(Body(content_type, body), LABELS) is None


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        (
            "application/json; charset=utf-8",
            b'{"records": [{"review_body": "Soft, warm \\u00e9t\\u00e9 sweater"}]}',
        ),
        ("text/csv", b'"Soft, warm sweater"\n'),
        ("application/jsonlines", b'{"review_body": "Soft"}\n"Warm"\n'),
        ("application/json", b"\xff not UTF-8"),
    ],
    ids=["json", "csv", "jsonlines", "base64"],
)
def test_what_the_serving_writer_captures_reads_back(content_type: str, body: bytes) -> None:
    from services.monitoring.capture import Exchange as Served
    from services.monitoring.capture import capture_record as served_record

    served = Served(
        T0.timestamp(),
        content_type,
        body,
        "application/json",
        b'[{"predicted_label": "positive"}]',
        "id-7",
        "AllTraffic",
    )
    parsed = parse_line(json.dumps(served_record(served)).encode())
    assert parsed.request == Body(content_type, body)
    assert (parsed.inference_id, parsed.time) == ("id-7", T0)
    assert parsed.answer is not None and decode_answer(parsed.answer, LABELS) == ["positive"]

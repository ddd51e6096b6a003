"""Batch transform's DataProcessing as SageMaker's developer guide documents it: the JSONPath subset and
nothing more, CSV slices with inclusive ends, joins with the original input record, and the content-type rules
checked before any record is read (``services/batch/dataprocessing.py``)."""

from __future__ import annotations

from typing import Any

import pytest

from services.batch.dataprocessing import (
    DataProcessing,
    JsonPath,
    join,
    parse_record,
    serialize_record,
)
from services.codecs.media import CSV, JSON, JSONLINES
from services.errors import InvalidInput

RECORD = {
    "id": 7,
    "features": [10, 20, 30, 40],
    "meta": {"source": "web", "lang": "en", "score": 0.5},
    "rows": [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}],
}
ROW = [str(column) for column in range(10)]  # a CSV row as parse_record gives it: column i holds "i"


# -- selection on JSON ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "record", "expected"),
    [
        pytest.param("$", RECORD, RECORD, id="root-is-the-whole-record"),
        pytest.param("$.id", RECORD, 7, id="dot-child"),
        pytest.param("$.meta.lang", RECORD, "en", id="dot-children-nest"),
        pytest.param("$.features", RECORD, [10, 20, 30, 40], id="guide-features-column"),
        pytest.param("$.meta.*", RECORD, ["web", "en", 0.5], id="dot-wildcard-gives-object-values-in-order"),
        pytest.param("$.features[*]", RECORD, [10, 20, 30, 40], id="bracket-wildcard-on-array"),
        pytest.param("$.meta[*]", RECORD, ["web", "en", 0.5], id="bracket-wildcard-on-object"),
        pytest.param("$.features.*", RECORD, [10, 20, 30, 40], id="dot-wildcard-on-array"),
        pytest.param("$.rows[*].v", RECORD, ["a", "b"], id="steps-after-wildcard-apply-to-each-match"),
        pytest.param("$['id']", RECORD, 7, id="bracket-single-name-is-dot-child"),
        pytest.param('$["id"]', RECORD, 7, id="bracket-name-double-quoted"),
        pytest.param(
            "$['meta','id']",
            RECORD,
            {"meta": RECORD["meta"], "id": 7},
            id="bracket-names-object-in-given-order",
        ),
        pytest.param(
            "$.meta.['lang','source']", RECORD, {"lang": "en", "source": "web"}, id="dot-before-bracket-names"
        ),
        pytest.param(
            "$[ 'id' , 'features' ]", RECORD, {"id": 7, "features": RECORD["features"]}, id="spaces"
        ),
        pytest.param("$.features[0]", RECORD, 10, id="index"),
        pytest.param("$.features[-1]", RECORD, 40, id="negative-index-is-last"),
        pytest.param("$.features[3,0,-2]", RECORD, [40, 10, 30], id="several-indexes-in-given-order"),
        pytest.param("$.features[1:3]", RECORD, [20, 30], id="json-slice-end-exclusive"),
        pytest.param("$.features[:2]", RECORD, [10, 20], id="slice-omitted-start"),
        pytest.param("$.features[2:]", RECORD, [30, 40], id="slice-omitted-end"),
        pytest.param("$.features[:]", RECORD, [10, 20, 30, 40], id="slice-both-omitted"),
        pytest.param("$.features[-3:-1]", RECORD, [20, 30], id="slice-negative-bounds"),
        pytest.param("$.features[1:4]", RECORD, [20, 30, 40], id="json-slice-end-may-be-the-length"),
        pytest.param("$.rows[0].v", RECORD, "a", id="index-then-name"),
        pytest.param("$.rows[0]['id','v']", RECORD, {"id": 1, "v": "a"}, id="index-then-names"),
        pytest.param("$[1:]", ["id-1", 0.1, 0.2], [0.1, 0.2], id="guide-drop-id-column-of-json-array"),
        pytest.param("$[0]", [[1, 2], [3, 4]], [1, 2], id="index-on-top-level-array"),
    ],
)
def test_select_applies_each_operator_to_json(expression: str, record: Any, expected: Any) -> None:
    assert JsonPath.parse(expression).select(record) == expected


def test_only_root_is_identity() -> None:
    assert JsonPath.parse("$").is_identity
    assert not JsonPath.parse("$[*]").is_identity
    assert str(JsonPath.parse("$.id")) == "$.id"


def test_select_leaves_the_record_unchanged() -> None:
    record = {"a": [1, 2, 3], "b": 2}
    JsonPath.parse("$['a','b']").select(record)
    JsonPath.parse("$.a[0:2]").select(record)
    assert record == {"a": [1, 2, 3], "b": 2}


# -- CSV: index-based, slice ends inclusive ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        pytest.param("$[1:4]", ["1", "2", "3", "4"], id="guide-1-4-is-second-through-fifth-column"),
        pytest.param("$[5:]", ["5", "6", "7", "8", "9"], id="guide-5-on-is-sixth-through-last"),
        pytest.param("$[:5]", ["0", "1", "2", "3", "4", "5"], id="guide-to-5-is-first-through-sixth"),
        pytest.param("$[1:]", ROW[1:], id="guide-drop-id-column"),
        pytest.param("$[0:-1]", ROW, id="inclusive-negative-end-reaches-last"),
        pytest.param("$[2:2]", ["2"], id="equal-bounds-one-column"),
        pytest.param("$[0]", "0", id="index-is-one-field"),
        pytest.param("$[0,-1]", ["0", "9"], id="first-and-last"),
        pytest.param("$[*]", ROW, id="wildcard-all-fields"),
    ],
)
def test_csv_slices_include_their_end(expression: str, expected: Any) -> None:
    assert JsonPath.parse(expression).select(ROW, csv=True) == expected


def test_same_slice_is_exclusive_on_a_json_array() -> None:
    assert JsonPath.parse("$[1:4]").select(ROW) == ["1", "2", "3"]


@pytest.mark.parametrize("expression", ["$.id", "$['a']", "$['a','b']", "$[*].id"])
def test_a_name_on_csv_is_refused(expression: str) -> None:
    path = JsonPath.parse(expression)
    with pytest.raises(InvalidInput, match="CSV row is an array of fields: select them by index"):
        path.check_for(CSV)
    with pytest.raises(InvalidInput, match="by name"):
        path.select(ROW, csv=True)
    path.check_for(JSON)
    path.check_for(JSONLINES)


@pytest.mark.parametrize("expression", ["$", "$[0]", "$[1:]", "$[*]", "$.*", "$[0,2]"])
def test_index_paths_apply_to_csv(expression: str) -> None:
    JsonPath.parse(expression).check_for(CSV)


# -- records that do not fit ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "record", "csv", "message"),
    [
        pytest.param(
            "$[3]", ["a", "b", "c"], True, r"index 3 is outside the record \(length 3\)", id="index"
        ),
        pytest.param("$[-4]", ["a", "b", "c"], False, r"index -4 .*length 3", id="negative-index"),
        pytest.param("$[0,5]", [1, 2, 3], False, r"index 5 .*length 3", id="one-of-several-indexes"),
        pytest.param("$[1:3]", ["a", "b", "c"], True, r"index 3 .*length 3", id="csv-inclusive-end"),
        pytest.param("$[1:4]", [1, 2, 3], False, r"index 4 .*length 3", id="json-end-past-length"),
        pytest.param("$[3:]", ["a", "b", "c"], True, r"index 3 .*length 3", id="slice-start"),
        pytest.param("$[0]", [], False, r"index 0 .*length 0", id="empty-array"),
    ],
)
def test_indexes_outside_the_record_are_errors(expression: str, record: Any, csv: bool, message: str) -> None:
    with pytest.raises(InvalidInput, match=rf"JSONPath '\$.*': {message}"):
        JsonPath.parse(expression).select(record, csv=csv)


@pytest.mark.parametrize(
    ("expression", "record", "message"),
    [
        pytest.param("$.missing", {"id": 1}, "the record has no key 'missing'", id="missing-key"),
        pytest.param("$['id','gone']", {"id": 1}, "no key 'gone'", id="one-of-several-names-missing"),
        pytest.param("$.id", [1, 2], "'id' selects from an object, found an array", id="name-on-array"),
        pytest.param("$[0]", {"0": 1}, r"\[0\] selects from an array, found an object", id="index-on-object"),
        pytest.param("$[0:1]", "text", "slice selects from an array, found a string", id="slice-on-string"),
        pytest.param(
            "$.*", 3, r"'\*' selects from an object or an array, found a number", id="wildcard-scalar"
        ),
        pytest.param("$.a.b", {"a": None}, "found null", id="name-on-null"),
    ],
)
def test_steps_that_do_not_fit_the_record_are_errors(expression: str, record: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        JsonPath.parse(expression).select(record)


# -- expressions outside the subset --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        pytest.param("", "expected '\\$' .* at position 0", id="empty"),
        pytest.param("id", "expected '\\$' .* at position 0", id="missing-root"),
        pytest.param(".id", "expected '\\$' .* at position 0", id="missing-root-before-dot"),
        pytest.param("['id']", "expected '\\$' .* at position 0", id="missing-root-before-bracket"),
        pytest.param("$..id", "deep scan.* at position 1", id="deep-scan"),
        pytest.param("$.a..b", "deep scan.* at position 3", id="deep-scan-inside"),
        pytest.param("$[?(@.price > 10)]", "filter and script .* at position 1", id="filter"),
        pytest.param("$.a[?(@.b)]", "filter and script .* at position 3", id="filter-after-name"),
        pytest.param("$[(@.length-1)]", "filter and script .* at position 1", id="script"),
        pytest.param(
            "$.field1.['child1','child2.grandchild']",
            "nested children .*'child2.grandchild'",
            id="nested-children",
        ),
        pytest.param("$['a[0]']", "nested children", id="nested-index-in-name"),
        pytest.param("$['id'", "'\\[' is not closed at position 1", id="unclosed-name-bracket"),
        pytest.param("$.a[0", "'\\[' is not closed at position 3", id="unclosed-index-bracket"),
        pytest.param("$[1:", "'\\[' is not closed", id="unclosed-slice-bracket"),
        pytest.param("$['id]", "expected \\['name',...\\]", id="unclosed-quote"),
        pytest.param("$[]", "expected \\['name',...\\]", id="empty-brackets"),
        pytest.param("$[::2]", "expected \\['name',...\\]", id="slice-step"),
        pytest.param("$[1:2:3]", "expected \\['name',...\\]", id="slice-with-step"),
        pytest.param("$[a]", "expected \\['name',...\\]", id="unquoted-bracket-name"),
        pytest.param("$[1.5]", "expected \\['name',...\\]", id="fractional-index"),
        pytest.param("$.", "after '.' at position 2", id="trailing-dot"),
        pytest.param("$.@", "after '.' at position 2", id="current-node"),
        pytest.param("$id", "unexpected 'i' at position 1", id="name-without-dot"),
        pytest.param("$[0]]", "unexpected '\\]' at position 4", id="stray-bracket"),
        pytest.param("$ .id", "unexpected ' ' at position 1", id="space-outside-brackets"),
    ],
)
def test_expressions_outside_the_subset_are_refused(expression: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as raised:
        JsonPath.parse(expression)
    assert f"JSONPath {expression!r}" in str(raised.value)
    assert "\n" not in str(raised.value)


# -- records in and out --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param(["a", "b", "c"], id="plain"),
        pytest.param(["a,b", "c"], id="comma-in-field"),
        pytest.param(['say "hi"', "x"], id="quotes-in-field"),
        pytest.param(["line one\nline two", "x"], id="newline-in-field"),
        pytest.param(["cr\rlf\r\n", "x"], id="carriage-returns-in-field"),
        pytest.param(["", "x", ""], id="empty-fields"),
        pytest.param([""], id="one-empty-field"),
        pytest.param(["héllo", "✓"], id="non-ascii"),
    ],
)
def test_csv_rows_round_trip_with_quoting(fields: list[str]) -> None:
    data = serialize_record(fields, CSV)
    assert not data.endswith(b"\n")
    assert parse_record(data, CSV) == fields
    assert parse_record(data.decode(), CSV) == fields


def test_csv_quoting_follows_rfc_4180() -> None:
    assert parse_record(b'1,"a,b","say ""hi""","two\r\nlines"\r\n', CSV) == [
        "1",
        "a,b",
        'say "hi"',
        "two\r\nlines",
    ]
    assert serialize_record(["1", "a,b", 'say "hi"'], CSV) == b'1,"a,b","say ""hi"""'


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("0.9", b"0.9", id="scalar-is-one-field"),
        pytest.param(["a", 1, 0.5, True, None], b"a,1,0.5,true,", id="json-spelling-of-non-text"),
        pytest.param(["x", [1, 2], {"k": "v"}], b'x,"[1,2]","{""k"":""v""}"', id="nested-values-as-json"),
        pytest.param({"label": "pos", "score": 0.9}, b"pos,0.9", id="object-as-its-values"),
    ],
)
def test_serialize_csv_writes_one_row(value: Any, expected: bytes) -> None:
    assert serialize_record(value, CSV) == expected


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(b"a,b\nc,d\n", "exactly one row, found 2", id="two-rows"),
        pytest.param(b"", "exactly one row, found 0", id="empty"),
        pytest.param(b"\n\n", "exactly one row, found 0", id="blank-lines"),
        pytest.param(b'a,"b', "a quoted field is not closed", id="unclosed-quote"),
        pytest.param(b"a,\xff", "not UTF-8", id="not-utf8"),
    ],
)
def test_a_csv_record_must_be_one_valid_row(data: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_record(data, CSV)


@pytest.mark.parametrize("content_type", [JSON, JSONLINES, "application/x-ndjson"])
@pytest.mark.parametrize(
    "value",
    [
        pytest.param({"a": [1, 2.5, None], "b": {"c": "é"}}, id="object"),
        pytest.param([1, "two", [3]], id="array"),
        pytest.param("text", id="string"),
        pytest.param(3, id="number"),
    ],
)
def test_json_records_round_trip_compactly(value: Any, content_type: str) -> None:
    data = serialize_record(value, content_type)
    assert b"\n" not in data and b", " not in data and b": " not in data
    assert parse_record(data, content_type) == value


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(b'{"a": 1', "the record is not valid JSON", id="truncated"),
        pytest.param(b'{"a": NaN}', "the record is not valid JSON", id="nan-literal"),
    ],
)
def test_a_json_record_must_be_valid_json(data: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_record(data, JSON)


def test_unknown_content_types_are_refused() -> None:
    with pytest.raises(InvalidInput, match="content type 'text/plain' is not one of"):
        parse_record(b"x", "text/plain")


# -- join ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("input_record", "output_record", "content_type", "expected"),
    [
        pytest.param(
            {"id": 1, "x": [1, 2]},
            {"label": "pos"},
            JSON,
            {"id": 1, "x": [1, 2], "SageMakerOutput": {"label": "pos"}},
            id="object-gains-sagemaker-output",
        ),
        pytest.param(
            [1, 2],
            0.9,
            JSONLINES,
            {"SageMakerInput": [1, 2], "SageMakerOutput": 0.9},
            id="array-is-wrapped",
        ),
        pytest.param(
            "some text",
            [0.1, 0.9],
            JSON,
            {"SageMakerInput": "some text", "SageMakerOutput": [0.1, 0.9]},
            id="string-is-wrapped",
        ),
        pytest.param(5, "pos", JSON, {"SageMakerInput": 5, "SageMakerOutput": "pos"}, id="number-is-wrapped"),
        pytest.param(
            ["1", "2", "3"], ["1"], CSV, ["1", "2", "3", "1"], id="csv-guide-example-appends-fields"
        ),
        pytest.param(["a"], ["pos", "0.9"], CSV, ["a", "pos", "0.9"], id="csv-appends-every-output-field"),
        pytest.param(["a"], "0.9", CSV, ["a", "0.9"], id="csv-scalar-output-is-one-field"),
    ],
)
def test_join_puts_the_output_beside_the_input(
    input_record: Any, output_record: Any, content_type: str, expected: Any
) -> None:
    assert join(input_record, output_record, content_type) == expected


def test_join_does_not_change_the_input_record() -> None:
    record = {"id": 1}
    join(record, 2, JSON)
    assert record == {"id": 1}


def test_join_refuses_to_overwrite_sagemaker_output() -> None:
    with pytest.raises(
        InvalidInput, match="already has a 'SageMakerOutput' key, which the join would overwrite"
    ):
        join({"id": 1, "SageMakerOutput": "old"}, "new", JSON)


# -- DataProcessing: options checked once, applied per record ------------------------------------------------


@pytest.mark.parametrize(
    ("options", "content_type", "accept", "message"),
    [
        pytest.param(
            {"join_source": "Output"}, JSON, JSON, "JoinSource must be 'None' or 'Input'", id="join-source"
        ),
        pytest.param({"join_source": "input"}, JSON, JSON, "JoinSource must be", id="join-source-case"),
        pytest.param(
            {"join_source": "Input"}, CSV, JSON, "both must be CSV or both JSON", id="join-csv-with-json"
        ),
        pytest.param(
            {"join_source": "Input"},
            JSONLINES,
            CSV,
            "both must be CSV or both JSON",
            id="join-jsonlines-with-csv",
        ),
        pytest.param({"input_filter": "$.id"}, CSV, JSON, "InputFilter: .* by name", id="name-on-csv-input"),
        pytest.param(
            {"output_filter": "$.label"}, JSON, CSV, "OutputFilter: .* by name", id="name-on-csv-answer"
        ),
        pytest.param(
            {"output_filter": "$['id','SageMakerOutput']", "join_source": "Input"},
            CSV,
            CSV,
            "OutputFilter: .* by name",
            id="name-on-csv-join",
        ),
        pytest.param({"input_filter": "$..x"}, JSON, JSON, "InputFilter: JSONPath '\\$..x'", id="bad-input"),
        pytest.param({"output_filter": "x"}, JSON, JSON, "OutputFilter: JSONPath 'x'", id="bad-output"),
        pytest.param({}, "text/plain", JSON, "content type 'text/plain'", id="unknown-content-type"),
    ],
)
def test_from_options_refuses_inconsistent_options(
    options: dict[str, str], content_type: str, accept: str, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        DataProcessing.from_options(**options, content_type=content_type, accept=accept)


@pytest.mark.parametrize(
    ("options", "content_type", "accept"),
    [
        pytest.param({}, CSV, JSON, id="defaults-any-types"),
        pytest.param({"join_source": "Input"}, JSON, JSONLINES, id="join-json-with-jsonlines"),
        pytest.param({"join_source": "Input"}, CSV, CSV, id="join-csv-with-csv"),
        pytest.param(
            {"input_filter": "$[1:]", "output_filter": "$.label"}, CSV, JSON, id="csv-in-json-answer"
        ),
        pytest.param(
            {"input_filter": "$.text", "output_filter": "$[0]"}, JSONLINES, CSV, id="json-in-csv-answer"
        ),
    ],
)
def test_from_options_accepts_consistent_options(
    options: dict[str, str], content_type: str, accept: str
) -> None:
    processing = DataProcessing.from_options(**options, content_type=content_type, accept=accept)
    assert processing.join_source == options.get("join_source", "None")


def test_identity_options_pass_bytes_through_untouched() -> None:
    processing = DataProcessing.from_options(content_type=CSV, accept=CSV)
    raw_input, raw_output = b'1,"a,b"\r\n', b"pos\n"
    assert processing.model_input(raw_input, CSV) is raw_input
    assert processing.final_output(raw_input, raw_output, CSV, CSV) is raw_output


def test_guide_csv_example_drops_the_id_and_writes_id_with_prediction() -> None:
    processing = DataProcessing.from_options("$[1:]", "$[0,-1]", "Input", content_type=CSV, accept=CSV)
    raw_input = b'id-7,"great, really",5\n'
    assert processing.model_input(raw_input, CSV) == b'"great, really",5'
    assert processing.final_output(raw_input, b"0.93", CSV, CSV) == b"id-7,0.93"


def test_guide_json_example_joins_the_original_record_and_keeps_id_and_output() -> None:
    processing = DataProcessing.from_options(
        "$.features", "$['id','SageMakerOutput']", "Input", content_type=JSONLINES, accept=JSONLINES
    )
    raw_input = b'{"id": 7, "features": [1, 2], "note": "x"}'
    assert processing.model_input(raw_input, JSONLINES) == b"[1,2]"
    output = processing.final_output(raw_input, b'{"label": "pos"}', JSONLINES, JSONLINES)
    assert output == b'{"id":7,"SageMakerOutput":{"label":"pos"}}'


def test_join_uses_the_input_record_before_the_input_filter() -> None:
    processing = DataProcessing.from_options("$[1:]", join_source="Input", content_type=CSV, accept=CSV)
    assert processing.final_output(b"id-7,a,b", b"pos", CSV, CSV) == b"id-7,a,b,pos"


def test_join_of_json_with_jsonlines_answer_writes_jsonlines() -> None:
    processing = DataProcessing.from_options(join_source="Input", content_type=JSON, accept=JSONLINES)
    output = processing.final_output(b'["a", 1]', b'"pos"', JSON, JSONLINES)
    assert output == b'{"SageMakerInput":["a",1],"SageMakerOutput":"pos"}'


def test_output_filter_without_join_applies_to_the_answer() -> None:
    processing = DataProcessing.from_options(output_filter="$.label", content_type=CSV, accept=JSON)
    assert processing.final_output(b"ignored", b'{"label": "pos", "score": 0.9}', CSV, JSON) == b'"pos"'


def test_output_filter_on_csv_answer_uses_inclusive_slices() -> None:
    processing = DataProcessing.from_options(output_filter="$[0:1]", content_type=JSON, accept=CSV)
    assert processing.final_output(b"{}", b"pos,0.9,0.1", JSON, CSV) == b"pos,0.9"


def test_record_errors_name_the_filter() -> None:
    processing = DataProcessing.from_options("$[5]", "$[9]", "Input", content_type=CSV, accept=CSV)
    with pytest.raises(InvalidInput, match=r"InputFilter: JSONPath '\$\[5\]': index 5 .*length 3"):
        processing.model_input(b"a,b,c", CSV)
    with pytest.raises(InvalidInput, match=r"OutputFilter: JSONPath '\$\[9\]': index 9 .*length 4"):
        processing.final_output(b"a,b,c", b"pos", CSV, CSV)


def test_final_output_refuses_an_input_that_already_has_sagemaker_output() -> None:
    processing = DataProcessing.from_options(join_source="Input", content_type=JSON, accept=JSON)
    with pytest.raises(InvalidInput, match="already has a 'SageMakerOutput' key"):
        processing.final_output(b'{"SageMakerOutput": 1}', b"2", JSON, JSON)

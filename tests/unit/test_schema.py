"""Decoded records are checked against the model's input columns, and their text clipped, before any stage
runs (``services/runtime/schema.py``): one set of rules whatever codec decoded them."""

from __future__ import annotations

import math

import pytest

from services.artifacts import InputColumn
from services.errors import InvalidInput, SchemaError
from services.runtime.schema import InputSchema, Records, Tensors

TEXTS = InputSchema(
    [
        InputColumn(name="title", dtype="string", role="text"),
        InputColumn(name="review_body", dtype="string", role="text"),
    ],
    max_text_chars=20,
)
MIXED = InputSchema(
    [
        InputColumn(name="review_body", dtype="string", role="text"),
        InputColumn(name="age", dtype="float", role="numeric"),
    ],
    max_text_chars=20,
)


def test_objects_become_an_object_matrix_in_manifest_order() -> None:
    columns = TEXTS.columns(Records([{"review_body": "b", "title": "t"}, {"title": "", "review_body": "x"}]))
    assert columns.shape == (2, 2)
    assert columns.tolist() == [["t", "b"], ["", "x"]]


def test_positional_rows_and_sagemakers_features_lists_are_in_manifest_order() -> None:
    columns = TEXTS.columns(Records([["t", "b"], {"features": ["t2", "b2"]}]))
    assert columns.tolist() == [["t", "b"], ["t2", "b2"]]


def test_a_header_picks_the_models_columns_by_name_and_ignores_the_rest() -> None:
    records = Records(
        [["7", "body", "title", "positive"]], text=True, header=["id", "review_body", "title", "label"]
    )
    assert TEXTS.columns(records).tolist() == [["title", "body"]]


def test_a_header_without_a_model_column_names_the_columns_it_has() -> None:
    with pytest.raises(
        SchemaError, match=r"no column\(s\) \['title'\]; the columns are \['id', 'review_body'\]"
    ):
        TEXTS.columns(Records([["1", "x"]], text=True, header=["id", "review_body"]))


@pytest.mark.parametrize(
    ("items", "message"),
    [
        pytest.param([], "holds no records", id="empty"),
        pytest.param([{"title": "t"}], r"record 0: field 'review_body' is required", id="missing-field"),
        pytest.param(
            [{"title": "t", "review_body": None}],
            r"record 0: field 'review_body' must be a string, got NoneType",
            id="null",
        ),
        pytest.param(
            [{"title": "t", "review_body": "ok"}, {"title": 1, "review_body": "x"}],
            r"record 1: field 'title' must be a string, got int",
            id="wrong-type",
        ),
        pytest.param(
            [{"title": "t", "review_body": "x", "stars": "5"}],
            r"record 0: unknown field\(s\) \['stars'\]",
            id="unknown",
        ),
        pytest.param([7], "record 0: expected an object", id="not-an-object"),
        pytest.param([["only one"]], r"record 0: expected 2 value\(s\) in the order", id="short-row"),
        pytest.param(
            [{"title": "t", "review_body": {"nested": "x"}}], "must be a string, got dict", id="nested"
        ),
    ],
)
def test_bad_records_are_refused_naming_index_and_field(items: list[object], message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        TEXTS.columns(Records(items))


def test_unknown_fields_are_ignored_when_the_input_says_so() -> None:
    records = Records([{"title": "t", "review_body": "x", "id": 7}], unknown="ignore")
    assert TEXTS.columns(records).tolist() == [["t", "x"]]


def test_errors_of_a_later_chunk_name_the_record_in_the_whole_input() -> None:
    with pytest.raises(SchemaError, match="record 1002: field 'title'"):
        TEXTS.columns(
            Records([{"title": "a", "review_body": "b"}, {"title": 5, "review_body": "b"}], first=1001)
        )


def test_numeric_fields_take_numbers_and_null_becomes_nan() -> None:
    columns = MIXED.columns(Records([{"review_body": "a", "age": 41}, {"review_body": "b", "age": None}]))
    assert columns[0].tolist() == ["a", 41.0]
    assert math.isnan(columns[1, 1])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param("41", "must be a number or null, got str", id="string"),
        pytest.param(True, "must be a number or null, got bool", id="bool"),
        pytest.param([1], "must be a number or null, got list", id="list"),
        pytest.param(float("inf"), "must be a finite number", id="infinity"),
        pytest.param(10**400, "is too large for a number", id="huge-integer"),
    ],
)
def test_numeric_fields_refuse_what_is_not_a_finite_number(value: object, message: str) -> None:
    with pytest.raises(SchemaError, match=rf"record 0: field 'age' {message}"):
        MIXED.columns(Records([{"review_body": "a", "age": value}]))


def test_csv_text_parses_numbers_and_an_empty_field_is_missing() -> None:
    columns = MIXED.columns(Records([["great, really", "34"], ["", " "]], text=True))
    assert columns[0].tolist() == ["great, really", 34.0]
    assert columns[1, 0] == "" and math.isnan(columns[1, 1])
    with pytest.raises(SchemaError, match="record 0: field 'age' must be a number, got 'old'"):
        MIXED.columns(Records([["great", "old"]], text=True))


def test_tensors_are_checked_by_name_and_length() -> None:
    assert MIXED.columns(Tensors({"review_body": ["a", "b"], "age": [1, None]}))[0].tolist() == ["a", 1.0]
    with pytest.raises(SchemaError, match=r"unknown input\(s\) \['stars'\]"):
        MIXED.columns(Tensors({"review_body": ["a"], "age": [1], "stars": [5]}))
    with pytest.raises(SchemaError, match="input 'age' is required"):
        MIXED.columns(Tensors({"review_body": ["a"]}))
    with pytest.raises(SchemaError, match=r"different lengths \[1, 2\]"):
        MIXED.columns(Tensors({"review_body": ["a", "b"], "age": [1]}))


def test_long_text_is_cut_to_max_text_chars() -> None:
    columns = TEXTS.columns(Records([{"title": "x" * 25, "review_body": "short"}]))
    assert columns[0, 0] == "x" * 20 and columns[0, 1] == "short"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("bad \ud800 text", "not valid Unicode text", id="lone-surrogate"),
        pytest.param("a\x00b", "NUL", id="nul"),
    ],
)
def test_text_the_stages_cannot_take_is_refused_naming_record_and_field(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=f"record 0: field 'review_body' .*{message}"):
        TEXTS.columns(Records([{"title": "t", "review_body": text}]))


SINGLE = InputSchema([InputColumn(name="review_body", dtype="string", role="text")], max_text_chars=20)


def test_a_model_of_one_input_takes_bare_values() -> None:
    assert SINGLE.columns(Records(["great", "awful"])).tolist() == [["great"], ["awful"]]
    with pytest.raises(SchemaError, match="record 0: field 'review_body' must be a string, got int"):
        SINGLE.columns(Records([7]))

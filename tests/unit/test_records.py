"""Request records are checked against the model's input columns before any stage runs."""

from __future__ import annotations

import pytest

from services.errors import SchemaError
import math

from services.artifacts import InputColumn
from services.runtime import records_to_columns, text_inputs

INPUTS = text_inputs(["title", "review_body"])
MIXED = [
    InputColumn(name="review_body", dtype="string", role="text"),
    InputColumn(name="age", dtype="float", role="numeric"),
]


def test_records_become_an_object_matrix_in_manifest_order() -> None:
    columns = records_to_columns(
        [{"review_body": "b", "title": "t"}, {"title": "", "review_body": "x"}], INPUTS
    )
    assert columns.shape == (2, 2)
    assert columns.tolist() == [["t", "b"], ["", "x"]]


@pytest.mark.parametrize(
    ("records", "message"),
    [
        pytest.param([], "at least one record", id="empty-list"),
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
            id="unknown-field",
        ),
        pytest.param(["just text"], "record 0: expected an object", id="not-an-object"),
    ],
)
def test_bad_records_are_refused_naming_index_and_field(records: list, message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        records_to_columns(records, INPUTS)


def test_numeric_fields_take_numbers_and_null_becomes_nan() -> None:
    columns = records_to_columns([{"review_body": "a", "age": 41}, {"review_body": "b", "age": None}], MIXED)
    assert columns[0].tolist() == ["a", 41.0]
    assert math.isnan(columns[1, 1])


@pytest.mark.parametrize("value", ["41", True, [1]], ids=["string", "bool", "list"])
def test_numeric_fields_refuse_non_numbers(value: object) -> None:
    with pytest.raises(SchemaError, match=r"record 0: field 'age' must be a number or null"):
        records_to_columns([{"review_body": "a", "age": value}], MIXED)

"""Loading, preparing, splitting and fingerprinting tables (training/data.py), on the bundled reviews."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import BUNDLED_REVIEWS, TARGET
from training.data import (
    Split,
    fingerprint,
    load_table,
    prepare_reviews,
    run_prepare,
    snake_case,
    split_frame,
    write_table,
)
from training.errors import DataError


@pytest.fixture(scope="module")
def raw_reviews() -> pd.DataFrame:
    return load_table(BUNDLED_REVIEWS)


def _reviews(ratings: list[object], texts: list[object]) -> pd.DataFrame:
    return pd.DataFrame({"Unnamed: 0": range(len(ratings)), "Rating": ratings, "Review Text": texts})


def test_bundled_csv_loads_every_row_and_keeps_embedded_carriage_returns(raw_reviews: pd.DataFrame) -> None:
    assert raw_reviews.shape == (23486, 11)
    assert raw_reviews["Review Text"].str.contains("\r", regex=False).any()
    assert raw_reviews["Rating"].value_counts().to_dict() == {5: 13131, 4: 5077, 3: 2871, 2: 1565, 1: 842}


@pytest.mark.parametrize(
    ("rating", "sentiment"),
    [(1, "negative"), (2, "negative"), (3, "neutral"), (4, "positive"), (5, "positive")],
    ids=["1-negative", "2-negative", "3-neutral", "4-positive", "5-positive"],
)
def test_rating_maps_to_sentiment(rating: int, sentiment: str) -> None:
    prepared = prepare_reviews(_reviews([rating], ["fits well"]))
    assert prepared["sentiment"].tolist() == [sentiment]


def test_rows_with_missing_or_blank_text_are_dropped() -> None:
    prepared = prepare_reviews(_reviews([5, 1, 3, 4, 2], ["great", None, "   ", "\r\n\t", "too small"]))
    assert prepared["review_body"].tolist() == ["great", "too small"]
    assert prepared["sentiment"].tolist() == ["positive", "negative"]
    assert list(prepared.index) == [0, 1]


def test_bundled_reviews_prepare_to_three_classes(raw_reviews: pd.DataFrame) -> None:
    prepared = prepare_reviews(raw_reviews)
    assert len(prepared) == 23486 - 845  # 845 reviews have no text
    assert prepared["sentiment"].value_counts().to_dict() == {
        "positive": 17448,
        "neutral": 2823,
        "negative": 2370,
    }


def test_columns_are_renamed_to_snake_case_and_the_index_column_is_dropped(raw_reviews: pd.DataFrame) -> None:
    prepared = prepare_reviews(raw_reviews.head(20))
    assert list(prepared.columns) == [
        "clothing_id", "age", "title", "review_body", "rating", "recommended_ind",
        "positive_feedback_count", "division_name", "department_name", "class_name", "sentiment",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "expected"),
    [("Clothing ID", "clothing_id"), ("Positive Feedback Count", "positive_feedback_count"),
     ("PositiveFeedback", "positive_feedback"), ("  Class-Name ", "class_name")],
    ids=["spaces", "three-words", "camel-case", "punctuation"],
)  # fmt: skip
def test_snake_case(name: str, expected: str) -> None:
    assert snake_case(name) == expected


def test_custom_column_names_are_honoured() -> None:
    frame = pd.DataFrame({"Stars": [1, 5], "Body": ["bad", "good"]})
    prepared = prepare_reviews(
        frame, rating_column="Stars", text_column="Body", label_column="y", text_out="text"
    )
    assert list(prepared.columns) == ["stars", "text", "y"]


@pytest.mark.parametrize(
    ("kwargs", "missing"),
    [({"rating_column": "Stars"}, "'Stars'"), ({"text_column": "Body"}, "'Body'")],
    ids=["rating", "text"],
)
def test_a_missing_column_error_lists_available_columns(kwargs: dict[str, str], missing: str) -> None:
    with pytest.raises(
        DataError, match=rf"{missing} not found; available columns: .*'Rating', 'Review Text'"
    ):
        prepare_reviews(_reviews([5], ["ok"]), **kwargs)


def test_a_rating_outside_one_to_five_is_refused() -> None:
    with pytest.raises(DataError, match=r"ratings 1–5; found 1 other value\(s\), e.g. \[7\]"):
        prepare_reviews(_reviews([5, 7], ["ok", "odd"]))


@pytest.mark.parametrize("suffix", [".parquet", ".csv"], ids=["parquet", "csv"])
def test_run_prepare_writes_the_format_named_by_the_extension(tmp_path: Path, suffix: str) -> None:
    raw = tmp_path / "raw.csv"
    _reviews([1, 3, 5], ["bad", "meh", "good"]).to_csv(raw, index=False)
    out = tmp_path / f"prepared{suffix}"
    assert run_prepare(raw, out) == 3
    assert load_table(out)["sentiment"].tolist() == ["negative", "neutral", "positive"]


@pytest.fixture(scope="module")
def labelled() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    labels = np.array(["positive"] * 700 + ["neutral"] * 200 + ["negative"] * 100)
    return pd.DataFrame({"text": [f"review {i}" for i in range(1000)], TARGET: rng.permutation(labels)})


def _rows(split: Split) -> tuple[list[int], list[int], list[int]]:
    return list(split.train.index), list(split.validation.index), list(split.test.index)


def test_split_is_deterministic_for_a_seed(labelled: pd.DataFrame) -> None:
    assert _rows(split_frame(labelled, TARGET, seed=7)) == _rows(split_frame(labelled, TARGET, seed=7))


def test_split_differs_between_seeds(labelled: pd.DataFrame) -> None:
    assert _rows(split_frame(labelled, TARGET, seed=7))[2] != _rows(split_frame(labelled, TARGET, seed=8))[2]


def test_split_is_disjoint_complete_and_stratified(labelled: pd.DataFrame) -> None:
    split = split_frame(labelled, TARGET, seed=42, validation=0.1, test=0.1)
    train, validation, test = _rows(split)
    assert (len(train), len(validation), len(test)) == (800, 100, 100)
    assert sorted(train + validation + test) == list(range(1000))
    for part in (split.train, split.validation, split.test):
        shares = part[TARGET].value_counts(normalize=True)
        assert shares.to_dict() == pytest.approx({"positive": 0.7, "neutral": 0.2, "negative": 0.1}, abs=0.01)


def test_a_selection_split_is_held_out_from_training_rows_only(labelled: pd.DataFrame) -> None:
    plain = split_frame(labelled, TARGET, seed=42)
    split = split_frame(labelled, TARGET, seed=42, selection=0.1)
    assert (len(split.train), len(split.validation), len(split.selection), len(split.test)) == (
        700,
        100,
        100,
        100,
    )
    parts = [set(part.index) for part in (split.train, split.validation, split.selection, split.test)]
    assert sum(map(len, parts)) == len(set().union(*parts)) == 1000
    assert list(split.test.index) == list(
        plain.test.index
    )  # test rows do not move when selection is asked for
    shares = split.selection[TARGET].value_counts(normalize=True)
    assert shares.to_dict() == pytest.approx({"positive": 0.7, "neutral": 0.2, "negative": 0.1}, abs=0.01)
    assert plain.selection.empty


@pytest.mark.parametrize(
    ("validation", "test"), [(0.5, 0.5), (0.1, 0.0), (-0.1, 0.2)], ids=["sum-one", "no-test", "negative"]
)
def test_split_refuses_bad_fractions(labelled: pd.DataFrame, validation: float, test: float) -> None:
    with pytest.raises(DataError, match="validation \\+ test \\+ selection < 1"):
        split_frame(labelled, TARGET, validation=validation, test=test)


def test_split_explains_a_class_too_small_to_stratify() -> None:
    frame = pd.DataFrame({"text": list("abcdefghij"), TARGET: ["a"] * 9 + ["b"]})
    with pytest.raises(DataError, match=r"cannot split 10 rows stratified by 'sentiment' \(class counts"):
        split_frame(frame, TARGET, test=0.2)


def test_fingerprint_is_stable_and_ignores_the_row_index(labelled: pd.DataFrame) -> None:
    columns = ["text", TARGET]
    reindexed = labelled.set_axis(range(5000, 6000))
    assert (
        fingerprint(labelled, columns)
        == fingerprint(labelled.copy(), columns)
        == fingerprint(reindexed, columns)
    )
    assert fingerprint(labelled, columns).startswith("sha256:")


@pytest.mark.parametrize(
    "change",
    [
        lambda f: f.assign(text=f["text"].where(f.index != 500, "review 500!")),
        lambda f: f.iloc[::-1],
        lambda f: f.rename(columns={"text": "body"}),
        lambda f: f.assign(text=f["text"].astype(object)),
    ],
    ids=["one-value", "row-order", "column-name", "dtype"],
)
def test_fingerprint_changes_with_the_data(
    labelled: pd.DataFrame, change: Callable[[pd.DataFrame], pd.DataFrame]
) -> None:
    changed = change(labelled)
    text = "body" if "body" in changed.columns else "text"
    assert fingerprint(changed, [text, TARGET]) != fingerprint(labelled, ["text", TARGET])


def _write(path: Path, payload: bytes) -> Path:
    path.write_bytes(payload)
    return path


@pytest.mark.parametrize(
    ("name", "payload", "message"),
    [
        ("missing.csv", None, "data file not found"),
        (
            "table.xlsx",
            b"a,b\n1,2\n",
            r"unsupported file type '\.xlsx'.*use one of \.csv, \.csv\.gz, \.parquet",
        ),
        ("empty.csv", b"", "data file is empty"),
        ("empty.csv.gz", gzip.compress(b""), "data file is empty"),
        ("latin1.csv", "text\ncafé crème\n".encode("latin-1"), "is not UTF-8 text"),
        ("broken.parquet", b"not parquet at all", "cannot read"),
    ],
    ids=["missing-file", "bad-extension", "empty-csv", "empty-gzip", "non-utf8-csv", "corrupt-parquet"],
)
def test_load_table_errors_are_clear(tmp_path: Path, name: str, payload: bytes | None, message: str) -> None:
    path = tmp_path / name if payload is None else _write(tmp_path / name, payload)
    with pytest.raises(DataError, match=message):
        load_table(path)


@pytest.mark.parametrize("name", ["t.csv", "t.csv.gz", "t.parquet"], ids=["csv", "csv-gz", "parquet"])
def test_written_tables_read_back_unchanged_in_each_format(tmp_path: Path, name: str) -> None:
    frame = pd.DataFrame({"text": ["line one\rstill one", "“curly” café 😍"], "n": [1, 2]})
    assert load_table(write_table(frame, tmp_path / name)).to_dict("list") == frame.to_dict("list")

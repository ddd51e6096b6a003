"""Problem-type and column-role inference on crafted frames (training/problem.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.automl.objectives import resolve_objective
from training.errors import DataError
from training.problem import infer_problem, infer_problem_type, require_text_columns

RNG = np.random.default_rng(0)
N = 200
WORDS = ["soft", "fabric", "runs", "small", "love", "color", "returned", "it", "great", "fit"]


def _sentences(n: int, words: int) -> list[str]:
    return [" ".join(RNG.choice(WORDS, size=words)) for _ in range(n)]


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "order_id": np.arange(N),  # identifier-like (name + integer)
            "sku": [f"SKU{i:05d}" for i in range(N)],  # identifier-like (distinct one-word strings)
            "review": _sentences(N, 12),  # free text
            "title": [
                f"{a} {b}" for a, b in zip(RNG.choice(WORDS, N), RNG.integers(0, 10**6, N), strict=True)
            ],  # short text
            "department": RNG.choice(["Tops", "Dresses", "Bottoms"], N),  # categorical
            "age": RNG.integers(18, 80, N).astype(float),  # numeric
            "country": ["US"] * N,  # constant
            "stars": RNG.integers(1, 6, N),
            "price": RNG.normal(50, 10, N),
            "recommended": RNG.integers(0, 2, N).astype(bool),
        }
    ).assign(
        sentiment=lambda f: np.where(f.stars >= 4, "positive", np.where(f.stars == 3, "neutral", "negative"))
    )


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("sentiment", "multiclass"),
        ("recommended", "binary"),
        ("stars", "multiclass"),
        ("price", "regression"),
        ("age", "regression"),
    ],
    ids=["strings", "booleans", "few-integers", "floats", "many-integers"],
)
def test_problem_type_follows_the_target(frame: pd.DataFrame, target: str, expected: str) -> None:
    assert infer_problem_type(frame[target]) == expected


def test_roles_are_inferred_and_drops_explained(frame: pd.DataFrame) -> None:
    problem = infer_problem(frame, "sentiment")
    roles = problem.roles
    assert roles.text == ("review", "title")
    assert roles.categorical == ("department", "recommended")
    assert roles.numeric == ("age", "price")
    assert roles.dropped == {
        "order_id": "identifier-like: an integer column named like an id",
        "sku": "identifier-like: single-word strings, mostly distinct",
        "country": "constant: one distinct value",
        "stars": "leaks the target: each of its values determines the target",
    }
    assert problem.labels == ("negative", "neutral", "positive")
    assert [c.dtype for c in roles.inputs] == ["string"] * 4 + ["float"] * 2


def test_explicit_roles_override_inference(frame: pd.DataFrame) -> None:
    problem = infer_problem(frame, "sentiment", text=["review"], numeric=["stars"])
    assert (problem.roles.text, problem.roles.numeric, problem.roles.categorical) == (
        ("review",),
        ("stars",),
        (),
    )
    assert problem.roles.dropped["department"] == "not selected"


def test_input_frame_types_values_as_serving_sends_them(frame: pd.DataFrame) -> None:
    frame.loc[0, "review"] = None
    frame.loc[1, "age"] = None
    inputs = infer_problem(frame, "sentiment", text=["review"], numeric=["age"]).input_frame(frame)
    assert inputs.loc[0, "review"] == "" and np.isnan(inputs.loc[1, "age"])
    assert list(inputs.columns) == ["review", "age"]


@pytest.mark.parametrize(
    ("change", "kwargs", "message"),
    [
        pytest.param(
            {},
            {"target": "rating"},
            r"target column 'rating' not found; available columns: order_id, sku",
            id="missing-target",
        ),
        pytest.param(
            {"sentiment": "positive"},
            {"target": "sentiment"},
            r"1 distinct value\(s\); a model needs at least two",
            id="one-class",
        ),
        pytest.param(
            {"review": ""},
            {"target": "sentiment", "text": ["review"]},
            r"text column 'review' is empty in every row",
            id="empty-text",
        ),
        pytest.param(
            {},
            {"target": "sentiment", "text": ["review", "stars"]},
            r"text column 'stars' holds numbers \(dtype int64\), not text: refused rather than tokenized",
            id="numeric-text",
        ),
        pytest.param(
            {},
            {"target": "sentiment", "text": ["recommended"]},
            r"text column 'recommended' holds booleans \(dtype bool\), not text",
            id="boolean-text",
        ),
        pytest.param(
            {},
            {"target": "sentiment", "problem_type": "binary"},
            r"has 3 classes; binary needs exactly 2",
            id="wrong-problem-type",
        ),
        pytest.param(
            {},
            {"target": "sentiment", "text": ["body"]},
            r"column\(s\) \['body'\] not found",
            id="unknown-column",
        ),
    ],
)
def test_bad_problems_are_refused_clearly(
    frame: pd.DataFrame, change: dict, kwargs: dict, message: str
) -> None:
    with pytest.raises(DataError, match=message):
        infer_problem(frame.assign(**change), **kwargs)


@pytest.mark.parametrize(
    "values",
    [
        pd.Series(["soft fabric", None, "runs small"]),
        pd.Series(["soft fabric", "runs small"], dtype="string"),
        pd.Series(["soft fabric", "runs small", "soft fabric"], dtype="category"),
        pd.Series(["soft fabric", 42, "size 8"], dtype=object),
    ],
    ids=["object", "string-dtype", "categorical", "strings-mixed-with-numbers"],
)
def test_text_columns_of_strings_are_accepted(values: pd.Series) -> None:
    require_text_columns(pd.DataFrame({"review": values}), ["review"])


@pytest.mark.parametrize(
    ("name", "problem_type"),
    [("rmse", "multiclass"), ("macro_f1", "regression"), ("f1", "multiclass"), ("speed", "binary")],
)
def test_an_objective_that_does_not_fit_the_problem_lists_those_that_do(name: str, problem_type: str) -> None:
    with pytest.raises(
        DataError, match=rf"objective '{name}' does not fit a {problem_type} problem; choose one of"
    ):
        resolve_objective(name, problem_type)  # type: ignore[arg-type]

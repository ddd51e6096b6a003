"""What kind of problem a table poses: problem type from the target, a role for every other column.

Inference is a starting point the user can override with flags, never a black box: :func:`infer_problem`
returns a :class:`Problem` whose ``describe()`` is printed and saved with the run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from services.artifacts import InputColumn
from training.errors import DataError

ProblemType = Literal["binary", "multiclass", "regression"]
Role = Literal["text", "categorical", "numeric"]

MAX_NUMERIC_CLASSES = 20
"""A numeric target with more distinct values than this (or any non-integer value) is a regression target."""
TEXT_MIN_MEAN_WORDS = 4.0
"""A string column whose values average at least this many words is free text, not a category."""
SHORT_TEXT_MIN_MEAN_WORDS = 1.5
"""A mostly-distinct string column averaging this many words is short text (titles), not an identifier."""
LEAK_MIN_PURITY = 0.99
"""A column whose every value maps to one target value on this share of rows leaks the target."""
_ID_NAME = re.compile(r"(^|[_\s-])id$", re.IGNORECASE)
CATEGORICAL_MAX_SHARE = 0.5
"""A string column is categorical when its distinct values are at most this share of its rows (else an id)."""
IDENTIFIER_MIN_SHARE = 0.95
"""An integer column whose values are (almost) all distinct and not free text looks like an identifier."""


@dataclass(frozen=True)
class ColumnRoles:
    """Which input columns a model uses, and how; ``dropped`` says why the others are left out."""

    text: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    dropped: Mapping[str, str] = field(default_factory=dict)

    @property
    def inputs(self) -> list[InputColumn]:
        """The manifest's input columns in the order every family's transformer graph takes them."""
        return (
            [InputColumn(name=c, dtype="string", role="text") for c in self.text]
            + [InputColumn(name=c, dtype="string", role="categorical") for c in self.categorical]
            + [InputColumn(name=c, dtype="float", role="numeric") for c in self.numeric]
        )

    @property
    def input_names(self) -> list[str]:
        return [column.name for column in self.inputs]


@dataclass(frozen=True)
class Problem:
    """A target, its problem type, its labels (sorted; class index ``i`` is ``labels[i]``) and column roles."""

    target: str
    problem_type: ProblemType
    labels: tuple[str, ...]
    roles: ColumnRoles

    @property
    def is_classification(self) -> bool:
        return self.problem_type != "regression"

    def encode_target(self, frame: pd.DataFrame) -> np.ndarray:
        """Class indices ``(n_samples,)`` int64, or float64 values for regression.

        Raises:
            DataError: a label that the problem does not know.
        """
        y = frame[self.target]
        if not self.is_classification:
            return y.astype("float64").to_numpy()
        index = {label: i for i, label in enumerate(self.labels)}
        strings = label_strings(y)
        unknown = sorted(set(strings) - set(index))
        if unknown:
            raise DataError(f"target {self.target!r} contains previously unseen labels: {unknown[:5]}")
        return np.array([index[s] for s in strings], dtype=np.int64)

    def input_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The input columns, typed as serving sends them: strings ("" when missing) and float64 (NaN).

        Every family trains and is checked for parity on this frame, so missing values mean the same thing in
        training and in serving.
        """
        missing = [c for c in self.roles.input_names if c not in frame.columns]
        if missing:
            raise DataError(f"input column(s) {missing} are not in the data; it has {list(frame.columns)}")
        out = pd.DataFrame(index=frame.index)
        for column in (*self.roles.text, *self.roles.categorical):
            values = frame[column]
            out[column] = values.where(values.notna(), "").astype(str).astype(object)
        for column in self.roles.numeric:
            out[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
        return out

    def describe(self) -> dict[str, object]:
        """A JSON-ready summary, printed by the CLI and saved with the run."""
        return {
            "target": self.target,
            "problem_type": self.problem_type,
            "labels": list(self.labels),
            "text": list(self.roles.text),
            "categorical": list(self.roles.categorical),
            "numeric": list(self.roles.numeric),
            "dropped": dict(self.roles.dropped),
        }


def label_strings(values: pd.Series) -> list[str]:
    """Labels as strings; whole floats lose their ``.0`` so a 1..5 rating read as float gives "1".."5"."""

    def one(value: object) -> str:
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)

    return [one(v) for v in values]


def infer_problem_type(target: pd.Series) -> ProblemType:
    """Binary for two values; multiclass for strings, booleans or few integer values; otherwise regression."""
    values = target.dropna()
    distinct = values.nunique()
    if distinct < 2:
        raise DataError(
            f"target {target.name!r} has {distinct} distinct value(s); a model needs at least two classes"
        )
    if distinct == 2:
        return "binary"
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return "multiclass"
    whole = bool(np.all(np.mod(values.astype("float64"), 1) == 0))
    return "multiclass" if whole and distinct <= MAX_NUMERIC_CLASSES else "regression"


def _mean_words(values: pd.Series) -> float:
    sample = values.dropna().astype(str).head(2000)
    return float(sample.str.split().str.len().mean()) if len(sample) else 0.0


def infer_role(values: pd.Series) -> tuple[Role | None, str]:
    """The role of one input column, or None with the reason it is dropped."""
    present = values.dropna()
    if present.empty:
        return None, "empty: every value is missing"
    distinct = present.nunique()
    if distinct == 1:
        return None, "constant: one distinct value"
    if pd.api.types.is_bool_dtype(present):
        return "categorical", ""
    if pd.api.types.is_numeric_dtype(present):
        whole = bool(np.all(np.mod(present.astype("float64"), 1) == 0))
        if whole and _ID_NAME.search(str(values.name)):
            return None, "identifier-like: an integer column named like an id"
        if whole and distinct >= IDENTIFIER_MIN_SHARE * len(present) and len(present) >= 20:
            return None, "identifier-like: almost every value is distinct"
        return "numeric", ""
    words = _mean_words(present)
    if words >= TEXT_MIN_MEAN_WORDS:
        return "text", ""
    if distinct <= CATEGORICAL_MAX_SHARE * len(present):
        return "categorical", ""
    if words >= SHORT_TEXT_MIN_MEAN_WORDS:
        return "text", ""
    return None, "identifier-like: single-word strings, mostly distinct"


TEXT_KINDS = ("string", "mixed", "mixed-integer", "empty")
"""What ``pandas.api.types.infer_dtype`` may say of a text column's values: strings, strings mixed with other
values, or nothing at all (reported as empty, below)."""


def require_text_columns(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    """Refuse text columns that hold numbers, booleans or dates, and text columns without any text.

    A text column is tokenized; digits of a number would become "words" and train a model on nonsense (or, with a
    one-character token pattern, on nothing: an empty vocabulary).  A numeric column belongs in the numeric
    inputs instead (``tripod automl --numeric``), so this refuses rather than converting.

    Raises:
        DataError: naming the column, its dtype and what it holds.
    """
    for column in columns:
        values = frame[column]
        held = values.cat.categories if isinstance(values.dtype, pd.CategoricalDtype) else values
        kind = pd.api.types.infer_dtype(held, skipna=True)
        if kind not in TEXT_KINDS:
            numeric = kind in ("integer", "floating", "mixed-integer-float", "decimal", "complex")
            what = "numbers" if numeric else "booleans" if kind == "boolean" else f"{kind} values"
            raise DataError(
                f"text column {column!r} holds {what} (dtype {values.dtype}), not text: refused rather than "
                "tokenized as words; use free-text columns (numbers belong in numeric inputs, e.g. "
                "tripod automl --numeric)"
            )
        if values.fillna("").astype(str).str.strip().eq("").all():
            raise DataError(f"text column {column!r} is empty in every row")


def leaks_target(values: pd.Series, target: pd.Series) -> bool:
    """True when the column (with at least two values) determines the target on ≥ 99 % of rows.

    Such a column (a star rating beside the sentiment derived from it) makes a perfect but useless model.
    """
    both = pd.DataFrame({"x": values, "y": target}).dropna()
    if both.empty or both["x"].nunique() < 2 or both["x"].nunique() > 0.5 * len(both):
        return False
    majority = both.groupby("x", observed=True)["y"].agg(lambda ys: ys.value_counts().iloc[0]).sum()
    return bool(majority >= LEAK_MIN_PURITY * len(both))


def infer_problem(
    frame: pd.DataFrame,
    target: str,
    *,
    problem_type: ProblemType | Literal["auto"] = "auto",
    text: Sequence[str] | None = None,
    categorical: Sequence[str] | None = None,
    numeric: Sequence[str] | None = None,
    ignore: Sequence[str] = (),
) -> Problem:
    """Infer the problem of predicting ``target`` from ``frame``'s other columns.

    Args:
        problem_type: ``auto`` infers it from the target; otherwise it is checked against the target.
        text, categorical, numeric: explicit roles; a column named in any of them is not inferred, and when
            any is given, columns named nowhere are dropped ("not selected").
        ignore: columns to leave out.

    Raises:
        DataError: a missing target or column (listing the available ones), a one-class target, a problem
            type that does not fit the target, or no usable input column.
    """
    if target not in frame.columns:
        raise DataError(
            f"target column {target!r} not found; available columns: {', '.join(map(str, frame.columns))}"
        )
    named = [*(text or ()), *(categorical or ()), *(numeric or ()), *ignore]
    unknown = [c for c in named if c not in frame.columns]
    if unknown:
        raise DataError(
            f"column(s) {unknown} not found; available columns: {', '.join(map(str, frame.columns))}"
        )
    y = frame[target]
    if y.isna().all():
        raise DataError(f"target column {target!r} is empty")
    inferred = infer_problem_type(y)
    if problem_type == "auto":
        problem_type = inferred
    elif problem_type == "binary" and y.dropna().nunique() != 2:
        raise DataError(f"target {target!r} has {y.dropna().nunique()} classes; binary needs exactly 2")
    elif problem_type == "regression" and not pd.api.types.is_numeric_dtype(y.dropna()):
        raise DataError(f"target {target!r} is not numeric, so it cannot be a regression target")

    explicit = text is not None or categorical is not None or numeric is not None
    roles: dict[str, list[str]] = {
        "text": list(text or ()),
        "categorical": list(categorical or ()),
        "numeric": list(numeric or ()),
    }
    dropped: dict[str, str] = dict.fromkeys(ignore, "ignored by the user")
    for column in frame.columns:
        if column == target or column in named:
            continue
        if explicit:
            dropped[str(column)] = "not selected"
            continue
        role, reason = infer_role(frame[column])
        if role is not None and role != "text" and leaks_target(frame[column], y):
            role, reason = None, "leaks the target: each of its values determines the target"
        if role is None:
            dropped[str(column)] = reason
        else:
            roles[role].append(str(column))
    require_text_columns(frame, roles["text"])
    column_roles = ColumnRoles(
        tuple(roles["text"]), tuple(roles["categorical"]), tuple(roles["numeric"]), dropped
    )
    if not column_roles.input_names:
        raise DataError(f"no usable input column besides the target; dropped: {dropped}")
    labels = tuple(sorted(set(label_strings(y.dropna())))) if problem_type != "regression" else ()
    return Problem(target=target, problem_type=problem_type, labels=labels, roles=column_roles)

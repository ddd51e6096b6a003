"""What a bias analysis compares: the label (positive or not) and each facet (facet d against the rest).

A label becomes booleans through a list of positive values or, for numeric labels, a threshold
(:func:`label_positive`); a facet becomes integer codes and facet-d definitions (:func:`facet_groups`): each
value against the rest, given sensitive values against the rest, or the rows above a threshold against the rows
at or below it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from training.errors import DataError

MAX_FACET_VALUES = 50
"""One-vs-rest over more values than this needs --facet-value or --threshold (a numeric column, usually)."""


class BiasError(DataError):
    """A bias analysis the data cannot support: one facet value, no positive label, an unknown value..."""


@dataclass(frozen=True)
class FacetSpec:
    """A facet: a column, optionally the sensitive values or a threshold.

    Attributes:
        name: Column name.
        values: Sensitive values (facet d = rows with any of them); empty = every value against the rest.
        threshold: For numeric columns: facet d = rows with a value above the threshold.
    """

    name: str
    values: tuple[str, ...] = ()
    threshold: float | None = None

    def __post_init__(self) -> None:
        if self.values and self.threshold is not None:
            raise BiasError(f"facet {self.name!r}: give sensitive values or a threshold, not both")


@dataclass(frozen=True)
class LabelSpec:
    """The label: a column and what counts as positive (values, or above a threshold for numeric labels)."""

    name: str
    positive_values: tuple[str, ...] = ()
    threshold: float | None = None

    def __post_init__(self) -> None:
        if bool(self.positive_values) == (self.threshold is not None):
            raise BiasError(
                f"label {self.name!r}: give the positive label value(s) (--positive-label) or a --label-threshold"
            )


@dataclass(frozen=True)
class FacetGroups:
    """A facet turned into integer codes and the facet-d definitions to report.

    Attributes:
        codes: ``(n_samples,)`` code of each row, -1 where the facet is missing.
        n_codes: Number of codes.
        membership: ``(F, n_codes)`` 0/1, which codes make up facet d of each definition.
        names: ``(F,)`` Clarify's ``value_or_threshold`` of each definition.
        kind: ``"categorical"`` or ``"continuous"``.
    """

    codes: np.ndarray
    n_codes: int
    membership: np.ndarray
    names: list[str]
    kind: str

    @property
    def missing(self) -> np.ndarray:
        return self.codes < 0

    def facet_d(self, index: int) -> np.ndarray:
        """``(n_samples,)`` bool: rows in facet d of definition ``index`` (False where the facet is missing)."""
        in_d = self.membership[index].astype(bool)
        return np.where(self.codes >= 0, in_d[np.clip(self.codes, 0, None)], False)


def plain_number(value: float) -> int | float:
    """``4.0`` → ``4`` for messages and Clarify's ``value_or_threshold`` (non-integers unchanged)."""
    return int(value) if float(value).is_integer() else float(value)


def value_mask(series: pd.Series, values: Sequence[str], *, what: str) -> np.ndarray:
    """``(n_samples,)`` bool: rows whose value is one of ``values`` (given as text, as on a command line).

    Numeric columns compare numerically (``"4"`` matches 4 and 4.0), booleans accept true/false/1/0, anything
    else compares the text.  Missing values never match.
    """
    present = series.notna().to_numpy()
    if pd.api.types.is_bool_dtype(series):
        truth = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
        wanted = set()
        for value in values:
            if str(value).strip().lower() not in truth:
                raise BiasError(f"{what} holds booleans; {value!r} is not true/false")
            wanted.add(truth[str(value).strip().lower()])
        return present & series.isin(list(wanted)).to_numpy()
    if pd.api.types.is_numeric_dtype(series):
        numbers = []
        for value in values:
            try:
                numbers.append(float(value))
            except ValueError:
                raise BiasError(f"{what} holds numbers; {value!r} is not a number") from None
        return present & series.isin(numbers).to_numpy()
    return present & series.astype(str).isin([str(v) for v in values]).to_numpy()


def distinct_listing(series: pd.Series, limit: int = 20) -> str:
    """``"a (3), b (1)"``: the most frequent values with their counts, for an error message."""
    counts = series.value_counts(dropna=True)
    shown = ", ".join(f"{str(v)!s} ({n})" for v, n in counts.head(limit).items())
    more = f", … {len(counts) - limit} more" if len(counts) > limit else ""
    return shown + more


def numeric_values(series: pd.Series, what: str) -> pd.Series:
    """The series as numbers.

    Raises:
        BiasError: a value that is not a number (a threshold needs numbers).
    """
    values = pd.to_numeric(series, errors="coerce")
    bad = values.isna() & series.notna()
    if bad.any():
        example = series[bad].iloc[0]
        raise BiasError(f"{what} has non-numeric values (e.g. {example!r}); a threshold needs numbers")
    return values


def threshold_interval(threshold: float, values: pd.Series) -> str:
    """Clarify's ``value_or_threshold`` for a threshold: the interval of facet d, ``(40, 99]``."""
    return f"({plain_number(threshold)}, {plain_number(float(values.max()))}]"


def label_positive(frame: pd.DataFrame, label: LabelSpec) -> tuple[np.ndarray, np.ndarray, str]:
    """The observed label as booleans.

    Returns:
        ``(positive, missing, label_value_or_threshold)``: two ``(n_samples,)`` bool arrays and Clarify's text.

    Raises:
        BiasError: a non-numeric label with a threshold, no positive row, or no label at all.
    """
    series = frame[label.name]
    missing = series.isna().to_numpy()
    if missing.all():
        raise BiasError(f"label {label.name!r} is missing in every row")
    if label.threshold is not None:
        values = numeric_values(series, f"label {label.name!r}")
        positive = (values > label.threshold).to_numpy() & ~missing
        text = threshold_interval(label.threshold, values)
    else:
        positive = value_mask(series, label.positive_values, what=f"label {label.name!r}")
        text = ",".join(label.positive_values)
    if not positive.any():
        wanted = text if label.threshold is None else f"above {plain_number(label.threshold)}"
        raise BiasError(
            f"label {label.name!r} has no positive rows ({wanted}); its values are: {distinct_listing(series)}"
        )
    return positive, missing, text


def facet_groups(series: pd.Series, facet: FacetSpec, *, max_values: int = MAX_FACET_VALUES) -> FacetGroups:
    """Codes and facet-d definitions for one facet column.

    Raises:
        BiasError: the facet has one value, its sensitive values do not occur (or cover every row), a threshold
            leaves one side empty, or one-vs-rest would report more than ``max_values`` values.
    """
    what = f"facet {facet.name!r}"
    present = series.dropna()
    if present.empty:
        raise BiasError(f"{what} is missing in every row")
    if facet.threshold is not None:
        values = numeric_values(series, what)
        above = (values > facet.threshold).to_numpy()
        codes = np.where(values.isna().to_numpy(), -1, above.astype(np.int64))
        valid = codes >= 0
        if above[valid].all() or not above[valid].any():
            side = "above" if above[valid].all() else "at or below"
            raise BiasError(
                f"threshold {plain_number(facet.threshold)} puts every row of {what} {side} it (values "
                f"{plain_number(float(values.min()))} to {plain_number(float(values.max()))}); pick a threshold inside the range"
            )
        return FacetGroups(
            codes, 2, np.array([[0, 1]]), [threshold_interval(facet.threshold, values)], "continuous"
        )

    try:
        codes, uniques = pd.factorize(series, sort=True)
    except TypeError:  # mixed types that do not sort
        codes, uniques = pd.factorize(series, sort=False)
    codes = np.asarray(codes, dtype=np.int64)
    names = [str(u) for u in list(uniques)]
    if len(names) < 2:
        raise BiasError(
            f"{what} has only one value ({names[0]!r}, {len(present)} rows); bias needs at least two groups"
        )
    if facet.values:
        chosen = value_mask(pd.Series(list(uniques), dtype=series.dtype), facet.values, what=what)
        if not chosen.any():
            raise BiasError(
                f"{what} has no rows with value(s) {list(facet.values)}; its values are: {distinct_listing(series)}"
            )
        if chosen.all():
            raise BiasError(
                f"{what}: values {list(facet.values)} cover every row; nothing is left to compare with"
            )
        return FacetGroups(
            codes, len(names), chosen.astype(np.int64)[None, :], [",".join(facet.values)], "categorical"
        )
    if len(names) > max_values:
        raise BiasError(
            f"{what} has {len(names)} distinct values (one-vs-rest reports at most {max_values}); "
            "name the sensitive values with --facet-value, or give a --threshold for a numeric column"
        )
    return FacetGroups(codes, len(names), np.eye(len(names), dtype=np.int64), names, "categorical")

"""Pre- and post-training bias reports in the shape of SageMaker Clarify's ``analysis.json``, and balancing.

``tripod bias`` reads a table, turns the label into "positive or not" (multi-class labels through a list of
positive values, numeric labels through a threshold), turns each facet into groups (each value against the
rest, given sensitive values against the rest, or the rows above a threshold against the rows at or below it),
and computes Clarify's metrics with :mod:`training.bias_metrics`.  Predictions for post-training metrics come
from a column or from a model directory, run through the same ONNX runtime that serves it.

Rows whose label (or prediction) is missing are left out of every metric; rows whose facet is missing are left
out of that facet's metrics.  Both are counted in ``details.excluded`` and shown in the report.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from training import bias_metrics as bm
from training.data import require_columns
from training.errors import DataError

logger = logging.getLogger(__name__)

MAX_FACET_VALUES = 50
"""One-vs-rest over more values than this needs --facet-value or --threshold (a numeric column, usually)."""
FT_MAX_ROWS = 100_000
"""FT fits nearest neighbours; above this many rows it runs on a seeded random sample of this size."""
ANALYSIS_VERSION = "1.0"
BalanceBy = Literal["class", "facet-class"]


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


def _number(value: float) -> int | float:
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


def _distinct_listing(series: pd.Series, limit: int = 20) -> str:
    counts = series.value_counts(dropna=True)
    shown = ", ".join(f"{str(v)!s} ({n})" for v, n in counts.head(limit).items())
    more = f", … {len(counts) - limit} more" if len(counts) > limit else ""
    return shown + more


def _numeric(series: pd.Series, what: str) -> pd.Series:
    values = pd.to_numeric(series, errors="coerce")
    bad = values.isna() & series.notna()
    if bad.any():
        example = series[bad].iloc[0]
        raise BiasError(f"{what} has non-numeric values (e.g. {example!r}); a threshold needs numbers")
    return values


def _interval(threshold: float, values: pd.Series) -> str:
    """Clarify's ``value_or_threshold`` for a threshold: the interval of facet d, ``(40, 99]``."""
    return f"({_number(threshold)}, {_number(float(values.max()))}]"


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
        values = _numeric(series, f"label {label.name!r}")
        positive = (values > label.threshold).to_numpy() & ~missing
        text = _interval(label.threshold, values)
    else:
        positive = value_mask(series, label.positive_values, what=f"label {label.name!r}")
        text = ",".join(label.positive_values)
    if not positive.any():
        wanted = text if label.threshold is None else f"above {_number(label.threshold)}"
        raise BiasError(
            f"label {label.name!r} has no positive rows ({wanted}); its values are: {_distinct_listing(series)}"
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
        values = _numeric(series, what)
        above = (values > facet.threshold).to_numpy()
        codes = np.where(values.isna().to_numpy(), -1, above.astype(np.int64))
        valid = codes >= 0
        if above[valid].all() or not above[valid].any():
            side = "above" if above[valid].all() else "at or below"
            raise BiasError(
                f"threshold {_number(facet.threshold)} puts every row of {what} {side} it (values "
                f"{_number(float(values.min()))} to {_number(float(values.max()))}); pick a threshold inside the range"
            )
        return FacetGroups(codes, 2, np.array([[0, 1]]), [_interval(facet.threshold, values)], "continuous")

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
                f"{what} has no rows with value(s) {list(facet.values)}; its values are: {_distinct_listing(series)}"
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


def predict_with_model(
    frame: pd.DataFrame, model_dir: Path | str, *, batch_size: int = 1024, progress: bool = True
) -> pd.Series:
    """Predicted labels (or values) for every row, from a model directory's ONNX stages.

    Raises:
        DataError: the model's input columns are not all in the table (listing the available ones).
    """
    from services.runtime import InferencePipeline

    pipeline = InferencePipeline.from_directory(Path(model_dir))
    require_columns(frame, pipeline.input_names)
    columns = {}
    for column in pipeline.inputs:
        values = frame[column.name]
        if column.dtype == "string":
            columns[column.name] = values.where(values.notna(), "").astype(str).to_numpy(dtype=object)
        else:
            columns[column.name] = (
                pd.to_numeric(values, errors="coerce").astype("float64").to_numpy(dtype=object)
            )
    answers: list[np.ndarray] = []
    starts = range(0, len(frame), batch_size)
    for start in tqdm(starts, desc="predict", unit="batch", disable=not progress):
        batch = {name: values[start : start + batch_size] for name, values in columns.items()}
        result = pipeline.predict_columns(batch)
        answers.append(np.asarray(result.values if result.values is not None else result.labels))
    values = np.concatenate(answers) if answers else np.array([], dtype=object)
    return pd.Series(values, index=frame.index, name="predicted_label")


def _feature_matrix(frame: pd.DataFrame, exclude: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Numeric and boolean columns (missing values → the column median) for FT's nearest neighbours."""
    names = [
        str(c)
        for c in frame.columns
        if c not in exclude
        and (pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c]))
    ]
    if not names:
        return np.empty((len(frame), 0)), []
    block = frame[names].astype("float64")
    block = block.fillna(block.median()).fillna(0.0)
    return block.to_numpy(), names


@dataclass
class _Stage:
    name: str
    label_value_or_threshold: str
    label: str
    facets: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "facets": self.facets,
            "label_value_or_threshold": self.label_value_or_threshold,
        }


def _metric(name: str, value: float | None, error: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "description": bm.DESCRIPTIONS[name], "value": value}
    if error is not None:
        entry["error"] = error
    return entry


def _value(array: np.ndarray, index: int) -> float:
    return float(array[index])


def _facet_metrics(
    names: Sequence[str],
    values: dict[str, np.ndarray],
    errors: dict[str, str],
    counts: bm.FacetCounts,
    index: int,
) -> list[dict[str, Any]]:
    empty = None
    if counts.n_d[index] == 0:
        empty = "facet d is empty"
    elif counts.n_a[index] == 0:
        empty = "facet a (the other rows) is empty"
    metrics = []
    for name in sorted(names):
        if empty:
            metrics.append(_metric(name, None, empty))
        elif name in errors:
            metrics.append(_metric(name, None, errors[name]))
        else:
            value = _value(values[name], index)
            if np.isnan(value):
                metrics.append(_metric(name, None, "no label value occurs in both facets"))
            else:
                metrics.append(_metric(name, value))
    return metrics


def bias_analysis(
    frame: pd.DataFrame,
    label: LabelSpec,
    facets: Sequence[FacetSpec],
    *,
    group_variable: str | None = None,
    predictions: pd.Series | None = None,
    prediction_source: str = "",
    methods: Sequence[str] | None = None,
    max_facet_values: int = MAX_FACET_VALUES,
    ft_max_rows: int = FT_MAX_ROWS,
    seed: int = 42,
    progress: bool = False,
) -> dict[str, Any]:
    """Clarify's bias metrics for every facet, pre-training and (with predictions) post-training.

    Args:
        frame: The table (label, facets, group variable, features).
        label: The label and its positive values or threshold.
        facets: One or more facets.
        group_variable: Column whose groups condition CDDL / CDDPL (missing values form a group of their own).
        predictions: ``(n_samples,)`` predicted labels aligned with ``frame`` (same value space as the label);
            None for pre-training only.
        prediction_source: What produced the predictions (a column name or a model directory), for the record.
        methods: Metric names to compute (default: all of the stage's metrics).
        max_facet_values: Refuse one-vs-rest over more facet values than this.
        ft_max_rows: FT runs on a seeded sample of this many rows when there are more.
        seed: Seed of FT's sample.
        progress: Show a progress bar on stderr.

    Returns:
        ``{"version", "pre_training_bias_metrics", ["post_training_bias_metrics"], "details"}``: Clarify's
        analysis layout (facets → ``value_or_threshold`` → ``metrics[{name, description, value[, error]}]``),
        plus Tripod's ``details`` (rows used and excluded, group sizes and proportions, warnings).

    Raises:
        BiasError / DataError: an unknown column (listing the available ones), an empty table, a label with no
            positive rows, a facet with one value, unknown sensitive values, a threshold outside the data.
    """
    if not facets:
        raise BiasError("give at least one --facet")
    names = [label.name, *(f.name for f in facets)] + ([group_variable] if group_variable else [])
    require_columns(frame, names)
    if len(frame) == 0:
        raise BiasError("the table has no rows")
    if predictions is not None and len(predictions) != len(frame):
        raise BiasError(f"{len(predictions)} predictions for {len(frame)} rows")
    wanted_pre = [m for m in bm.PRE_TRAINING if methods is None or m in methods]
    wanted_post = [m for m in bm.POST_TRAINING if methods is None or m in methods]
    unknown = sorted(set(methods or ()) - set(bm.PRE_TRAINING) - set(bm.POST_TRAINING))
    if unknown:
        raise BiasError(
            f"unknown metric(s) {unknown}; known: {', '.join(bm.PRE_TRAINING + bm.POST_TRAINING)}"
        )

    positive, label_missing, label_text = label_positive(frame, label)
    valid = ~label_missing
    warnings: list[str] = []
    if label_missing.any():
        warnings.append(f"{int(label_missing.sum())} row(s) without a label {label.name!r} were left out")

    group_codes = n_groups = None
    if group_variable:
        codes, uniques = pd.factorize(frame[group_variable], use_na_sentinel=False)
        group_codes, n_groups = np.asarray(codes, dtype=np.int64), len(uniques)

    predicted = prediction_missing = None
    if predictions is not None:
        prediction_missing = pd.Series(predictions).isna().to_numpy()
        if label.threshold is not None:
            numbers = pd.to_numeric(pd.Series(predictions), errors="coerce")
            predicted = (numbers > label.threshold).to_numpy() & ~prediction_missing
        else:
            predicted = value_mask(
                pd.Series(predictions).reset_index(drop=True),
                label.positive_values,
                what="the prediction column",
            )
        if prediction_missing.any():
            warnings.append(
                f"{int((prediction_missing & valid).sum())} row(s) without a prediction were left out "
                "of the post-training metrics"
            )
        if not predicted[valid & ~prediction_missing].any():
            warnings.append(f"the model predicts no positive label ({label_text}) at all")

    pre = _Stage("pre_training", label_text, label.name)
    post = _Stage("post_training", label_text, label.name) if predictions is not None else None
    details: dict[str, Any] = {
        "rows": len(frame),
        "label": {
            "name": label.name,
            "positive": label_text,
            "positive_rows": int(positive[valid].sum()),
            "rows": int(valid.sum()),
        },
        "excluded": {"label_missing": int(label_missing.sum()), "facet_missing": {}},
        "group_variable": group_variable,
        "predictions": prediction_source or None,
        "facets": {},
        "warnings": warnings,
    }
    if prediction_missing is not None:
        details["excluded"]["prediction_missing"] = int((prediction_missing & valid).sum())

    # FT's neighbours see every numeric column but the label, the prediction and the facet itself (as Clarify)
    exclude = [label.name]
    if isinstance(predictions, pd.Series) and predictions.name in frame.columns:
        exclude.append(str(predictions.name))
    rng = np.random.default_rng(seed)

    for facet in tqdm(facets, desc="bias", unit="facet", disable=not progress):
        groups = facet_groups(frame[facet.name], facet, max_values=max_facet_values)
        facet_valid = valid & ~groups.missing
        details["excluded"]["facet_missing"][facet.name] = int((valid & groups.missing).sum())
        if groups.missing[valid].any():
            warnings.append(
                f"{int((valid & groups.missing).sum())} row(s) without a value for facet {facet.name!r} were left "
                "out of its metrics"
            )
        rows = np.flatnonzero(facet_valid)
        counts = bm.count(
            groups.codes[rows],
            groups.n_codes,
            groups.membership,
            positive[rows],
            group=None if group_codes is None else group_codes[rows],
            n_groups=n_groups or 0,
        )
        values = {name: fn(counts) for name, fn in bm.PRE_TRAINING_FUNCTIONS.items() if name in wanted_pre}
        errors: dict[str, str] = {}
        if "CDDL" in wanted_pre:
            if counts.group is None:
                errors["CDDL"] = "CDDL needs a group variable (--group-variable COL)"
            elif counts.n_1 in (0, counts.n):
                errors["CDDL"] = "CDDL needs both positive and negative labels"
            else:
                values["CDDL"] = bm.conditional_demographic_disparity(counts.group_d, counts.group)
        pre.facets[facet.name] = [
            {
                "value_or_threshold": groups.names[f],
                "metrics": _facet_metrics(wanted_pre, values, errors, counts, f),
            }
            for f in range(len(groups.names))
        ]
        summary = [
            {
                "value_or_threshold": groups.names[f],
                "n_d": int(counts.n_d[f]),
                "n_a": int(counts.n_a[f]),
                "positive_proportion_d": float(bm.divide(counts.n_d1[f], counts.n_d[f])),
                "positive_proportion_a": float(bm.divide(counts.n_a1[f], counts.n_a[f])),
            }
            for f in range(len(groups.names))
        ]
        details["facets"][facet.name] = {"kind": groups.kind, "rows": len(rows), "groups": summary}

        if post is None or predicted is None or prediction_missing is None:
            continue
        rows = np.flatnonzero(facet_valid & ~prediction_missing)
        counts = bm.count(
            groups.codes[rows],
            groups.n_codes,
            groups.membership,
            positive[rows],
            predicted[rows],
            group=None if group_codes is None else group_codes[rows],
            n_groups=n_groups or 0,
        )
        values = {name: fn(counts) for name, fn in bm.POST_TRAINING_FUNCTIONS.items() if name in wanted_post}
        errors = {}
        if "CDDPL" in wanted_post:
            predicted_positive = int(counts.confusion[:, 1].sum()) if counts.confusion is not None else 0
            if counts.group_pred is None:
                errors["CDDPL"] = "CDDPL needs a group variable (--group-variable COL)"
            elif predicted_positive in (0, counts.n):
                errors["CDDPL"] = "CDDPL needs both positive and negative predictions"
            else:
                assert counts.group_pred_d is not None
                values["CDDPL"] = bm.conditional_demographic_disparity(counts.group_pred_d, counts.group_pred)
        if "GE" in wanted_post:
            try:
                values["GE"] = np.full(
                    len(groups.names), bm.generalized_entropy(positive[rows], predicted[rows])
                )
            except bm.MetricError as exc:
                errors["GE"] = str(exc)
        if "FT" in wanted_post:
            features, feature_names = _feature_matrix(frame, [*exclude, facet.name])
            sample = (
                rows if len(rows) <= ft_max_rows else np.sort(rng.choice(rows, ft_max_rows, replace=False))
            )
            ft = np.full(len(groups.names), np.nan)
            ft_errors = []
            for f in range(len(groups.names)):
                try:
                    ft[f] = bm.flip_test(features[sample], groups.facet_d(f)[sample], predicted[sample])
                except bm.MetricError as exc:
                    ft_errors.append(str(exc))
            if ft_errors and np.isnan(ft).all():
                errors["FT"] = ft_errors[0]
            values["FT"] = ft
        post.facets[facet.name] = [
            {
                "value_or_threshold": groups.names[f],
                "metrics": _facet_metrics(wanted_post, values, errors, counts, f),
            }
            for f in range(len(groups.names))
        ]
        for f, entry in enumerate(summary):
            tp, fp, fn, tn = (x[f] for x in bm.confusion_cells(counts.confusion_d))
            ta, fa, na_, ta0 = (x[f] for x in bm.confusion_cells(counts.confusion_a))
            entry["predicted_positive_proportion_d"] = float(bm.divide(tp + fp, tp + fp + fn + tn))
            entry["predicted_positive_proportion_a"] = float(bm.divide(ta + fa, ta + fa + na_ + ta0))
            entry["accuracy_d"] = float(bm.divide(tp + tn, tp + fp + fn + tn))
            entry["accuracy_a"] = float(bm.divide(ta + ta0, ta + fa + na_ + ta0))
        if "FT" in wanted_post:
            details["facets"][facet.name]["ft_features"] = feature_names

    analysis: dict[str, Any] = {"version": ANALYSIS_VERSION, "pre_training_bias_metrics": pre.as_dict()}
    if post is not None:
        analysis["post_training_bias_metrics"] = post.as_dict()
    analysis["details"] = details
    return analysis


def metric_table(analysis: dict[str, Any], stage: str, facet: str) -> pd.DataFrame:
    """One facet's metrics as a table: a row per ``value_or_threshold``, a column per metric (NaN = error)."""
    entries = analysis[f"{stage}_bias_metrics"]["facets"][facet]
    rows = {}
    for entry in entries:
        rows[entry["value_or_threshold"]] = {
            m["name"]: (float("nan") if m["value"] is None else _as_float(m["value"]))
            for m in entry["metrics"]
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = facet
    return table


def _as_float(value: object) -> float:
    if value == "Infinity":
        return float("inf")
    if value == "-Infinity":
        return float("-inf")
    return float(value)  # type: ignore[arg-type]


# -- balancing ------------------------------------------------------------------------------------------------


def balance(
    frame: pd.DataFrame,
    label: str,
    *,
    by: BalanceBy = "class",
    facet: FacetSpec | None = None,
    seed: int = 42,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Down-sample so that every class (or every facet × class cell) has as many rows as the smallest one.

    Rows with a missing label (or, by facet × class, a missing facet) are dropped and counted.  The kept rows
    keep their original order and index.

    Returns:
        ``(balanced frame, {"by", "rows_before", "rows_after", "dropped_missing", "cells_before", "cells_after"})``.

    Raises:
        BiasError: facet × class without a facet, an empty cell, or a label with one class.
    """
    if by not in ("class", "facet-class"):
        raise BiasError(f"--by must be class or facet-class, not {by!r}")
    require_columns(frame, [label] + ([facet.name] if facet else []))
    if len(frame) == 0:
        raise BiasError("the table has no rows")
    keys = pd.DataFrame({"label": frame[label].astype(object)}, index=frame.index)
    if by == "facet-class":
        if facet is None:
            raise BiasError("--by facet-class needs a --facet")
        groups = facet_groups(frame[facet.name], facet, max_values=10_000)
        if facet.threshold is not None:
            names = np.array([f"<= {_number(facet.threshold)}", groups.names[0]], dtype=object)
        else:
            names = np.array(groups.names, dtype=object)
        keys["facet"] = np.where(groups.codes >= 0, names[np.clip(groups.codes, 0, None)], None)
    usable = keys.notna().all(axis=1)
    keys = keys[usable]
    cells = keys.value_counts()
    if by == "class" and len(cells) < 2:
        raise BiasError(f"label {label!r} has {len(cells)} class(es); balancing needs at least two")
    if by == "facet-class":
        full = pd.MultiIndex.from_product(
            [sorted(keys["label"].unique(), key=str), sorted(keys["facet"].unique(), key=str)],
            names=["label", "facet"],
        )
        cells = keys.value_counts().reindex(full, fill_value=0)
        empty = cells[cells == 0]
        if len(empty):
            cls, value = empty.index[0]
            raise BiasError(
                f"no rows with {label}={cls!r} and {facet.name}={value!r} (and {len(empty) - 1} more empty "
                "cell(s)); facet × class balancing needs every combination"
            )
    smallest = int(cells.min())
    columns = list(keys.columns)
    kept = (
        keys.groupby(columns, sort=False, dropna=False, group_keys=False)
        .sample(n=smallest, random_state=seed)
        .index
    )
    balanced = frame.loc[frame.index.isin(kept)]
    after = keys.loc[keys.index.isin(kept)].value_counts()

    def cell_records(series: pd.Series) -> list[dict[str, Any]]:
        return [
            dict(zip(columns, (k if isinstance(k, tuple) else (k,)), strict=True), rows=int(v))
            for k, v in series.sort_index().items()
        ]

    summary = {
        "by": by,
        "label": label,
        "facet": facet.name if facet else None,
        "seed": seed,
        "rows_before": len(frame),
        "rows_after": len(balanced),
        "dropped_missing": int((~usable).sum()),
        "rows_per_cell": smallest,
        "cells_before": cell_records(cells),
        "cells_after": cell_records(after),
    }
    return balanced, summary


# -- reports --------------------------------------------------------------------------------------------------

FORMULAS = {
    "CI": "(n_a − n_d) / (n_a + n_d)",
    "DPL": "q_a − q_d,  q = n⁽¹⁾ / n",
    "KL": "Σ_y P_a(y) · log(P_a(y) / P_d(y))",
    "JS": "½ [KL(P_a, P) + KL(P_d, P)],  P = ½ (P_a + P_d)",
    "LP": "√(Σ_y (P_a(y) − P_d(y))²)",
    "TVD": "½ Σ_y |P_a(y) − P_d(y)|",
    "KS": "max_y |P_a(y) − P_d(y)|",
    "CDDL": "(1/n) Σ_i n_i · DD_i,  DD_i = n_d,i⁽⁰⁾ / n_i⁽⁰⁾ − n_d,i⁽¹⁾ / n_i⁽¹⁾",
    "DPPL": "n̂_a⁽¹⁾ / n_a − n̂_d⁽¹⁾ / n_d",
    "DI": "(n̂_d⁽¹⁾ / n_d) / (n̂_a⁽¹⁾ / n_a)",
    "DCAcc": "n_a⁽¹⁾ / n̂_a⁽¹⁾ − n_d⁽¹⁾ / n̂_d⁽¹⁾",
    "DCR": "n_d⁽⁰⁾ / n̂_d⁽⁰⁾ − n_a⁽⁰⁾ / n̂_a⁽⁰⁾",
    "SD": "TN_d / (TN_d + FP_d) − TN_a / (TN_a + FP_a)",
    "RD": "TP_a / (TP_a + FN_a) − TP_d / (TP_d + FN_d)",
    "DAR": "TP_a / (TP_a + FP_a) − TP_d / (TP_d + FP_d)",
    "DRR": "TN_d / (TN_d + FN_d) − TN_a / (TN_a + FN_a)",
    "AD": "(TP_a + TN_a) / n_a − (TP_d + TN_d) / n_d",
    "TE": "FN_d / FP_d − FN_a / FP_a",
    "CDDPL": "CDDL with predicted labels",
    "FT": "(F⁺ − F⁻) / n_d over k-NN counterfactuals from facet a (k = 5)",
    "GE": "1 / (2n) Σ_i [(b_i / b̄)² − 1],  b_i = ŷ_i − y_i + 1",
}


def _metric_grid(table: pd.DataFrame, title: str) -> Any:
    """One small horizontal bar chart per metric, a bar per facet value (∞ drawn at the axis edge)."""
    from training.reports import new_figure

    metrics = list(table.columns)
    columns = 4
    rows = max(1, -(-len(metrics) // columns))
    height = max(1.6, 0.22 * len(table) + 0.9)
    figure, axes = new_figure(3.3 * columns, height * rows, nrows=rows, ncols=columns, squeeze=False)
    labels = [str(i)[:28] for i in table.index]
    for k, axis in enumerate(axes.flat):
        if k >= len(metrics):
            axis.set_visible(False)
            continue
        values = table[metrics[k]].to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        edge = float(np.abs(finite).max()) * 1.1 if finite.size else 1.0
        shown = np.clip(np.nan_to_num(values, nan=0.0, posinf=edge, neginf=-edge), -edge, edge)
        colors = ["#c0392b" if v < 0 else "#2e86c1" for v in shown]
        axis.barh(range(len(values)), shown, color=colors)
        axis.axvline(0, color="#444", linewidth=0.8)
        axis.set_yticks(range(len(values)), labels if k % columns == 0 else [""] * len(values), fontsize=7)
        axis.invert_yaxis()
        axis.set_title(metrics[k], fontsize=9)
        axis.tick_params(axis="x", labelsize=7)
        for y, v in enumerate(values):
            if np.isinf(v):
                axis.text(shown[y], y, " ∞" if v > 0 else "-∞ ", va="center", fontsize=7)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def _groups_figure(groups: list[dict[str, Any]], facet: str, post: bool) -> Any:
    from training.reports import new_figure

    frame = pd.DataFrame(groups)
    labels = [str(v)[:28] for v in frame["value_or_threshold"]]
    height = max(2.0, 0.25 * len(frame) + 1.0)
    figure, (left, right) = new_figure(11, height, ncols=2)
    left.barh(labels, frame["n_d"], color="#7f8c8d")
    left.set_title(f"rows per {facet} group (facet d)", fontsize=9)
    left.invert_yaxis()
    position = np.arange(len(frame))
    right.barh(position - 0.2, frame["positive_proportion_d"], height=0.4, label="observed", color="#2e86c1")
    if post and "predicted_positive_proportion_d" in frame:
        right.barh(
            position + 0.2,
            frame["predicted_positive_proportion_d"],
            height=0.4,
            label="predicted",
            color="#f39c12",
        )
    right.set_yticks(position, [""] * len(frame))
    right.invert_yaxis()
    right.set_xlim(0, 1)
    right.set_title("positive proportion in facet d", fontsize=9)
    right.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    return figure


def render_bias_html(analysis: dict[str, Any], *, title: str = "Bias report") -> str:
    """The analysis as an HTML page: a summary, then per stage and facet a table and plots, then formulas."""
    from training.reports import Section, escape, render_page

    details = analysis.get("details", {})
    summary = Section("summary", "Summary")
    label = details.get("label", {})
    summary.text(
        f"{details.get('rows', 0):,} rows; label {label.get('name')!r} positive = {label.get('positive')!r} "
        f"({label.get('positive_rows', 0):,} of {label.get('rows', 0):,} labelled rows)."
    )
    excluded = details.get("excluded", {})
    summary.table(
        pd.DataFrame(
            [{"what": "label missing", "rows": excluded.get("label_missing", 0)}]
            + [
                {"what": f"facet {k!r} missing", "rows": v}
                for k, v in excluded.get("facet_missing", {}).items()
            ]
            + (
                [{"what": "prediction missing", "rows": excluded["prediction_missing"]}]
                if "prediction_missing" in excluded
                else []
            )
        )
    )
    if details.get("group_variable"):
        summary.text(f"Group variable for CDDL/CDDPL: {details['group_variable']!r}.")
    if details.get("predictions"):
        summary.text(f"Predictions from {details['predictions']}.")
    for warning in details.get("warnings", []):
        summary.warning(warning)
    sections = [summary]
    for stage, heading in (("pre_training", "Pre-training bias"), ("post_training", "Post-training bias")):
        key = f"{stage}_bias_metrics"
        if key not in analysis:
            continue
        section = Section(stage.replace("_", "-"), heading)
        for facet in analysis[key]["facets"]:
            table = metric_table(analysis, stage, facet)
            section.html(f"<h3>Facet {escape(facet)}</h3>")
            section.table(table.reset_index(), max_rows=200)
            errors = {
                m["name"]: m["error"]
                for entry in analysis[key]["facets"][facet]
                for m in entry["metrics"]
                if "error" in m
            }
            for name, error in errors.items():
                section.warning(f"{name}: {error}")
            groups = details.get("facets", {}).get(facet, {}).get("groups")
            if groups:
                section.figure(_groups_figure(groups, facet, stage == "post_training"), f"{facet} groups")
            section.figure(_metric_grid(table, f"{heading}: {facet}"), f"{heading} metrics for {facet}")
        sections.append(section)
    glossary = Section("formulas", "Metrics and formulas")
    names = [n for n in (*bm.PRE_TRAINING, *bm.POST_TRAINING)]
    glossary.table(
        pd.DataFrame(
            [{"metric": n, "description": bm.DESCRIPTIONS[n], "formula": FORMULAS[n]} for n in names]
        ),
        max_rows=100,
        max_chars=200,
    )
    glossary.text(
        "Facet d is the sensitive group, facet a every other row. 0/0 = 0 and x/0 = ∞; "
        "a difference of two infinite ratios is 0. See docs/bias.md."
    )
    sections.append(glossary)
    return render_page(
        title, sections, subtitle="Metrics as defined by SageMaker Clarify; analysis.json beside it."
    )


def write_bias_report(analysis: dict[str, Any], out: Path | str) -> tuple[Path, Path]:
    """Write ``analysis.json`` and ``report.html`` into ``out``."""
    from training.reports import write_html, write_json

    out = Path(out)
    return write_json(out / "analysis.json", analysis), write_html(
        out / "report.html", render_bias_html(analysis)
    )


def balance_report(
    before: pd.DataFrame,
    after: pd.DataFrame,
    summary: dict[str, Any],
    *,
    label: LabelSpec | None,
    facets: Sequence[FacetSpec],
) -> dict[str, Any]:
    """Before/after counts and pre-training metrics of a balancing run (metrics need a positive label)."""
    report: dict[str, Any] = dict(summary)
    if label is not None and facets:
        report["pre_training_before"] = bias_analysis(before, label, facets)
        report["pre_training_after"] = bias_analysis(after, label, facets)
    return report


def render_balance_html(report: dict[str, Any]) -> str:
    from training.reports import Section, escape, new_figure, render_page

    counts = Section("counts", "Rows per cell, before and after")
    counts.text(
        f"Down-sampled by {report['by']}: {report['rows_before']:,} → {report['rows_after']:,} rows "
        f"({report['rows_per_cell']:,} per cell; {report['dropped_missing']:,} rows with a missing value "
        "dropped)."
    )
    before = pd.DataFrame(report["cells_before"])
    after = pd.DataFrame(report["cells_after"])
    keys = [c for c in before.columns if c != "rows"]
    merged = before.merge(after, on=keys, how="left", suffixes=("_before", "_after")).fillna(0)
    counts.table(merged, max_rows=200)
    figure, axis = new_figure(8, max(2.0, 0.25 * len(merged) + 1))
    names = [" / ".join(str(r[k]) for k in keys)[:40] for _, r in merged.iterrows()]
    position = np.arange(len(merged))
    axis.barh(position - 0.2, merged["rows_before"], height=0.4, label="before", color="#7f8c8d")
    axis.barh(position + 0.2, merged["rows_after"], height=0.4, label="after", color="#2e86c1")
    axis.set_yticks(position, names, fontsize=7)
    axis.invert_yaxis()
    axis.legend(fontsize=7)
    counts.figure(figure, "rows per cell before and after")
    sections = [counts]
    if "pre_training_before" in report:
        metrics = Section("metrics", "Pre-training metrics, before and after")
        for facet in report["pre_training_before"]["pre_training_bias_metrics"]["facets"]:
            old = metric_table(report["pre_training_before"], "pre_training", facet)
            new = metric_table(report["pre_training_after"], "pre_training", facet)
            both = old.join(new, lsuffix=" before", rsuffix=" after")
            ordered = [f"{m} {w}" for m in old.columns for w in ("before", "after")]
            metrics.html(f"<h3>Facet {escape(facet)}</h3>")
            metrics.table(both[ordered].reset_index(), max_rows=200)
            figure, axis = new_figure(8, 3)
            change = pd.DataFrame({"before": old.abs().mean(), "after": new.abs().mean()})
            change.plot.bar(ax=axis, color=["#7f8c8d", "#2e86c1"])
            axis.set_title(f"mean |metric| over {facet} groups", fontsize=9)
            metrics.figure(figure, f"metrics before and after for {facet}")
        sections.append(metrics)
    return render_page("Balancing report", sections)

"""The bias analysis: Clarify's pre- and post-training metrics for every facet, in ``analysis.json``'s shape.

Rows whose label (or prediction) is missing are left out of every metric; rows whose facet is missing are left
out of that facet's metrics.  Both are counted in ``details.excluded`` and shown in the report.  Predictions for
post-training metrics come from a column or from a model directory (:func:`predict_with_model`), run through the
same ONNX runtime that serves it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from training.bias import metrics as bm
from training.bias.specs import (
    MAX_FACET_VALUES,
    BiasError,
    FacetSpec,
    LabelSpec,
    facet_groups,
    label_positive,
    value_mask,
)
from training.data import require_columns

FT_MAX_ROWS = 100_000
"""FT fits nearest neighbours; above this many rows it runs on a seeded random sample of this size."""
ANALYSIS_VERSION = "1.0"


def predict_with_model(
    frame: pd.DataFrame, model_dir: Path | str, *, batch_size: int = 1024, progress: bool = True
) -> pd.Series:
    """Predicted labels (or values) for every row, from a model directory's ONNX stages.

    Raises:
        DataError: the model's input columns are not all in the table (listing the available ones).
    """
    from services.runtime.pipeline import Call, Pipeline
    from services.runtime.schema import Records

    pipeline = Pipeline.from_directory(Path(model_dir))
    require_columns(frame, pipeline.input_names)
    columns = []
    for column in pipeline.graphs.inputs:
        values = frame[column.name]
        if column.dtype == "string":
            columns.append(values.where(values.notna(), "").astype(str).to_numpy(dtype=object))
        else:
            columns.append(pd.to_numeric(values, errors="coerce").astype("float64").to_numpy(dtype=object))
    rows = np.stack(columns, axis=1) if len(frame) else np.empty((0, len(columns)), dtype=object)
    answers: list[np.ndarray] = []
    starts = range(0, len(frame), batch_size)
    for start in tqdm(starts, desc="predict", unit="batch", disable=not progress):
        records = Records(rows[start : start + batch_size].tolist(), first=start)
        result = pipeline.predict(records, Call("bias"))
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
            if counts.group is None or counts.group_d is None:
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
        assert counts.confusion_d is not None  # counted with predictions
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

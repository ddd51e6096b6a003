"""The checks of ``tripod monitor run``: a baseline's statistics against the current ones, each check judged alone.

Model Monitor's data-quality checks, with its names: ``data_type_check``, ``completeness_check``,
``missing_column_check``, ``extra_column_check`` and ``baseline_drift_check`` (numeric and categorical
inputs).  Tripod's checks for text and predictions: ``text_length_drift_check``, ``oov_rate_check``,
``domain_classifier_check``, ``prediction_drift_check``, and with ground truth ``accuracy_check`` and
``macro_f1_check`` per window.  Every check gives a :class:`CheckResult` — ``ok``, ``violation`` or
``skipped`` (with the reason: too few records, no vocabulary) — so a report shows what was *not* judged as
plainly as what failed.  Thresholds: :class:`~training.monitor.config.Thresholds`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from training.monitor.baseline import Baseline
from training.monitor.config import Thresholds
from training.monitor.domain import DomainTest, domain_test
from training.monitor.drift import js_distance, psi
from training.monitor.profile import INTEGRAL, STRING

Status = Literal["ok", "violation", "skipped"]
DATASET = "dataset"
PREDICTED_LABEL = "predicted_label"
SIGMAS = 4.0
"""Standard errors a share may fall by chance before the completeness check fires."""


@dataclass
class CheckResult:
    """One check on one feature.

    Attributes:
        check: Model Monitor's ``constraint_check_type`` (or Tripod's name for its own checks).
        feature: the feature, ``predicted_label``, or an extra field's name.
        status: ``ok``, ``violation`` or ``skipped``.
        description: one sentence with the numbers.
        values: the statistic(s) and threshold(s), for the report and the Prometheus file.
    """

    check: str
    feature: str
    status: Status
    description: str
    values: dict[str, Any] = field(default_factory=dict)

    def violation(self) -> dict[str, str]:
        """The entry of ``constraint_violations.json``."""
        return {
            "feature_name": self.feature,
            "constraint_check_type": self.check,
            "description": self.description,
        }


def _judged(check: str, feature: str, failed: bool, description: str, **values: Any) -> CheckResult:
    return CheckResult(check, feature, "violation" if failed else "ok", description, values)


def _skipped(check: str, feature: str, reason: str) -> CheckResult:
    return CheckResult(check, feature, "skipped", reason)


def _percent(share: float) -> str:
    return f"{share:.2%}"


def evaluate(
    baseline: Baseline,
    current: Mapping[str, Any],
    thresholds: Thresholds,
    *,
    current_texts: Mapping[str, Sequence[str]] | None = None,
    quality: Sequence[Mapping[str, Any]] | None = None,
    seed: int = 42,
) -> tuple[list[CheckResult], dict[str, DomainTest]]:
    """Every check, in report order; and the domain test of each text column that ran one.

    Args:
        baseline: the baseline.
        current: the current ``statistics.json`` (same shape as the baseline's).
        thresholds: when a check fails.
        current_texts: per text column, the sample of current texts for the domain test.
        quality: ground-truth windows (:meth:`QualityWindows.scores`), None without ground truth.
        seed: seed of the domain test.
    """
    results: list[CheckResult] = []
    domains: dict[str, DomainTest] = {}
    records = int(current["dataset"]["item_count"])
    features = {feature["name"]: feature for feature in current.get("features", [])}
    constraints = {feature["name"]: feature for feature in baseline.constraints.get("features", [])}
    for column in baseline.inputs:
        name = column.name
        constraint = constraints.get(name, {})
        mine = features.get(name)
        base = baseline.feature(name) or {}
        if not records or mine is None:
            for check in _feature_checks(column.role):
                results.append(_skipped(check, name, "no captured records in the window"))
            continue
        results += _schema_checks(name, constraint, mine, records, thresholds)
        enough = records >= thresholds.min_records
        few = f"{records} records in the window; the drift checks need {thresholds.min_records}"
        if column.role == "text":
            results.append(
                _length_check(name, base, mine, thresholds)
                if enough
                else _skipped("text_length_drift_check", name, few)
            )
            results.append(
                _oov_check(name, base, mine, thresholds) if enough else _skipped("oov_rate_check", name, few)
            )
            texts = list((current_texts or {}).get(name, ()))
            reference = [r[name] for r in baseline.reference if isinstance(r.get(name), str)]
            if not enough:
                results.append(_skipped("domain_classifier_check", name, few))
            elif len(texts) < thresholds.domain_folds or len(reference) < thresholds.domain_folds:
                results.append(_skipped("domain_classifier_check", name, "too few texts to compare"))
            else:
                test = domain_test(
                    reference,
                    texts,
                    max_rows=thresholds.domain_sample,
                    folds=thresholds.domain_folds,
                    permutations=thresholds.domain_permutations,
                    seed=seed,
                )
                domains[name] = test
                results.append(_domain_check(name, test, thresholds))
        else:
            results.append(
                _drift_check(name, base, mine, thresholds)
                if enough
                else _skipped("baseline_drift_check", name, few)
            )
    results += _extra_checks(current, records, thresholds)
    results.append(_prediction_check(baseline, current, thresholds))
    if quality is not None:
        results += _quality_checks(baseline, quality, thresholds)
    return results, domains


def _feature_checks(role: str) -> list[str]:
    checks = ["data_type_check", "completeness_check", "missing_column_check"]
    if role == "text":
        return [*checks, "text_length_drift_check", "oov_rate_check", "domain_classifier_check"]
    return [*checks, "baseline_drift_check"]


def _schema_checks(
    name: str, constraint: Mapping[str, Any], mine: Mapping[str, Any], records: int, thresholds: Thresholds
) -> list[CheckResult]:
    expected = str(constraint.get("inferred_type") or mine.get("inferred_type"))
    types = dict(mine.get("data_types") or {})
    absent = int(types.pop("absent", 0))
    present = sum(int(v) for v in types.values())
    matching = (
        types.get(STRING, 0) if expected == STRING else types.get(INTEGRAL, 0) + types.get("Fractional", 0)
    )
    share = (present - matching) / present if present else 0.0
    observed = ", ".join(f"{k} {v}" for k, v in sorted(types.items())) or "no values"
    out = [
        _judged(
            "data_type_check",
            name,
            share > thresholds.datatype_check_threshold,
            f"{_percent(share)} of the present values are not {expected} (allowed {_percent(thresholds.datatype_check_threshold)}); observed: {observed}",
            share_mismatched=share,
            threshold=thresholds.datatype_check_threshold,
        )
    ]
    completeness = present / records
    expected_completeness = float(constraint.get("completeness", 1.0))
    floor = completeness_floor(expected_completeness, records, thresholds.completeness_tolerance)
    out.append(
        _judged(
            "completeness_check",
            name,
            completeness < floor,
            f"completeness {_percent(completeness)} against the baseline's {_percent(expected_completeness)} (allowed down to {_percent(max(0.0, floor))})",
            completeness=completeness,
            baseline=expected_completeness,
            threshold=floor,
        )
    )
    share_absent = absent / records
    out.append(
        _judged(
            "missing_column_check",
            name,
            share_absent > thresholds.missing_column_threshold,
            f"{absent} of {records} records ({_percent(share_absent)}) do not carry {name!r} (allowed {_percent(thresholds.missing_column_threshold)})",
            share_absent=share_absent,
            threshold=thresholds.missing_column_threshold,
        )
    )
    return out


def completeness_floor(baseline: float, records: int, tolerance: float) -> float:
    """The lowest completeness that passes: the baseline's, less the larger of ``tolerance`` and four standard
    errors of a share over ``records`` records.

    A column that is sometimes empty in the baseline (the title 13 % of reviews lack) is empty in a window of
    200 records at a rate that varies by ±2.4 points (one standard error) from window to window; a fixed
    tolerance small enough to matter would fire on that alone.  Four standard errors let chance through about
    once in 30,000 windows; the tolerance stays the floor for large windows and for always-present columns
    (docs/monitoring.md: 0 of 600 held-out windows fire on the title).
    """
    spread = SIGMAS * math.sqrt(baseline * (1.0 - baseline) / records) if records else 0.0
    return baseline - max(tolerance, spread)


def _bin_counts(feature: Mapping[str, Any] | None, *path: str) -> np.ndarray | None:
    node: Any = feature
    for key in path:
        node = (node or {}).get(key)
    return None if not node or "counts" not in node else np.asarray(node["counts"], dtype=np.float64)


def _quantile(feature: Mapping[str, Any], which: str) -> float | None:
    length = (feature.get("text_statistics") or {}).get("length") or {}
    value = (length.get("quantiles") or {}).get(which)
    return None if value is None else float(value)


def _length_check(
    name: str, base: Mapping[str, Any], mine: Mapping[str, Any], thresholds: Thresholds
) -> CheckResult:
    expected = _bin_counts(base, "text_statistics", "length", "bins")
    actual = _bin_counts(mine, "text_statistics", "length", "bins")
    if expected is None or actual is None or len(expected) != len(actual) or not actual.sum():
        return _skipped("text_length_drift_check", name, "no text lengths to compare")
    score, distance = psi(expected, actual), js_distance(expected, actual)
    before, after = _quantile(base, "p50"), _quantile(mine, "p50")
    medians = (
        f"; median length {before:.0f} → {after:.0f} characters"
        if before is not None and after is not None
        else ""
    )
    return _judged(
        "text_length_drift_check",
        name,
        score > thresholds.text_length_psi,
        f"text length PSI {score:.3f} (threshold {thresholds.text_length_psi}){medians}",
        psi=score,
        js_distance=distance,
        threshold=thresholds.text_length_psi,
        baseline_median=before,
        current_median=after,
    )


def _oov_rate(feature: Mapping[str, Any]) -> tuple[float | None, str | None]:
    oov = (feature.get("text_statistics") or {}).get("oov") or {}
    if "skipped" in oov:
        return None, str(oov["skipped"])
    rate = oov.get("rate")
    return (None, "no tokens") if rate is None else (float(rate), None)


def _oov_check(
    name: str, base: Mapping[str, Any], mine: Mapping[str, Any], thresholds: Thresholds
) -> CheckResult:
    before, reason = _oov_rate(base)
    after, current_reason = _oov_rate(mine)
    if before is None or after is None:
        return _skipped("oov_rate_check", name, reason or current_reason or "no vocabulary")
    rise = after - before
    return _judged(
        "oov_rate_check",
        name,
        rise > thresholds.oov_rate_increase,
        f"out-of-vocabulary rate {_percent(after)} against the baseline's {_percent(before)} (rise {rise:+.2%}, allowed {_percent(thresholds.oov_rate_increase)})",
        oov_rate=after,
        baseline=before,
        increase=rise,
        threshold=thresholds.oov_rate_increase,
    )


def _domain_check(name: str, test: DomainTest, thresholds: Thresholds) -> CheckResult:
    failed = test.auc >= thresholds.domain_auc and test.p_value <= thresholds.domain_p_value
    words = ", ".join(token for token, *_ in test.top_current[:5])
    hint = f"; words pointing at the captured texts: {words}" if words and failed else ""
    return _judged(
        "domain_classifier_check",
        name,
        failed,
        f"a classifier tells captured from baseline texts with AUC {test.auc:.3f} (threshold {thresholds.domain_auc}), permutation p-value {test.p_value:.3f} (threshold {thresholds.domain_p_value}) on {test.rows} texts a side{hint}",
        auc=test.auc,
        p_value=test.p_value,
        threshold=thresholds.domain_auc,
        p_value_threshold=thresholds.domain_p_value,
    )


def _drift_check(
    name: str, base: Mapping[str, Any], mine: Mapping[str, Any], thresholds: Thresholds
) -> CheckResult:
    expected, actual = _bin_counts(base, "bins"), _bin_counts(mine, "bins")
    if expected is None or actual is None or len(expected) != len(actual) or not actual.sum():
        return _skipped("baseline_drift_check", name, "no values to compare")
    score = psi(expected, actual)
    return _judged(
        "baseline_drift_check",
        name,
        score > thresholds.baseline_drift_psi,
        f"distribution PSI {score:.3f} against the baseline (threshold {thresholds.baseline_drift_psi})",
        psi=score,
        js_distance=js_distance(expected, actual),
        threshold=thresholds.baseline_drift_psi,
    )


def _extra_checks(current: Mapping[str, Any], records: int, thresholds: Thresholds) -> list[CheckResult]:
    extra = current.get("extra_columns") or {}
    fields = extra.get("fields") or {}
    if not records:
        return [_skipped("extra_column_check", DATASET, "no captured records in the window")]
    if not fields:
        return [
            _judged(
                "extra_column_check",
                DATASET,
                False,
                "no record carries a field the model does not take",
                share=0.0,
                threshold=thresholds.extra_column_threshold,
            )
        ]
    out = []
    for name, count in fields.items():
        share = int(count) / records
        out.append(
            _judged(
                "extra_column_check",
                str(name),
                share > thresholds.extra_column_threshold,
                f"{count} of {records} records ({_percent(share)}) carry {name!r}, which the model does not take (allowed {_percent(thresholds.extra_column_threshold)})",
                share=share,
                threshold=thresholds.extra_column_threshold,
            )
        )
    return out


def _label_counts(statistics: Mapping[str, Any]) -> dict[str, float]:
    buckets = (
        ((statistics.get("predictions") or {}).get("distribution") or {}).get("categorical") or {}
    ).get("buckets") or []
    return {str(b["value"]): float(b["count"]) for b in buckets}


def _prediction_check(baseline: Baseline, current: Mapping[str, Any], thresholds: Thresholds) -> CheckResult:
    check = "prediction_drift_check"
    expected, actual = _label_counts(baseline.statistics), _label_counts(current)
    if not sum(expected.values()):
        return _skipped(check, PREDICTED_LABEL, "the baseline has no predicted labels (a regression model)")
    present = sum(actual.values())
    if present < thresholds.min_records:
        return _skipped(
            check,
            PREDICTED_LABEL,
            f"{present:.0f} predicted labels in the window; the check needs {thresholds.min_records}",
        )
    labels = list(dict.fromkeys([*expected, *actual]))
    p = np.array([expected.get(label, 0.0) for label in labels])
    q = np.array([actual.get(label, 0.0) for label in labels])
    score, distance = psi(p, q), js_distance(p, q)
    shares = ", ".join(
        f"{label} {e / p.sum():.1%} → {a / q.sum():.1%}" for label, e, a in zip(labels, p, q, strict=True)
    )
    return _judged(
        check,
        PREDICTED_LABEL,
        score > thresholds.prediction_psi or distance > thresholds.prediction_js,
        f"predicted labels PSI {score:.3f} (threshold {thresholds.prediction_psi}), Jensen–Shannon distance {distance:.3f} (threshold {thresholds.prediction_js}): {shares}",
        psi=score,
        js_distance=distance,
        threshold=thresholds.prediction_psi,
        js_threshold=thresholds.prediction_js,
    )


def _quality_checks(
    baseline: Baseline, windows: Sequence[Mapping[str, Any]], thresholds: Thresholds
) -> list[CheckResult]:
    metrics = baseline.model.get("metrics") or {}
    out: list[CheckResult] = []
    for metric, drop, check in (
        ("accuracy", thresholds.accuracy_drop, "accuracy_check"),
        ("macro_f1", thresholds.macro_f1_drop, "macro_f1_check"),
    ):
        reference = metrics.get(metric)
        judged = [w for w in windows if w["records"] >= thresholds.min_labels]
        if reference is None:
            out.append(_skipped(check, PREDICTED_LABEL, f"the model's manifest has no test {metric}"))
            continue
        if not judged:
            most = max((w["records"] for w in windows), default=0)
            out.append(
                _skipped(
                    check,
                    PREDICTED_LABEL,
                    f"no {thresholds.window} window has {thresholds.min_labels} labelled records (the most: {most})",
                )
            )
            continue
        floor = float(reference) - drop
        for window in judged:
            value = float(window[metric])
            out.append(
                _judged(
                    check,
                    PREDICTED_LABEL,
                    value < floor,
                    f"{metric} {value:.3f} on {window['records']} labelled records from {window['start']} to {window['end']}, against the model's test {metric} {reference:.3f} (allowed down to {floor:.3f})",
                    value=value,
                    baseline=float(reference),
                    threshold=floor,
                    window_start=window["start"],
                    records=window["records"],
                )
            )
    return out

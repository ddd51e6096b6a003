"""The checks' thresholds: defaults chosen by measurement (docs/monitoring.md), kept in ``constraints.json``.

``monitor baseline`` writes them into ``constraints.json``'s ``monitoring_config``: Model Monitor's own keys
(``datatype_check_threshold``, ``distribution_constraints.comparison_threshold``) and Tripod's under
``tripod``.  Edit that file to change them for every run (as with Model Monitor's suggested constraints), or
override one run with ``tripod monitor run --threshold NAME=VALUE``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from training.monitor.errors import MonitorError

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(value: str) -> timedelta:
    """``"15m"``, ``"1h"``, ``"1d"`` as a timedelta.

    Raises:
        ValueError: not a positive whole number followed by s, m, h or d.
    """
    match = _DURATION.match(value)
    if not match or int(match.group(1)) <= 0:
        raise ValueError(f"expected a duration such as 30m, 1h or 1d, got {value!r}")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


class Thresholds(BaseModel):
    """When each check reports a violation.  Shares are fractions (0.01 = 1 %)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    min_records: int = Field(
        200, ge=1, description="records needed before the drift checks judge (fewer: skipped, reported)"
    )
    datatype_check_threshold: float = Field(
        0.01, ge=0, le=1, description="share of present values of another type than the baseline's"
    )
    completeness_tolerance: float = Field(
        0.02,
        ge=0,
        le=1,
        description="completeness may fall this far below the baseline's (or four standard errors, if more)",
    )
    missing_column_threshold: float = Field(
        0.01, ge=0, le=1, description="share of records that lack an input the model takes"
    )
    extra_column_threshold: float = Field(
        0.01, ge=0, le=1, description="share of records that carry a field the model does not take"
    )
    baseline_drift_psi: float = Field(
        0.2, gt=0, description="PSI of a numeric or categorical input's distribution against the baseline"
    )
    text_length_psi: float = Field(0.2, gt=0, description="PSI of text lengths (the baseline's deciles)")
    oov_rate_increase: float = Field(
        0.03, gt=0, le=1, description="rise of the out-of-vocabulary rate over the baseline's (absolute)"
    )
    domain_auc: float = Field(0.62, gt=0.5, le=1, description="domain classifier's AUC")
    domain_p_value: float = Field(0.05, gt=0, le=1, description="and its permutation p-value at most this")
    domain_sample: int = Field(2000, ge=10, description="texts a side in the domain test")
    domain_permutations: int = Field(49, ge=9, description="label permutations of the domain test")
    domain_folds: int = Field(3, ge=2, le=10, description="cross-validation folds of the domain test")
    prediction_psi: float = Field(0.1, gt=0, description="PSI of the predicted-label distribution")
    prediction_js: float = Field(0.15, gt=0, le=1, description="Jensen–Shannon distance of predicted labels")
    accuracy_drop: float = Field(
        0.07, gt=0, le=1, description="a window's accuracy may fall this far below the model's test accuracy"
    )
    macro_f1_drop: float = Field(0.12, gt=0, le=1, description="likewise for macro-F1")
    min_labels: int = Field(500, ge=1, description="labelled records a window needs to be judged")
    window: str = Field("1d", description="ground-truth windows: 30m, 1h, 1d, …")

    @field_validator("window")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value.strip()

    @property
    def window_width(self) -> timedelta:
        return parse_duration(self.window)

    def monitoring_config(self) -> dict[str, Any]:
        """``constraints.json``'s ``monitoring_config``: Model Monitor's keys, then Tripod's."""
        return {
            "evaluate_constraints": "Enabled",
            "emit_metrics": "Enabled",
            "datatype_check_threshold": self.datatype_check_threshold,
            "domain_content_threshold": 0.0,
            "distribution_constraints": {
                "perform_comparison": "Enabled",
                "comparison_threshold": self.baseline_drift_psi,
                "comparison_method": "PSI",
            },
            "tripod": self.model_dump(exclude={"datatype_check_threshold", "baseline_drift_psi"}),
        }

    @classmethod
    def from_monitoring_config(cls, config: Mapping[str, Any]) -> Thresholds:
        """Read ``monitoring_config`` back (a hand-edited file included).

        Raises:
            MonitorError: a value out of range, or a key that is not a threshold.
        """
        values: dict[str, Any] = dict(config.get("tripod") or {})
        if "datatype_check_threshold" in config:
            values["datatype_check_threshold"] = config["datatype_check_threshold"]
        distribution = config.get("distribution_constraints") or {}
        if "comparison_threshold" in distribution:
            values["baseline_drift_psi"] = distribution["comparison_threshold"]
        try:
            return cls(**values)
        except ValidationError as exc:
            raise MonitorError(f"constraints.json: {_first_error(exc)}") from exc

    def overridden(self, assignments: Sequence[str]) -> Thresholds:
        """A copy with ``NAME=VALUE`` assignments applied (``--threshold``).

        Raises:
            MonitorError: not ``NAME=VALUE``, an unknown name, or a value out of range.
        """
        values = self.model_dump()
        for assignment in assignments:
            name, sep, value = assignment.partition("=")
            name = name.strip().replace("-", "_")
            if not sep or not name:
                raise MonitorError(f"--threshold takes NAME=VALUE, got {assignment!r}")
            if name not in values:
                known = ", ".join(sorted(values))
                raise MonitorError(f"--threshold: unknown threshold {name!r}; known: {known}")
            values[name] = value.strip()
        try:
            return Thresholds(**values)
        except ValidationError as exc:
            raise MonitorError(f"--threshold: {_first_error(exc)}") from exc


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}"

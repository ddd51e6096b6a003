"""A run's results as Prometheus gauges, in the text format node-exporter's textfile collector reads.

Point node-exporter's ``--collector.textfile.directory`` at the run's output folder (or copy ``metrics.prom``
there), or push the file to a Pushgateway (``curl --data-binary @metrics.prom
http://pushgateway:9091/metrics/job/tripod_monitor``).  prometheus-client writes it atomically (a temporary file
renamed into place), so the collector never reads half a file.

Every gauge carries the model's ``model`` label.  ``tripod_monitor_violation{check, feature}`` is 1 or 0 for
each judged check (a check judged per window counts as violated if any window was), skipped checks are only
counted (``tripod_monitor_checks_skipped``), and the statistics behind the checks have gauges of their own:
PSI, AUC, p-value, out-of-vocabulary rate, completeness, accuracy and macro-F1 of the latest judged window.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

if TYPE_CHECKING:
    from training.monitor.run import MonitorRun

PREFIX = "tripod_monitor_"
STATISTICS = {
    # (check, value key) → (gauge name, help)
    ("text_length_drift_check", "psi"): ("text_length_psi", "PSI of text lengths against the baseline"),
    ("oov_rate_check", "oov_rate"): ("oov_rate", "share of tokens not in the model's vocabulary"),
    ("oov_rate_check", "baseline"): ("baseline_oov_rate", "the baseline's out-of-vocabulary rate"),
    ("domain_classifier_check", "auc"): ("domain_auc", "domain classifier's cross-validated ROC AUC"),
    ("domain_classifier_check", "p_value"): ("domain_p_value", "domain classifier's permutation p-value"),
    ("prediction_drift_check", "psi"): ("prediction_psi", "PSI of the predicted-label distribution"),
    ("prediction_drift_check", "js_distance"): (
        "prediction_js_distance",
        "Jensen-Shannon distance of the predicted-label distribution",
    ),
    ("baseline_drift_check", "psi"): ("baseline_drift_psi", "PSI of an input's distribution"),
    ("completeness_check", "completeness"): ("completeness", "share of records with a value"),
    ("data_type_check", "share_mismatched"): ("type_mismatch_share", "share of values of another type"),
    ("accuracy_check", "value"): ("accuracy", "accuracy of the latest judged ground-truth window"),
    ("macro_f1_check", "value"): ("macro_f1", "macro-F1 of the latest judged ground-truth window"),
}


def write_textfile(path: Path, run: MonitorRun) -> Path:
    """Write the run's gauges to ``path`` (atomically)."""
    registry = CollectorRegistry()
    model = str(run.baseline.model.get("name") or "")

    def gauge(name: str, help_text: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(PREFIX + name, help_text, ("model", *labels), registry=registry)

    violation = gauge("violation", "1 if the check found a violation, 0 if it passed", ("check", "feature"))
    worst: dict[tuple[str, str], int] = {}
    for check in run.checks:
        if check.status != "skipped":
            pair = (check.check, check.feature)
            worst[pair] = max(worst.get(pair, 0), int(check.status == "violation"))
    for (check_name, feature), flag in worst.items():
        violation.labels(model, check_name, feature).set(flag)
    gauge("violations", "checks that found a violation").labels(model).set(len(run.violations))
    skipped = sum(1 for check in run.checks if check.status == "skipped")
    gauge("checks_skipped", "checks not judged (too few records, no vocabulary)").labels(model).set(skipped)

    gauges: dict[str, Gauge] = {}
    for check in run.checks:
        if check.status == "skipped":
            continue
        for key, value in check.values.items():
            spec = STATISTICS.get((check.check, key))
            if spec is None or not isinstance(value, int | float):
                continue
            name, help_text = spec
            if name not in gauges:
                gauges[name] = gauge(name, help_text, ("feature",))
            gauges[name].labels(model, check.feature).set(float(value))  # the latest window wins

    read = run.summary()["read"]
    for name, field, help_text in (
        ("records", "records", "captured records analysed"),
        ("exchanges", "exchanges", "captured requests in the window"),
        ("capture_files", "files_read", "capture files read"),
        ("malformed_lines", "malformed_lines", "capture lines that are not capture records"),
        ("undecodable_requests", "requests_undecodable", "captured requests the codecs could not read"),
        ("records_not_fitting", "records_not_fitting_schema", "records the model's schema refused"),
        ("answers_unreadable", "answers_unreadable", "captured answers without readable predictions"),
    ):
        gauge(name, help_text).labels(model).set(float(read[field]))
    gauge("run_duration_seconds", "how long the run took").labels(model).set(run.seconds)
    gauge("last_run_timestamp_seconds", "when the run finished (Unix time)").labels(model).set(time.time())
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry)
    return path

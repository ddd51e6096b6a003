"""``tripod monitor run``: stream captured traffic into a profile, check it against a baseline, write the results.

The capture is read one file at a time, one exchange at a time (:mod:`training.monitor.capture`); each exchange
is decoded with the server's codecs (:mod:`training.monitor.exchanges`) and added to a
:class:`~training.monitor.profile.Profile` laid out like the baseline's, so memory stays bounded whatever the
number of records.  Then the checks (:mod:`training.monitor.checks`) and the outputs:

* ``constraint_violations.json``: Model Monitor's ``{"violations": [{feature_name, constraint_check_type,
  description}]}``;
* ``statistics.json``: the captured traffic's statistics, in the baseline's shape;
* ``report.json`` and ``report.html``: every check (ok, violation, skipped) with its numbers, what was read
  (files, lines, malformed lines and why, records that did not fit the schema), plots;
* ``metrics.prom``: Prometheus gauges for node-exporter's textfile collector or a Pushgateway
  (:mod:`training.monitor.prometheus`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from services.runtime.schema import InputSchema
from training.monitor.baseline import Baseline, read_baseline
from training.monitor.capture import (
    MAX_EXAMPLES,
    ReadTally,
    list_capture_files,
    read_exchanges,
    window_start,
)
from training.monitor.checks import CheckResult, evaluate
from training.monitor.config import Thresholds
from training.monitor.domain import DomainTest
from training.monitor.exchanges import UndecodableBody, decode_answer, decode_request
from training.monitor.ground_truth import QualityWindows, read_ground_truth
from training.monitor.profile import Profile
from training.reports import write_html, write_json

VIOLATIONS = "constraint_violations.json"
STATISTICS = "statistics.json"
REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
PROMETHEUS = "metrics.prom"
ONE_HOUR = timedelta(hours=1)


@dataclass
class DecodeTally:
    """Exchanges and records the monitor could not use fully."""

    undecodable: int = 0
    records_not_fitting: int = 0
    answers_unreadable: int = 0
    answers_missing: int = 0
    answers_miscounted: int = 0
    examples: list[str] = field(default_factory=list)

    def note(self, reason: str) -> None:
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(reason)

    def json(self) -> dict[str, Any]:
        return {
            "requests_undecodable": self.undecodable,
            "records_not_fitting_schema": self.records_not_fitting,
            "answers_missing": self.answers_missing,
            "answers_unreadable": self.answers_unreadable,
            "answers_with_another_record_count": self.answers_miscounted,
            "examples": self.examples,
        }


@dataclass
class MonitorRun:
    """Everything one run found."""

    baseline: Baseline
    baseline_dir: Path
    capture: str
    since: datetime | None
    until: datetime | None
    thresholds: Thresholds
    statistics: dict[str, Any]
    checks: list[CheckResult]
    domains: dict[str, DomainTest]
    read: ReadTally
    decode: DecodeTally
    files_listed: int
    files_pruned: int
    quality: list[dict[str, Any]] | None
    quality_join: dict[str, int] | None
    hours: list[tuple[datetime, int]]
    seconds: float

    @property
    def violations(self) -> list[CheckResult]:
        return [check for check in self.checks if check.status == "violation"]

    def summary(self) -> dict[str, Any]:
        """``report.json``."""
        return {
            "baseline": str(self.baseline_dir),
            "model": {k: self.baseline.model.get(k) for k in ("name", "version", "manifest_sha256")},
            "capture": self.capture,
            "window": {"since": _stamp(self.since), "until": _stamp(self.until)},
            "read": {
                "files_listed": self.files_listed,
                "files_outside_window": self.files_pruned,
                "files_read": self.read.files,
                "lines": self.read.lines,
                "malformed_lines": self.read.malformed,
                "malformed_examples": self.read.examples,
                "exchanges": self.read.exchanges,
                "exchanges_outside_window": self.read.outside_window,
                "exchanges_by_variant": self.read.by_variant,
                "records": self.statistics["dataset"]["item_count"],
                **self.decode.json(),
            },
            "thresholds": self.thresholds.model_dump(),
            "violations": len(self.violations),
            "checks": [
                {
                    "check": c.check,
                    "feature": c.feature,
                    "status": c.status,
                    "description": c.description,
                    **c.values,
                }
                for c in self.checks
            ],
            "domain_tests": {name: test.json() for name, test in self.domains.items()},
            "ground_truth": None
            if self.quality is None
            else {"windows": self.quality, "join": self.quality_join},
            "records_per_hour": [{"hour": _stamp(hour), "records": n} for hour, n in self.hours],
            "seconds": self.seconds,
        }


def _stamp(moment: datetime | None) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def run_monitor(
    baseline_dir: Path,
    capture: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    ground_truth: str | None = None,
    overrides: Sequence[str] = (),
    seed: int = 42,
    progress: bool = True,
) -> MonitorRun:
    """Read the capture under ``capture`` within ``[since, until)`` and check it against the baseline.

    Raises:
        MonitorError: a missing or broken baseline, an unreadable capture prefix or file, a bad threshold or
            ground-truth file.
    """
    started = time.perf_counter()
    baseline = read_baseline(baseline_dir)
    thresholds = baseline.thresholds.overridden(overrides)
    labels = baseline.labels
    inputs = baseline.inputs
    quality = (
        QualityWindows(read_ground_truth(ground_truth), thresholds.window_width) if ground_truth else None
    )
    files, pruned = list_capture_files(capture, since, until)
    schema = InputSchema(inputs, max_text_chars=baseline.max_text_chars)
    profile = Profile(
        inputs,
        labels=labels,
        layout=baseline.layout(),
        vocabularies=baseline.vocabularies,
        skipped=baseline.skipped,
        sample_size=max(thresholds.domain_sample, 1),
        seed=seed,
    )
    read, decode = ReadTally(), DecodeTally()
    bar = tqdm(files, desc="capture files", unit="file", disable=not progress)
    for file in bar:
        for exchange in read_exchanges(file, read, since, until):
            try:
                request = decode_request(exchange.request, schema)
            except UndecodableBody as exc:
                decode.undecodable += 1
                decode.note(f"request {exchange.event_id or '?'}: {exc}")
                continue
            predicted: list[str | None] | None = None
            if exchange.answer is None:
                decode.answers_missing += 1
            else:
                predicted = decode_answer(exchange.answer, labels)
                if predicted is None:
                    decode.answers_unreadable += 1
                elif len(predicted) != len(request):
                    decode.answers_miscounted += 1
                    predicted = None
            not_fitting = len(request) - int(request.fits.sum())
            if not_fitting:
                decode.records_not_fitting += not_fitting
                decode.note(f"request {exchange.event_id or '?'}: {request.problem}")
            hour = window_start(exchange.time, ONE_HOUR) if exchange.time is not None else None
            profile.add(
                request.rows, absent=request.absent, extra=request.extra, predicted=predicted, hour=hour
            )
            if quality is not None and predicted is not None:
                quality.add(exchange.inference_id, exchange.time, predicted)
        bar.set_postfix(records=profile.records, refresh=False)
    statistics = profile.statistics(
        {
            "source": capture,
            "since": _stamp(since),
            "until": _stamp(until),
            "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    )
    names = [inputs[i].name for i in profile.text_positions]
    texts = {name: [items[k] for items in profile.sample.items] for k, name in enumerate(names)}
    windows = quality.scores(labels) if quality is not None else None
    checks, domains = evaluate(
        baseline, statistics, thresholds, current_texts=texts, quality=windows, seed=seed
    )
    return MonitorRun(
        baseline=baseline,
        baseline_dir=baseline_dir,
        capture=capture,
        since=since,
        until=until,
        thresholds=thresholds,
        statistics=statistics,
        checks=checks,
        domains=domains,
        read=read,
        decode=decode,
        files_listed=len(files) + pruned,
        files_pruned=pruned,
        quality=windows,
        quality_join=None
        if quality is None
        else {
            "labels": len(quality.labels),
            "matched": quality.matched,
            "multi_record_requests": quality.multi_record,
            "without_time": quality.untimed,
        },
        hours=sorted(profile.hours.items()),
        seconds=time.perf_counter() - started,
    )


def write_run(run: MonitorRun, out: Path) -> dict[str, Path]:
    """Write the run's files into ``out``."""
    from training.monitor.prometheus import write_textfile
    from training.monitor.report import render_report

    out.mkdir(parents=True, exist_ok=True)
    summary = run.summary()
    return {
        VIOLATIONS: write_json(out / VIOLATIONS, {"violations": [c.violation() for c in run.violations]}),
        STATISTICS: write_json(out / STATISTICS, run.statistics),
        REPORT_JSON: write_json(out / REPORT_JSON, summary),
        REPORT_HTML: write_html(out / REPORT_HTML, render_report(run, summary)),
        PROMETHEUS: write_textfile(out / PROMETHEUS, run),
    }

"""Model monitoring commands of the ``tripod`` CLI: ``tripod monitor baseline`` and ``tripod monitor run``.

Thin typed entry points over :mod:`training.monitor`.  ``monitor run`` exits 0 when every judged check passed,
1 when at least one found a violation (so a cron job or CI step can act on it), and 2 for a user's mistake (a
missing baseline, an unreadable capture prefix, a bad threshold), printed as one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tripod.cli_data import DataOption, DatasetOption, LakeOption, SqlOption, input_spec

VIOLATIONS_FOUND = 1

monitor_app = typer.Typer(
    name="monitor",
    help="Model monitoring: a baseline from training data, checks over the traffic serving captured.",
    no_args_is_help=True,
)


@monitor_app.command("baseline")
def baseline_command(
    model: Annotated[Path, typer.Option(help="model directory (or its latest link)")],
    data: DataOption = None,
    lake: LakeOption = None,
    dataset: DatasetOption = None,
    sql: SqlOption = None,
    out: Annotated[
        Path,
        typer.Option(help="baseline folder: statistics.json, constraints.json, vocabulary, reference sample"),
    ] = Path("monitoring/baseline"),
    sample: Annotated[
        int, typer.Option(min=10, help="texts kept as the reference sample of the domain-classifier test")
    ] = 5000,
    seed: Annotated[int, typer.Option(help="seed of the reference sample")] = 42,
) -> None:
    """Profile the training table through the model: Model Monitor's statistics and constraints, extended for
    text (length, out-of-vocabulary rate, predicted labels) and a reference sample of texts."""
    from services.artifacts import ModelArtifact
    from training.lake import load_input
    from training.monitor.baseline import build_baseline, write_baseline

    spec = input_spec(data, lake, dataset, sql)
    ModelArtifact.from_directory(model)  # a broken model fails before the table is read
    frame = load_input(spec)
    baseline = build_baseline(model, frame, source=spec.describe(), sample_size=sample, seed=seed)
    write_baseline(baseline, out)
    statistics = baseline.statistics
    notes = []
    for feature in statistics["features"]:
        oov = (feature.get("text_statistics") or {}).get("oov") or {}
        if oov.get("rate") is not None:
            notes.append(
                f"{feature['name']}: out-of-vocabulary rate {oov['rate']:.2%} against "
                f"{oov['vocabulary']['size']:,} words"
            )
        elif "skipped" in oov:
            notes.append(f"{feature['name']}: out-of-vocabulary rate {oov['skipped']}")
    buckets = statistics["predictions"]["distribution"]["categorical"]["buckets"]
    total = sum(b["count"] for b in buckets)
    if total:
        notes.append("predicted " + ", ".join(f"{b['value']} {b['count'] / total:.1%}" for b in buckets))
    typer.echo(
        f"wrote {out / 'statistics.json'}, constraints.json, vocabulary.json and reference_sample.jsonl "
        f"({statistics['dataset']['item_count']:,} rows; {'; '.join(notes)})"
    )


@monitor_app.command("run")
def run_command(
    baseline: Annotated[
        Path,
        typer.Option(
            help="baseline folder (tripod monitor baseline), or a model directory: its own baseline"
        ),
    ],
    capture: Annotated[
        str,
        typer.Option(
            help="data capture prefix: a directory or s3://bucket/prefix (root, endpoint or variant)"
        ),
    ],
    since: Annotated[
        str | None, typer.Option(help="only records answered at or after this ISO-8601 time (UTC if no zone)")
    ] = None,
    until: Annotated[str | None, typer.Option(help="only records answered before this ISO-8601 time")] = None,
    ground_truth: Annotated[
        str | None,
        typer.Option(help="CSV or JSON Lines of inferenceId,label: accuracy and macro-F1 per window"),
    ] = None,
    threshold: Annotated[
        list[str] | None,
        typer.Option(
            help="override a threshold of constraints.json for this run: NAME=VALUE; repeat for more"
        ),
    ] = None,
    out: Annotated[
        Path, typer.Option(help="output folder: constraint_violations.json, report.html, metrics.prom, …")
    ] = Path("monitoring/run"),
    seed: Annotated[int, typer.Option(help="seed of the captured-text sample and the domain test")] = 42,
) -> None:
    """Check captured traffic against a baseline; exit 0 without violations, 1 with violations, 2 on error."""
    from training.monitor.capture import parse_time
    from training.monitor.errors import MonitorError
    from training.monitor.run import run_monitor as monitor
    from training.monitor.run import write_run

    start = parse_time(since, "--since") if since else None
    end = parse_time(until, "--until") if until else None
    if start is not None and end is not None and start >= end:
        raise MonitorError(f"--since {since} is not before --until {until}")
    result = monitor(
        baseline,
        capture,
        since=start,
        until=end,
        ground_truth=ground_truth,
        overrides=threshold or [],
        seed=seed,
    )
    write_run(result, out)
    if not result.statistics["dataset"]["item_count"]:
        typer.echo(f"warning: no captured records under {capture} in the window; every check was skipped")
    for check in result.violations:
        typer.echo(f"violation: {check.check} on {check.feature}: {check.description}")
    read = result.read
    malformed = f", {read.malformed:,} malformed line(s) skipped" if read.malformed else ""
    skipped = sum(1 for check in result.checks if check.status == "skipped")
    typer.echo(
        f"wrote {out / 'constraint_violations.json'}, report.html and metrics.prom: "
        f"{result.statistics['dataset']['item_count']:,} records from {read.files:,} file(s){malformed}; "
        f"{len(result.violations)} violation(s), {len(result.checks) - skipped - len(result.violations)} check(s) "
        f"passed, {skipped} skipped"
    )
    if result.violations:
        raise typer.Exit(VIOLATIONS_FOUND)


def register_monitor_commands(app: typer.Typer) -> None:
    """Add the ``monitor`` command group to the ``tripod`` app."""
    app.add_typer(monitor_app)

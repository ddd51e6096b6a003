"""``tripod automl``: infer the problem, search candidates, build the leaderboard, export the best.

The Python API is :func:`run_automl`; the CLI is a thin wrapper.  A run writes, under ``<out>/runs/<study>/``,
the Optuna study, every finished candidate, one JSON record per trial, ``problem.json``, the leaderboard, the
best model's global SHAP report (``explanations.html``, linked from the leaderboard) and the notebooks; the
winner is exported to ``<out>/v<N>/`` (with the reports copied into ``reports/``) and ``<out>/latest`` points at
it.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from training.automl.candidate import CandidateModel, Preset
from training.automl.leaderboard import optimism, write_leaderboard
from training.automl.limits import ServingLimits
from training.automl.objectives import resolve_objective
from training.automl.search import (
    SELECTION_FRACTION,
    Search,
    SearchSettings,
    TrialRecord,
    best_record,
    load_candidate,
    parse_duration,
)
from training.data import Split, fingerprint, load_table, split_frame, stratified_sample
from training.errors import DataError
from training.export import export_candidate
from training.problem import Problem, ProblemType, infer_problem, label_strings
from training.train import evaluation_report

logger = logging.getLogger(__name__)


ENSEMBLE_SHARE = 0.05
"""Share of ``--time-budget`` kept for building and measuring the ensemble after the search, so that search and
ensemble together end within the budget (the export, with its parity check and reports, comes on top)."""


BASELINE_SECONDS = 60.0
"""About how long the exported model's monitoring baseline may spend predicting its training rows: a slow model
(a transformer ensemble answers ~20 reviews/s on 2 cores) gets a stratified sample instead of all of them."""
MIN_BASELINE_ROWS = 1000


def baseline_rows(train: pd.DataFrame, problem: Problem, latency_ms: float | None, seed: int) -> pd.DataFrame:
    """The training rows the monitoring baseline profiles: all of them when the chosen model predicts them
    within :data:`BASELINE_SECONDS` at its measured single-review p99 (pessimistic: batches are faster), else
    a sample of that many (at least :data:`MIN_BASELINE_ROWS`, enough for a label distribution to about
    ±1.5 %; stratified by class for classification)."""
    if not latency_ms or latency_ms <= 0:
        return train
    affordable = max(MIN_BASELINE_ROWS, int(BASELINE_SECONDS * 1000 / latency_ms))
    if affordable >= len(train):
        return train
    if problem.is_classification:
        return stratified_sample(train, problem.target, affordable, seed=seed)
    return train.sample(affordable, random_state=seed)


class SearchFailed(DataError):
    """No candidate finished (budget too small, or every trial failed); the partial leaderboard is kept."""


@dataclass(frozen=True)
class AutoMLResult:
    version_dir: Path
    run_dir: Path
    problem: Problem
    leaderboard: pd.DataFrame
    best: TrialRecord
    metrics: dict[str, float]
    seconds: dict[str, float]
    """``search``, ``ensemble`` and ``total`` (the whole run, export included)."""


def _signed(gap: float | None) -> str:
    return "—" if gap is None else f"{gap:+.4f} (positive: the score the choice saw was better than test)"


def _split(frame: pd.DataFrame, problem: Problem, seed: int, selection: float) -> Split:
    return split_frame(
        frame, problem.target, seed=seed, stratify=problem.is_classification, selection=selection
    )


def run_automl(
    data: Path | str | pd.DataFrame,
    target: str,
    out: Path | str,
    *,
    problem_type: ProblemType | Literal["auto"] = "auto",
    objective: str | None = None,
    time_budget: str | float = "10m",
    max_candidates: int | None = None,
    preset: Preset = "balanced",
    seed: int = 42,
    text: list[str] | None = None,
    categorical: list[str] | None = None,
    numeric: list[str] | None = None,
    ignore: list[str] | None = None,
    families: list[str] | None = None,
    sample: int | None = None,
    study_name: str | None = None,
    storage: str | None = None,
    max_latency_ms: float | None = None,
    max_model_mb: float | None = None,
    selection: float = SELECTION_FRACTION,
    progress: bool = True,
    echo: Any = print,
) -> AutoMLResult:
    """Search the best model for ``target`` in ``data`` within the budget and export it with parity.

    Args:
        data: A table path (CSV, CSV.gz, Parquet) or a DataFrame.
        target: The column to predict.
        out: Model root ``models/<name>``.
        problem_type, objective: ``auto``/None infer them (macro-F1 for multiclass, F1 for binary, RMSE for
            regression).
        time_budget: ``"20m"``, ``"90s"``, ``"1h"`` or seconds, for the whole search (not the export).
        max_candidates: Stop after this many trials.
        preset: ``fast`` (linear TF-IDF only), ``balanced`` (+ trees and fastText), ``best`` (+ fine-tuned MiniLM).
        text, categorical, numeric, ignore: Column roles that override inference.
        families: Explicit candidate families instead of the preset's.
        sample: Use a (stratified) sample of this many rows.
        study_name, storage: Resume a study by name; an Optuna storage URL (default SQLite in the run directory).
        max_latency_ms, max_model_mb: The chosen model's single-review p99 and ONNX size at most
            (:mod:`training.automl.limits`); candidates over them stay on the leaderboard, with the reason.
        selection: Share of the rows held out (from training) to choose the best candidate and weigh the
            ensemble; 0 chooses on validation, the rows the search tuned on (for comparisons only).
        echo: Where human-readable progress lines go.

    Raises:
        DataError: Bad data, columns, objective or problem type.
        SearchFailed: No candidate finished within the budget.
    """
    started = time.monotonic()
    budget_s = parse_duration(time_budget)
    frame = data if isinstance(data, pd.DataFrame) else load_table(data)
    if target not in frame.columns:
        raise DataError(
            f"target column {target!r} not found; available columns: {', '.join(map(str, frame.columns))}"
        )
    unlabeled = frame[target].isna()
    if unlabeled.any():
        echo(f"dropping {int(unlabeled.sum())} rows without a {target!r} value")
        frame = frame.loc[~unlabeled]
    problem = infer_problem(
        frame,
        target,
        problem_type=problem_type,
        text=text,
        categorical=categorical,
        numeric=numeric,
        ignore=ignore or (),
    )
    metric = resolve_objective(objective, problem.problem_type)
    if problem.is_classification:
        frame = frame.assign(**{target: label_strings(frame[target])})
        if sample is not None:
            frame = stratified_sample(frame, target, sample, seed=seed)
    elif sample is not None and sample < len(frame):
        frame = frame.sample(sample, random_state=seed)
    echo(f"problem: {json.dumps(problem.describe())}")
    echo(
        f"objective: {metric.name} ({metric.direction}); budget {budget_s:.0f}s; preset {preset}; seed {seed}"
    )

    split = _split(frame, problem, seed, selection)
    name = study_name or f"{target}-{preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = Path(out) / "runs" / name
    settings = SearchSettings(
        time_budget_s=budget_s * (1 - ENSEMBLE_SHARE),
        max_candidates=max_candidates,
        preset=preset,
        seed=seed,
        families=tuple(families) if families else None,
        storage=storage,
        study_name=name,
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "problem.json").write_text(
        json.dumps(
            {
                **problem.describe(),
                "objective": metric.name,
                "preset": preset,
                "seed": seed,
                "budget_s": budget_s,
                "rows": {
                    "train": len(split.train),
                    "validation": len(split.validation),
                    "selection": len(split.selection),
                    "test": len(split.test),
                },
            },
            indent=2,
        )
    )
    search = Search(problem, split, metric, settings, run_dir, progress=progress)
    search_started = time.monotonic()
    records = search.run()
    search_s = time.monotonic() - search_started
    reports_dir = run_dir / "reports"
    limits = ServingLimits(max_latency_ms=max_latency_ms, max_model_mb=max_model_mb)
    best = best_record(records, metric, limits)
    summary = {
        "target": target,
        "problem type": problem.problem_type,
        "objective": metric.name,
        "preset": preset,
        "budget": f"{budget_s:.0f}s",
        "candidates": len(records),
        "serving limits": limits.describe(),
        "search time": f"{search_s:.0f}s for a {budget_s:.0f}s budget",
    }
    if best is None:
        write_leaderboard(records, metric, reports_dir, summary=summary, limits=limits)
        finished = best_record(records, metric)
        reason = (
            f"no candidate finished within the budget of {budget_s:.0f}s ({len(records)} tried); raise --time-budget"
            if finished is None
            else f"no finished candidate is within the serving limits ({limits.describe()}); the best, trial "
            f"{finished.number} ({finished.family}), was not chosen: {limits.violation(finished)}"
        )
        raise SearchFailed(f"{reason}; partial leaderboard: {reports_dir / 'leaderboard.csv'}")

    winner: CandidateModel = load_candidate(best)
    from training.automl.ensemble import try_ensemble

    ensemble_started = time.monotonic()
    ensemble = try_ensemble(records, metric, problem, split, run_dir, seed=seed, limits=limits)
    used_s = search_s + time.monotonic() - ensemble_started
    summary["search time"] = (
        f"search {search_s:.0f}s + ensemble {used_s - search_s:.0f}s for a {budget_s:.0f}s budget"
        + (f" ({used_s / budget_s - 1:+.1%})" if budget_s > 0 else "")
    )
    if ensemble is not None:
        records = [*records, ensemble.record]
        within = limits.violation(ensemble.record) is None
        if within and metric.better(ensemble.record.choice_score, best.choice_score):  # type: ignore[arg-type]
            best, winner = ensemble.record, ensemble.candidate
    unconstrained = best_record(records, metric)
    if limits.active and unconstrained is not None and unconstrained is not best:
        summary["not chosen"] = (
            f"trial {unconstrained.number} ({unconstrained.family}) scored best "
            f"({unconstrained.choice_score:.4f}) but {limits.violation(unconstrained)}"
        )
    metrics, report = evaluation_report(winner, split)
    summary |= {
        "best": f"trial {best.number} ({best.family})",
        f"best validation {metric.name}": f"{best.validation:.4f}",
        f"best selection {metric.name}": "—" if best.selection is None else f"{best.selection:.4f}",
        f"best test {metric.name}": f"{best.test[metric.name]:.4f}",
        "chosen on": (
            f"the selection split ({len(split.selection)} rows no candidate was tuned on)"
            if len(split.selection)
            else "validation"
        ),
        "selection-test gap": _signed(optimism(best, metric)),
    }
    data_fingerprint = fingerprint(frame, [*problem.roles.input_names, target])
    from training.explain.run import explain_for_export

    explanations = explain_for_export(
        winner,
        split.test,
        reports_dir,
        name=Path(out).name,
        seed=seed,
        data_fingerprint=data_fingerprint,
        echo=echo,
    )
    links = {"Global SHAP explanations of the best model": explanations.name} if explanations else None
    board = write_leaderboard(
        records,
        metric,
        reports_dir,
        best_report=report.get("test"),
        summary=summary,
        links=links,
        limits=limits,
        chosen=best.number,
    )
    from training.automl.notebooks import write_notebooks

    write_notebooks(
        reports_dir,
        data=None if isinstance(data, pd.DataFrame) else Path(data),
        problem=problem,
        objective=metric,
        best=best,
        seed=seed,
        sample=sample,
        preset=preset,
    )
    version_dir = export_candidate(
        winner,
        model_root=Path(out),
        parity_frame=split.test,
        data_fingerprint=data_fingerprint,
        metrics={
            **metrics,
            f"validation_objective_{metric.name}": float(best.validation),  # type: ignore[arg-type]
            **(
                {}
                if best.selection is None
                else {f"selection_objective_{metric.name}": float(best.selection)}
            ),
        },
        metrics_report={**report, "objective": metric.name, "trial": best.number, "family": best.family},
        reports=reports_dir,
        baseline_frame=baseline_rows(split.train, problem, best.latency_ms, seed),
    )
    echo(
        f"best: trial {best.number} {best.family}, validation {metric.name} {best.validation:.4f}, "
        f"selection {best.choice_score:.4f}; "
        f"test {', '.join(f'{k} {v:.4f}' for k, v in best.test.items())}"
    )
    echo(
        f"leaderboard: {reports_dir / 'leaderboard.html'}; model: {version_dir} "
        f"({time.monotonic() - started:.0f}s in all)"
    )
    seconds = {"search": search_s, "ensemble": used_s - search_s, "total": time.monotonic() - started}
    return AutoMLResult(version_dir, run_dir, problem, board, best, metrics, seconds)

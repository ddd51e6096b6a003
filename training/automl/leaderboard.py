"""The leaderboard: every candidate the search tried, as CSV and as an HTML page with plots.

The best candidate is chosen on the selection split (rows no candidate was tuned on; validation when there is
none) and reported on test, with the gap between the two; the page shows its confusion matrix and
per-class F1 (classification) so a reviewer sees where it errs, not only how often.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # reports render without a display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from training.automl.families import FAMILY_PATHS, family_class
from training.automl.limits import NO_LIMITS, ServingLimits
from training.automl.objectives import Objective
from training.automl.search import TrialRecord

LEADERBOARD_CSV = "leaderboard.csv"
LEADERBOARD_HTML = "leaderboard.html"


def leaderboard_frame(
    records: Sequence[TrialRecord],
    objective: Objective,
    limits: ServingLimits = NO_LIMITS,
    chosen: int | None = None,
) -> pd.DataFrame:
    """One row per candidate, best first by the score the choice compares (selection, or validation without a
    selection split); unfinished trials last.  ``chosen`` marks the
    exported candidate; ``not_chosen_because`` says why a finished candidate over the serving limits was not."""
    rows = []
    for record in records:
        over = limits.violation(record) if record.state == "complete" else None
        row: dict[str, Any] = {
            "trial": record.number,
            "family": record.family,
            "state": record.state,
            f"validation_{objective.name}": record.validation,
            f"selection_{objective.name}": record.selection,
            **{f"test_{name}": value for name, value in record.test.items()},
            "selection_test_gap": optimism(record, objective) if record.state == "complete" else None,
            "fit_seconds": round(record.fit_seconds, 2),
            "model_mb": None if record.model_bytes is None else round(record.model_bytes / 2**20, 3),
            "latency_p99_ms": None if record.latency_ms is None else round(record.latency_ms, 3),
            "chosen": record.number == chosen,
            "not_chosen_because": over or "",
            "params": json.dumps(record.params, sort_keys=True, default=str),
            "error": record.error or "",
        }
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    key = (
        f"selection_{objective.name}"
        if frame[f"selection_{objective.name}"].notna().any()
        else f"validation_{objective.name}"
    )
    frame["_done"] = frame["state"].eq("complete")
    frame = frame.sort_values(
        ["_done", key], ascending=[False, objective.direction == "minimize"], na_position="last"
    )
    frame.insert(0, "rank", range(1, len(frame) + 1))
    return frame.drop(columns="_done").reset_index(drop=True)


def family_summary(frame: pd.DataFrame, objective: Objective) -> pd.DataFrame:
    """The best finished candidate of each family (the leaderboard's order), with what it costs: its test
    scores, training time, single-review p99, size and install size — the per-family report of the run.

    ``install_mb`` is what the family needs installed beyond the shared core, measured in this environment; an
    ensemble's is its members' (shown on their rows).
    """
    done = frame[frame["state"] == "complete"]
    columns = ["family", "trial", f"selection_{objective.name}", f"validation_{objective.name}"]
    columns += [c for c in done.columns if c.startswith("test_")]
    columns += ["fit_seconds", "latency_p99_ms", "model_mb", "install_mb", "candidates"]
    counts = done.groupby("family").size().rename("candidates")
    best = done.drop_duplicates("family").join(counts, on="family")
    best["install_mb"] = [_install_mb(family) for family in best["family"]]
    return best[[c for c in columns if c in best.columns]].reset_index(drop=True)


def _install_mb(family: str) -> float | None:
    if family not in FAMILY_PATHS:
        return None  # the ensemble
    return round(family_class(family).install_bytes() / 2**20, 1)


def optimism(record: TrialRecord, objective: Objective) -> float | None:
    """How much better the score the choice saw (selection, or validation) is than test: positive when the
    choice was optimistic.  None without both scores."""
    seen, test = record.choice_score, record.test.get(objective.name)
    if seen is None or test is None:
        return None
    return seen - test if objective.direction == "maximize" else test - seen


def _png(figure: plt.Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def _objective_plot(frame: pd.DataFrame, objective: Objective) -> str:
    key = f"validation_{objective.name}"
    done = frame[frame["state"] == "complete"].sort_values("trial")
    figure, axis = plt.subplots(figsize=(7, 3.5))
    for family, part in done.groupby("family"):
        axis.scatter(part["trial"], part[key], label=family, s=30)
    if len(done):
        best = done[key].cummax() if objective.direction == "maximize" else done[key].cummin()
        axis.step(done["trial"], best, where="post", color="black", linewidth=1, label="best so far")
    axis.set_xlabel("trial")
    axis.set_ylabel(key)
    axis.set_title("Validation objective per candidate")
    axis.legend(fontsize=8)
    return _png(figure)


def _time_plot(frame: pd.DataFrame, objective: Objective) -> str:
    key = f"validation_{objective.name}"
    done = frame[frame["state"] == "complete"]
    figure, axis = plt.subplots(figsize=(7, 3.5))
    for family, part in done.groupby("family"):
        axis.scatter(part["fit_seconds"], part[key], label=family, s=30)
    axis.set_xscale("log")
    axis.set_xlabel("training time (s, log scale)")
    axis.set_ylabel(key)
    axis.set_title("Score against training time")
    axis.legend(fontsize=8)
    return _png(figure)


def _pareto_plot(frame: pd.DataFrame, objective: Objective, limits: ServingLimits) -> str:
    """Quality against single-review p99: every finished candidate, the Pareto front (no other candidate is both
    faster and better), the latency limit and the chosen candidate."""
    key = f"validation_{objective.name}"
    done = frame[(frame["state"] == "complete") & frame["latency_p99_ms"].notna()].sort_values(
        "latency_p99_ms"
    )
    figure, axis = plt.subplots(figsize=(7, 3.5))
    for family, part in done.groupby("family"):
        axis.scatter(part["latency_p99_ms"], part[key], label=family, s=30)
    front, best = [], None
    for _, row in done.iterrows():
        if best is None or objective.better(row[key], best):
            best = row[key]
            front.append((row["latency_p99_ms"], row[key]))
    if front:
        xs, ys = zip(*front, strict=True)
        axis.step(xs, ys, where="post", color="black", linewidth=1, label="Pareto front")
    if limits.max_latency_ms is not None:
        axis.axvline(limits.max_latency_ms, color="tab:red", linestyle="--", label="--max-latency-ms")
    chosen = done[done["chosen"]]
    if len(chosen):
        axis.scatter(
            chosen["latency_p99_ms"],
            chosen[key],
            s=160,
            facecolors="none",
            edgecolors="black",
            label="chosen",
        )
    axis.set_xscale("log")
    axis.set_xlabel("single-review p99 (ms, log scale)")
    axis.set_ylabel(key)
    axis.set_title("Quality against serving latency")
    axis.legend(fontsize=8)
    return _png(figure)


def _confusion_plot(report: Mapping[str, Any]) -> str:
    labels = report["confusion_matrix"]["labels"]
    matrix = np.asarray(report["confusion_matrix"]["matrix"])
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.imshow(matrix, cmap="Blues")
    left.set_xticks(range(len(labels)), labels, rotation=30)
    left.set_yticks(range(len(labels)), labels)
    left.set_xlabel("predicted")
    left.set_ylabel("true")
    for (i, j), count in np.ndenumerate(matrix):
        left.text(
            j, i, str(count), ha="center", va="center", color="white" if count > matrix.max() / 2 else "black"
        )
    left.set_title("Test confusion matrix")
    f1 = [report["per_class"][label]["f1"] for label in labels]
    right.bar(labels, f1, color="tab:blue")
    right.set_ylim(0, 1)
    right.set_title("Test F1 per class")
    for i, value in enumerate(f1):
        right.text(i, value + 0.02, f"{value:.2f}", ha="center")
    return _png(figure)


def write_leaderboard(
    records: Sequence[TrialRecord],
    objective: Objective,
    directory: Path,
    *,
    best_report: Mapping[str, Any] | None = None,
    title: str = "Tripod AutoML leaderboard",
    summary: Mapping[str, Any] | None = None,
    links: Mapping[str, str] | None = None,
    limits: ServingLimits = NO_LIMITS,
    chosen: int | None = None,
) -> pd.DataFrame:
    """Write ``leaderboard.csv`` and ``leaderboard.html`` (plots embedded) into ``directory``.

    Args:
        best_report: the best candidate's test evaluation (``training.evaluate.evaluate``), for the confusion
            matrix and per-class F1.
        summary: key facts shown above the table (problem, budget, best candidate…).
        links: other reports beside the leaderboard, title → file name relative to ``directory`` (the best
            model's ``explanations.html``).
        limits, chosen: the serving limits and the exported trial's number (see :func:`leaderboard_frame`).
    """
    directory.mkdir(parents=True, exist_ok=True)
    frame = leaderboard_frame(records, objective, limits, chosen)
    frame.to_csv(directory / LEADERBOARD_CSV, index=False)
    sections = [f"<h1>{html.escape(title)}</h1>"]
    if summary:
        items = "".join(
            f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>" for k, v in summary.items()
        )
        sections.append(f"<ul>{items}</ul>")
    if links:
        items = "".join(
            f'<li><a href="{html.escape(target, quote=True)}">{html.escape(title)}</a></li>'
            for title, target in links.items()
        )
        sections.append(f"<h2>Reports</h2><ul>{items}</ul>")
    if not frame.empty and (frame["state"] == "complete").any():
        families = family_summary(frame, objective)
        sections.append(
            "<h2>Best of each family</h2>"
            + families.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.4g}")
        )
    sections.append(
        "<h2>Candidates</h2>" + frame.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.4g}")
    )
    if not frame.empty and (frame["state"] == "complete").any():
        sections.append(
            f'<h2>Objective per candidate</h2><img src="data:image/png;base64,{_objective_plot(frame, objective)}">'
        )
        sections.append(
            f'<h2>Score vs training time</h2><img src="data:image/png;base64,{_time_plot(frame, objective)}">'
        )
        pareto = _pareto_plot(frame, objective, limits)
        sections.append(f'<h2>Score vs serving latency</h2><img src="data:image/png;base64,{pareto}">')
    if best_report and "confusion_matrix" in best_report:
        sections.append(
            f'<h2>Best candidate on test</h2><img src="data:image/png;base64,{_confusion_plot(best_report)}">'
        )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>{}</title><style>body{{font-family:sans-serif;"
        "margin:2em}}table{{border-collapse:collapse;font-size:12px}}td,th{{border:1px solid #ccc;padding:3px 6px}}"
        "</style></head><body>{}</body></html>"
    ).format(html.escape(title), "\n".join(sections))
    (directory / LEADERBOARD_HTML).write_text(page, encoding="utf-8")
    return frame

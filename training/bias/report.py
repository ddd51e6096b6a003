"""The bias and balancing reports as HTML pages (tables, plots, formulas) beside ``analysis.json``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.bias import metrics as bm
from training.bias.analysis import bias_analysis, metric_table
from training.bias.specs import FacetSpec, LabelSpec

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
    names = [*bm.PRE_TRAINING, *bm.POST_TRAINING]
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

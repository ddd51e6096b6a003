"""The whole exploration: :func:`explore` runs every section, :func:`render_exploration_html` renders the page,
:func:`write_exploration` writes the HTML, the JSON summary and the notebook."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from training.data import require_columns
from training.errors import DataError
from training.explore.leakage import data_warnings, leakage_warnings, prediction_power
from training.explore.notebook import build_notebook
from training.explore.plots import (
    plot_anomalies,
    plot_association,
    plot_missing,
    plot_ngrams,
    plot_numeric,
    plot_pearson,
    plot_power,
    plot_target,
    plot_text_lengths,
)
from training.explore.statistics import (
    ExploreSettings,
    anomalies,
    categorical_association,
    column_roles,
    data_sample,
    duplicates,
    pearson,
    profile_columns,
    target_summary,
    text_lengths,
    top_ngrams,
)


@dataclass
class Exploration:
    """Everything :func:`explore` found: JSON-ready ``summary``, tables, and figures per section."""

    summary: dict[str, Any]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, list[tuple[str, Any]]] = field(default_factory=dict)
    """section id → ``[(alt text, matplotlib figure)]``."""


SECTIONS = (
    "overview",
    "target",
    "sample",
    "columns",
    "duplicates",
    "text",
    "correlations",
    "anomalies",
    "prediction-power",
    "warnings",
)


def explore(frame: pd.DataFrame, settings: ExploreSettings, *, progress: bool = False) -> Exploration:
    """Run every section of the exploration report.

    Raises:
        DataError: an empty table, an unknown target or text column (listing the available ones), or a target
            with fewer than two values.
    """
    if len(frame) == 0 or len(frame.columns) == 0:
        raise DataError("the table has no rows" if len(frame.columns) else "the table has no columns")
    frame = frame.rename(columns=str)
    target = settings.target
    require_columns(frame, [target, *(settings.text_columns or ())])
    steps = tqdm(total=len(SECTIONS), desc="explore: overview", unit="section", disable=not progress)

    def step(name: str) -> None:  # one section done, the next (named in the bar) starting
        steps.update(1)
        steps.set_description(f"explore: {name}")

    result = Exploration(summary={"rows": len(frame), "columns": len(frame.columns), "target": target})
    roles = column_roles(frame, target, settings.text_columns)
    text_columns = [c for c, r in roles.items() if r == "text"]
    sample = (
        data_sample(frame, settings.sample_rows, settings.seed)
        if len(frame) > settings.sample_rows
        else frame
    )
    sample = sample[sample[target].notna()]
    result.summary.update(sampled_rows=len(sample), seed=settings.seed, roles=roles)
    step("target")

    info = target_summary(frame, target)
    result.summary["target_summary"] = info
    result.figures["target"] = [("target distribution", plot_target(frame, info))]
    step("sample")

    result.tables["sample"] = data_sample(frame, settings.sample_size, settings.seed)
    step("columns")

    profile = profile_columns(frame, roles, target)
    result.tables["columns"] = profile
    result.summary["column_profile"] = profile.to_dict(orient="records")
    result.figures["columns"] = [("missing values", plot_missing(profile))]
    numeric_figure = plot_numeric(frame, roles)
    if numeric_figure is not None:
        result.figures["columns"].append(("numeric distributions", numeric_figure))
    step("duplicates")

    dups = duplicates(frame, target, text_columns)
    result.tables["duplicates"] = dups.pop("examples")
    result.summary["duplicates"] = dups
    step("text")

    result.summary["text"] = {}
    result.figures["text"] = []
    for column in text_columns:
        lengths = text_lengths(frame, column, target)
        grams = top_ngrams(sample, column, target, top=settings.top_ngrams)
        result.tables[f"text_lengths:{column}"] = lengths
        result.summary["text"][column] = {
            "lengths": lengths.reset_index().to_dict(orient="records"),
            "top_ngrams": {k: [list(g) for g in v] for k, v in grams.items()},
        }
        result.figures["text"].append((f"{column} lengths", plot_text_lengths(frame, column, target)))
        ngram_figure = plot_ngrams(grams, column)
        if ngram_figure is not None:
            result.figures["text"].append((f"{column} n-grams", ngram_figure))
    step("correlations")

    matrix = pearson(frame, roles, target)
    association = categorical_association(frame, roles, target)
    result.tables["pearson"] = matrix
    result.tables["cramers_v"] = association.to_frame()
    result.summary["correlations"] = {
        "pearson": matrix.round(4).to_dict(),
        "cramers_v": association.round(4).to_dict(),
    }
    result.figures["correlations"] = [
        (alt, f)
        for alt, f in (
            ("Pearson correlation", plot_pearson(matrix)),
            ("Cramér's V", plot_association(association, target)),
        )
        if f is not None
    ]
    step("anomalies")

    scores, unusual = anomalies(sample, roles, seed=settings.seed, top=settings.anomalies)
    result.tables["anomalies"] = unusual
    result.summary["anomalies"] = {
        "rows_scored": len(scores),
        "flagged": int((scores < 0).sum()) if len(scores) else 0,
        "top": unusual.drop(columns=[c for c in unusual.columns if roles.get(c) == "text"]).to_dict(
            orient="records"
        )
        if len(unusual)
        else [],
    }
    figure = plot_anomalies(scores)
    result.figures["anomalies"] = [("anomaly scores", figure)] if figure is not None else []
    step("prediction power")

    power = prediction_power(sample, roles, target, seed=settings.seed)
    metric = "R²" if info["problem_type"] == "regression" else "macro-F1"
    result.tables["prediction-power"] = power
    result.summary["prediction_power"] = {"metric": metric, "columns": power.to_dict(orient="records")}
    figure = plot_power(power, metric)
    result.figures["prediction-power"] = [("prediction power", figure)] if figure is not None else []
    step("warnings")

    leaks = leakage_warnings(frame, roles, target, power, association)
    result.summary["leakage_warnings"] = leaks
    result.summary["warnings"] = data_warnings(profile, info, dups)
    step("done")
    steps.close()
    return result


def render_exploration_html(result: Exploration, *, source: str = "") -> str:
    """The exploration as one self-contained HTML page (figures embedded as PNG)."""
    from training.reports import Section, escape, render_page, table_html

    s = result.summary
    info = s["target_summary"]
    sections = []
    overview = Section("overview", "Overview")
    overview.text(
        f"{s['rows']:,} rows × {s['columns']} columns; target {s['target']!r} "
        f"({info['problem_type']}). Sampled sections use {s['sampled_rows']:,} rows (seed {s['seed']})."
    )
    roles = pd.Series(s["roles"]).value_counts().rename_axis("role").reset_index(name="columns")
    overview.table(roles)
    sections.append(overview)

    target = Section("target", "Target")
    if info["problem_type"] == "regression":
        target.table(pd.DataFrame([info["statistics"]]))
    else:
        target.text(f"Imbalance ratio (largest / smallest class): {info['imbalance_ratio']:.2f}.")
        target.table(
            pd.DataFrame(
                {
                    "class": list(info["classes"]),
                    "rows": list(info["classes"].values()),
                    "share": [round(v, 4) for v in info["proportions"].values()],
                }
            )
        )
    sections.append(target)

    sections.append(Section("sample", "Data sample").table(result.tables["sample"], max_chars=120))
    sections.append(Section("columns", "Columns").table(result.tables["columns"], max_rows=500))

    dup = Section("duplicates", "Duplicate rows")
    d = s["duplicates"]
    dup.text(f"{d['duplicate_rows']:,} exact duplicate rows ({d['duplicate_rows_%']} %).")
    if d["text"]:
        dup.table(pd.DataFrame([{"column": c, **v} for c, v in d["text"].items()]))
    if len(result.tables["duplicates"]):
        dup.html(
            "<p>Examples of duplicated rows:</p>" + table_html(result.tables["duplicates"], max_chars=100)
        )
    sections.append(dup)

    text = Section("text", "Text columns")
    if not s["text"]:
        text.text("No free-text columns.")
    for column, values in s["text"].items():
        text.html(f"<h3>{escape(column)}</h3>")
        text.table(result.tables[f"text_lengths:{column}"], index=True)
        grams = values["top_ngrams"]
        if grams:
            longest = max(len(v) for v in grams.values())
            table = pd.DataFrame(
                {k: [f"{g} ({n})" for g, n in v] + [""] * (longest - len(v)) for k, v in grams.items()}
            )
            text.table(table, max_rows=100)
    sections.append(text)

    correlations = Section("correlations", "Correlations")
    if not result.tables["cramers_v"].empty:
        correlations.text("Cramér's V between each categorical column and the target:")
        correlations.table(result.tables["cramers_v"].round(4), index=True)
    sections.append(correlations)

    anomaly = Section("anomalies", "Anomalous rows (Isolation Forest)")
    a = s["anomalies"]
    anomaly.text(f"{a['flagged']:,} of {a['rows_scored']:,} scored rows fall below the automatic threshold.")
    if len(result.tables["anomalies"]):
        anomaly.table(result.tables["anomalies"], max_chars=100)
    sections.append(anomaly)

    power = Section("prediction-power", "Prediction power per column")
    power.text(
        f"Each column alone, {s['prediction_power']['metric']} over 3-fold cross-validation; power 0 = the "
        "majority-class baseline, 1 = perfect."
    )
    power.table(result.tables["prediction-power"])
    sections.append(power)

    warnings = Section("warnings", "Warnings")
    if not s["leakage_warnings"] and not s["warnings"]:
        warnings.text("Nothing to warn about.")
    for line in s["leakage_warnings"]:
        warnings.warning("Target leak? " + line)
    for line in s["warnings"]:
        warnings.warning(line)
    sections.append(warnings)

    by_id = {section.id: section for section in sections}
    for section_id, figures in result.figures.items():
        for alt, figure in figures:
            by_id[section_id].figure(figure, alt)
    result.figures = {k: [] for k in result.figures}  # closed by figure_png; drop the references
    return render_page(f"Exploration of {s['target']!r}", sections, subtitle=source)


def write_exploration(
    result: Exploration, out: Path | str, *, spec: Mapping[str, str], settings: ExploreSettings
) -> dict[str, Path]:
    """Write ``exploration.html``, ``exploration.json`` and ``exploration.ipynb`` into ``out``."""
    import nbformat

    from training.reports import write_html, write_json

    out = Path(out)
    paths = {
        "html": write_html(out / "exploration.html", render_exploration_html(result, source=_describe(spec))),
        "json": write_json(out / "exploration.json", {"input": dict(spec), **result.summary}),
    }
    notebook = build_notebook(spec, settings)
    paths["notebook"] = out / "exploration.ipynb"
    nbformat.write(notebook, str(paths["notebook"]))
    return paths


def _describe(spec: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in spec.items())

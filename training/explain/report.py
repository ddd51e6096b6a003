"""``explanations.html`` beside ``explanations.json``: the global SHAP report for people and for tools.

The page shows how the model was explained (method, baseline, output space, sample, seed, budget, timing),
the features with the largest mean |SHAP| per output (shap's own bar plot), the words pushing towards and
against each output, and a few example texts with every word highlighted by its attribution.  Every piece
of text on the page (reviews, n-grams, column names) is HTML-escaped.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.explain.global_shap import feature_labels
from training.explain.run import GlobalExplanation
from training.reports import Section, escape, format_value, new_figure, render_page, write_html, write_json

JSON_NAME = "explanations.json"
HTML_NAME = "explanations.html"
PLOT_FEATURES = 15
"""Features in each bar plot."""
POSITIVE = (30, 110, 200)
"""Highlight colour (RGB) of a word pushing the highlighted output up."""
NEGATIVE = (200, 40, 60)
"""… and of one pushing it down."""


def importance_figures(explanation: GlobalExplanation) -> list[tuple[str, Any]]:
    """One shap bar plot per output: mean |SHAP| of its :data:`PLOT_FEATURES` strongest features."""
    import matplotlib

    matplotlib.use("Agg")  # shap imports pyplot; reports render without a display
    import shap

    attributions = explanation.attributions
    if not attributions.rows:
        return []
    labels = feature_labels(attributions.features)
    mean_abs = attributions.mean_abs()
    space = explanation.summary["method"]["output"]
    figures = []
    for k, output in enumerate(attributions.outputs):
        order = [i for i in np.argsort(-mean_abs[k], kind="stable")[:PLOT_FEATURES] if mean_abs[k, i] > 0]
        if not order:
            continue
        values = attributions.values[k][:, order].toarray()
        shown = shap.Explanation(values=values, feature_names=[_short(labels[i]) for i in order])
        figure, axis = new_figure(8.0, 0.34 * len(order) + 1.4)
        shap.plots.bar(shown, max_display=PLOT_FEATURES, ax=axis, show=False)
        axis.set_title(f"{output}: mean |SHAP| ({space}) over {attributions.rows:,} rows", fontsize=11)
        figures.append((f"mean |SHAP| per feature for {output}", figure))
    return figures


def _short(label: str, limit: int = 48) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _facts(rows: Sequence[tuple[str, object]]) -> str:
    cells = "".join(
        f"<tr><th>{escape(name)}</th><td>{escape(format_value(value))}</td></tr>" for name, value in rows
    )
    return f"<table><tbody>{cells}</tbody></table>"


def _summary_section(summary: Mapping[str, Any]) -> Section:
    model, method, data = summary["model"], summary["method"], summary["data"]
    budget, timing = summary["budget"], summary["timing"]
    section = Section("summary", "How this was explained")
    facts: list[tuple[str, object]] = [
        ("model", f"{model.get('name')} {model.get('version') or '(this export)'}"),
        ("family", model["family"]),
        ("problem", f"{model['problem_type']} on {model['target']!r}"),
        ("manifest sha256", model.get("manifest_sha256") or "—"),
        ("explainer", f"{method['explainer']}: {method['algorithm']}"),
        ("baseline", method["baseline"]),
        ("output explained", f"{method['output']}: {method['output_meaning']}"),
        ("features", method["features"]),
        ("data", data["source"]),
        ("rows in the table", data["rows"]),
        ("rows explained", data["explained_rows"]),
        ("sample", "every row" if data["sample"] is None else data["sample"]),
        ("seed", data["seed"]),
        ("evaluations per row", budget["max_evals_per_row"] or "none: exact"),
        ("model evaluations", budget["model_evaluations"]),
        ("additivity error", summary["additivity"]["max_abs_error"]),
        ("shap", method["shap_version"]),
    ]
    if timing.get("recorded", True):
        facts += [
            ("explain time (s)", round(timing["explain_seconds"], 2)),
            ("rows per second", round(timing["rows_per_second"], 1)),
        ]
    section.html(_facts(facts))
    if method["name"] == "partition" and method["held_fixed"]:
        section.text(
            f"Only the words of {method['explained_column']!r} are explained; "
            f"{', '.join(method['held_fixed'])} keep each row's values."
        )
    if budget["stopped_by_time_limit"]:
        section.warning(
            f"The time limit of {budget['time_limit_s']:g} s stopped the explainer after "
            f"{data['explained_rows']} rows."
        )
    for note in summary["notes"]:
        section.warning(note)
    return section


def _importance_section(explanation: GlobalExplanation) -> Section:
    summary = explanation.summary
    section = Section("importance", "Mean |SHAP| per feature")
    section.text(
        "How much each feature moves each output on average over the explained rows (a row without the "
        "feature counts zero), so a frequent word can rank above a strong rare one. Mean SHAP keeps the sign: "
        "which way it pushes on average; where present: its average push in the rows that have it."
    )
    for output, entries in summary["importance"].items():
        section.html(f"<h3>{escape(output)}</h3>")
        table = pd.DataFrame(
            [
                {
                    "feature": e["feature"],
                    "mean |SHAP|": e["mean_abs_shap"],
                    "mean SHAP": e["mean_shap"],
                    "mean SHAP where present": e["mean_shap_when_present"],
                    "rows": e["rows"],
                }
                for e in entries
            ]
        )
        section.table(table) if len(table) else section.text("no feature moved this output")
    for alt, figure in importance_figures(explanation):
        section.figure(figure, alt)
    return section


def _tokens_section(summary: Mapping[str, Any]) -> Section:
    section = Section("tokens", "Words pushing towards and against each output")
    section.text(
        "Words and n-grams of the text columns with the largest mean signed SHAP: positive pushes towards the "
        "output, negative away from it."
    )
    for output, found in summary["top_tokens"].items():
        section.html(f"<h3>{escape(output)}</h3>")
        rows = max(len(found["towards"]), len(found["against"]))
        table = pd.DataFrame(
            [
                {
                    "towards": _cell(found["towards"], i, "token"),
                    "mean SHAP": _cell(found["towards"], i, "mean_shap"),
                    "against": _cell(found["against"], i, "token"),
                    "mean SHAP ": _cell(found["against"], i, "mean_shap"),
                }
                for i in range(rows)
            ]
        )
        section.table(table) if rows else section.text("no text feature")
    return section


def _cell(entries: Sequence[Mapping[str, Any]], i: int, key: str) -> object:
    return entries[i][key] if i < len(entries) else ""


def highlighted_text(example: Mapping[str, Any]) -> str:
    """The example's text as HTML, each attributed word on a background whose colour and strength show its
    SHAP value for the highlighted output (its value in the tooltip); all text escaped."""
    text, output = example["text"], example["highlighted_output"]
    tokens = example["tokens"]
    scale = max((abs(t["shap"][output]) for t in tokens), default=0.0) or 1.0
    parts, position = [], 0
    for token in tokens:
        start, end, value = token["start"], token["end"], token["shap"][output]
        if start < position:
            continue
        parts.append(escape(text[position:start]))
        red, green, blue = POSITIVE if value > 0 else NEGATIVE
        alpha = 0.85 * min(1.0, abs(value) / scale)
        tip = escape(f"{output}: {value:+.4g}")
        parts.append(
            f'<span style="background:rgba({red},{green},{blue},{alpha:.2f});border-radius:2px" '
            f'title="{tip}">{escape(text[start:end])}</span>'
        )
        position = end
    parts.append(escape(text[position:]))
    more = "…" if example.get("truncated") else ""
    return f'<p style="line-height:1.9">{"".join(parts)}{more}</p>'


def _examples_section(summary: Mapping[str, Any]) -> Section:
    section = Section("examples", "Examples")
    if not summary["examples"]:
        return section.text("no explained row has text to show")
    section.html(
        f'<p class="note">Blue words push the highlighted output up, red ones down; the stronger the colour, '
        f"the larger the value (hover for it). Values: {escape(summary['examples'][0]['output'])}.</p>"
    )
    for example in summary["examples"]:
        scores = ", ".join(f"{k} {format_value(v, 3)}" for k, v in example["scores"].items())
        base = ", ".join(f"{k} {format_value(v, 3)}" for k, v in example["base_values"].items())
        section.html(
            f"<h3>row {escape(example['row'])}: {escape(example['prediction'])}</h3>"
            f'<p class="note">model output: {escape(scores)}; baseline: {escape(base)}; '
            f"highlighted: {escape(example['highlighted_output'])} ({escape(example['method'])}, "
            f"{escape(example['output'])}); column {escape(example['column'])}</p>"
        )
        section.html(highlighted_text(example))
        if example["other_features"]:
            section.table(
                pd.DataFrame(
                    [{"other feature": o["feature"], **o["shap"]} for o in example["other_features"]]
                )
            )
    return section


def render_explanations_html(explanation: GlobalExplanation) -> str:
    """The report as one self-contained HTML page (plots embedded as PNGs)."""
    summary = explanation.summary
    model = summary["model"]
    subtitle = (
        f"{model.get('name')} {model.get('version') or ''} ({model['family']}): "
        f"{summary['data']['explained_rows']:,} rows, {summary['method']['explainer']}"
    )
    sections = [
        _summary_section(summary),
        _importance_section(explanation),
        _tokens_section(summary),
        _examples_section(summary),
    ]
    return render_page("Global SHAP explanations", sections, subtitle=subtitle)


def write_explanations(explanation: GlobalExplanation, out: Path) -> tuple[Path, Path]:
    """Write ``explanations.json`` and ``explanations.html`` into ``out``.

    Returns:
        The two paths.
    """
    started = time.perf_counter()
    page = render_explanations_html(explanation)
    timing = explanation.summary["timing"]
    if timing.get("recorded", True):
        timing["report_seconds"] = time.perf_counter() - started
    json_path = write_json(Path(out) / JSON_NAME, explanation.summary)
    return json_path, write_html(Path(out) / HTML_NAME, page)

"""The exploration notebook: the same input and sections as the HTML report, one cell per section, to dig further."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from training.explore.statistics import ExploreSettings


def build_notebook(spec: Mapping[str, str], settings: ExploreSettings) -> Any:
    """A notebook that loads the same input and runs each section in its own cell, for digging further."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    text = repr(tuple(settings.text_columns)) if settings.text_columns is not None else "None"
    cells = [
        new_markdown_cell(
            f"# Exploring `{settings.target}`\n\nInput: `{dict(spec)}`. Each cell below is one "
            "section of the HTML report; change anything and re-run."
        ),
        new_code_cell(
            "%matplotlib inline\n"
            "import pandas as pd\n"
            "from training.explore import leakage, plots\n"
            "from training.explore import statistics as stats\n"
            "from training.lake import InputSpec, load_input\n\n"
            f"spec = InputSpec(**{dict(spec)!r})\n"
            "frame = load_input(spec).rename(columns=str)\n"
            f"target = {settings.target!r}\n"
            f"SEED, SAMPLE_ROWS = {settings.seed}, {settings.sample_rows}\n"
            f"roles = stats.column_roles(frame, target, {text})\n"
            "text_columns = [c for c, r in roles.items() if r == 'text']\n"
            "sample = stats.data_sample(frame, SAMPLE_ROWS, SEED)\n"
            "sample = sample[sample[target].notna()]\n"
            "frame.shape"
        ),
        new_markdown_cell("## Target distribution and imbalance"),
        new_code_cell(
            "info = stats.target_summary(frame, target)\ndisplay(plots.plot_target(frame, info))\n"
            "{k: v for k, v in info.items() if k != 'statistics'}"
        ),
        new_markdown_cell("## A sample of the data"),
        new_code_cell(f"stats.data_sample(frame, {settings.sample_size}, SEED)"),
        new_markdown_cell("## Columns: type, missing values, cardinality, statistics"),
        new_code_cell(
            "profile = stats.profile_columns(frame, roles, target)\ndisplay(plots.plot_missing(profile))\n"
            "numeric = plots.plot_numeric(frame, roles)\nif numeric is not None:\n    display(numeric)\nprofile"
        ),
        new_markdown_cell("## Duplicate rows"),
        new_code_cell(
            "dups = stats.duplicates(frame, target, text_columns)\n"
            "{k: v for k, v in dups.items() if k != 'examples'}"
        ),
        new_markdown_cell("## Text: lengths and top n-grams per class"),
        new_code_cell(
            "for column in text_columns:\n"
            "    display(stats.text_lengths(frame, column, target))\n"
            "    display(plots.plot_text_lengths(frame, column, target))\n"
            f"    grams = stats.top_ngrams(sample, column, target, top={settings.top_ngrams})\n"
            "    if grams:\n"
            "        display(plots.plot_ngrams(grams, column))"
        ),
        new_markdown_cell("## Correlations: Pearson (numeric) and Cramér's V (categorical vs target)"),
        new_code_cell(
            "matrix = stats.pearson(frame, roles, target)\nassociation = stats.categorical_association(frame, "
            "roles, target)\nfor figure in (plots.plot_pearson(matrix), plots.plot_association(association, target)):\n"
            "    if figure is not None:\n        display(figure)\nassociation"
        ),
        new_markdown_cell("## Anomalous rows (Isolation Forest)"),
        new_code_cell(
            "scores, unusual = stats.anomalies(sample, roles, seed=SEED)\n"
            "if len(scores):\n    display(plots.plot_anomalies(scores))\nunusual"
        ),
        new_markdown_cell("## Prediction power per column, and target leaks"),
        new_code_cell(
            "power = leakage.prediction_power(sample, roles, target, seed=SEED)\n"
            "for warning in leakage.leakage_warnings(frame, roles, target, power, association):\n"
            "    print('WARNING', warning)\n"
            "metric = 'R²' if info['problem_type'] == 'regression' else 'macro-F1'\n"
            "if len(power):\n    display(plots.plot_power(power, metric))\n"
            "power"
        ),
    ]
    notebook = new_notebook(
        cells=cells,
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        },
    )
    nbformat.validate(notebook)
    return notebook


def execute_notebook(path: Path | str, *, timeout: int = 600, cwd: Path | str | None = None) -> Any:
    """Run a notebook in place with nbclient (a Python kernel from ipykernel); returns the executed notebook."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(str(path), as_version=4)
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(cwd or Path(path).parent)}},
    )
    client.execute()
    nbformat.write(notebook, str(path))
    return notebook

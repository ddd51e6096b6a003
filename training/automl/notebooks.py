"""Generated notebooks: the candidate definitions of a run, and a first look at its data.

``candidate_definitions.ipynb`` explains every family of the preset (preprocessing, algorithm, hyperparameter
ranges, how to re-run) and refits the best candidate with its recorded parameters, printing its validation
score next to the leaderboard's; ``data_exploration.ipynb`` profiles the table.  Both run top to bottom with
nbclient (tests do so), because a notebook that does not run is worse than none.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from training.automl.families import family_class
from training.automl.objectives import Objective
from training.automl.search import PRESET_FAMILIES, SELECTION_FRACTION, TrialRecord
from training.problem import Problem

DEFINITIONS = "candidate_definitions.ipynb"
EXPLORATION = "data_exploration.ipynb"


def _setup_code(data: Path, problem: Problem, seed: int, sample: int | None) -> str:
    roles = problem.roles
    return f"""import json
import numpy as np
from pathlib import Path

from training.problem import ColumnRoles, Problem, label_strings
from training.data import load_table, split_frame, stratified_sample

DATA = Path({str(data.resolve())!r})
SEED = {seed}
problem = Problem(
    target={problem.target!r},
    problem_type={problem.problem_type!r},
    labels={tuple(problem.labels)!r},
    roles=ColumnRoles(text={tuple(roles.text)!r}, categorical={tuple(roles.categorical)!r},
                      numeric={tuple(roles.numeric)!r}),
)
frame = load_table(DATA)
frame = frame.loc[frame[problem.target].notna()]
if problem.is_classification:
    frame = frame.assign(**{{problem.target: label_strings(frame[problem.target])}})
    {"frame = stratified_sample(frame, problem.target, " + str(sample) + ", seed=SEED)" if sample else "pass"}
{"else:" + chr(10) + "    frame = frame.sample(" + str(sample) + ", random_state=SEED)" if sample else ""}
split = split_frame(frame, problem.target, seed=SEED, stratify=problem.is_classification, selection={SELECTION_FRACTION})
print({{name: len(part) for name, part in (("train", split.train), ("validation", split.validation), ("selection", split.selection), ("test", split.test))}})
"""


def candidate_definitions(
    data: Path,
    problem: Problem,
    objective: Objective,
    best: TrialRecord,
    *,
    preset: str,
    seed: int,
    sample: int | None,
) -> nbformat.NotebookNode:
    """The candidate-definition notebook of a run (see the module docstring)."""
    cells = [
        new_markdown_cell(
            f"# Candidate definitions\n\nTarget `{problem.target}` ({problem.problem_type}), objective "
            f"`{objective.name}` ({objective.direction}), preset `{preset}`, seed {seed}.\n\n"
            f"Inputs: text {list(problem.roles.text)}, categorical {list(problem.roles.categorical)}, "
            f"numeric {list(problem.roles.numeric)}; dropped {dict(problem.roles.dropped)}.\n\n"
            "Re-run the whole search with:\n\n"
            f"```\ntripod automl --data {data} --target {problem.target} --preset {preset} --seed {seed} "
            f"--objective {objective.name} --out models/<name>\n```"
        ),
        new_markdown_cell(
            "## Data and split\nThe same rows and the same seeded, stratified split (train, validation, selection, test) "
            "as the run."
        ),
        new_code_cell(_setup_code(data, problem, seed, sample)),
    ]
    for name in PRESET_FAMILIES[preset]:
        try:
            cls = family_class(name)
        except (KeyError, ImportError):
            continue
        doc = inspect.getdoc(inspect.getmodule(cls)) or ""
        cells.append(
            new_markdown_cell(f"## Family `{name}`\n\n{doc}\n\n**Parameters**: {inspect.getdoc(cls) or ''}")
        )
        cells.append(
            new_code_cell(
                f"from training.automl.families import family_class\n"
                f"import inspect\n"
                f"cls = family_class({name!r})\n"
                f"print('defaults:', cls.default_params({preset!r}, problem))\n"
                f"print(inspect.getsource(cls.suggest))  # the search ranges"
            )
        )
    if best.family == "ensemble":
        build = (
            "from training.automl.ensemble import SoftVotingEnsemble\n"
            "members = [family_class(f)(problem, p, seed=SEED) for f, p in zip(PARAMS['families'], PARAMS['member_params'])]\n"
            "model = SoftVotingEnsemble(problem, PARAMS, seed=SEED, members=members)\n"
        )
    else:
        build = f"model = family_class({best.family!r})(problem, PARAMS, seed=SEED)\n"
    cells += [
        new_markdown_cell(
            f"## Reproduce the best candidate\n\nTrial {best.number}, family `{best.family}`: refit with its "
            f"parameters and compare the validation `{objective.name}` with the leaderboard's "
            f"({best.validation:.4f})."
        ),
        new_code_cell(
            "from training.automl.families import family_class\n"
            "from training.automl.objectives import OBJECTIVES\n"
            f"PARAMS = json.loads({json.dumps(json.dumps(best.params, default=str))})\n"
            + build
            + "model.fit(split.train, split.validation)\n"
            f"score = OBJECTIVES[{objective.name!r}].score(problem, problem.encode_target(split.validation), "
            "np.asarray(model.predict_scores(split.validation)))\n"
            f"RECORDED = {best.validation!r}\n"
            f"print(f'validation {objective.name}: {{score:.4f}} (leaderboard {{RECORDED:.4f}}, "
            f"difference {{abs(score - RECORDED):.4f}})')"
        ),
    ]
    return new_notebook(
        cells=cells,
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )


def data_exploration(data: Path, problem: Problem) -> nbformat.NotebookNode:
    """A first look at the table: shape, types, missing values, the target, text lengths."""
    text_plots = "".join(
        f"frame[{c!r}].fillna('').str.split().str.len().plot.hist(bins=50, title='words in {c}')\nplt.show()\n"
        for c in problem.roles.text
    )
    cells = [
        new_markdown_cell(
            f"# Data exploration\n\n`{data.name}`, target `{problem.target}` ({problem.problem_type})."
        ),
        new_code_cell(
            "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
            "from training.data import load_table\n"
            f"frame = load_table({str(data.resolve())!r})\nprint(frame.shape)\nframe.head()"
        ),
        new_markdown_cell("## Column types, missing values and cardinality"),
        new_code_cell(
            "import pandas as pd\npd.DataFrame({'dtype': frame.dtypes.astype(str), "
            "'missing': frame.isna().sum(), 'distinct': frame.nunique()})"
        ),
        new_markdown_cell("## Target distribution"),
        new_code_cell(
            f"counts = frame[{problem.target!r}].value_counts()\nprint(counts)\n"
            + (
                "print('imbalance ratio (largest / smallest class):', round(counts.max() / counts.min(), 2))\n"
                if problem.is_classification
                else ""
            )
            + f"frame[{problem.target!r}].value_counts().sort_index().plot.bar()\nplt.show()"
        ),
        new_markdown_cell("## Text lengths"),
        new_code_cell(text_plots or "print('no text columns')"),
    ]
    return new_notebook(
        cells=cells,
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )


def write_notebooks(
    directory: Path,
    *,
    data: Path | None,
    problem: Problem,
    objective: Objective,
    best: TrialRecord,
    seed: int,
    sample: int | None,
    preset: str = "balanced",
) -> list[Path]:
    """Write both notebooks (only when the data came from a file the notebooks can reload)."""
    if data is None:
        return []
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, notebook in (
        (
            DEFINITIONS,
            candidate_definitions(data, problem, objective, best, preset=preset, seed=seed, sample=sample),
        ),
        (EXPLORATION, data_exploration(data, problem)),
    ):
        path = directory / name
        nbformat.write(notebook, path)
        written.append(path)
    return written

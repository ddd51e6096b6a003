"""The global SHAP report: pick the explainer and the rows, explain them, summarize (``explanations.json``).

``tripod explain`` runs :func:`explain_model` on a model directory
(:func:`~training.explain.sources.model_from_directory`); ``tripod train`` and ``tripod automl`` run
:func:`explain_for_export` on the fitted winner, before export copies the report into the model directory's
``reports/``.

Rows: the exact explainers (linear, trees) cost little per row, so ``tripod explain`` explains every row of a
linear model by default; the model-agnostic explainer runs the model ``max_evals`` times per row, so it
explains a seeded sample of :data:`PARTITION_SAMPLE` rows by default.  At export the samples are smaller
(:data:`EXPORT_SAMPLES`) and a time limit stops the model-agnostic explainer early, so a search or a training
pays a bounded price for its report.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from training.data import require_columns
from training.errors import DataError
from training.explain.global_shap import (
    Attributions,
    Method,
    linear_attributions,
    partition_attributions,
    tree_attributions,
)
from training.explain.sources import ExplainedModel, model_from_candidate
from training.explain.summary import (
    additivity_error,
    example_json,
    example_rows,
    explained_text_column,
    importance,
    linear_spans,
    overall_importance,
    top_tokens,
)
from training.explain.tokens import has_words

if TYPE_CHECKING:
    from training.automl.candidate import CandidateModel

logger = logging.getLogger(__name__)

DEFAULT_MAX_EVALS = 256
"""Model evaluations per row for the model-agnostic explainer.  On the bundled reviews (about 60 words each)
256 evaluations resolve most single words; see docs/explain.md for the measured cost per family."""
PARTITION_SAMPLE = 100
"""Rows ``tripod explain`` explains by default with the model-agnostic explainer."""
BATCH_SIZE = 64
"""Masked texts per model call (the pipeline's own chunk size)."""
EXPORT_SAMPLES: dict[Method, int] = {"linear": 5000, "tree": 500, "partition": 40}
"""Rows of the held-out split explained at export, by explainer."""
EXPORT_PARTITION_SAMPLES: dict[str, int] = {"minilm": 15, "mpnet": 15}
"""Smaller samples for families whose every evaluation is a transformer encoder's forward pass."""
EXPORT_TIME_LIMIT_S = 90.0
"""At export, the model-agnostic explainer stops after the row that passes this many seconds."""


@dataclass(frozen=True)
class ExplainSettings:
    """How many rows, which seed, what budget.

    Attributes:
        sample: Rows to explain; None: every row for the exact explainers, :data:`PARTITION_SAMPLE` for the
            model-agnostic one.
        seed: Seed of the row sample (and of shap).
        max_evals: Model evaluations per row (model-agnostic explainer).
        time_limit_s: Stop the model-agnostic explainer after the row that passes this many seconds.
        record_timing: Write the timings into the summary (``tripod train`` leaves them out so that its model
            directory is byte-for-byte reproducible; the log has them).
        progress: Progress bars on stderr.
    """

    sample: int | None = None
    seed: int = 42
    max_evals: int = DEFAULT_MAX_EVALS
    time_limit_s: float | None = None
    record_timing: bool = True
    progress: bool = False


@dataclass
class GlobalExplanation:
    """The report's content: ``summary`` is ``explanations.json``; ``attributions`` feed the plots."""

    summary: dict[str, Any]
    attributions: Attributions


def choose_method(model: ExplainedModel) -> Method:
    """Exact when the model allows it (linear parts, or trees in memory), model-agnostic otherwise."""
    if model.linear is not None:
        return "linear"
    if model.trees is not None:
        return "tree"
    return "partition"


def _output_space(model: ExplainedModel, method: Method) -> tuple[str, str]:
    problem_type = model.problem.problem_type
    if method == "partition":
        if problem_type == "regression":
            return "value", "the predicted value"
        return "probability", "each class's probability, as the model serves it"
    margin = {
        "binary": "each class's log-odds (the sigmoid of a class's margin is its probability)",
        "multiclass": "each class's softmax input (the softmax of the margins gives the probabilities)",
        "regression": "the predicted value",
    }[problem_type]
    return "margin", margin


def _method_block(
    model: ExplainedModel, method: Method, column: str | None, settings: ExplainSettings
) -> dict[str, Any]:
    import shap

    space, meaning = _output_space(model, method)
    block: dict[str, Any] = {"name": method, "shap_version": str(shap.__version__), "output": space}
    block["output_meaning"] = meaning
    if method == "linear":
        block |= {
            "explainer": "shap.LinearExplainer",
            "algorithm": "exact linear SHAP: each feature's value times its weight, per class",
            "exact": True,
            "baseline": "all-absent: the zero feature vector (no word or n-gram, no category, every numeric "
            "column at its training mean, which scaling maps to zero); the base values are the intercepts",
            "features": "the transformer stage's features: n-grams of each text column, one-hot values of "
            "categorical columns, scaled numeric columns",
        }
    elif method == "tree":
        block |= {
            "explainer": "shap.TreeExplainer",
            "algorithm": "path-dependent tree SHAP (exact for the trees)",
            "exact": True,
            "baseline": "the trees' training cover: the base values are the mean margins over the training rows",
            "features": "the trees' inputs: truncated-SVD components of each text column's TF-IDF (named by "
            "their largest loadings), one-hot values, raw numbers",
        }
    else:
        others = [name for name in model.problem.roles.input_names if name != column]
        block |= {
            "explainer": "shap.Explainer with shap.maskers.Text",
            "algorithm": "partition: Owen values over the masker's hierarchy of words",
            "exact": False,
            "baseline": f"the row with every word of {column!r} removed (a masked word becomes a space)"
            + (", the other inputs unchanged" if others else ""),
            "features": f"the words of {column!r}, lower-cased, summed over their occurrences in a row",
            "explained_column": column,
            "held_fixed": others,
            "max_evals_per_row": settings.max_evals,
            "batch_size": BATCH_SIZE,
        }
    return block


def _sample_positions(n_rows: int, sample: int | None, seed: int) -> np.ndarray:
    """Positions of a seeded sample without replacement, in table order; every row when it is not smaller."""
    if sample is None or sample >= n_rows:
        return np.arange(n_rows)
    return np.sort(np.random.default_rng(seed).choice(n_rows, size=sample, replace=False))


def explain_model(
    model: ExplainedModel, frame: pd.DataFrame, settings: ExplainSettings, *, source: str
) -> GlobalExplanation:
    """Explain a sample of ``frame`` with the model's explainer and summarize it.

    Raises:
        DataError: No rows, the model's input columns missing from the table, or (model-agnostic explainer)
            no text column or no row with text.
    """
    started = time.perf_counter()
    if settings.sample is not None and settings.sample < 1:
        raise DataError(f"--sample must be at least 1, not {settings.sample}")
    if len(frame) == 0:
        raise DataError("the table has no rows to explain")
    problem = model.problem
    require_columns(frame, problem.roles.input_names)
    inputs = problem.input_frame(frame)
    method = choose_method(model)
    column = explained_text_column(inputs, problem.roles.text)
    if method == "partition" and column is None:
        raise DataError(
            f"the {model.family} model takes no text column; its global report explains the words of a text "
            "column (a table-only model is explained when AutoML trains it)"
        )
    eligible = np.arange(len(inputs))
    if method == "partition":
        assert column is not None
        eligible = np.flatnonzero(inputs[column].map(has_words).to_numpy(dtype=bool))
        if not len(eligible):
            raise DataError(f"no row has text in {column!r}: there are no words to explain")
    sample = settings.sample
    if sample is None:
        sample = PARTITION_SAMPLE if method == "partition" else None
    chosen = inputs.iloc[eligible[_sample_positions(len(eligible), sample, settings.seed)]]
    outputs = model.outputs
    timings: dict[str, float] = {"load_seconds": time.perf_counter() - started}

    started = time.perf_counter()
    attributions = _attributions(model, method, chosen, column, settings)
    timings["explain_seconds"] = time.perf_counter() - started

    started = time.perf_counter()
    explained = chosen.iloc[attributions.positions]
    scores = model.scores(explained) if len(explained) else np.zeros((0, len(outputs)))
    space = _output_space(model, method)[0]
    error = additivity_error(attributions, scores, problem.problem_type, margin=space == "margin")
    examples, evaluations = _examples(model, method, attributions, explained, scores, column, settings)
    timings["examples_seconds"] = time.perf_counter() - started

    method_block = _method_block(model, method, column, settings)
    budget = {
        "max_evals_per_row": settings.max_evals if method == "partition" else None,
        "model_evaluations": attributions.evaluations,
        "example_model_evaluations": evaluations,
        "time_limit_s": settings.time_limit_s if method == "partition" else None,
        "stopped_by_time_limit": attributions.stopped_early,
    }
    summary: dict[str, Any] = {
        "report": "global SHAP explanations",
        "model": {
            **model.identity,
            "family": model.family,
            "problem_type": problem.problem_type,
            "target": problem.target,
            "labels": list(problem.labels),
            "inputs": [{"name": c.name, "role": c.role} for c in problem.roles.inputs],
        },
        "method": method_block,
        "data": {
            "source": source,
            "rows": len(frame),
            "rows_with_text": len(eligible) if method == "partition" else None,
            "sample": sample,
            "seed": settings.seed,
            "explained_rows": attributions.rows,
        },
        "budget": budget,
        "outputs": list(outputs),
        "base_values": {
            output: float(attributions.base_values[:, k].mean()) if attributions.rows else None
            for k, output in enumerate(outputs)
        },
        "additivity": {
            "max_abs_error": error,
            "rows": attributions.rows,
            "meaning": f"largest |model output − (base + Σ SHAP)| over the explained rows, in {space} space"
            + (" mapped through the model's softmax or sigmoid" if space == "margin" else ""),
        },
        "importance": importance(attributions),
        "overall_importance": overall_importance(attributions),
        "top_tokens": top_tokens(attributions),
        "examples": examples,
        "notes": list(model.notes),
    }
    if settings.record_timing:
        timings["rows_per_second"] = attributions.rows / max(timings["explain_seconds"], 1e-9)
        summary["timing"] = timings
    else:
        summary["timing"] = {
            "recorded": False,
            "note": "left out so that the same training writes the same files; the run's log has it",
        }
    logger.info(
        "explained %d rows with the %s explainer in %.1f s",
        attributions.rows,
        method,
        timings["explain_seconds"],
    )
    return GlobalExplanation(summary=summary, attributions=attributions)


def _attributions(
    model: ExplainedModel, method: Method, chosen: pd.DataFrame, column: str | None, settings: ExplainSettings
) -> Attributions:
    outputs = model.outputs
    if method == "linear":
        assert model.linear is not None
        return linear_attributions(
            model.linear.features,
            model.linear.coef,
            model.linear.intercept,
            chosen,
            outputs=outputs,
            names=model.linear.names,
            progress=settings.progress,
        )
    if method == "tree":
        assert model.trees is not None
        return tree_attributions(
            model.trees.estimator,
            model.trees.features,
            chosen,
            outputs=outputs,
            names=model.trees.names,
            progress=settings.progress,
        )
    assert column is not None
    return partition_attributions(
        model.scores,
        chosen,
        column,
        outputs=outputs,
        max_evals=settings.max_evals,
        seed=settings.seed,
        batch_size=BATCH_SIZE,
        time_limit_s=settings.time_limit_s,
        progress=settings.progress,
    )


def _examples(
    model: ExplainedModel,
    method: Method,
    attributions: Attributions,
    explained: pd.DataFrame,
    scores: np.ndarray,
    column: str | None,
    settings: ExplainSettings,
) -> tuple[list[dict[str, Any]], int]:
    """A few explained rows with each word's attribution; trees, which see no words, get theirs from the
    model-agnostic explainer on those rows alone.  Returns the examples and the model evaluations they took."""
    if column is None or not attributions.rows:
        return [], 0
    problem = model.problem
    outputs = model.outputs
    texts = explained[column].astype(str).to_numpy()
    has_text = np.array([has_words(text) for text in texts], dtype=bool)
    regression = not problem.is_classification
    rows = example_rows(scores, has_text, outputs, regression=regression)
    space = _output_space(model, method)[0]
    values = np.asarray(scores, dtype=np.float64).reshape(len(explained), -1)
    examples = []
    if method == "tree":
        local = partition_attributions(
            model.scores,
            explained.iloc[rows],
            column,
            outputs=outputs,
            max_evals=settings.max_evals,
            seed=settings.seed,
            batch_size=BATCH_SIZE,
        )
        for j, position in enumerate(local.positions.tolist()):
            row = rows[position]
            examples.append(
                example_json(
                    row_label=_label(explained.index[row]),
                    column=column,
                    text=texts[row],
                    scores=values[row],
                    base=local.base_values[j],
                    spans=local.spans[j],
                    method="partition",
                    output_space=_output_space(model, "partition")[0],
                    outputs=outputs,
                    regression=regression,
                )
            )
        return examples, local.evaluations
    tokenizers = {t.column: t for t in model.linear.tokenizers} if model.linear is not None else {}
    for row in rows:
        others: list[dict[str, Any]] = []
        if method == "linear":
            spans, others = linear_spans(attributions, row, column, texts[row], tokenizers.get(column))
        else:
            spans = attributions.spans[row]
        examples.append(
            example_json(
                row_label=_label(explained.index[row]),
                column=column,
                text=texts[row],
                scores=values[row],
                base=attributions.base_values[row],
                spans=spans,
                method=method,
                output_space=space,
                others=others,
                outputs=outputs,
                regression=regression,
            )
        )
    return examples, 0


def _label(value: object) -> object:
    """A row's index label as JSON can hold it."""
    return (
        value.item()
        if isinstance(value, np.generic)
        else value
        if isinstance(value, int | str)
        else str(value)
    )


def explain_for_export(
    candidate: CandidateModel,
    frame: pd.DataFrame,
    out: Path,
    *,
    name: str,
    seed: int,
    data_fingerprint: str | None = None,
    record_timing: bool = True,
    echo: Callable[[str], Any] | None = None,
) -> Path | None:
    """Write the report of a fitted candidate on held-out rows into ``out`` (a future ``reports/``).

    The sample depends on the explainer (:data:`EXPORT_SAMPLES`), and the model-agnostic one stops at
    :data:`EXPORT_TIME_LIMIT_S`, so the price is bounded.  The report is optional: a failure is logged (with
    its traceback) and the model is exported without it.

    Returns:
        The path of ``explanations.html``, or None when there is no report.
    """
    from training.explain.report import write_explanations

    started = time.perf_counter()
    model = model_from_candidate(candidate, name=name, data_fingerprint=data_fingerprint)
    method = choose_method(model)
    sample = EXPORT_SAMPLES[method]
    if method == "partition":
        sample = EXPORT_PARTITION_SAMPLES.get(model.family, sample)
    settings = ExplainSettings(
        sample=sample, seed=seed, time_limit_s=EXPORT_TIME_LIMIT_S, record_timing=record_timing
    )
    try:
        explanation = explain_model(model, frame, settings, source=f"held-out test split ({len(frame)} rows)")
        _, html_path = write_explanations(explanation, out)
    except Exception as exc:  # an optional report must not cost the model: log it and export without
        logger.exception("no explanations report for the %s model", model.family)
        if echo is not None:
            echo(f"warning: no explanations report: {exc}")
        return None
    seconds = time.perf_counter() - started
    message = (
        f"explanations: {explanation.attributions.rows} held-out rows by the {method} explainer in "
        f"{seconds:.1f} s: {html_path.name}"
    )
    logger.info(message)
    if echo is not None:
        echo(message)
    return html_path

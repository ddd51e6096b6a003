"""``tripod train``: the single-candidate path: load → split → fit the TF-IDF baseline → evaluate → explain →
export.

The baseline is the ``tfidf_linear`` AutoML family (``training/automl/families/tfidf.py``) with its default
hyperparameters on the given text columns, so ``tripod train`` and ``tripod automl`` publish the same kind of
model through the same export and parity check.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from training.automl.candidate import CandidateModel
from training.automl.families.tfidf import TfidfLinear
from training.data import Split, fingerprint, load_table, require_columns, split_frame, stratified_sample
from training.errors import DataError
from training.evaluate import evaluate, evaluate_regression, flat_metrics
from training.explain.run import explain_for_export
from training.export import export_candidate
from training.problem import ColumnRoles, Problem, ProblemType, label_strings, require_text_columns

logger = logging.getLogger(__name__)


def text_problem(frame: pd.DataFrame, target: str, text_columns: Sequence[str]) -> Problem:
    """A classification problem over the given free-text columns only (the ``tripod train`` setting)."""
    labels = tuple(sorted(set(label_strings(frame[target].dropna()))))
    if len(labels) < 2:
        raise DataError(f"need at least two classes to train, found {list(labels)}")
    problem_type: ProblemType = "binary" if len(labels) == 2 else "multiclass"
    return Problem(
        target=target, problem_type=problem_type, labels=labels, roles=ColumnRoles(text=tuple(text_columns))
    )


def evaluation_report(candidate: CandidateModel, split: Split) -> tuple[dict[str, float], dict[str, Any]]:
    """Validation and test evaluation: flat metrics for the manifest and the full report for ``metrics.json``."""
    problem = candidate.problem
    reports = {}
    for name, part in (("validation", split.validation), ("test", split.test)):
        if len(part):
            scores = candidate.predict_scores(part)
            if problem.is_classification:
                truth = np.asarray(problem.labels, dtype=object)[problem.encode_target(part)]
                predicted = np.asarray(problem.labels, dtype=object)[scores.argmax(axis=1)]
                reports[name] = evaluate(truth, predicted, list(problem.labels), scores)
            else:
                reports[name] = evaluate_regression(problem.encode_target(part), scores)
    metrics = flat_metrics(reports["test"])
    if "validation" in reports:
        metrics |= flat_metrics(reports["validation"], prefix="validation_")
    report = {
        "labels": list(problem.labels),
        "rows": {"train": len(split.train), "validation": len(split.validation), "test": len(split.test)},
        **reports,
    }
    return metrics, report


def run_training(
    data: Path | str,
    target: str,
    text_columns: Sequence[str],
    out: Path | str,
    *,
    seed: int = 42,
    sample: int | None = None,
    params: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> Path:
    """``tripod train``: load → split → fit → evaluate → explain → export with parity → ``out/v<N>``.

    The model directory's ``reports/`` holds the global SHAP report on the test split
    (``explanations.json`` and ``.html``, :func:`training.explain.run.explain_for_export`).

    Args:
        data: Training table (CSV, CSV.gz or Parquet), e.g. the output of ``tripod prepare``.
        target: Label column.
        text_columns: Free-text input columns; each becomes a string input of the transformer stage.
        out: Model root ``models/<name>``; the version goes to ``out/v<N>`` and ``out/latest`` points at it.
        seed: Seed of the sample, the split and the solver.
        sample: Train on a stratified sample of this many rows (fast experiments and tests).
        params: ``tfidf_linear`` hyperparameters overriding its defaults.
        progress: Show a progress bar on stderr.

    Returns:
        The new version directory.

    Raises:
        DataError: The table cannot be read or lacks a column.
        training.errors.ParityError: The ONNX export does not reproduce the fitted model.
    """
    text_columns = [text_columns] if isinstance(text_columns, str) else list(text_columns)
    steps = ["load", "split", "fit", "evaluate", "explain", "export"]
    with tqdm(total=len(steps), desc="train", unit="step", disable=not progress) as bar:

        def step(name: str, detail: str) -> None:
            bar.set_description(f"train: {name}")
            logger.info("%s: %s", name, detail)

        step("load", str(data))
        frame = load_table(data)
        require_columns(frame, [target, *text_columns])
        if target in text_columns:
            raise DataError(f"the target {target!r} cannot also be a text input column")
        require_text_columns(frame, text_columns)
        unlabeled = frame[target].isna()
        if unlabeled.any():
            logger.info("dropping %d rows without a %r label", int(unlabeled.sum()), target)
            frame = frame.loc[~unlabeled]
        frame = frame.assign(**{target: label_strings(frame[target])})
        if sample is not None:
            frame = stratified_sample(frame, target, sample, seed=seed)
        data_fingerprint = fingerprint(frame, [*text_columns, target])
        problem = text_problem(frame, target, text_columns)
        bar.update()

        step("split", f"{len(frame)} rows, seed {seed}")
        split = split_frame(frame, target, seed=seed)
        bar.update()

        step("fit", f"{len(split.train)} training rows")
        chosen = {**TfidfLinear.default_params("balanced", problem), **(params or {})}
        model = TfidfLinear(problem, chosen, seed=seed).fit(split.train, split.validation)
        bar.update()

        step("evaluate", f"{len(split.validation)} validation and {len(split.test)} test rows")
        metrics, report = evaluation_report(model, split)
        logger.info("test accuracy %.4f, macro-F1 %.4f", metrics["accuracy"], metrics["macro_f1"])
        bar.update()

        with tempfile.TemporaryDirectory(prefix="tripod-reports-") as folder:
            step("explain", f"global SHAP report on {len(split.test)} test rows")
            reports = Path(folder)
            explained = explain_for_export(
                model,
                split.test,
                reports,
                name=Path(out).name,
                seed=seed,
                data_fingerprint=data_fingerprint,
                record_timing=False,  # the same data and seed must give the same files (models/README.md)
            )
            bar.update()

            step("export", f"ONNX stages to {out}")
            version_dir = export_candidate(
                model,
                model_root=Path(out),
                parity_frame=split.test,
                data_fingerprint=data_fingerprint,
                metrics=metrics,
                metrics_report={**report, "n_features": model.n_features_},
                reports=reports if explained is not None else None,
                baseline_frame=split.train,
            )
            bar.update()
    logger.info("model written to %s", version_dir)
    return version_dir

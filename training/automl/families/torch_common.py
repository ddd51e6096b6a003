"""What the torch text families (fastText, MiniLM, mpnet) share: joining text columns, the loss, the validation
objective, the macro-F1 logit offsets, and thread and deadline helpers.

Validation objective (``on_epoch`` and early stopping): macro-F1 for classification (the product's headline
metric; with 77 % positive reviews accuracy rewards ignoring "neutral"), R² for regression.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd
import torch
from onnx import helper
from sklearn.metrics import f1_score, r2_score

from training.automl.candidate import remaining
from training.problem import Problem

COLUMN_SEPARATOR = " | "
"""Several text columns are joined with this (``StringConcat`` in the graphs); ``|`` is no token character."""


def join_columns(frame: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """One text per row: the text columns joined with :data:`COLUMN_SEPARATOR` (the graph does the same)."""
    texts = frame[columns[0]].tolist()
    for column in columns[1:]:
        texts = [f"{a}{COLUMN_SEPARATOR}{b}" for a, b in zip(texts, frame[column].tolist(), strict=True)]
    return texts


def join_columns_nodes(
    columns: list[str], constants: dict[str, np.ndarray]
) -> tuple[list[onnx.NodeProto], str]:
    """Graph nodes that join text columns with ``COLUMN_SEPARATOR`` as :func:`join_columns` does in Python.

    Adds the separator to ``constants`` when needed; returns the nodes and the name of the joined tensor.
    """
    nodes: list[onnx.NodeProto] = []
    joined = columns[0]
    if len(columns) > 1:
        constants["separator"] = np.array([COLUMN_SEPARATOR], dtype=object)
    for i, column in enumerate(columns[1:]):
        nodes += [
            helper.make_node("StringConcat", [joined, "separator"], [f"join{i}_a"]),
            helper.make_node("StringConcat", [f"join{i}_a", column], [f"join{i}"]),
        ]
        joined = f"join{i}"
    return nodes, joined


def training_loss(problem: Problem, y: np.ndarray, class_weight: str) -> torch.nn.Module:
    """MSE for regression; cross-entropy weighted ``none``, ``balanced`` or ``sqrt`` (of balanced) otherwise."""
    if not problem.is_classification:
        return torch.nn.MSELoss()
    if class_weight == "none":
        return torch.nn.CrossEntropyLoss()
    counts = np.bincount(y, minlength=len(problem.labels)).astype(np.float64)
    weights = len(y) / (len(counts) * np.maximum(counts, 1.0))
    if class_weight == "sqrt":
        weights = np.sqrt(weights)
    return torch.nn.CrossEntropyLoss(weight=torch.tensor(weights / weights.mean(), dtype=torch.float32))


def validation_objective(problem: Problem, y: np.ndarray, scores: np.ndarray) -> float:
    """Macro-F1 for classification (higher is better), R² for regression."""
    if problem.is_classification:
        return float(
            f1_score(
                y, scores.argmax(axis=1), labels=range(len(problem.labels)), average="macro", zero_division=0
            )
        )
    return float(r2_score(y, scores))


def fit_logit_offsets(log_probabilities: np.ndarray, y: np.ndarray, *, rounds: int = 3) -> np.ndarray:
    """Per-class offsets added to ``log_probabilities`` that maximize macro-F1 against ``y``.

    Coordinate search over a grid, class 0 fixed at 0; keeps zeros unless macro-F1 improves.  Moves the
    decision threshold of rare classes (neutral reviews) the way a cost-sensitive rule would.

    Returns:
        ``(n_classes,)`` float32 offsets.
    """
    n_classes = log_probabilities.shape[1]
    labels = range(n_classes)
    offsets = np.zeros(n_classes)

    def score(candidate: np.ndarray) -> float:
        predicted = (log_probabilities + candidate).argmax(axis=1)
        return float(f1_score(y, predicted, labels=labels, average="macro", zero_division=0))

    best = score(offsets)
    grid = np.linspace(-3.0, 3.0, 61)
    for _ in range(rounds):
        improved = False
        for k in range(1, n_classes):
            for value in grid:
                candidate = offsets.copy()
                candidate[k] = value
                s = score(candidate)
                if s > best + 1e-9:
                    best, offsets, improved = s, candidate, True
        if not improved:
            break
    return offsets.astype(np.float32)


def load_encoder(directory: Path) -> Any:
    """A Hugging Face encoder without its pooler, eager attention (what the TorchScript exporter traces); the
    checkpoint's unused pooler weights are not reported."""
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return AutoModel.from_pretrained(str(directory), attn_implementation="eager", add_pooling_layer=False)
    finally:
        hf_logging.set_verbosity(verbosity)


def stratified_order(problem: Problem, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A permutation of the rows whose every prefix keeps the class mix (a stratified stream), so a family
    that uses only the first rows its time allows still sees every class in proportion."""
    if not problem.is_classification:
        return rng.permutation(len(y))
    keys = np.empty(len(y))
    for k in np.unique(y):
        rows = np.flatnonzero(y == k)
        keys[rows[rng.permutation(len(rows))]] = (np.arange(len(rows)) + rng.random()) / len(rows)
    return np.argsort(keys, kind="stable")


def past(deadline: float | None) -> bool:
    """Whether ``deadline`` (a ``time.monotonic()`` value, or None for none) has passed."""
    return remaining(deadline) <= 0


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run torch on one thread inside the block.

    The fastText model's operations are tiny; with two threads on a busy 2-core machine torch's OpenMP workers
    spin-wait for each other, measured 10x slower than one thread.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)

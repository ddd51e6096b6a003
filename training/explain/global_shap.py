"""SHAP values of a model's outputs on many rows, and their averages: the numbers of the global report.

Three explainers, chosen by what the model is (:mod:`training.explain.sources`):

* ``linear``: a linear model over vectorized features (``tfidf_linear``).  ``shap.LinearExplainer`` with the
  model's coefficients and the all-absent baseline (a zero feature vector): exact, ``φ = W ⊙ x`` per class,
  in the class's margin (log-odds for a binary model, the softmax input for a multiclass one, the value for a
  regression).  A word the text does not contain contributes exactly zero, and no background data is needed.
* ``tree``: a fitted gradient-boosted model in memory.  ``shap.TreeExplainer`` (path-dependent: the trees'
  own training cover is the background), exact for trees, in the model's margin.
* ``partition``: any model, through a function that scores rows.  ``shap.Explainer`` with a
  ``shap.maskers.Text`` masker (the partition explainer, Owen values over the masker's hierarchy of words,
  the words of :class:`~training.explain.tokens.WordTokenizer`) on one text column, the row's other inputs held at their values, at most ``max_evals`` model evaluations
  per row, in the model's output space (class probabilities, or the value).  A masked word becomes a space,
  so the baseline is the row with every word of that column removed.

Each returns :class:`Attributions`: per output a sparse ``(n_rows, n_features)`` matrix over a vocabulary of
features, so the averages are the same for every explainer: over the explained rows, a row without the feature
counting zero.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import sparse
from tqdm.auto import tqdm

from training.explain.tokens import Span, WordTokenizer, has_words, token_key, token_spans

Method = Literal["linear", "tree", "partition"]
FeatureKind = Literal["text", "categorical", "numeric", "component"]
Scores = Callable[[pd.DataFrame], np.ndarray]
"""Input frame (the model's input columns, typed as serving sends them) → ``(n_samples, n_outputs)`` or
``(n_samples,)`` scores."""
MASK_TOKEN = " "
"""What a masked word becomes: a space, so a masked text reads as if the word were not there (the masker needs
a non-empty mask token; an empty one fails inside shap)."""


@dataclass(frozen=True)
class Feature:
    """One column of the attribution matrices.

    Attributes:
        column: The input column it comes from.
        kind: ``text`` (an n-gram or word), ``categorical`` (one value, one-hot), ``numeric`` (the column) or
            ``component`` (a derived feature of a text column, e.g. a truncated-SVD direction).
        term: The n-gram, word, category or component description; None for a numeric column.
    """

    column: str
    kind: FeatureKind
    term: str | None = None


def feature_labels(features: Sequence[Feature]) -> list[str]:
    """Names for tables and plots; a text feature is prefixed with its column only when there are several."""
    text_columns = {f.column for f in features if f.kind in ("text", "component")}
    labels = []
    for feature in features:
        if feature.kind == "numeric":
            labels.append(feature.column)
        elif feature.kind == "categorical":
            labels.append(f"{feature.column} = {feature.term}")
        elif len(text_columns) > 1 or feature.kind == "component":
            labels.append(f"{feature.column}: {feature.term}")
        else:
            labels.append(str(feature.term))
    return labels


@dataclass
class Attributions:
    """SHAP values of ``rows`` explained rows.

    Attributes:
        method: Which explainer produced them.
        outputs: The model's outputs: class labels in class-index order, or the target of a regression.
        features: One per column of the matrices.
        values: Per output, ``(n_rows, n_features)``; a stored entry is a feature present in the row.
        base_values: ``(n_rows, n_outputs)``: the model's output at the baseline of each row.
        positions: ``(n_rows,)`` position of each explained row in the frame given to the explainer.
        evaluations: Rows the model was run on to explain them (the exact explainers run it on none).
        spans: ``partition`` only: row number → the explained text's tokens and their values.
        stopped_early: The time limit stopped the explainer before every row was explained.
    """

    method: Method
    outputs: tuple[str, ...]
    features: list[Feature]
    values: list[sparse.csr_matrix]
    base_values: np.ndarray
    positions: np.ndarray
    evaluations: int = 0
    spans: dict[int, list[Span]] = field(default_factory=dict)
    stopped_early: bool = False

    @property
    def rows(self) -> int:
        return len(self.positions)

    def mean_abs(self) -> np.ndarray:
        """Mean |SHAP| ``(n_outputs, n_features)`` over the explained rows."""
        return np.vstack([np.asarray(abs(v).sum(axis=0)).ravel() for v in self.values]) / max(self.rows, 1)

    def mean(self) -> np.ndarray:
        """Mean signed SHAP ``(n_outputs, n_features)``: which way a feature pushes each output on average."""
        return np.vstack([np.asarray(v.sum(axis=0)).ravel() for v in self.values]) / max(self.rows, 1)

    def presence(self) -> np.ndarray:
        """``(n_features,)``: explained rows in which each feature occurs."""
        if not self.values:
            return np.zeros(len(self.features), dtype=np.int64)
        return np.asarray(self.values[0].getnnz(axis=0), dtype=np.int64)

    def row(self, row: int) -> np.ndarray:
        """One explained row's values ``(n_features, n_outputs)``, dense."""
        return np.column_stack([v.getrow(row).toarray().ravel() for v in self.values])


def _sparse_by_output(
    rows: list[np.ndarray], cols: list[np.ndarray], data: list[list[np.ndarray]], shape: tuple[int, int]
) -> list[sparse.csr_matrix]:
    r = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    return [
        sparse.csr_matrix((np.concatenate(parts) if parts else np.zeros(0), (r, c)), shape=shape)
        for parts in data
    ]


def linear_attributions(
    features: Callable[[pd.DataFrame], Any],
    coef: np.ndarray,
    intercept: np.ndarray,
    inputs: pd.DataFrame,
    *,
    outputs: Sequence[str],
    names: Sequence[Feature],
    chunk_rows: int = 256,
    progress: bool = False,
) -> Attributions:
    """Exact linear SHAP values with the all-absent baseline.

    Args:
        features: Input frame → the model's features ``(n_samples, n_features)`` (dense or sparse).
        coef: ``(n_outputs, n_features)``: each output's margin is ``coef[k] · x + intercept[k]``.
        intercept: ``(n_outputs,)``.
        inputs: The rows to explain (the model's input columns).
        outputs: Names of the outputs, in ``coef`` order.
        names: One per feature.
        chunk_rows: Rows per call of ``features``: shap returns dense ``(rows, n_features)`` values per
            output, so a chunk of 256 rows of 15,000 features is about 30 MB.
    """
    import shap

    coef = np.asarray(coef, dtype=np.float64)
    intercept = np.asarray(intercept, dtype=np.float64).reshape(-1)
    n_outputs, n_features = coef.shape
    if len(names) != n_features:
        raise ValueError(f"{len(names)} feature names for {n_features} coefficients")
    absent = np.zeros((1, n_features))
    # One explainer per output: with all outputs at once shap stacks a dense (rows, features, outputs) copy,
    # which took a quarter of the time on the bundled reviews (22,641 rows, 15,000 features, 3 classes).
    explainers = [shap.LinearExplainer((coef[k], intercept[k]), absent) for k in range(n_outputs)]
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    data: list[list[np.ndarray]] = [[] for _ in range(n_outputs)]
    starts = range(0, len(inputs), chunk_rows)
    for start in tqdm(starts, desc="explain: linear", unit="chunk", disable=not progress):
        chunk = features(inputs.iloc[start : start + chunk_rows])
        # Dense: shap subtracts the baseline from the whole matrix either way, and does it faster on an array.
        x = np.asarray(chunk.toarray() if sparse.issparse(chunk) else chunk, dtype=np.float64)
        r, c = np.nonzero(x)  # absent features contribute exactly zero: keep only the present ones
        rows.append(r + start)
        cols.append(c)
        for k, explainer in enumerate(explainers):
            data[k].append(np.asarray(explainer.shap_values(x))[r, c])
    base = np.array([float(explainer.expected_value) for explainer in explainers])
    return Attributions(
        method="linear",
        outputs=tuple(outputs),
        features=list(names),
        values=_sparse_by_output(rows, cols, data, (len(inputs), n_features)),
        base_values=np.tile(base, (len(inputs), 1)),
        positions=np.arange(len(inputs)),
    )


def tree_attributions(
    estimator: Any,
    features: Callable[[pd.DataFrame], Any],
    inputs: pd.DataFrame,
    *,
    outputs: Sequence[str],
    names: Sequence[Feature],
    progress: bool = False,
) -> Attributions:
    """``shap.TreeExplainer`` values of a fitted tree ensemble, in its margin.

    A binary classifier's trees give the log-odds of the second class; the first class's are their negation,
    so both classes read the same way as a linear model's.
    """
    import shap

    explainer = shap.TreeExplainer(estimator)
    x = np.asarray(features(inputs), dtype=np.float32)
    if progress:
        tqdm.write(f"explain: trees on {len(x)} rows")
    phi = np.asarray(explainer.shap_values(x), dtype=np.float64)
    base = np.asarray(explainer.expected_value, dtype=np.float64).reshape(-1)
    if phi.ndim == 2:
        phi = phi[:, :, None]
    if len(outputs) == 2 and phi.shape[2] == 1:
        phi = np.concatenate([-phi, phi], axis=2)
        base = np.array([-base[0], base[0]])
    n_rows, n_features, _ = phi.shape
    if len(names) != n_features:
        raise ValueError(f"{len(names)} feature names for {n_features} features")
    return Attributions(
        method="tree",
        outputs=tuple(outputs),
        features=list(names),
        values=[sparse.csr_matrix(phi[:, :, k]) for k in range(phi.shape[2])],
        base_values=np.tile(base, (n_rows, 1)),
        positions=np.arange(n_rows),
    )


def partition_attributions(
    scores: Scores,
    inputs: pd.DataFrame,
    column: str,
    *,
    outputs: Sequence[str],
    max_evals: int,
    seed: int,
    batch_size: int = 64,
    time_limit_s: float | None = None,
    progress: bool = False,
) -> Attributions:
    """Owen values of the words of ``column`` from ``shap.maskers.Text``, row by row.

    Rows whose text has no word (empty, blank, punctuation only) are skipped.  The other input columns keep the row's
    values while its words are masked.

    Args:
        scores: Input frame → the model's outputs; called on batches of masked versions of one row.
        inputs: The rows to explain (the model's input columns).
        column: The text column whose words are explained.
        outputs: Names of the model's outputs.
        max_evals: Model evaluations per row at most (shap's ``max_evals``).
        seed: Passed to shap (the partition explainer itself draws nothing at random).
        batch_size: Masked texts per call of ``scores``.
        time_limit_s: Stop after the row that passes this many seconds (the rows done so far are kept).
    """
    import shap

    current: dict[str, Any] = {}
    evaluations = 0

    def model(texts: np.ndarray) -> np.ndarray:
        nonlocal evaluations
        frame = pd.DataFrame({name: [value] * len(texts) for name, value in current.items()})
        frame[column] = [str(text) for text in texts]
        evaluations += len(texts)
        return np.asarray(scores(frame[list(current)]), dtype=np.float64).reshape(len(texts), -1)

    masker = shap.maskers.Text(tokenizer=WordTokenizer(), mask_token=MASK_TOKEN)
    explainer = shap.Explainer(model, masker, algorithm="partition", output_names=list(outputs), seed=seed)
    vocabulary: dict[str, int] = {}
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    data: list[list[np.ndarray]] = [[] for _ in outputs]
    bases: list[np.ndarray] = []
    positions: list[int] = []
    spans: dict[int, list[Span]] = {}
    started = time.monotonic()
    stopped = False
    records = inputs.to_dict("records")
    for position, record in enumerate(
        tqdm(records, desc="explain: partition", unit="row", disable=not progress)
    ):
        text = str(record[column])
        if not has_words(text):
            continue
        if time_limit_s is not None and time.monotonic() - started > time_limit_s:
            stopped = True
            break
        current.clear()
        current.update(record)
        result = explainer([text], max_evals=max_evals, batch_size=batch_size, silent=True)[0]
        tokens = [str(token) for token in result.data]
        values = np.asarray(result.values, dtype=np.float64).reshape(len(tokens), len(outputs))
        row = len(positions)
        summed: dict[int, np.ndarray] = {}
        for token, value in zip(tokens, values, strict=True):
            key = token_key(token)
            if not key:
                continue
            index = vocabulary.setdefault(key, len(vocabulary))
            summed[index] = summed.get(index, 0.0) + value
        indices = np.fromiter(summed, dtype=np.int64, count=len(summed))
        rows.append(np.full(len(indices), row, dtype=np.int64))
        cols.append(indices)
        for k in range(len(outputs)):
            data[k].append(np.array([summed[i][k] for i in indices]))
        bases.append(np.asarray(result.base_values, dtype=np.float64).reshape(-1))
        spans[row] = token_spans(text, tokens, values)
        positions.append(position)
    features = [Feature(column, "text", word) for word in vocabulary]
    return Attributions(
        method="partition",
        outputs=tuple(outputs),
        features=features,
        values=_sparse_by_output(rows, cols, data, (len(positions), len(features))),
        base_values=np.vstack(bases) if bases else np.zeros((0, len(outputs))),
        positions=np.asarray(positions, dtype=np.int64),
        evaluations=evaluations,
        spans=spans,
        stopped_early=stopped,
    )

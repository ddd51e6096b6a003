r"""How close served explanations are to ``shap``'s (``explain_serving.py`` prints and writes the tables).

Sampling (model-agnostic): for each review of a seeded sample and each budget, ``Pipeline.explain`` with
``method=sampling`` against ``shap``'s own estimate of the same game — the predicted class's probability,
the review's words as players, a word absent when it is cut out of the text — by
``shap.PermutationExplainer`` with ``shap.maskers.Text(r"\W+")`` and many evaluations.  Per review:
Spearman's rank correlation over its words and the overlap of the five largest (by magnitude).

Three details make the reference the same game, and are the traps a reader would fall into:

- ``shap.maskers.Text`` has a ``clustering`` (a partition tree of the tokens), and the permutation
  explainer then draws only orders that respect it: Owen values, another game.  The reference sets it to
  ``None``, so the orders are uniform, as ours.
- ``mask_token=""`` fails in shap 0.51 (the empty string tokenizes to nothing); ``" "`` gives the same
  texts, since the masker collapses runs of whitespace.
- The masker's ``\W+`` split gives exactly our words (:func:`services.runtime.explain.tokens.words`, ``\w+``),
  each with the punctuation after it, which it removes with the word (we keep it): a TF-IDF model never
  sees punctuation, a transformer sees a little of it.  Tokens are matched to words by character offset.

The reference is the mean of two shap runs of half the evaluations each, with different seeds; how well
those two agree with each other is printed beside the table (``shap vs shap``): the scale of the reference's
own noise.  Where our estimator groups neighbouring words (budgets too small for one antithetic pair of
orders over every word), a group's contribution is shared equally among its words.

Exact (linear models with ``explainer.onnx``): ``method=linear`` against ``shap.LinearExplainer`` over the
weights read from ``classifier.onnx`` (not from the explainer graph) with an all-zero background, on the
transformer's features: the largest difference should be float32 rounding.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.runtime.explain.explanation import Explanation
from services.runtime.explain.options import explain_options
from services.runtime.explain.tokens import Token, words
from services.runtime.pipeline import Pipeline
from services.runtime.schema import Records

TOP_K = 5
BUDGETS = (8, 16, 32, 64, 128, 256)


@dataclass(frozen=True)
class Review:
    """One review of the sample: its text, words and predicted class."""

    text: str
    words: list[Token]
    predicted: int


def spearman(ours: np.ndarray, reference: np.ndarray) -> float:
    """Spearman's rank correlation; a constant ranking (nothing to correlate) counts as 0."""
    from scipy.stats import spearmanr

    if len(ours) < 2 or np.ptp(ours) == 0 or np.ptp(reference) == 0:
        return 0.0
    value = float(spearmanr(ours, reference).statistic)
    return 0.0 if math.isnan(value) else value


def top_overlap(ours: np.ndarray, reference: np.ndarray, k: int = TOP_K) -> float:
    """Share of the ``k`` words of largest magnitude in ``reference`` that are also among ``ours``'."""
    k = min(k, len(reference))
    if k == 0:
        return 1.0
    mine = set(np.argsort(-np.abs(ours), kind="stable")[:k].tolist())
    theirs = set(np.argsort(-np.abs(reference), kind="stable")[:k].tolist())
    return len(mine & theirs) / k


def word_values(explanation: Explanation, output: int, found: Sequence[Token]) -> np.ndarray:
    """One contribution per word ``(n_words,)`` of output ``output``: a part's contribution shared equally
    among the words inside its spans (a group of neighbouring words, or one word)."""
    values = np.zeros(len(found))
    row = np.asarray(explanation.contributions[output], dtype=np.float64)
    for part, contribution in zip(explanation.parts, row.tolist(), strict=True):
        inside = [
            i
            for i, word in enumerate(found)
            if any(start <= word.start and word.end <= end for start, end in part.spans)
        ]
        if inside:
            values[inside] += contribution / len(inside)
    return values


def probabilities(pipeline: Pipeline, column: str) -> Callable[[Sequence[str]], np.ndarray]:
    """The model as shap calls it: texts → class probabilities ``(n_texts, n_classes)``."""

    def predict(texts: Sequence[str]) -> np.ndarray:
        batch = pipeline.predict(Records([{column: str(text)} for text in texts]))
        assert batch.probabilities is not None
        return np.asarray(batch.probabilities, dtype=np.float64)

    return predict


def shap_words(
    predict: Callable[[Sequence[str]], np.ndarray], review: Review, evals: int, seed: int
) -> tuple[np.ndarray, int]:
    """shap's permutation estimate of the predicted class's probability, one value per word.

    Returns:
        The values ``(n_words,)`` and the evaluations shap was allowed (at least one antithetic pair).
    """
    import shap

    masker = shap.maskers.Text(r"\W+", mask_token=" ")
    masker.clustering = None  # uniform orders: Shapley values, not the Owen values of its partition tree
    explainer = shap.PermutationExplainer(
        lambda texts: predict(texts)[:, review.predicted], masker, seed=seed
    )
    offsets = masker.tokenizer(review.text)["offset_mapping"]
    allowed = max(evals, 2 * len(offsets) + 1)
    found = explainer([review.text], max_evals=allowed, silent=True, batch_size=2 * len(offsets) + 1)
    raw = np.asarray(found.values[0], dtype=np.float64)
    by_start = {word.start: i for i, word in enumerate(review.words)}
    values = np.zeros(len(review.words))
    for (start, end), value in zip(offsets, raw.tolist(), strict=True):
        if start == end:  # the empty token before a text that opens with punctuation
            continue
        index = by_start.get(start)
        if index is None or review.words[index].end != end:
            raise ValueError(f"shap's token {review.text[start:end]!r} at {start} is not one of our words")
        values[index] = value
    return values, allowed


def sample_reviews(
    pipeline: Pipeline, column: str, texts: Sequence[str], count: int, seed: int, min_words: int = 3
) -> list[Review]:
    """``count`` reviews of at least ``min_words`` words, drawn with ``seed``, with their predicted class."""
    rng = np.random.default_rng(seed)
    usable = [text for text in texts if len(words(text)) >= min_words]
    if len(usable) < count:
        raise ValueError(f"only {len(usable)} reviews have {min_words} words or more; {count} asked")
    chosen = [usable[i] for i in sorted(rng.choice(len(usable), count, replace=False).tolist())]
    batch = pipeline.predict(Records([{column: text} for text in chosen]))
    return [
        Review(text, words(text), int(index))
        for text, index in zip(chosen, batch.indices.tolist(), strict=True)
    ]


def _mean(values: Sequence[float]) -> float:
    return float(statistics.fmean(values)) if values else math.nan


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else math.nan


def sampling_agreement(
    pipeline: Pipeline,
    column: str,
    reviews: Sequence[Review],
    budgets: Sequence[int],
    shap_evals: int,
    seed: int,
) -> dict[str, Any]:
    """Per budget: time per review and agreement with shap's reference, over ``reviews``.

    Args:
        shap_evals: the reference's evaluations per review, split between two shap runs.
    """
    predict = probabilities(pipeline, column)
    references, floor_rho, floor_top, allowed = [], [], [], []
    started = time.perf_counter()
    for review in reviews:
        first, used_a = shap_words(predict, review, shap_evals // 2, seed)
        second, used_b = shap_words(predict, review, shap_evals // 2, seed + 1)
        references.append((first + second) / 2)
        floor_rho.append(spearman(first, second))
        floor_top.append(top_overlap(first, second))
        allowed.append(used_a + used_b)
    reference_s = time.perf_counter() - started
    rows = []
    pipeline.explain(Records([{column: reviews[0].text}]), explain_options(method="sampling"))  # warm-up
    for budget in budgets:
        options = explain_options(method="sampling", budget=budget)
        ms, rho, top, evaluations, players, exact = [], [], [], [], [], []
        for review, reference in zip(reviews, references, strict=True):
            began = time.perf_counter()
            batch, explained = pipeline.explain(Records([{column: review.text}]), options)
            ms.append(1000 * (time.perf_counter() - began))
            explanation = explained[0]
            ours = word_values(explanation, int(batch.indices[0]), review.words)
            rho.append(spearman(ours, reference))
            top.append(top_overlap(ours, reference))
            evaluations.append(explanation.details["evaluations"])
            players.append(explanation.details["players"])
            exact.append(bool(explanation.details["exact"]))
        rows.append(
            {
                "budget": budget,
                "evaluations_mean": _mean(evaluations),
                "players_mean": _mean(players),
                "exact_share": _mean([float(e) for e in exact]),
                "ms_median": _median(ms),
                "ms_mean": _mean(ms),
                "spearman_mean": _mean(rho),
                "spearman_median": _median(rho),
                "spearman_min": min(rho),
                "top5_mean": _mean(top),
            }
        )
    return {
        "reviews": len(reviews),
        "words_mean": _mean([len(review.words) for review in reviews]),
        "words_max": max(len(review.words) for review in reviews),
        "shap_evals": shap_evals,
        "shap_evals_allowed_mean": _mean(allowed),
        "reference_s_per_review": reference_s / len(reviews),
        "shap_vs_shap": {
            "evals_each": shap_evals // 2,
            "spearman_mean": _mean(floor_rho),
            "spearman_median": _median(floor_rho),
            "top5_mean": _mean(floor_top),
        },
        "budgets": rows,
    }


def classifier_weights(model_dir: Path, classifier_file: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Each class's margin weights ``(n_classes, n_features)`` and intercepts from the ``LinearClassifier``
    of ``classifier.onnx``, as the explainer defines them (a binary model's one row ``w`` is class 1's,
    class 0's is ``-w``); None when the classifier is not one."""
    import onnx
    from onnx import helper

    graph = onnx.load(str(model_dir / classifier_file), load_external_data=False).graph
    node = next((n for n in graph.node if n.op_type == "LinearClassifier"), None)
    if node is None:
        return None
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    intercepts = np.asarray(attributes["intercepts"], dtype=np.float64)
    weights = np.asarray(attributes["coefficients"], dtype=np.float64).reshape(len(intercepts), -1)
    if len(intercepts) == 1:
        weights, intercepts = np.vstack([-weights, weights]), np.concatenate([-intercepts, intercepts])
    return weights, intercepts


def exact_agreement(pipeline: Pipeline, model_dir: Path, column: str, texts: Sequence[str]) -> dict[str, Any]:
    """``method=linear`` against ``shap.LinearExplainer`` on the same features, and its time per review."""
    import shap

    manifest = pipeline.manifest
    found = classifier_weights(model_dir, manifest.stages["classifier"].file)
    if found is None:
        return {"skipped": "the classifier has no LinearClassifier node to read weights from"}
    weights, intercepts = found
    records = Records([{column: text} for text in texts])
    features = np.asarray(pipeline.stages.run("transformer", pipeline.validate(records)), dtype=np.float64)
    reference = shap.LinearExplainer(
        (weights, intercepts), shap.maskers.Independent(np.zeros((1, weights.shape[1])))
    )
    expected = np.asarray(reference.shap_values(features), dtype=np.float64)
    expected = expected.reshape(len(texts), weights.shape[1], len(intercepts)).transpose(0, 2, 1)
    _, explained = pipeline.explain(records, explain_options(method="linear", target="all"))
    largest = base = 0.0
    for row, explanation in enumerate(explained):
        dense = np.zeros_like(expected[row])
        dense[:, np.flatnonzero(features[row])] = explanation.contributions
        largest = max(largest, float(np.abs(dense - expected[row]).max()))
        base = max(base, float(np.abs(explanation.base_values - np.ravel(reference.expected_value)).max()))
    timings = {}
    for method in ("linear", "sampling"):
        options = explain_options(method=method)
        pipeline.explain(Records([{column: texts[0]}]), options)
        ms = []
        for text in texts:
            began = time.perf_counter()
            pipeline.explain(Records([{column: text}]), options)
            ms.append(1000 * (time.perf_counter() - began))
        timings[method] = _median(ms)
    ms = []
    for text in texts:
        began = time.perf_counter()
        pipeline.predict(Records([{column: text}]))
        ms.append(1000 * (time.perf_counter() - began))
    return {
        "reviews": len(texts),
        "max_abs_diff": largest,
        "max_abs_diff_base": base,
        "ms_median_linear": timings["linear"],
        "ms_median_sampling_64": timings["sampling"],
        "ms_median_predict": _median(ms),
    }

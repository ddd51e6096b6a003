"""SageMaker Clarify's bias metrics, vectorized over count tables.

Every metric except FT and GE is a function of a handful of counts per facet: rows, positive labels, and (after
training) the confusion-matrix cells; CDDL/CDDPL add the same counts per group of the group variable.  So the
rows are counted once, with one :func:`numpy.bincount` per table over integer codes, and every metric of every
facet value comes from those tables at once.  A million rows and a 20-value facet take well under a second.

Notation (Clarify's): facet *d* is the sensitive group (the facet value, or the rows above a threshold),
facet *a* is every other row.  ``n_a``, ``n_d`` are their sizes; ``n_a1``/``n_d1`` their observed positive
labels, ``n_a0``/``n_d0`` the negatives; ``nh_a1`` (n̂) the *predicted* positives, ``nh_a0`` the predicted
negatives; ``TP``, ``FP``, ``FN``, ``TN`` the confusion-matrix cells of a facet.

Division follows Clarify's library: ``0/0 = 0``, ``x/0 = ±∞``; a difference of two infinite ratios is 0.  The
label-distribution metrics (KL, JS, LP, TVD, KS) compare ``P_a = (1 - q_a, q_a)`` and ``P_d = (1 - q_d, q_d)``
over the label values present in *both* facets, as Clarify's library does.  ``docs/bias.md`` writes every
formula out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

INFINITY = float("inf")

PRE_TRAINING = ("CDDL", "CI", "DPL", "JS", "KL", "KS", "LP", "TVD")
POST_TRAINING = ("AD", "CDDPL", "DAR", "DCAcc", "DCR", "DI", "DPPL", "DRR", "FT", "GE", "RD", "SD", "TE")

DESCRIPTIONS = {
    "CI": "Class Imbalance (CI)",
    "DPL": "Difference in Positive Proportions in Labels (DPL)",
    "KL": "Kullback-Leibler Divergence (KL)",
    "JS": "Jensen-Shannon Divergence (JS)",
    "LP": "L-p Norm (LP)",
    "TVD": "Total Variation Distance (TVD)",
    "KS": "Kolmogorov-Smirnov Distance (KS)",
    "CDDL": "Conditional Demographic Disparity in Labels (CDDL)",
    "DPPL": "Difference in Positive Proportions in Predicted Labels (DPPL)",
    "DI": "Disparate Impact (DI)",
    "DCAcc": "Difference in Conditional Acceptance (DCAcc)",
    "DCR": "Difference in Conditional Rejection (DCR)",
    "SD": "Specificity Difference (SD)",
    "RD": "Recall Difference (RD)",
    "DAR": "Difference in Acceptance Rates (DAR)",
    "DRR": "Difference in Rejection Rates (DRR)",
    "AD": "Accuracy Difference (AD)",
    "TE": "Treatment Equality (TE)",
    "CDDPL": "Conditional Demographic Disparity in Predicted Labels (CDDPL)",
    "FT": "Flip Test (FT)",
    "GE": "Generalized Entropy (GE)",
}

GE_ALPHA = 2.0
FT_NEIGHBORS = 5
FT_MIN_NEIGHBORS = 1
FT_SMALL_FACET = 9
"""With this many or fewer rows in facet a, FT uses one neighbour instead of five (as Clarify does)."""


class MetricError(ValueError):
    """A metric that is undefined for this data (an empty facet, no positive labels, no group variable...)."""


def divide(numerator: np.ndarray | float, denominator: np.ndarray | float) -> np.ndarray:
    """Elementwise ``numerator / denominator`` with Clarify's conventions: ``0/0 = 0`` and ``x/0 = ±∞``."""
    a = np.asarray(numerator, dtype=np.float64)
    b = np.asarray(denominator, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = a / b
    zero = b == 0
    if np.any(zero):
        out = np.where(zero, np.where(a == 0, 0.0, np.where(a < 0, -INFINITY, INFINITY)), out)
    return out


def difference(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """``first - second``, but 0 where both are +∞ (two undefined ratios do not differ)."""
    with np.errstate(invalid="ignore"):
        out = np.asarray(first, dtype=np.float64) - np.asarray(second, dtype=np.float64)
    return np.where((first == INFINITY) & (second == INFINITY), 0.0, out)


@dataclass(frozen=True)
class FacetCounts:
    """Count tables for ``F`` facet definitions (each a set *d* of rows, *a* being the rest).

    Arrays are ``(F,)`` unless noted; group arrays are ``(F, G)`` for ``G`` groups of the group variable.
    Post-training and group fields are None when there are no predictions / no group variable.
    """

    n: int
    """Rows in the analysis."""
    n_d: np.ndarray
    n_d1: np.ndarray
    """Observed positive labels in facet d."""
    n_1: int
    """Observed positive labels in all rows."""
    confusion_d: np.ndarray | None = None
    """``(F, 2, 2)``: ``[label, prediction]`` counts of facet d (``[1, 1]`` = TP, ``[0, 1]`` = FP ...)."""
    confusion: np.ndarray | None = None
    """``(2, 2)``: the same over all rows."""
    group_d: np.ndarray | None = None
    """``(F, G, 2)``: facet-d rows per group and observed label (index 1 = positive)."""
    group: np.ndarray | None = None
    """``(G, 2)``: all rows per group and observed label."""
    group_pred_d: np.ndarray | None = None
    """``(F, G, 2)``: facet-d rows per group and predicted label."""
    group_pred: np.ndarray | None = None
    """``(G, 2)``: all rows per group and predicted label."""

    @property
    def n_a(self) -> np.ndarray:
        return self.n - self.n_d

    @property
    def n_a1(self) -> np.ndarray:
        return self.n_1 - self.n_d1

    @property
    def confusion_a(self) -> np.ndarray:
        assert self.confusion is not None and self.confusion_d is not None
        return self.confusion[None, :, :] - self.confusion_d


def count(
    codes: np.ndarray,
    n_codes: int,
    membership: np.ndarray,
    label: np.ndarray,
    prediction: np.ndarray | None = None,
    group: np.ndarray | None = None,
    n_groups: int = 0,
) -> FacetCounts:
    """Count once per code, then combine codes into facets with a matrix product.

    Args:
        codes: ``(n_samples,)`` int codes of the facet column in ``[0, n_codes)`` (rows with a missing facet
            already removed).
        n_codes: Number of distinct codes.
        membership: ``(F, n_codes)`` 0/1: row ``f`` marks the codes that make up facet d of definition ``f``
            (one-vs-rest is the identity; a threshold facet is ``[[0, 1]]`` over codes ``≤``/``>``).
        label: ``(n_samples,)`` bool, observed label is positive.
        prediction: ``(n_samples,)`` bool, predicted label is positive, or None.
        group: ``(n_samples,)`` int codes of the group variable in ``[0, n_groups)``, or None.
    """
    codes = np.asarray(codes, dtype=np.int64)
    y = np.asarray(label, dtype=np.int64)
    m = np.asarray(membership, dtype=np.int64)
    n = int(codes.shape[0])
    per_code = np.bincount(codes * 2 + y, minlength=n_codes * 2).reshape(n_codes, 2)
    n_d = m @ per_code.sum(axis=1)
    n_d1 = m @ per_code[:, 1]
    fields: dict[str, object] = {}
    if prediction is not None:
        p = np.asarray(prediction, dtype=np.int64)
        cells = np.bincount(codes * 4 + y * 2 + p, minlength=n_codes * 4).reshape(n_codes, 2, 2)
        fields["confusion_d"] = np.einsum("fc,cij->fij", m, cells)
        fields["confusion"] = cells.sum(axis=0)
    if group is not None:
        g = np.asarray(group, dtype=np.int64)
        per_group = np.bincount((codes * n_groups + g) * 2 + y, minlength=n_codes * n_groups * 2)
        per_group = per_group.reshape(n_codes, n_groups, 2)
        fields["group_d"] = np.einsum("fc,cgk->fgk", m, per_group)
        fields["group"] = per_group.sum(axis=0)
        if prediction is not None:
            p = np.asarray(prediction, dtype=np.int64)
            per_group = np.bincount((codes * n_groups + g) * 2 + p, minlength=n_codes * n_groups * 2)
            per_group = per_group.reshape(n_codes, n_groups, 2)
            fields["group_pred_d"] = np.einsum("fc,cgk->fgk", m, per_group)
            fields["group_pred"] = per_group.sum(axis=0)
    return FacetCounts(n=n, n_d=n_d, n_d1=n_d1, n_1=int(y.sum()), **fields)  # type: ignore[arg-type]


# -- pre-training ---------------------------------------------------------------------------------------------


def class_imbalance(c: FacetCounts) -> np.ndarray:
    """CI = (n_a - n_d) / (n_a + n_d)."""
    return divide(c.n_a - c.n_d, c.n)


def _proportions(c: FacetCounts) -> tuple[np.ndarray, np.ndarray]:
    return divide(c.n_a1, c.n_a), divide(c.n_d1, c.n_d)


def difference_in_positive_proportions(c: FacetCounts) -> np.ndarray:
    """DPL = q_a - q_d, with q = n^(1) / n."""
    q_a, q_d = _proportions(c)
    return q_a - q_d


def _label_distributions(c: FacetCounts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``P_a``, ``P_d`` as ``(F, 2)`` over (negative, positive) and the mask of values present in both."""
    q_a, q_d = _proportions(c)
    p_a = np.stack([1 - q_a, q_a], axis=1)
    p_d = np.stack([1 - q_d, q_d], axis=1)
    both = (p_a > 0) & (p_d > 0)
    return p_a, p_d, both


def _undefined_without_overlap(values: np.ndarray, both: np.ndarray) -> np.ndarray:
    """NaN (reported as an error) where no label value occurs in both facets: nothing to compare."""
    return np.where(both.any(axis=1), values, np.nan)


def _safe_log_ratio(p: np.ndarray, q: np.ndarray, mask: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(mask, p * np.log(np.where(mask, p / np.where(mask, q, 1.0), 1.0)), 0.0)


def kl_divergence(c: FacetCounts) -> np.ndarray:
    """KL = Σ_y P_a(y) log(P_a(y) / P_d(y))."""
    p_a, p_d, both = _label_distributions(c)
    return _undefined_without_overlap(_safe_log_ratio(p_a, p_d, both).sum(axis=1), both)


def js_divergence(c: FacetCounts) -> np.ndarray:
    """JS = ½ [KL(P_a, P) + KL(P_d, P)], P = ½ (P_a + P_d)."""
    p_a, p_d, both = _label_distributions(c)
    p = 0.5 * (p_a + p_d)
    js = 0.5 * (_safe_log_ratio(p_a, p, both).sum(axis=1) + _safe_log_ratio(p_d, p, both).sum(axis=1))
    return _undefined_without_overlap(js, both)


def lp_norm(c: FacetCounts, order: float = 2.0) -> np.ndarray:
    """LP = (Σ_y |P_a(y) - P_d(y)|^p)^(1/p), p = 2."""
    p_a, p_d, both = _label_distributions(c)
    gap = np.where(both, np.abs(p_a - p_d), 0.0)
    norm = gap.max(axis=1) if np.isinf(order) else (gap**order).sum(axis=1) ** (1.0 / order)
    return _undefined_without_overlap(norm, both)


def total_variation_distance(c: FacetCounts) -> np.ndarray:
    """TVD = ½ Σ_y |P_a(y) - P_d(y)|."""
    return 0.5 * lp_norm(c, 1.0)


def kolmogorov_smirnov(c: FacetCounts) -> np.ndarray:
    """KS = max_y |P_a(y) - P_d(y)|."""
    return lp_norm(c, np.inf)


def conditional_demographic_disparity(group_d: np.ndarray, group: np.ndarray) -> np.ndarray:
    """CDD = (1/n) Σ_i n_i DD_i, DD_i = n_d,i^(0) / n_i^(0) - n_d,i^(1) / n_i^(1) (0 where a denominator is 0).

    Args:
        group_d: ``(F, G, 2)`` facet-d rows per group, by (negative, positive) outcome.
        group: ``(G, 2)`` all rows per group, by outcome.
    """
    rejected = np.where(group[None, :, 0] > 0, group_d[:, :, 0] / np.maximum(group[None, :, 0], 1), 0.0)
    accepted = np.where(group[None, :, 1] > 0, group_d[:, :, 1] / np.maximum(group[None, :, 1], 1), 0.0)
    sizes = group.sum(axis=1).astype(np.float64)
    return divide(((rejected - accepted) * sizes[None, :]).sum(axis=1), sizes.sum())


# -- post-training --------------------------------------------------------------------------------------------


def confusion_cells(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """TP, FP, FN, TN from ``(F, 2, 2)`` ``[label, prediction]`` counts."""
    return confusion[:, 1, 1], confusion[:, 0, 1], confusion[:, 1, 0], confusion[:, 0, 0]


def _both(c: FacetCounts) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    assert c.confusion_d is not None
    return confusion_cells(c.confusion_a), confusion_cells(c.confusion_d)


def dppl(c: FacetCounts) -> np.ndarray:
    """DPPL = n̂_a^(1) / n_a - n̂_d^(1) / n_d."""
    (tp_a, fp_a, _, _), (tp_d, fp_d, _, _) = _both(c)
    return divide(tp_a + fp_a, c.n_a) - divide(tp_d + fp_d, c.n_d)


def disparate_impact(c: FacetCounts) -> np.ndarray:
    """DI = (n̂_d^(1) / n_d) / (n̂_a^(1) / n_a)."""
    (tp_a, fp_a, _, _), (tp_d, fp_d, _, _) = _both(c)
    return divide(divide(tp_d + fp_d, c.n_d), divide(tp_a + fp_a, c.n_a))


def dcacc(c: FacetCounts) -> np.ndarray:
    """DCAcc = c_a - c_d, c = n^(1) / n̂^(1) (observed over predicted positives)."""
    (tp_a, fp_a, fn_a, _), (tp_d, fp_d, fn_d, _) = _both(c)
    return difference(divide(tp_a + fn_a, tp_a + fp_a), divide(tp_d + fn_d, tp_d + fp_d))


def dcr(c: FacetCounts) -> np.ndarray:
    """DCR = r_d - r_a, r = n^(0) / n̂^(0) (observed over predicted negatives)."""
    (_, fp_a, fn_a, tn_a), (_, fp_d, fn_d, tn_d) = _both(c)
    return difference(divide(tn_d + fp_d, tn_d + fn_d), divide(tn_a + fp_a, tn_a + fn_a))


def specificity_difference(c: FacetCounts) -> np.ndarray:
    """SD = TN_d / (TN_d + FP_d) - TN_a / (TN_a + FP_a)."""
    (_, fp_a, _, tn_a), (_, fp_d, _, tn_d) = _both(c)
    return difference(divide(tn_d, tn_d + fp_d), divide(tn_a, tn_a + fp_a))


def recall_difference(c: FacetCounts) -> np.ndarray:
    """RD = TP_a / (TP_a + FN_a) - TP_d / (TP_d + FN_d)."""
    (tp_a, _, fn_a, _), (tp_d, _, fn_d, _) = _both(c)
    return difference(divide(tp_a, tp_a + fn_a), divide(tp_d, tp_d + fn_d))


def dar(c: FacetCounts) -> np.ndarray:
    """DAR = TP_a / (TP_a + FP_a) - TP_d / (TP_d + FP_d)."""
    (tp_a, fp_a, _, _), (tp_d, fp_d, _, _) = _both(c)
    return difference(divide(tp_a, tp_a + fp_a), divide(tp_d, tp_d + fp_d))


def drr(c: FacetCounts) -> np.ndarray:
    """DRR = TN_d / (TN_d + FN_d) - TN_a / (TN_a + FN_a)."""
    (_, _, fn_a, tn_a), (_, _, fn_d, tn_d) = _both(c)
    return difference(divide(tn_d, tn_d + fn_d), divide(tn_a, tn_a + fn_a))


def accuracy_difference(c: FacetCounts) -> np.ndarray:
    """AD = ACC_a - ACC_d, ACC = (TP + TN) / n."""
    (tp_a, fp_a, fn_a, tn_a), (tp_d, fp_d, fn_d, tn_d) = _both(c)
    return difference(
        divide(tp_a + tn_a, tp_a + fp_a + fn_a + tn_a), divide(tp_d + tn_d, tp_d + fp_d + fn_d + tn_d)
    )


def treatment_equality(c: FacetCounts) -> np.ndarray:
    """TE = FN_d / FP_d - FN_a / FP_a."""
    (_, fp_a, fn_a, _), (_, fp_d, fn_d, _) = _both(c)
    return difference(divide(fn_d, fp_d), divide(fn_a, fp_a))


def generalized_entropy(label: np.ndarray, prediction: np.ndarray, alpha: float = GE_ALPHA) -> float:
    """GE(α) = 1 / (n α (α - 1)) Σ_i [(b_i / b̄)^α - 1], b_i = ŷ_i - y_i + 1, α = 2.

    Raises:
        MetricError: no rows, or every prediction a false negative (b̄ = 0).
    """
    y = np.asarray(label, dtype=np.float64)
    p = np.asarray(prediction, dtype=np.float64)
    n = y.shape[0]
    if n == 0:
        raise MetricError("no rows")
    # b takes only the values 0, 1, 2: count them instead of raising a million ratios to a power
    counts = np.bincount((p - y + 1).astype(np.int64), minlength=3)
    mean = (counts[1] + 2 * counts[2]) / n
    if mean == 0:
        raise MetricError("every prediction is a false negative; GE is undefined")
    values = np.array([0.0, 1.0, 2.0]) / mean
    return float((counts * (values**alpha - 1)).sum() / (n * alpha * (alpha - 1)))


def flip_test(features: np.ndarray, facet_d: np.ndarray, prediction: np.ndarray) -> float:
    """FT = (F⁺ - F⁻) / n_d over a k-nearest-neighbour counterfactual.

    A k-NN classifier (k = 5, or 1 when facet a has ≤ 9 rows) is fitted on facet a's features and the model's
    predictions for them, then predicts facet d's rows: what the model would have answered had they been in a.
    F⁺ counts rows of d that the model predicts negative while their a-neighbours are predicted positive; F⁻
    the rows predicted positive whose a-neighbours are predicted negative (Clarify's documented definition;
    its library returns the opposite sign, see ``docs/bias.md``).

    Args:
        features: ``(n_samples, n_features)`` float, no missing values.
        facet_d: ``(n_samples,)`` bool.
        prediction: ``(n_samples,)`` bool.

    Raises:
        MetricError: an empty facet or no features.
    """
    from sklearn.neighbors import KNeighborsClassifier

    d = np.asarray(facet_d, dtype=bool)
    p = np.asarray(prediction, dtype=bool)
    n_d, n_a = int(d.sum()), int((~d).sum())
    if n_d == 0 or n_a == 0:
        raise MetricError("facet d or facet a is empty")
    if features.ndim != 2 or features.shape[1] == 0:
        raise MetricError("no numeric feature columns for the nearest-neighbour counterfactual")
    neighbours = FT_NEIGHBORS if n_a > FT_SMALL_FACET else FT_MIN_NEIGHBORS
    knn = KNeighborsClassifier(n_neighbors=min(neighbours, n_a))
    knn.fit(features[~d], p[~d])
    counterfactual = knn.predict(features[d]).astype(bool)
    model = p[d]
    flips_up = int((~model & counterfactual).sum())  # F+: d rejected, a-neighbours accepted
    flips_down = int((model & ~counterfactual).sum())  # F-: d accepted, a-neighbours rejected
    return (flips_up - flips_down) / n_d


PRE_TRAINING_FUNCTIONS: dict[str, Callable[[FacetCounts], np.ndarray]] = {
    "CI": class_imbalance,
    "DPL": difference_in_positive_proportions,
    "KL": kl_divergence,
    "JS": js_divergence,
    "LP": lp_norm,
    "TVD": total_variation_distance,
    "KS": kolmogorov_smirnov,
}
POST_TRAINING_FUNCTIONS: dict[str, Callable[[FacetCounts], np.ndarray]] = {
    "DPPL": dppl,
    "DI": disparate_impact,
    "DCAcc": dcacc,
    "DCR": dcr,
    "SD": specificity_difference,
    "RD": recall_difference,
    "DAR": dar,
    "DRR": drr,
    "AD": accuracy_difference,
    "TE": treatment_equality,
}

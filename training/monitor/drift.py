"""Distances between a baseline's distribution and the current one, over the same bins.

* PSI, the population stability index ``Σ (q − p) · ln(q / p)``: the industry's drift score (under 0.1 stable,
  0.1–0.25 a moderate shift, over 0.25 a major one, by the usual reading).  Empty bins would make it infinite,
  so both sides get half a count in every bin first (additive smoothing; for a bin of 0 in 1,000 that is a
  share of 0.0005).
* Jensen–Shannon distance (scipy, base 2): symmetric, bounded in ``[0, 1]``, defined with empty bins.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import jensenshannon

SMOOTHING = 0.5


def shares(counts: np.ndarray, smoothing: float = 0.0) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64) + smoothing
    total = counts.sum()
    return counts / total if total > 0 else np.full(len(counts), 1.0 / max(1, len(counts)))


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """The population stability index of ``actual`` counts against ``expected`` counts (same bins)."""
    p, q = shares(expected, SMOOTHING), shares(actual, SMOOTHING)
    return float(np.sum((q - p) * np.log(q / p)))


def js_distance(expected: np.ndarray, actual: np.ndarray) -> float:
    """The Jensen–Shannon distance (base 2) between two count vectors over the same bins."""
    p, q = shares(expected), shares(actual)
    return float(jensenshannon(p, q, base=2))

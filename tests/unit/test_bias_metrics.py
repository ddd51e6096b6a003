"""Every Clarify bias metric against values computed by hand on a ten-row table.

Facet d is rows 0-3, facet a rows 4-9 (see the table in ``_frame``); the comments give each hand computation.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from training.bias import FacetSpec, LabelSpec, bias_analysis
from training.bias import metrics as bm
from training.bias.analysis import metric_table


def _frame() -> pd.DataFrame:
    #            d   d   d   d   a   a   a   a   a    a
    return pd.DataFrame(
        {
            "facet": ["d", "d", "d", "d", "a", "a", "a", "a", "a", "a"],
            "y": [1, 1, 1, 0, 1, 1, 0, 0, 0, 0],
            "yhat": [1, 0, 1, 1, 1, 1, 1, 1, 0, 0],
            "group": ["A", "A", "B", "B", "A", "A", "A", "B", "B", "B"],
            "x": [0.0, 10.0, 20.0, 30.0, 1.0, 11.0, 21.0, 31.0, 100.0, 200.0],
        }
    )


# n_a = 6, n_d = 4; observed positives n_a1 = 2, n_d1 = 3; q_a = 1/3, q_d = 3/4; P_a = (2/3, 1/3), P_d = (1/4, 3/4)
# d: TP 2, FN 1, FP 1, TN 0 (predicted positives 3, negatives 1); a: TP 2, FN 0, FP 2, TN 2 (4 and 2)
_JS_P = (11 / 24, 13 / 24)
EXPECTED_PRE = {
    "CI": (6 - 4) / 10,
    "DPL": 1 / 3 - 3 / 4,
    "KL": 2 / 3 * math.log((2 / 3) / (1 / 4)) + 1 / 3 * math.log((1 / 3) / (3 / 4)),
    "JS": 0.5
    * (
        2 / 3 * math.log((2 / 3) / _JS_P[0])
        + 1 / 3 * math.log((1 / 3) / _JS_P[1])
        + 1 / 4 * math.log((1 / 4) / _JS_P[0])
        + 3 / 4 * math.log((3 / 4) / _JS_P[1])
    ),
    "LP": math.sqrt(2 * (5 / 12) ** 2),
    "TVD": 0.5 * (5 / 12 + 5 / 12),
    "KS": 5 / 12,
    # group A: 4 positives (2 in d), 1 negative (0 in d): DD = 0/1 - 2/4; group B: 1 positive (d), 4 negatives (1 in d)
    "CDDL": (5 * (0 / 1 - 2 / 4) + 5 * (1 / 4 - 1 / 1)) / 10,
}
EXPECTED_POST = {
    "DPPL": 4 / 6 - 3 / 4,
    "DI": (3 / 4) / (4 / 6),
    "DCAcc": 2 / 4 - 3 / 3,  # observed / predicted positives, a - d
    "DCR": 1 / 1 - 4 / 2,  # observed / predicted negatives, d - a
    "SD": 0 / (0 + 1) - 2 / (2 + 2),  # TN/(TN+FP), d - a
    "RD": 2 / (2 + 0) - 2 / (2 + 1),  # TP/(TP+FN), a - d
    "DAR": 2 / (2 + 2) - 2 / (2 + 1),  # TP/(TP+FP), a - d
    "DRR": 0 / (0 + 1) - 2 / (2 + 0),  # TN/(TN+FN), d - a
    "AD": 4 / 6 - 2 / 4,
    "TE": 1 / 1 - 0 / 2,  # FN/FP, d - a
    # predictions: group A 4 positive (1 in d), 1 negative (in d); group B 3 positive (2 in d), 2 negative (0 in d)
    "CDDPL": (5 * (1 / 1 - 1 / 4) + 5 * (0 / 2 - 2 / 3)) / 10,
    # b = yhat - y + 1 = [1,0,1,2, 1,1,2,2,1,1]: mean 1.2, Σb² = 18 → (18 / 1.44 - 10) / (10 · 2 · 1)
    "GE": (18 / 1.44 - 10) / 20,
    # 1-NN in a (6 rows ≤ 9): each d row's neighbour is the a row at x + 1, all predicted positive.  Row 1 is
    # predicted negative with a positive neighbour (F+ = 1), none the other way (F- = 0): (1 - 0) / 4
    "FT": 1 / 4,
}


@pytest.fixture(scope="module")
def analysis() -> dict:
    frame = _frame()
    return bias_analysis(
        frame,
        LabelSpec("y", ("1",)),
        [FacetSpec("facet", ("d",))],
        group_variable="group",
        predictions=frame["yhat"].rename("yhat"),
    )


@pytest.mark.parametrize("name", sorted(EXPECTED_PRE))
def test_pre_training_metric_matches_hand_computation(analysis: dict, name: str) -> None:
    table = metric_table(analysis, "pre_training", "facet")
    assert table.loc["d", name] == pytest.approx(EXPECTED_PRE[name], rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("name", sorted(EXPECTED_POST))
def test_post_training_metric_matches_hand_computation(analysis: dict, name: str) -> None:
    table = metric_table(analysis, "post_training", "facet")
    assert table.loc["d", name] == pytest.approx(EXPECTED_POST[name], rel=1e-12, abs=1e-12)


def test_every_documented_metric_is_reported_in_name_order(analysis: dict) -> None:
    pre = analysis["pre_training_bias_metrics"]["facets"]["facet"][0]
    post = analysis["post_training_bias_metrics"]["facets"]["facet"][0]
    assert [m["name"] for m in pre["metrics"]] == sorted(bm.PRE_TRAINING) == sorted(EXPECTED_PRE)
    assert [m["name"] for m in post["metrics"]] == sorted(bm.POST_TRAINING) == sorted(EXPECTED_POST)
    assert all(set(m) == {"name", "description", "value"} for m in pre["metrics"] + post["metrics"])
    assert pre["value_or_threshold"] == "d"
    assert analysis["pre_training_bias_metrics"]["label"] == "y"
    assert analysis["pre_training_bias_metrics"]["label_value_or_threshold"] == "1"


@pytest.mark.parametrize(
    ("numerator", "denominator", "expected"),
    [(0, 0, 0.0), (3, 0, math.inf), (-3, 0, -math.inf), (3, 4, 0.75)],
    ids=["0/0", "x/0", "-x/0", "x/y"],
)
def test_division_follows_clarify(numerator: float, denominator: float, expected: float) -> None:
    assert float(bm.divide(numerator, denominator)) == expected


def test_a_difference_of_two_infinite_ratios_is_zero() -> None:
    assert bm.difference(np.array([math.inf]), np.array([math.inf]))[0] == 0.0
    assert bm.difference(np.array([math.inf]), np.array([1.0]))[0] == math.inf


def test_zero_division_conventions_in_the_report() -> None:
    # facet d: no false positive but a false negative → FN_d / FP_d = ∞; facet a: 0 / 0 = 0
    frame = pd.DataFrame({"f": ["d", "d", "a", "a"], "y": [1, 0, 1, 0], "p": [0, 0, 1, 0]})
    analysis = bias_analysis(
        frame,
        LabelSpec("y", ("1",)),
        [FacetSpec("f", ("d",))],
        predictions=frame["p"],
        methods=["TE", "DI", "DCAcc"],
    )
    metrics = {
        m["name"]: m["value"] for m in analysis["post_training_bias_metrics"]["facets"]["f"][0]["metrics"]
    }
    assert metrics["TE"] == math.inf  # serialized as "Infinity" in analysis.json
    assert metrics["DI"] == 0.0  # d predicts no positive: 0 / (1/2)
    assert metrics["DCAcc"] == -math.inf  # c_a = 1/1, c_d = 1/0 = ∞


def test_label_distribution_metrics_without_a_common_label_value_are_errors() -> None:
    frame = pd.DataFrame({"f": ["d", "d", "a", "a"], "y": [1, 1, 0, 0]})
    analysis = bias_analysis(frame, LabelSpec("y", ("1",)), [FacetSpec("f", ("d",))])
    metrics = {m["name"]: m for m in analysis["pre_training_bias_metrics"]["facets"]["f"][0]["metrics"]}
    for name in ("KL", "JS", "LP", "TVD", "KS"):
        assert metrics[name]["value"] is None
        assert "both facets" in metrics[name]["error"]
    assert metrics["DPL"]["value"] == -1.0
    assert "group variable" in metrics["CDDL"]["error"]


def test_generalized_entropy_refuses_all_false_negatives() -> None:
    with pytest.raises(bm.MetricError, match="false negative"):
        bm.generalized_entropy(np.array([1, 1]), np.array([0, 0]))


def test_counts_combine_codes_into_facets() -> None:
    codes = np.array([0, 1, 2, 2, 1, 0])
    label = np.array([1, 0, 1, 1, 0, 0], dtype=bool)
    counts = bm.count(codes, 3, np.eye(3, dtype=np.int64), label)
    assert counts.n_d.tolist() == [2, 2, 2]
    assert counts.n_d1.tolist() == [1, 0, 2]
    assert counts.n_a.tolist() == [4, 4, 4]
    assert counts.n_a1.tolist() == [2, 3, 1]

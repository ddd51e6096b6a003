"""`bias_analysis` on crafted frames: missing values are counted and left out, several positive label values
(training/bias/analysis.py, specs.py)."""

from __future__ import annotations

import pandas as pd

from training.bias import FacetSpec, LabelSpec, bias_analysis
from training.bias.analysis import metric_table


def test_missing_facet_and_label_values_are_counted_and_left_out() -> None:
    frame = pd.DataFrame(
        {
            "f": ["x", "y", None, "x", "y", "x", "y", "x"],
            "y": ["pos", "neg", "pos", None, "pos", "neg", "neg", "pos"],
        }
    )
    analysis = bias_analysis(frame, LabelSpec("y", ("pos",)), [FacetSpec("f")])
    details = analysis["details"]
    assert details["excluded"] == {"label_missing": 1, "facet_missing": {"f": 1}}
    assert any("1 row(s) without a label" in w for w in details["warnings"])
    assert any("without a value for facet 'f'" in w for w in details["warnings"])
    clean = frame.dropna().reset_index(drop=True)
    expected = bias_analysis(clean, LabelSpec("y", ("pos",)), [FacetSpec("f")])
    pd.testing.assert_frame_equal(
        metric_table(analysis, "pre_training", "f"), metric_table(expected, "pre_training", "f")
    )


def test_multiclass_label_through_several_positive_values() -> None:
    frame = pd.DataFrame({"f": ["a", "a", "b", "b"], "rating": [5, 4, 3, 1]})
    analysis = bias_analysis(frame, LabelSpec("rating", ("4", "5")), [FacetSpec("f", ("b",))])
    table = metric_table(analysis, "pre_training", "f")
    assert table.loc["b", "DPL"] == 1.0  # facet a all positive, facet d none
    assert analysis["pre_training_bias_metrics"]["label_value_or_threshold"] == "4,5"
    threshold = bias_analysis(frame, LabelSpec("rating", threshold=3), [FacetSpec("f", ("b",))])
    assert metric_table(threshold, "pre_training", "f").loc["b", "DPL"] == 1.0

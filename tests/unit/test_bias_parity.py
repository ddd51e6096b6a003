"""Parity with Amazon's ``smclarify`` library on the bundled reviews, for every metric it implements.

smclarify 0.5 (its last release) rejects pandas 3's ``str`` dtype, so it gets object columns.  It names DCAcc
"DCA", and its FT has the opposite sign of Clarify's documented definition (F⁺ − F⁻), which we follow.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from training.bias import FacetSpec, LabelSpec, bias_analysis
from training.bias import metrics as bm

smclarify_report = pytest.importorskip("smclarify.bias.report")

FEATURES = ["clothing_id", "age", "rating", "recommended_ind", "positive_feedback_count"]
FACETS = [
    FacetSpec("division_name"),  # one-vs-rest over every value
    FacetSpec("class_name", ("Dresses", "Knits")),  # sensitive values
    FacetSpec("age", threshold=40),  # continuous
]
OUR_NAME = {"DCA": "DCAcc"}
SIGN = {"FT": -1.0}


@pytest.fixture(scope="module")
def reviews(prepared_reviews: pd.DataFrame) -> pd.DataFrame:
    """Reviews with a facet and group value in every row, and deterministic noisy predictions."""
    frame = prepared_reviews.dropna(subset=["division_name", "department_name", "class_name"])
    frame = frame[[*FEATURES, "division_name", "department_name", "class_name", "sentiment"]].reset_index(
        drop=True
    )
    rng = np.random.default_rng(7)
    noise = rng.choice(["positive", "neutral", "negative"], len(frame))
    frame["predicted"] = np.where(rng.random(len(frame)) < 0.8, frame["sentiment"], noise)
    return frame


def _smclarify(frame: pd.DataFrame, facet: FacetSpec, stage: str) -> dict[str, dict[str, float]]:
    """smclarify's values as {value_or_threshold: {metric: value}}; FT sees the same numeric feature columns."""
    objects = frame.astype({c: object for c in frame.columns if frame[c].dtype == "str"})
    data = objects[[*FEATURES, facet.name, "sentiment", "predicted"]].loc[
        :, lambda f: ~f.columns.duplicated()
    ]
    values: list[str] | list[float] | None = list(facet.values) or None
    if facet.threshold is not None:
        values = [facet.threshold]
        data[facet.name] = data[facet.name].astype("float64")  # smclarify sees few-valued ints as categories
    label = smclarify_report.LabelColumn("sentiment", data["sentiment"], ["positive"])
    kwargs = {"group_variable": objects["department_name"]}
    if stage == "post_training":
        kwargs["predicted_label_column"] = smclarify_report.LabelColumn(
            "predicted", data["predicted"], ["positive"]
        )
        stage_type = smclarify_report.StageType.POST_TRAINING
    else:
        stage_type = smclarify_report.StageType.PRE_TRAINING
    logging.disable(logging.CRITICAL)  # smclarify logs every metric at INFO
    try:
        result = smclarify_report.bias_report(
            data, smclarify_report.FacetColumn(facet.name, values), label, stage_type, **kwargs
        )
    finally:
        logging.disable(logging.NOTSET)
    return {
        entry["value_or_threshold"]: {
            OUR_NAME.get(m["name"], m["name"]): m["value"] for m in entry["metrics"]
        }
        for entry in result
    }


@pytest.fixture(scope="module")
def ours(reviews: pd.DataFrame) -> dict:
    return bias_analysis(
        reviews,
        LabelSpec("sentiment", ("positive",)),
        FACETS,
        group_variable="department_name",
        predictions=reviews["predicted"],
    )


@pytest.mark.parametrize("stage", ["pre_training", "post_training"])
@pytest.mark.parametrize("facet", FACETS, ids=[f.name for f in FACETS])
def test_every_metric_matches_smclarify(
    reviews: pd.DataFrame, ours: dict, facet: FacetSpec, stage: str
) -> None:
    theirs = _smclarify(reviews, facet, stage)
    mine = {
        entry["value_or_threshold"]: {m["name"]: m["value"] for m in entry["metrics"]}
        for entry in ours[f"{stage}_bias_metrics"]["facets"][facet.name]
    }
    if facet.threshold is not None:  # one group: smclarify names it from float breaks, "(40.0, 99.0]"
        assert list(mine) == ["(40, 99]"] and list(theirs) == ["(40.0, 99.0]"]
        theirs = {"(40, 99]": theirs["(40.0, 99.0]"]}
    assert set(mine) == set(theirs)  # the same groups, named the same ("General", "Dresses,Knits", ...)
    expected_names = set(bm.PRE_TRAINING if stage == "pre_training" else bm.POST_TRAINING)
    for group, metrics in theirs.items():
        assert set(metrics) == expected_names
        for name, value in metrics.items():
            assert value is not None, f"smclarify failed on {name}"
            expected = float(value) * SIGN.get(name, 1.0)
            assert mine[group][name] == pytest.approx(expected, rel=1e-9, abs=1e-12), (group, name)

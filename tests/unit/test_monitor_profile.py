"""Streaming statistics in Model Monitor's shape, drift distances, the reservoir and the thresholds."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from services.artifacts import InputColumn
from training.monitor.config import Thresholds, parse_duration
from training.monitor.drift import js_distance, psi
from training.monitor.errors import MonitorError
from training.monitor.profile import FLUSH_ROWS, Bins, Layout, Profile, value_type
from training.monitor.sample import Reservoir
from training.monitor.vocabulary import Vocabulary

INPUTS = [
    InputColumn(name="text", dtype="string", role="text"),
    InputColumn(name="colour", dtype="string", role="categorical"),
    InputColumn(name="age", dtype="float", role="numeric"),
]
VOCABULARY = Vocabulary("text", "test", r"[a-z]+", True, frozenset({"nice", "dress", "bad"}))


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("x", "String"),
        ("", "String"),
        (3, "Integral"),
        (3.0, "Integral"),
        (3.5, "Fractional"),
        (np.float32(2.5), "Fractional"),
        (True, "Unknown"),
        ([1], "Unknown"),
        (None, None),
        (math.nan, None),
    ],
    ids=["str", "empty", "int", "whole-float", "float", "numpy", "bool", "list", "none", "nan"],
)
def test_value_types_follow_model_monitor(value: object, kind: str | None) -> None:
    assert value_type(value) == kind


def test_bins_count_values_by_quantile_edges_and_by_category() -> None:
    bins = Bins.quantiles(np.arange(1, 101, dtype=float))
    assert len(bins.edges) == 9 and bins.size == 10
    assert bins.counts(np.arange(1, 101, dtype=float)).tolist() == [10] * 10
    assert bins.counts(np.array([-5.0, 1e9])).tolist() == [1] + [0] * 8 + [1]
    top = Bins.top({"red": 5, "blue": 9, "green": 1})
    assert top.categories[:2] == ("blue", "red")
    assert top.counts(["red", "red", "purple"]).tolist() == [0, 2, 0, 1]
    assert Bins.from_json(top.json(np.zeros(4))) == top and Bins.from_json(bins.json(np.zeros(10))) == bins


def _rows(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    texts = rng.choice(["Nice dress", "bad bad zip", "NICE", ""], n)
    colours = rng.choice(["red", "blue"], n)
    ages = rng.integers(18, 80, n).astype(float)
    rows = np.empty((n, 3), dtype=object)
    rows[:, 0], rows[:, 1], rows[:, 2] = texts, colours, ages
    return rows


def test_a_profile_writes_model_monitor_statistics_with_text_extensions() -> None:
    rows = _rows(10_000)
    rows[0, 2] = None
    rows[1, 2] = 40.5
    rows[2, 0] = None
    layout = Layout(
        values={"colour": Bins(categories=("red", "blue")), "age": Bins.quantiles(np.arange(18, 80.0))},
        lengths={"text": Bins(edges=(0.0, 5.0))},
    )
    profile = Profile(
        INPUTS,
        labels=["negative", "positive"],
        layout=layout,
        vocabularies={"text": VOCABULARY},
        sample_size=100,
    )
    absent = np.zeros(rows.shape, dtype=bool)
    absent[2, 0] = True
    labels: list[str | None] = ["positive"] * 9_999 + [None]
    profile.add(rows, absent=absent, extra=[["x"]] + [[]] * 9_999, predicted=labels)
    statistics = profile.statistics({"source": "test"})

    assert statistics["version"] == 0 and statistics["dataset"] == {"item_count": 10_000, "source": "test"}
    text, colour, age = statistics["features"]
    assert text["inferred_type"] == "String" and colour["inferred_type"] == "String"
    assert text["string_statistics"]["common"] == {"num_present": 9_999, "num_missing": 1}
    assert text["data_types"] == {"String": 9_999, "absent": 1}
    assert colour["string_statistics"]["distribution"]["categorical"]["buckets"][0]["value"] in (
        "red",
        "blue",
    )
    assert colour["bins"]["categories"] == ["red", "blue"] and sum(colour["bins"]["counts"]) == 10_000
    assert age["inferred_type"] == "Fractional"  # one value has a fraction
    numbers = age["numerical_statistics"]
    assert numbers["common"] == {"num_present": 9_999, "num_missing": 1}
    assert 18 <= numbers["min"] < numbers["mean"] < numbers["max"] <= 79
    assert len(numbers["distribution"]["kll"]["buckets"]) == 10
    assert sum(b["count"] for b in numbers["distribution"]["kll"]["buckets"]) == pytest.approx(9_999, abs=1)
    length = text["text_statistics"]["length"]
    assert length["unit"] == "characters" and set(length["quantiles"]) == {
        "p01",
        "p05",
        "p25",
        "p50",
        "p75",
        "p95",
        "p99",
    }
    assert length["bins"]["edges"] == [0.0, 5.0] and sum(length["bins"]["counts"]) == 9_999
    oov = text["text_statistics"]["oov"]
    assert 0 < oov["rate"] < 1 and oov["vocabulary"]["size"] == 3  # "zip" is the only unknown word
    assert statistics["extra_columns"] == {"records": 1, "fields": {"x": 1}}
    assert statistics["predictions"]["num_missing"] == 1
    assert statistics["predictions"]["distribution"]["categorical"]["buckets"] == [
        {"value": "negative", "count": 0},
        {"value": "positive", "count": 9_999},
    ]
    assert len(profile.sample.items) == 100  # bounded, whatever the stream


def test_rows_added_one_by_one_give_the_same_statistics_as_in_blocks() -> None:
    rows = _rows(FLUSH_ROWS + 300, seed=3)
    one, many = (
        Profile(INPUTS, vocabularies={"text": VOCABULARY}),
        Profile(INPUTS, vocabularies={"text": VOCABULARY}),
    )
    one.add(rows)
    for row in rows:
        many.add(row[None, :])

    def exact(profile: Profile) -> list[object]:
        # KLL sketches depend on the order of updates (their compaction is randomized): compare the rest
        features = profile.statistics()["features"]
        text = features[0]["text_statistics"]
        return [
            [f["data_types"] for f in features],
            [f.get("bins") for f in features],
            text["oov"],
            text["length"]["sum"],
            features[2]["numerical_statistics"]["sum"],
            profile.sample.items,
        ]

    assert exact(one) == exact(many)


def test_without_vocabulary_the_oov_rate_says_why() -> None:
    profile = Profile(INPUTS[:1], skipped={"text": "skipped: WordPiece"})
    profile.add(np.array([["a text"]], dtype=object))
    assert profile.statistics()["features"][0]["text_statistics"]["oov"] == {"skipped": "skipped: WordPiece"}


def test_psi_and_js_are_zero_for_the_same_shape_and_grow_with_a_shift() -> None:
    base = np.array([100, 200, 700])
    assert psi(base, base) == 0 and psi(base, base * 3) < 1e-5
    assert js_distance(base, base * 3) == pytest.approx(0, abs=1e-7)
    assert psi(base, np.array([700, 200, 100])) > 1 > js_distance(base, np.array([700, 200, 100])) > 0.3
    assert math.isfinite(psi(base, np.array([0, 0, 1000])))  # empty bins are smoothed


def test_the_reservoir_is_bounded_seeded_and_uniform() -> None:
    first, second = Reservoir[int](100, seed=7), Reservoir[int](100, seed=7)
    first.add(range(100_000))
    second.add(range(100_000))
    assert first.items == second.items and len(first.items) == 100 and first.seen == 100_000
    counts = Counter(item // 25_000 for item in first.items)  # four quarters of the stream
    assert all(10 <= counts[q] <= 40 for q in range(4))


def test_thresholds_round_trip_through_monitoring_config() -> None:
    thresholds = Thresholds(text_length_psi=0.3, datatype_check_threshold=0.2, baseline_drift_psi=0.5)
    config = thresholds.monitoring_config()
    assert config["datatype_check_threshold"] == 0.2
    assert config["distribution_constraints"]["comparison_threshold"] == 0.5
    assert Thresholds.from_monitoring_config(config) == thresholds
    assert Thresholds.from_monitoring_config({}) == Thresholds()


def test_threshold_overrides_are_checked() -> None:
    thresholds = Thresholds().overridden(["text-length-psi=0.4", "window=2h", "min_records=10"])
    assert (thresholds.text_length_psi, thresholds.window_width.total_seconds(), thresholds.min_records) == (
        0.4,
        7200,
        10,
    )
    with pytest.raises(MonitorError, match="unknown threshold 'psi'"):
        Thresholds().overridden(["psi=1"])
    with pytest.raises(MonitorError, match="NAME=VALUE"):
        Thresholds().overridden(["0.3"])
    with pytest.raises(MonitorError, match="domain_auc"):
        Thresholds().overridden(["domain_auc=0.2"])
    with pytest.raises(MonitorError, match="window"):
        Thresholds().overridden(["window=soon"])
    with pytest.raises(MonitorError, match=r"constraints\.json: oov_rate_increase"):
        Thresholds.from_monitoring_config({"tripod": {"oov_rate_increase": 7}})
    assert parse_duration("45m").total_seconds() == 2700

"""Which production variant answers (``services/monitoring/variants.py``): weights, sticky keys, named variants,
and the variants file's checks."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from services.errors import TripodError, UnknownVariant
from services.monitoring.variants import VariantTable, read_variants, served_variants


def test_weighted_choice_follows_the_weights_within_binomial_tolerance() -> None:
    table = VariantTable.build({"a": 3.0, "b": 1.0, "off": 0.0})
    rng = random.Random(7)
    n = 20_000
    counts = Counter(table.choose(rng) for _ in range(n))
    expected_b = n * 0.25
    assert abs(counts["b"] - expected_b) < 4 * (n * 0.25 * 0.75) ** 0.5
    assert counts["off"] == 0 and set(counts) == {"a", "b"}
    assert table.share("a") == pytest.approx(0.75) and table.share("off") == 0.0


def test_a_sticky_key_always_lands_on_the_same_variant_and_keys_spread_by_weight() -> None:
    table = VariantTable.build({"a": 1.0, "b": 1.0})
    keys = [f"user-{i}" for i in range(4_000)]
    first = [table.sticky(key) for key in keys]
    assert first == [VariantTable.build({"a": 1.0, "b": 1.0}).sticky(key) for key in keys]
    assert abs(first.count("a") - 2_000) < 4 * 1_000**0.5


def test_a_named_variant_is_pinned_and_unknown_or_shadow_names_are_refused() -> None:
    table = VariantTable.build({"a": 1.0, "zero": 0.0}, shadows=["next"])
    assert table.pinned("zero") == "zero"  # weight 0: never drawn, still reachable by name
    with pytest.raises(UnknownVariant, match="no variant 'c'"):
        table.pinned("c")
    with pytest.raises(UnknownVariant, match="'next' is a shadow"):
        table.pinned("next")


def test_the_variants_file_resolves_models_next_to_it(tmp_path: Path) -> None:
    path = tmp_path / "variants.yaml"
    path.write_text(
        "variants:\n"
        "  - {name: current, model: models/v1, weight: 0.9}\n"
        "  - {name: candidate, model: /abs/v2, weight: 0.1}\n"
        "  - {name: next, model: models/v3, shadow: true}\n"
    )
    parsed = read_variants(path)
    assert [spec.model for spec in parsed.variants] == [
        tmp_path / "models/v1",
        Path("/abs/v2"),
        tmp_path / "models/v3",
    ]
    assert parsed.weights == {"current": 0.9, "candidate": 0.1} and parsed.shadows == ["next"]
    assert [spec.name for spec in served_variants(None, tmp_path)] == ["AllTraffic"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("variants: [", "is not valid YAML", id="malformed-yaml"),
        pytest.param("variants: []", "variants: List should have at least 1 item", id="no-variants"),
        pytest.param(
            "variants:\n  - {name: a, model: m}\n  - {name: a, model: n}",
            "names must be unique",
            id="duplicate",
        ),
        pytest.param(
            "variants:\n  - {name: a, model: m, weight: 0}", "weight above 0", id="all-weights-zero"
        ),
        pytest.param(
            "variants:\n  - {name: a, model: m, shadow: true}", "weight above 0", id="only-a-shadow"
        ),
        pytest.param(
            "variants:\n  - {name: a, model: m, weight: -1}", "greater than or equal to 0", id="negative"
        ),
        pytest.param(
            "variants:\n  - {name: a, model: m, weight: .inf}", "finite number", id="infinite-weight"
        ),
        pytest.param(
            "variants:\n  - {name: 'a b', model: m}", "variants.0.name: String should match", id="bad-name"
        ),
        pytest.param(
            "variants:\n  - {name: a, model: m, colour: red}", "colour: Extra inputs", id="unknown-key"
        ),
        pytest.param("- just a list", "Input should be a valid dictionary", id="not-a-mapping"),
    ],
)
def test_a_bad_variants_file_is_one_line_naming_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "variants.yaml"
    path.write_text(text)
    with pytest.raises(TripodError, match=message) as error:
        read_variants(path)
    assert "\n" not in str(error.value)


def test_a_missing_or_non_utf8_variants_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TripodError, match="cannot read the variants file"):
        read_variants(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"\xff\xfe{")
    with pytest.raises(TripodError, match="cannot read the variants file"):
        read_variants(bad)

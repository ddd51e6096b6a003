"""The serving side of explanations without a server: word offsets, the sampling method's budget, seed and
additivity, exact Shapley values for short records, and the options' 400s."""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from services.artifacts import InputColumn
from services.errors import InvalidInput
from services.runtime.explain.explanation import Explanation
from services.runtime.explain.options import ExplainOptions, explain_options
from services.runtime.explain.sampling import SamplingExplainer, _exact_shapley
from services.runtime.explain.tokens import lower_in_place, ngram_spans, remove_spans, words
from services.runtime.pipeline import Pipeline
from services.runtime.schema import Records

TEXT = InputColumn(name="review", dtype="string", role="text")
COLOR = InputColumn(name="color", dtype="string", role="categorical")
SIZE = InputColumn(name="size", dtype="float", role="numeric")


# -- offsets -------------------------------------------------------------------------------------------------


def test_lower_in_place_keeps_every_offset_even_where_lowercase_grows() -> None:
    text = "İstanbul KELVIN K Straße ÉTÉ 😍"
    lowered = lower_in_place(text)
    assert len(lowered) == len(text)
    assert lowered.startswith("istanbul kelvin k")  # İ → i (one character), Kelvin sign → k
    assert lowered.endswith("straße été 😍")


@pytest.mark.parametrize(
    "text",
    [
        "Love this dress",
        "😍😍 Love this dress!",  # characters outside the BMP before the words
        "Cafe\u0301 love this dress",  # a combining accent before the words
        "ﬁne fabric, love this dress",  # a ligature (NFKC would make it two letters)
        "İİİ LOVE this DRESS",  # a capital whose lower case is two code points in Python
    ],
)
def test_ngram_offsets_point_at_the_characters_of_the_original_text(text: str) -> None:
    spans = ngram_spans(text, r"[A-Za-z0-9_][A-Za-z0-9_]+", lowercase=True, ngram_max=2)
    ((start, end),) = spans["love this"]
    assert text[start:end].lower() == "love this"
    ((start, end),) = spans["dress"]
    assert text[start:end].lower() == "dress"


def test_an_ngram_that_occurs_twice_has_both_spans() -> None:
    text = "so soft, so soft"
    spans = ngram_spans(text, r"[A-Za-z0-9_][A-Za-z0-9_]+", lowercase=True, ngram_max=2)
    assert [text[a:b] for a, b in spans["so soft"]] == ["so soft", "so soft"]
    assert "soft so" in spans  # n-grams cross punctuation, as the vectorizer's do


def test_removing_words_keeps_the_spaces_and_punctuation_around_them() -> None:
    text = "Lovely, soft dress!"
    spans = [(token.start, token.end) for token in words(text)]
    assert remove_spans(text, [spans[0], spans[2]]) == ", soft !"


# -- the sampling method on a stand-in model ------------------------------------------------------------------


WEIGHTS = {"terrible": -3.0, "lovely": 2.5, "dress": 0.2}


def _scores(rows: np.ndarray) -> np.ndarray:
    """A stand-in for the model: a word-count logit with an interaction, as class probabilities (2 classes)."""
    out = []
    for text, color, size in rows:
        found = [w.text.lower() for w in words(str(text))]
        logit = sum(WEIGHTS.get(w, 0.0) for w in found)
        logit += 1.0 if color == "red" else 0.0
        logit += 0.0 if math.isnan(float(size)) else 0.1 * float(size)
        logit += 0.5 * ("lovely" in found and "dress" in found)
        p = 1 / (1 + math.exp(-logit))
        out.append([1 - p, p])
    return np.array(out)


def _explain(row: list[object], options: ExplainOptions) -> tuple[np.ndarray, Explanation]:
    explainer = SamplingExplainer([TEXT, COLOR, SIZE], regression=False)
    record = np.array(row, dtype=object)
    plan = explainer.plan(record, options)
    outputs = _scores(plan.rows) if len(plan.rows) else np.zeros((0, 2))
    return _scores(record[None, :])[0], plan.finish(outputs, _scores(record[None, :])[0])


@pytest.mark.parametrize("words_in_text", [1, 3, 5, 20, 200])
@pytest.mark.parametrize("budget", [5, 16, 64, 257])
def test_sampling_never_runs_the_model_more_than_the_budget_and_always_adds_up(
    words_in_text: int, budget: int
) -> None:
    text = " ".join(["lovely", "dress", "terrible", "fabric"][i % 4] for i in range(words_in_text))
    options = ExplainOptions(budget=budget)
    explainer = SamplingExplainer([TEXT, COLOR, SIZE], regression=False)
    plan = explainer.plan(np.array([text, "red", 3.0], dtype=object), options)
    assert len(plan.rows) <= budget
    assert plan.details["evaluations"] == len(plan.rows)
    full, explanation = _explain([text, "red", 3.0], options)
    np.testing.assert_allclose(
        explanation.contributions.sum(axis=1), explanation.values - explanation.base_values, atol=1e-12
    )
    np.testing.assert_allclose(explanation.values, full)


def test_the_same_record_and_seed_give_the_same_answer_and_another_seed_may_not() -> None:
    text = " ".join(["lovely dress but terrible fabric and so on"] * 6)
    _, first = _explain([text, "red", 1.0], ExplainOptions(seed=7))
    _, again = _explain([text, "red", 1.0], ExplainOptions(seed=7))
    _, other = _explain([text, "red", 1.0], ExplainOptions(seed=8))
    np.testing.assert_array_equal(first.contributions, again.contributions)
    assert not np.array_equal(first.contributions, other.contributions)


def test_short_records_get_exact_shapley_values() -> None:
    row = ["lovely dress", "red", 2.0]  # 4 players: 15 coalitions fit the default budget
    _, explanation = _explain(row, ExplainOptions())
    assert explanation.details["exact"] is True
    players = explanation.parts
    record = np.array(row, dtype=object)
    explainer = SamplingExplainer([TEXT, COLOR, SIZE], regression=False)
    count = len(players)

    def value(present: tuple[int, ...]) -> np.ndarray:
        mask = np.zeros(count, dtype=bool)
        mask[list(present)] = True
        return _scores(
            np.array([explainer._masked(record, explainer._players(record, 64), mask)], dtype=object)
        )[0]

    brute: np.ndarray = np.zeros((2, count), dtype=np.float64)
    for order in itertools.permutations(range(count)):
        for k, player in enumerate(order):
            brute[:, player] += value(order[: k + 1]) - value(order[:k])
    brute /= math.factorial(count)
    np.testing.assert_allclose(explanation.contributions, brute, atol=1e-12)


def test_exact_shapley_of_an_additive_game_is_each_players_own_value() -> None:
    own = np.array([1.0, -2.0, 0.5])
    masks = np.arange(8)
    values = np.array([[own[(masks[m] >> np.arange(3)) & 1 == 1].sum()] for m in range(8)])
    np.testing.assert_allclose(_exact_shapley(values, 3)[0], own)


def test_the_sentiment_word_ranks_first_with_sampling() -> None:
    for word in ("terrible", "lovely"):
        text = f"The {word} dress arrived on time and the colour is as shown in the photos."
        _, explanation = _explain([text, "", float("nan")], ExplainOptions())
        positive = explanation.contributions[1]
        top = explanation.parts[int(np.argmax(np.abs(positive)))]
        assert word in top.token


def test_absent_fields_are_not_players_and_present_ones_are() -> None:
    _, with_fields = _explain(["lovely", "red", 4.0], ExplainOptions())
    _, without = _explain(["lovely", "", float("nan")], ExplainOptions())
    assert [p.column for p in with_fields.parts] == ["review", "color", "size"]
    assert [p.column for p in without.parts] == ["review"]


def test_long_texts_are_grouped_into_contiguous_spans_that_cover_every_word() -> None:
    text = " ".join(f"w{i}" for i in range(100))
    _, explanation = _explain([text, "", float("nan")], ExplainOptions(budget=21))
    assert len(explanation.parts) == 11
    spans = [part.spans[0] for part in explanation.parts]
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert all(a[1] < b[0] for a, b in itertools.pairwise(spans))
    assert all(text[s:e] == part.token for part, (s, e) in zip(explanation.parts, spans, strict=True))


def test_a_budget_too_small_for_the_fields_is_a_clear_400() -> None:
    with pytest.raises(InvalidInput, match="ask for a budget of at least 5"):
        _explain(["lovely", "red", 4.0], ExplainOptions(budget=3))


# -- options -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"target": "excellent"}, "class must be one of predicted, all, negative, positive"),
        ({"top_k": "0"}, "top_k must be between 1 and 1000"),
        ({"top_k": "ten"}, "top_k must be an integer"),
        ({"budget": "2"}, "budget must be between 3 and 1024"),
        ({"budget": "5000"}, "budget must be between 3 and 1024"),
        ({"seed": "-1"}, "seed must be between"),
        ({"method": "kernel"}, "method must be one of auto, linear, sampling"),
    ],
)
def test_bad_options_are_refused_naming_the_option(query: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        explain_options(**query, labels=("negative", "positive"), max_budget=1024)


def test_options_default_to_the_predicted_class_top_ten_and_budget_64() -> None:
    options = explain_options(labels=("a", "b"))
    assert (options.target, options.top_k, options.method, options.budget, options.seed) == (
        "predicted",
        10,
        "auto",
        64,
        0,
    )


# -- through a real pipeline -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sentiment_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TF-IDF model on crafted reviews where only "terrible" and "lovely" carry the label."""
    from training.train import run_training

    rng = np.random.default_rng(0)
    filler = ["the", "dress", "fabric", "colour", "arrived", "fits", "size", "photo", "shipping", "time"]
    rows = []
    for i in range(600):
        label = ["negative", "positive"][i % 2]
        body = list(rng.choice(filler, size=8))
        body.insert(int(rng.integers(0, 8)), "terrible" if label == "negative" else "lovely")
        rows.append({"review": " ".join(body), "label": label})
    data = tmp_path_factory.mktemp("crafted") / "crafted.parquet"
    pd.DataFrame(rows).to_parquet(data, index=False)
    return run_training(
        data, "label", ["review"], tmp_path_factory.mktemp("m") / "crafted", seed=0, progress=False
    )


@pytest.mark.parametrize("method", ["auto", "sampling"])
def test_a_real_model_explains_each_sentiment_word_first(sentiment_model: Path, method: str) -> None:
    pipeline = Pipeline.from_directory(sentiment_model)
    options = explain_options(method=method, labels=pipeline.class_names)
    texts = ["The terrible dress arrived on time", "The lovely dress arrived on time"]
    batch, explained = pipeline.explain(Records([{"review": t} for t in texts]), options)
    assert batch.labels is not None and list(batch.labels) == ["negative", "positive"]
    for text, explanation, index in zip(texts, explained, batch.indices.tolist(), strict=True):
        answer = explanation.json(options, pipeline.class_names, index)
        (chosen,) = answer["classes"]
        first = chosen["contributions"][0]
        assert first["token"].lower() in ("terrible", "lovely")
        assert text[first["start"] : first["end"]].lower() == first["token"].lower()


def test_sampling_answers_do_not_depend_on_the_other_records_of_the_request(sentiment_model: Path) -> None:
    pipeline = Pipeline.from_directory(sentiment_model)
    options = explain_options(method="sampling", labels=pipeline.class_names)
    text = "terrible " + " ".join(["fabric dress colour"] * 20)
    _, alone = pipeline.explain(Records([{"review": text}]), options)
    _, among = pipeline.explain(Records([{"review": "lovely"}, {"review": text}, {"review": "x"}]), options)
    np.testing.assert_array_equal(alone[0].contributions, among[1].contributions)


def test_the_linear_explainer_lists_only_words_the_text_contains_and_adds_up_to_the_log_odds(
    sentiment_model: Path,
) -> None:
    pipeline = Pipeline.from_directory(sentiment_model)
    assert pipeline.has_exact_explainer
    options = explain_options(method="linear", target="all", top_k=1000, labels=pipeline.class_names)
    text = "The lovely dress, the LOVELY fabric"
    batch, (explanation,) = pipeline.explain(Records([{"review": text}]), options)
    answer = explanation.json(options, pipeline.class_names, int(batch.indices[0]))
    assert answer["method"] == "linear" and answer["output"] == "margin"
    assert batch.probabilities is not None
    for entry, probability in zip(answer["classes"], batch.probabilities[0], strict=True):
        # a binary model's margin is the class's log-odds: sigmoid(value) is its probability
        assert 1 / (1 + math.exp(-entry["value"])) == pytest.approx(float(probability), abs=1e-5)
        listed = entry["contributions"]
        assert sum(c["contribution"] for c in listed) == pytest.approx(
            entry["value"] - entry["base_value"], abs=1e-5
        )
        for part in listed:
            assert part["spans"], part  # every listed n-gram occurs in the text
            for start, end in part["spans"]:
                assert re.findall(r"\w+", text[start:end].lower()) == part["token"].split()
    lovely = next(c for c in answer["classes"][1]["contributions"] if c["token"] == "lovely")
    assert [text[a:b] for a, b in lovely["spans"]] == ["lovely", "LOVELY"]
    assert not any("terrible" in c["token"] for c in answer["classes"][1]["contributions"])

"""The global SHAP report on tiny models trained here: exact linear values, the words that matter, escaping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from services.artifacts import BASE_VALUES, CONTRIBUTIONS, FEATURES, TextTokenizer
from training.automl.families.tfidf import TfidfLinear
from training.data import split_frame
from training.errors import DataError
from training.explain.global_shap import Feature, feature_labels
from training.explain.report import HTML_NAME, JSON_NAME, highlighted_text, write_explanations
from training.explain.run import ExplainSettings, explain_model
from training.explain.sources import model_from_candidate, model_from_directory
from training.explain.tokens import WordTokenizer, has_words, ngram_spans, token_key, token_spans
from training.export import export_candidate
from training.problem import ColumnRoles, Problem, ProblemType
from training.train import evaluation_report, text_problem

POSITIVE = ["excellent", "wonderful", "love", "perfect"]
NEGATIVE = ["terrible", "awful", "hate", "broken"]
NEUTRAL = ["okay", "average", "mediocre", "acceptable"]
FILLER = ["the dress", "this shirt", "my order", "the fabric", "it", "the color", "these jeans", "the fit"]
SCRIPT = "<script>alert('x')</script> & \"quotes\" terrible"


def _reviews(rows: int = 240, seed: int = 0) -> pd.DataFrame:
    """Crafted sentiment: every review is filler around one word that decides its class."""
    rng = np.random.default_rng(seed)
    words = {"positive": POSITIVE, "negative": NEGATIVE, "neutral": NEUTRAL}
    records = []
    for i in range(rows):
        label = ("positive", "negative", "neutral")[i % 3]
        text = f"{rng.choice(FILLER)} is {rng.choice(words[label])} and {rng.choice(FILLER)} came"
        records.append({"review": text, "sentiment": label, "stars": float(rng.integers(1, 6))})
    return pd.DataFrame(records)


@pytest.fixture(scope="module")
def reviews() -> pd.DataFrame:
    return _reviews()


@pytest.fixture(scope="module")
def linear(reviews: pd.DataFrame) -> TfidfLinear:
    problem = text_problem(reviews, "sentiment", ["review"])
    split = split_frame(reviews, "sentiment", seed=0)
    params = {"max_features": 500, "ngram_max": 1, "min_df": 1, "C": 5.0, "class_weight": "none"}
    return TfidfLinear(problem, params, seed=0).fit(split.train, split.validation)


def test_linear_values_are_each_feature_times_its_weight(linear: TfidfLinear, reviews: pd.DataFrame) -> None:
    explained = explain_model(
        model_from_candidate(linear, name="tiny"), reviews, ExplainSettings(), source="crafted"
    )
    attributions = explained.attributions
    x = linear.transform(reviews).toarray().astype(np.float64)
    weights = linear.estimator_.coef_.astype(np.float64)
    assert attributions.method == "linear"
    assert attributions.rows == len(reviews)
    for k in range(3):
        np.testing.assert_allclose(attributions.values[k].toarray(), x * weights[k], atol=1e-12)
    np.testing.assert_allclose(attributions.base_values[0], linear.estimator_.intercept_, atol=1e-12)
    # A word the review does not contain is not stored at all: it contributes exactly zero.
    assert (attributions.values[0] != 0).sum() <= (x != 0).sum()
    assert explained.summary["additivity"]["max_abs_error"] < 1e-6
    assert explained.summary["method"]["baseline"].startswith("all-absent")


def test_the_top_tokens_of_crafted_sentiment_are_its_sentiment_words(
    linear: TfidfLinear, reviews: pd.DataFrame
) -> None:
    summary = explain_model(
        model_from_candidate(linear, name="tiny"), reviews, ExplainSettings(), source="crafted"
    ).summary
    words = {"positive": POSITIVE, "negative": NEGATIVE, "neutral": NEUTRAL}

    for label, expected in words.items():
        others = {w for other, ws in words.items() if other != label for w in ws}
        towards = [entry["token"] for entry in summary["top_tokens"][label]["towards"]]
        against = [entry["token"] for entry in summary["top_tokens"][label]["against"]]
        assert sorted(towards[:4]) == sorted(expected), (label, towards)
        assert set(against[:8]) == others, (label, against)
        top = [entry["feature"] for entry in summary["importance"][label][:12]]
        assert set(top) == set(POSITIVE + NEGATIVE + NEUTRAL), (label, top)


def test_a_model_directory_is_explained_like_its_explainer_stage(
    linear: TfidfLinear, reviews: pd.DataFrame, tmp_path: Path
) -> None:
    split = split_frame(reviews, "sentiment", seed=0)
    metrics, report = evaluation_report(linear, split)
    version = export_candidate(
        linear,
        model_root=tmp_path / "tiny",
        parity_frame=split.test,
        data_fingerprint="sha256:test",
        metrics=metrics,
        metrics_report=report,
    )
    model = model_from_directory(version)
    explained = explain_model(model, reviews, ExplainSettings(), source="crafted")
    assert model.linear is not None
    features = model.linear.features(reviews).astype(np.float32)
    session = ort.InferenceSession(str(version / "explainer.onnx"))
    contributions, base = session.run([CONTRIBUTIONS, BASE_VALUES], {FEATURES: features})
    assert explained.attributions.rows == len(reviews)
    for k in range(3):
        np.testing.assert_allclose(explained.attributions.values[k].toarray(), contributions[:, k], atol=1e-5)
    np.testing.assert_allclose(explained.attributions.base_values[0], base, atol=1e-6)
    identity = explained.summary["model"]
    assert identity["version"] == "v1" and len(identity["manifest_sha256"]) == 64


@pytest.mark.parametrize(
    ("target", "problem_type", "labels"),
    [("sentiment", "binary", ("negative", "positive")), ("stars", "regression", ())],
    ids=["binary", "regression"],
)
def test_binary_and_regression_linear_models_add_up(
    reviews: pd.DataFrame, target: str, problem_type: ProblemType, labels: tuple[str, ...]
) -> None:
    frame = reviews[reviews["sentiment"] != "neutral"] if labels else reviews
    problem = Problem(target, problem_type, labels, ColumnRoles(text=("review",)))
    split = split_frame(frame, target, seed=0, stratify=bool(labels))
    params = TfidfLinear.default_params("fast", problem) | {"min_df": 1}
    model = TfidfLinear(problem, params, seed=0).fit(split.train, split.validation)
    summary = explain_model(
        model_from_candidate(model, name="tiny"), frame, ExplainSettings(), source="crafted"
    ).summary
    assert summary["outputs"] == list(labels or [target])
    assert summary["method"]["output"] == "margin"
    assert summary["additivity"]["max_abs_error"] < 1e-6
    assert summary["examples"]


def test_the_html_escapes_every_text(linear: TfidfLinear, reviews: pd.DataFrame, tmp_path: Path) -> None:
    # The only review predicted negative, so it is the negative class's example.
    positive = reviews[reviews["sentiment"] == "positive"]
    frame = pd.concat(
        [positive, pd.DataFrame([{"review": SCRIPT, "sentiment": "negative"}])], ignore_index=True
    )
    explained = explain_model(
        model_from_candidate(linear, name="<b>tiny</b>"), frame, ExplainSettings(), source="x"
    )
    examples = explained.summary["examples"]
    assert any(example["text"] == SCRIPT for example in examples)
    json_path, html_path = write_explanations(explained, tmp_path)
    assert (json_path.name, html_path.name) == (JSON_NAME, HTML_NAME)
    page = html_path.read_text(encoding="utf-8")
    assert "<script" not in page and "<b>tiny" not in page
    assert "&lt;b&gt;tiny&lt;/b&gt;" in page
    assert all(escaped in page for escaped in ("&lt;", "&gt;", "&#x27;x&#x27;", "&amp;", "&quot;"))
    assert page.count('src="data:image/png;base64,') == 3


def test_highlighting_escapes_tokens_and_tooltips() -> None:
    example = {
        "text": "<i>good</i> bad",
        "highlighted_output": "<o>",
        "tokens": [
            {"start": 3, "end": 7, "shap": {"<o>": 0.5}},
            {"start": 12, "end": 15, "shap": {"<o>": -1.0}},
        ],
    }
    html = highlighted_text(example)
    assert "<i>" not in html and "<o>" not in html
    assert html.count("<span") == 2 and "&lt;i&gt;" in html and 'title="&lt;o&gt;: +0.5"' in html


def test_ngram_shares_add_up_to_the_text_contribution() -> None:
    tokenizer = TextTokenizer(
        column="t", token_pattern=r"[A-Za-z0-9_][A-Za-z0-9_]+", lowercase=True, ngram_max=2
    )
    contributions = {"love": np.array([1.0]), "love it": np.array([0.5]), "it": np.array([-0.2])}
    spans = ngram_spans("I LOVE it, love it", tokenizer, contributions, 1)
    assert [(s.start, s.end) for s in spans] == [(2, 6), (7, 9), (11, 15), (16, 18)]
    total = sum(float(s.values[0]) for s in spans)
    assert total == pytest.approx(1.0 + 0.5 - 0.2)
    assert spans[0].values[0] == pytest.approx(0.5 + 0.125)  # half of "love", a quarter of "love it"


def test_masker_tokens_are_found_in_the_text() -> None:
    spans = token_spans("Hi, there!", ["Hi, ", "there!"], np.array([[1.0], [2.0]]))
    assert [(s.start, s.end) for s in spans] == [(0, 3), (4, 10)]
    assert [token_key(t) for t in ("Great! ", "...", "  ")] == ["great", "...", ""]


def test_the_masker_keeps_every_character_but_runs_of_whitespace() -> None:
    import shap

    masker = shap.maskers.Text(tokenizer=WordTokenizer(), mask_token=" ")
    text = '"Love  it!!" she said...\n5/5 :)'
    tokens = masker.data_transform(text)[0]
    assert "".join(tokens) == text
    assert masker(np.ones(len(tokens), dtype=bool), text)[0][0] == " ".join(text.split())
    assert masker(np.zeros(len(tokens), dtype=bool), text)[0][0] == ""  # the all-absent baseline
    assert WordTokenizer()("")["input_ids"] == [] and WordTokenizer()(" ")["input_ids"] == [" "]
    assert not has_words(" ... !") and has_words("ok")


def test_feature_labels_name_the_column_when_needed() -> None:
    features = [
        Feature("a", "text", "good"),
        Feature("b", "text", "bad"),
        Feature("c", "categorical", "x"),
        Feature("n", "numeric"),
    ]
    assert feature_labels(features) == ["a: good", "b: bad", "c = x", "n"]
    assert feature_labels(features[:1]) == ["good"]


@pytest.mark.parametrize(
    ("frame", "settings", "match"),
    [
        (pd.DataFrame({"review": []}), ExplainSettings(), "no rows"),
        (pd.DataFrame({"text": ["good"]}), ExplainSettings(), r"column\(s\) 'review' not found"),
        (pd.DataFrame({"review": ["good"]}), ExplainSettings(sample=0), "at least 1"),
    ],
    ids=["empty", "missing-column", "sample-zero"],
)
def test_bad_input_is_one_data_error(
    linear: TfidfLinear, frame: pd.DataFrame, settings: ExplainSettings, match: str
) -> None:
    with pytest.raises(DataError, match=match):
        explain_model(model_from_candidate(linear, name="tiny"), frame, settings, source="x")


def test_the_sample_is_seeded(linear: TfidfLinear, reviews: pd.DataFrame) -> None:
    model = model_from_candidate(linear, name="tiny")

    def explained(seed: int) -> np.ndarray:
        result = explain_model(model, reviews, ExplainSettings(sample=30, seed=seed), source="x")
        assert result.summary["data"] | {"source": None} == {
            "source": None,
            "rows": len(reviews),
            "rows_with_text": None,
            "sample": 30,
            "seed": seed,
            "explained_rows": 30,
        }
        return result.attributions.values[0].toarray()

    np.testing.assert_array_equal(explained(1), explained(1))
    assert not np.array_equal(explained(1), explained(2))

"""``monitor baseline`` on a real model directory: Model Monitor's files, the model's vocabulary read three ways,
the predicted-label distribution through the serving pipeline, and a bounded, seeded reference sample."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from services.artifacts import ModelArtifact
from tests.conftest import SAMPLE_ROWS, TEXT_COLUMN
from tests.monitor_scenarios import predicted, training_rows
from training.monitor.baseline import (
    BASELINE_FILES,
    CONSTRAINTS,
    STATISTICS,
    Baseline,
    build_baseline,
    read_baseline,
    write_baseline,
)
from training.monitor.errors import MonitorError
from training.monitor.vocabulary import (
    EXPLAINER_SOURCE,
    LABEL_ENCODER_SOURCE,
    TFIDF_SOURCE,
    _from_transformer,
    model_vocabularies,
)


@pytest.fixture(scope="module")
def training(prepared_reviews: pd.DataFrame) -> pd.DataFrame:
    return training_rows(prepared_reviews)


@pytest.fixture(scope="module")
def baseline(trained_model_dir: Path, training: pd.DataFrame) -> Baseline:
    return build_baseline(trained_model_dir, training, source="sample", sample_size=500, progress=False)


def test_statistics_follow_model_monitor_with_text_extensions(
    baseline: Baseline, trained_model_dir: Path, training: pd.DataFrame
) -> None:
    statistics = baseline.statistics
    assert statistics["version"] == 0
    assert statistics["dataset"] == {"item_count": SAMPLE_ROWS, "source": "sample", "reference_sample": 500}
    (feature,) = statistics["features"]
    assert (feature["name"], feature["inferred_type"]) == (TEXT_COLUMN, "String")
    assert feature["string_statistics"]["common"] == {"num_present": SAMPLE_ROWS, "num_missing": 0}
    text = feature["text_statistics"]
    lengths = training[TEXT_COLUMN].str.len()
    assert text["length"]["min"] == lengths.min() and text["length"]["max"] == lengths.max()
    assert text["length"]["mean"] == pytest.approx(lengths.mean())
    assert sum(text["length"]["bins"]["counts"]) == SAMPLE_ROWS and len(text["length"]["bins"]["edges"]) == 9
    assert 0 < text["oov"]["rate"] < 0.2 and text["oov"]["vocabulary"]["source"] == EXPLAINER_SOURCE
    expected = Counter(predicted(trained_model_dir, training[TEXT_COLUMN].tolist()))
    buckets = statistics["predictions"]["distribution"]["categorical"]["buckets"]
    assert buckets == [
        {"value": label, "count": expected[label]} for label in ("negative", "neutral", "positive")
    ]
    manifest = ModelArtifact.from_directory(trained_model_dir).manifest
    assert statistics["model"]["metrics"] == {k: manifest.metrics[k] for k in ("accuracy", "macro_f1")}
    assert statistics["model"]["inputs"] == [{"name": TEXT_COLUMN, "dtype": "string", "role": "text"}]


def test_constraints_follow_model_monitor(baseline: Baseline) -> None:
    constraints = baseline.constraints
    assert constraints["version"] == 0
    assert constraints["features"] == [{"name": TEXT_COLUMN, "inferred_type": "String", "completeness": 1.0}]
    config = constraints["monitoring_config"]
    assert {
        "evaluate_constraints",
        "emit_metrics",
        "datatype_check_threshold",
        "distribution_constraints",
    } <= set(config)
    assert config["distribution_constraints"]["comparison_method"] == "PSI"
    assert baseline.thresholds.text_length_psi == config["tripod"]["text_length_psi"]


def test_the_reference_sample_is_bounded_and_seeded(
    baseline: Baseline, trained_model_dir: Path, training: pd.DataFrame
) -> None:
    texts = [row[TEXT_COLUMN] for row in baseline.reference]
    assert len(texts) == 500 and set(texts) <= set(training[TEXT_COLUMN])
    again = build_baseline(trained_model_dir, training, sample_size=500, progress=False)
    other = build_baseline(trained_model_dir, training, sample_size=500, seed=7, progress=False)
    assert again.reference == baseline.reference and other.reference != baseline.reference


def test_a_baseline_folder_reads_back(baseline: Baseline, tmp_path: Path) -> None:
    paths = write_baseline(baseline, tmp_path)
    assert sorted(paths) == sorted(BASELINE_FILES)
    read = read_baseline(tmp_path)
    assert json.loads(json.dumps(baseline.statistics)) == read.statistics
    assert read.vocabularies == baseline.vocabularies and read.reference == baseline.reference
    assert read.layout() == baseline.layout()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (shutil.rmtree, "no baseline at"),
        (lambda folder: (folder / CONSTRAINTS).unlink(), "constraints.json missing"),
        (lambda folder: (folder / STATISTICS).write_text("{", encoding="utf-8"), "cannot read"),
        (lambda folder: (folder / STATISTICS).write_text("[]", encoding="utf-8"), "is not a Tripod baseline"),
    ],
    ids=["no-folder", "no-constraints", "not-json", "not-statistics"],
)
def test_a_broken_baseline_is_refused(baseline: Baseline, tmp_path: Path, damage, message: str) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "baseline"
    write_baseline(baseline, folder)
    damage(folder)
    with pytest.raises(MonitorError, match=message):
        read_baseline(folder)


def test_the_vocabulary_is_the_same_from_the_explainer_and_from_the_onnx_graph(
    trained_model_dir: Path,
) -> None:
    artifact = ModelArtifact.from_directory(trained_model_dir)
    from_explainer, skipped = model_vocabularies(artifact.directory, artifact.manifest)
    assert not skipped
    without = artifact.manifest.model_copy(update={"explainer": None})
    from_graph, _ = model_vocabularies(artifact.directory, without)
    explained, graphed = from_explainer[TEXT_COLUMN], from_graph[TEXT_COLUMN]
    assert (explained.source, graphed.source) == (EXPLAINER_SOURCE, TFIDF_SOURCE)
    assert graphed.words == explained.words and len(graphed.words) > 500
    assert (graphed.token_pattern, graphed.lowercase) == (explained.token_pattern, explained.lowercase)


def test_a_fasttext_graph_gives_its_word_ids_vocabulary(tmp_path: Path) -> None:
    import onnx

    from training.automl.families.fasttext_onnx import tokenize, transformer_graph
    from training.problem import ColumnRoles, Problem

    problem = Problem("sentiment", "binary", ("negative", "positive"), ColumnRoles(text=("a", "b")))
    graph = transformer_graph(problem, {"robe": 1, "très": 2, "jolie": 3}, {}, max_tokens=8)
    onnx.save(graph, tmp_path / "transformer.onnx")
    found = _from_transformer(tmp_path / "transformer.onnx")
    assert set(found) == {"a", "b"}
    vocabulary = found["a"]
    assert vocabulary.source == LABEL_ENCODER_SOURCE and vocabulary.words == {"robe", "très", "jolie"}
    text = "Très JOLIE robe, l'été ☀️ naïve"
    assert vocabulary.tokens(text) == tokenize(text)
    assert vocabulary.count([text]) == (len(tokenize(text)), len(tokenize(text)) - 3)

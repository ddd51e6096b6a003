"""Export writes a verified model directory whose ONNX stages reproduce scikit-learn (training/export.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from services.artifacts import InputColumn, ModelArtifact, sha256_file
from services.runtime.pipeline import Pipeline
from services.runtime.schema import Records
from tests.conftest import SAMPLE_ROWS, TARGET, TEXT_COLUMN
from training.automl.candidate import OnnxStages
from training.automl.families.tfidf import TfidfLinear
from training.automl.sklearn_onnx import ExportError
from training.data import Split, fingerprint, split_frame, stratified_sample
from training.errors import ParityError
from training.export import ExportOptions, export_candidate
from training.monitor.baseline import BASELINE_FILES
from training.train import run_training, text_problem

STAGE_FILES = {"transformer.onnx", "classifier.onnx", "inverse_label.onnx"}


@pytest.fixture(scope="module")
def small_split(prepared_reviews: pd.DataFrame) -> Split:
    return split_frame(stratified_sample(prepared_reviews, TARGET, SAMPLE_ROWS, seed=42), TARGET, seed=42)


@pytest.fixture(scope="module")
def small_model(small_split: Split) -> TfidfLinear:
    return _fit(small_split)


def _fit(split: Split, **params: object) -> TfidfLinear:
    problem = text_problem(split.train, TARGET, [TEXT_COLUMN])
    chosen = {**TfidfLinear.default_params("balanced", problem), **params}
    return TfidfLinear(problem, chosen).fit(split.train, split.validation)


def _export(model: TfidfLinear, split: Split, root: Path, stages: OnnxStages | None = None) -> Path:
    return export_candidate(
        model,
        model_root=root,
        parity_frame=split.test,
        data_fingerprint=fingerprint(split.train, [TEXT_COLUMN, TARGET]),
        metrics={"accuracy": 0.0},
        metrics_report={},
        stages=stages,
        options=ExportOptions(),
    )


def test_manifest_records_a_sha256_for_every_file(trained_model_dir: Path) -> None:
    manifest = ModelArtifact.from_directory(trained_model_dir).manifest  # verifies every digest
    # a linear model also has its exact explainer (tests/model/test_explainer_export.py), and `tripod train`
    # ships its global SHAP report (tests/e2e/test_explain_cli.py) and its monitoring baseline
    # (tests/e2e/test_monitor_cli.py)
    explainer = {"explainer.onnx", "explainer_features.json"}
    reports = {"reports/explanations.json", "reports/explanations.html"}
    baseline = {f"monitoring/{name}" for name in BASELINE_FILES}
    assert set(manifest.files) == STAGE_FILES | {"metrics.json"} | explainer | reports | baseline
    for name, digest in manifest.files.items():
        assert digest == sha256_file(trained_model_dir / name)


def test_parity_passed_on_the_whole_test_split(trained_model_dir: Path) -> None:
    parity = ModelArtifact.from_directory(trained_model_dir).manifest.parity
    assert parity.passed
    assert parity.rows == SAMPLE_ROWS // 10
    assert parity.label_agreement >= parity.min_label_agreement == 0.999
    assert parity.max_abs_probability_diff <= parity.max_probability_tolerance == 1e-3


def test_latest_points_to_the_version(trained_model_dir: Path) -> None:
    latest = trained_model_dir.parent / "latest"
    assert latest.is_symlink()
    assert latest.resolve() == trained_model_dir.resolve()
    assert trained_model_dir.name == "v1"


def test_manifest_describes_the_model(trained_model_dir: Path) -> None:
    manifest = ModelArtifact.from_directory(trained_model_dir).manifest
    assert (manifest.name, manifest.version, manifest.target) == ("reviews", "v1", TARGET)
    assert manifest.problem_type == "multiclass"
    assert manifest.labels == ["negative", "neutral", "positive"]
    assert [(c.name, c.dtype, c.role) for c in manifest.inputs] == [(TEXT_COLUMN, "string", "text")]
    assert manifest.candidate.family == "tfidf_linear"
    assert manifest.candidate.params["max_features"] == 15000
    assert manifest.data_fingerprint.startswith("sha256:")
    assert {"accuracy", "macro_f1", "validation_macro_f1", "f1_neutral"} <= set(manifest.metrics)
    assert {"scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy", "onnx_opset"} <= set(
        manifest.libraries
    )


def _io(path: Path) -> tuple[list[tuple[str, str, list]], list[tuple[str, str, list]]]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def describe(args: list) -> list[tuple[str, str, list]]:
        return [(a.name, a.type, [d if isinstance(d, int) else None for d in a.shape]) for a in args]

    return describe(session.get_inputs()), describe(session.get_outputs())


def test_stages_follow_the_onnx_contract(trained_model_dir: Path) -> None:
    manifest = ModelArtifact.from_directory(trained_model_dir).manifest
    width = manifest.stages["transformer"].outputs[0].shape[1]
    assert isinstance(width, int) and width > 0
    assert _io(trained_model_dir / "transformer.onnx") == (
        [(TEXT_COLUMN, "tensor(string)", [None, 1])],
        [("features", "tensor(float)", [None, width])],
    )
    assert _io(trained_model_dir / "classifier.onnx") == (
        [("features", "tensor(float)", [None, width])],
        [("label", "tensor(int64)", [None]), ("probabilities", "tensor(float)", [None, 3])],
    )
    assert _io(trained_model_dir / "inverse_label.onnx") == (
        [("label", "tensor(int64)", [None])],
        [("predicted_label", "tensor(string)", [None])],
    )
    spec = manifest.stages["classifier"]
    assert [(t.name, t.dtype, t.shape) for t in spec.outputs] == [
        ("label", "int64", [None]),
        ("probabilities", "float32", [None, 3]),
    ]


def test_metrics_json_has_scores_and_a_confusion_matrix_in_label_order(trained_model_dir: Path) -> None:
    metrics = json.loads((trained_model_dir / "metrics.json").read_text())
    manifest = ModelArtifact.from_directory(trained_model_dir).manifest
    test = metrics["test"]
    assert test["confusion_matrix"]["labels"] == manifest.labels == metrics["labels"]
    assert np.asarray(test["confusion_matrix"]["matrix"]).sum() == test["rows"] == SAMPLE_ROWS // 10
    assert [test["per_class"][label]["support"] for label in manifest.labels] == np.asarray(
        test["confusion_matrix"]["matrix"]
    ).sum(axis=1).tolist()
    assert manifest.metrics["macro_f1"] == test["macro_f1"]
    assert 0.4 < test["macro_f1"] <= test["accuracy"] < 1.0  # learned something on 1,600 reviews


def test_onnx_tokenizes_unicode_text_like_scikit_learn(small_model: TfidfLinear, tmp_path: Path) -> None:
    texts = np.array(
        [
            "Café naïve résumé — “great” 😍 don’t LOVE it",
            "ÀÉÎ STRASSE straße İstanbul ünïcödé wörds",
            "a\rb\r\nc dress\rfits… 5'4\" 34B 100%",
            "日本語 テキスト love love love the the fit",
            "",
            "   ",
        ],
        dtype=object,
    )
    paths = small_model.to_onnx().save(tmp_path)
    pipeline = Pipeline.from_stage_files(
        paths, [InputColumn(name=TEXT_COLUMN, dtype="string", role="text")], small_model.problem.labels
    )
    batch = pipeline.predict(Records([[text] for text in texts]))
    assert batch.probabilities is not None and batch.labels is not None
    expected = small_model.predict_scores(pd.DataFrame({TEXT_COLUMN: texts}))
    np.testing.assert_allclose(batch.probabilities, expected, atol=1e-5)
    labels = np.asarray(small_model.problem.labels)[expected.argmax(axis=1)]
    assert list(batch.labels) == list(labels)


def test_a_parity_failure_raises_a_clear_error_and_publishes_nothing(
    small_model: TfidfLinear, small_split: Split, tmp_path: Path
) -> None:
    root = tmp_path / "reviews"
    mismatching = small_model.to_onnx(tokenexp=r"\S+")  # whitespace tokens: "dress!" is not "dress"
    with pytest.raises(
        ParityError,
        match=r"on 200 held-out rows: label agreement 0\.\d+ \(required >= 0\.999\), "
        r"max \|Δprobability\| [\d.e-]+ \(required <= 0\.001\)",
    ):
        _export(small_model, small_split, root, mismatching)
    assert list(root.iterdir()) == []  # no version, no latest link, no staging directory left behind


def test_sublinear_tf_is_refused_before_conversion(small_split: Split, tmp_path: Path) -> None:
    model = _fit(small_split, max_features=500)
    model.transformer_.transformers_[0][1].sublinear_tf = True  # a vectorizer fitted with the setting
    with pytest.raises(ExportError, match=r"sublinear_tf=True.*log\(1 \+ tf\).*1 \+ log\(tf\)"):
        _export(model, small_split, tmp_path / "reviews")


@pytest.mark.parametrize(
    ("classes", "text_columns", "problem_type"),
    [
        (["negative", "positive"], [TEXT_COLUMN], "binary"),
        (["negative", "neutral", "positive"], [TEXT_COLUMN, "title"], "multiclass"),
    ],
    ids=["binary-one-column", "multiclass-two-columns-with-missing-titles"],
)
def test_run_training_exports_any_number_of_classes_and_text_columns(
    prepared_reviews: pd.DataFrame,
    tmp_path: Path,
    classes: list[str],
    text_columns: list[str],
    problem_type: str,
) -> None:
    data = tmp_path / "reviews.parquet"
    prepared_reviews[prepared_reviews[TARGET].isin(classes)].to_parquet(data, index=False)
    version_dir = run_training(data, TARGET, text_columns, tmp_path / "m", sample=800, progress=False)
    manifest = ModelArtifact.from_directory(version_dir).manifest
    assert manifest.problem_type == problem_type
    assert manifest.labels == classes
    assert manifest.input_names == text_columns
    assert manifest.parity.passed
    assert [
        i.name for i in ort.InferenceSession(str(version_dir / "transformer.onnx")).get_inputs()
    ] == text_columns


def test_each_run_publishes_the_next_version_and_moves_latest(
    prepared_reviews_path: Path, tmp_path: Path
) -> None:
    root = tmp_path / "reviews"
    first = run_training(prepared_reviews_path, TARGET, [TEXT_COLUMN], root, sample=400, progress=False)
    second = run_training(
        prepared_reviews_path, TARGET, [TEXT_COLUMN], root, sample=400, seed=7, progress=False
    )
    assert (first.name, second.name) == ("v1", "v2")
    assert (root / "latest").resolve() == second.resolve()
    assert (
        ModelArtifact.from_directory(first).manifest.data_fingerprint
        != ModelArtifact.from_directory(second).manifest.data_fingerprint
    )


@pytest.mark.parametrize(
    ("target", "text_columns", "message"),
    [
        ("stars", [TEXT_COLUMN], r"'stars' not found; available columns: .*'review_body'"),
        (TARGET, ["body"], r"'body' not found; available columns:"),
        (TARGET, [TARGET], r"cannot also be a text input column"),
        (TARGET, ["rating"], r"text column 'rating' holds numbers \(dtype int64\), not text"),
    ],
    ids=["missing-target", "missing-text-column", "target-as-input", "numeric-text-column"],
)
def test_run_training_refuses_bad_columns_clearly(
    prepared_reviews_path: Path, tmp_path: Path, target: str, text_columns: list[str], message: str
) -> None:
    from training.errors import DataError

    with pytest.raises(DataError, match=message):
        run_training(prepared_reviews_path, target, text_columns, tmp_path / "m", progress=False)


def test_throughput_benchmark_script_runs_in_short_form(prepared_reviews_path: Path) -> None:
    """The benchmark is a side script; running it small here keeps it from rotting."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "baseline_throughput.py"
    result = subprocess.run(
        [
            sys.executable,
            str(script),
            "--data",
            str(prepared_reviews_path),
            "--max-features",
            "2000",
            "--batches",
            "1",
            "64",
            "--rows",
            "128",
            "--repeats",
            "1",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert lines[0].startswith("max_features=2000") and "test macro-F1" in lines[0]
    assert [line.split(":")[0].split()[-1] for line in lines[1:]] == ["1", "64"]
    assert all("scikit-learn" in line and "ONNX" in line for line in lines[1:])


def test_orphan_ngrams_are_ngrams_with_a_word_outside_the_vocabulary() -> None:
    from training.automl.sklearn_onnx import orphan_ngrams

    assert orphan_ngrams(["the", "worst", "the worst", "be adjusted", "be"]) == ["be adjusted"]


def test_fit_drops_orphan_bigrams_so_onnx_matches_every_row(small_split: Split, tmp_path: Path) -> None:
    """At 4,000 features on this sample, max_features keeps 3 bigrams whose words it drops; fit must prune them."""
    from training.automl.sklearn_onnx import orphan_ngrams

    model = _fit(small_split, max_features=4000)
    unpruned = (
        model._column_transformer().fit(model.problem.input_frame(small_split.train)).transformers_[0][1]
    )
    orphans = orphan_ngrams(unpruned.get_feature_names_out().tolist())
    assert orphans  # the trap is really there
    vectorizer = model.transformer_.transformers_[0][1]
    assert orphan_ngrams(vectorizer.get_feature_names_out().tolist()) == []
    paths = model.to_onnx().save(tmp_path)
    pipeline = Pipeline.from_stage_files(
        paths, [InputColumn(name=TEXT_COLUMN, dtype="string", role="text")], model.problem.labels
    )
    texts = pd.concat([small_split.test, pd.DataFrame({TEXT_COLUMN: orphans})])
    onnx_features = pipeline.stages.run(
        "transformer", model.problem.input_frame(texts).to_numpy(dtype=object)
    )
    np.testing.assert_allclose(onnx_features, model.transform(texts).toarray(), atol=1e-5)

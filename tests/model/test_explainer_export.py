"""The exact explainer of a linear model (training/explain/linear.py), exported with the model and checked
against ``shap``: ``explainer.onnx`` + ``explainer_features.json`` (models/README.md)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
import shap

from services.artifacts import (
    EXPLAINER_FEATURES_FILE,
    EXPLAINER_FILE,
    MANIFEST_DIGEST_NAME,
    MANIFEST_NAME,
    ExplainerFeatures,
    Manifest,
    ModelArtifact,
    manifest_digest_line,
    sha256_file,
)
from services.errors import ModelIntegrityError
from services.runtime.pipeline import Pipeline
from services.runtime.schema import Records
from tests.conftest import TARGET, TEXT_COLUMN
from training.automl.ensemble import SoftVotingEnsemble
from training.automl.families.tfidf import TOKEN_PATTERN, TfidfLinear
from training.data import Split, fingerprint, split_frame, stratified_sample
from training.errors import ExplainerError, ParityError
from training.explain.linear import LinearExplainer, check_rows, link
from training.export import export_candidate
from training.problem import ColumnRoles, Problem, ProblemType

TEXT, COLOR, PRICE = "review", "color", "price"
ROLES = ColumnRoles(text=(TEXT,), categorical=(COLOR,), numeric=(PRICE,))
CUES = {
    "negative": ["awful", "broken", "refund", "itchy"],
    "neutral": ["okay", "average", "fine", "plain"],
    "positive": ["love", "perfect", "gorgeous", "soft"],
}
FILLER = ["the", "dress", "fabric", "fit", "was", "and", "color", "size", "really", "very"]
COLORS = ["red", "navy blue", "green", "black_white"]
SMALL = {"max_features": 400, "ngram_max": 2, "min_df": 1}


def _synthetic(problem_type: ProblemType, rows: int = 360, seed: int = 0) -> pd.DataFrame:
    """Reviews whose words, colour and price all move the target, with missing prices and empty texts."""
    rng = np.random.default_rng(seed)
    classes = ["negative", "positive"] if problem_type == "binary" else list(CUES)
    label = rng.choice(classes, size=rows)
    texts = []
    for cls in label:
        words = list(rng.choice(FILLER, size=rng.integers(3, 9)))
        words += list(rng.choice(CUES[str(cls)], size=rng.integers(0, 3)))
        rng.shuffle(words)
        texts.append(" ".join(str(w) for w in words).capitalize() + "!")
    texts[::37] = [""] * len(texts[::37])
    price = rng.normal(50.0, 15.0, size=rows)
    price[::11] = np.nan
    frame = pd.DataFrame(
        {TEXT: texts, COLOR: rng.choice(COLORS, size=rows), PRICE: price, "label": label.astype(object)}
    )
    if problem_type == "regression":
        score = {"negative": 1.0, "neutral": 3.0, "positive": 5.0}
        noise = rng.normal(0.0, 0.3, size=rows)
        frame["stars"] = frame["label"].map(score).astype(float) + 0.01 * np.nan_to_num(price) + noise
    return frame


def _split(frame: pd.DataFrame) -> Split:
    n = len(frame)
    return Split(frame.iloc[: n * 7 // 10], frame.iloc[n * 7 // 10 : n * 8 // 10], frame.iloc[n * 8 // 10 :])


def _problem(frame: pd.DataFrame, problem_type: ProblemType, roles: ColumnRoles = ROLES) -> Problem:
    if problem_type == "regression":
        return Problem("stars", "regression", (), roles)
    return Problem("label", problem_type, tuple(sorted(frame["label"].unique())), roles)


def _fit(problem: Problem, split: Split) -> TfidfLinear:
    params = {**TfidfLinear.default_params("fast", problem), **SMALL}
    return TfidfLinear(problem, params).fit(split.train, split.validation)


def _export(model: TfidfLinear | SoftVotingEnsemble, split: Split, root: Path) -> Path:
    problem = model.problem
    return export_candidate(
        model,
        model_root=root,
        parity_frame=split.test,
        data_fingerprint=fingerprint(split.train, [*problem.roles.input_names, problem.target]),
        metrics={},
        metrics_report={},
    )


class Exported:
    """A fitted synthetic model, its split and its exported directory."""

    def __init__(self, problem_type: ProblemType, root: Path) -> None:
        frame = _synthetic(problem_type)
        self.split = _split(frame)
        self.model = _fit(_problem(frame, problem_type), self.split)
        self.directory = _export(self.model, self.split, root / problem_type)
        self.manifest = ModelArtifact.from_directory(self.directory).manifest

    def features(self, frame: pd.DataFrame) -> np.ndarray:
        """``features`` of the rows, from transformer.onnx through the serving runtime."""
        pipeline = Pipeline.from_directory(self.directory)
        columns = self.model.problem.input_frame(frame).to_numpy(dtype=object).tolist()
        return np.asarray(pipeline.stages.run("transformer", pipeline.validate(Records(columns))))

    def explain(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        session = ort.InferenceSession(
            str(self.directory / EXPLAINER_FILE), providers=["CPUExecutionProvider"]
        )
        contributions, base = session.run(["contributions", "base_values"], {"features": features})
        return contributions, base


@pytest.fixture(scope="module")
def export_once(tmp_path_factory: pytest.TempPathFactory) -> Callable[[ProblemType], Exported]:
    """Each problem type is fitted and exported once per module (about a second each)."""
    cache: dict[str, Exported] = {}

    def get(problem_type: ProblemType) -> Exported:
        if problem_type not in cache:
            cache[problem_type] = Exported(problem_type, tmp_path_factory.mktemp("models"))
        return cache[problem_type]

    return get


@pytest.fixture(params=["multiclass", "binary", "regression"])
def exported(request: pytest.FixtureRequest, export_once: Callable[[ProblemType], Exported]) -> Exported:
    return export_once(request.param)


@pytest.fixture
def multiclass(export_once: Callable[[ProblemType], Exported]) -> Exported:
    return export_once("multiclass")


def test_contributions_equal_shap_linear_explainer_values_per_class(exported: Exported) -> None:
    model = exported.model
    estimator = model.estimator_
    coef = np.atleast_2d(estimator.coef_).astype(np.float64)
    intercept = np.atleast_1d(estimator.intercept_).astype(np.float64)
    if coef.shape[0] == 1 and model.problem.problem_type == "binary":  # class 0's log-odds are the negation
        coef, intercept = np.vstack([-coef, coef]), np.concatenate([-intercept, intercept])
    features = exported.features(exported.split.test)
    reference = shap.LinearExplainer(
        (coef, intercept), shap.maskers.Independent(np.zeros((1, features.shape[1])))
    )
    expected = np.asarray(reference.shap_values(features.astype(np.float64))).reshape(
        len(features), features.shape[1], len(intercept)
    )
    contributions, base = exported.explain(features)
    assert contributions.shape == (len(features), len(intercept), features.shape[1])
    np.testing.assert_allclose(contributions, expected.transpose(0, 2, 1), rtol=0, atol=1e-6)
    np.testing.assert_allclose(base, np.asarray(reference.expected_value).reshape(-1), rtol=0, atol=1e-6)
    assert np.count_nonzero(contributions) > 0
    check = exported.manifest.explainer.check if exported.manifest.explainer else None
    assert check is not None and check.passed
    assert check.rows == len(exported.split.test)
    assert check.max_abs_diff_vs_shap <= check.tolerance == 1e-4
    assert check.shap_version == shap.__version__


def test_base_plus_contributions_is_the_margin_and_its_link_is_what_the_model_serves(
    exported: Exported,
) -> None:
    model, test = exported.model, exported.split.test
    contributions, base = exported.explain(exported.features(test))
    scores = base.astype(np.float64) + contributions.sum(axis=2, dtype=np.float64)
    sklearn_features = model.transform(test)
    problem_type = model.problem.problem_type
    if problem_type == "regression":
        np.testing.assert_allclose(scores[:, 0], model.estimator_.predict(sklearn_features), atol=1e-4)
    else:
        margin = model.estimator_.decision_function(sklearn_features)
        expected = np.column_stack([-margin, margin]) if problem_type == "binary" else margin
        np.testing.assert_allclose(scores, expected, atol=1e-4)
    served = Pipeline.from_directory(exported.directory).predict(
        Records(model.problem.input_frame(test).to_numpy(dtype=object).tolist())
    )
    got = served.values[:, None] if served.values is not None else served.probabilities
    assert got is not None
    np.testing.assert_allclose(link(scores, problem_type), got, atol=1e-4)
    if problem_type == "binary":  # each class's own log-odds: softmax of the two would not give p
        assert not np.allclose(link(scores, "multiclass"), got, atol=1e-4)
    assert exported.manifest.explainer is not None
    assert exported.manifest.explainer.check.max_additivity_error <= 1e-4


def test_a_word_the_text_does_not_contain_contributes_exactly_zero(multiclass: Exported) -> None:
    names = ExplainerFeatures.model_validate_json(
        (multiclass.directory / EXPLAINER_FEATURES_FILE).read_text()
    ).features
    text = "I love the soft fabric"
    frame = pd.DataFrame({TEXT: [text], COLOR: ["red"], PRICE: [50.0]})
    features = multiclass.features(frame)
    contributions, _ = multiclass.explain(features)
    words = set(text.lower().split())
    absent = [i for i, f in enumerate(names) if f.kind == "text" and not set(str(f.term).split(" ")) <= words]
    assert "awful" in {names[i].term for i in absent} and len(absent) > len(names) // 2
    assert np.all(features[0, absent] == 0.0)
    assert np.all(contributions[0][:, absent] == 0.0)  # exactly, for every class
    said = [i for i, f in enumerate(names) if f.kind == "text" and f.term in ("love", "soft")]
    assert len(said) == 2 and np.all(contributions[0][:, said] != 0.0)


def test_the_feature_list_names_the_transformer_columns_in_order(multiclass: Exported) -> None:
    names = ExplainerFeatures.model_validate_json(
        (multiclass.directory / EXPLAINER_FEATURES_FILE).read_text()
    ).features
    sklearn_names = multiclass.model.transformer_.get_feature_names_out().tolist()
    assert len(names) == len(sklearn_names) == multiclass.model.n_features_
    prefix = {"text": f"tfidf_{TEXT}__", "categorical": "onehot__", "numeric": "numeric__"}
    rebuilt = [
        prefix[f.kind] + (str(f.term) if f.kind == "text" else f"{f.column}_{f.term}" if f.term else f.column)
        for f in names
    ]
    assert rebuilt == sklearn_names
    assert [f.kind for f in names] == sorted(
        (f.kind for f in names), key=["text", "categorical", "numeric"].index
    )
    assert {f.term for f in names if f.kind == "categorical"} == set(COLORS)
    assert [(f.column, f.term) for f in names if f.kind == "numeric"] == [(PRICE, None)]
    # Behaviour, not names: a row lights up exactly the columns the list says it should.
    features = multiclass.features(pd.DataFrame({TEXT: ["gorgeous"], COLOR: ["navy blue"], PRICE: [80.0]}))
    lit = {(names[i].kind, names[i].column, names[i].term) for i in np.flatnonzero(features[0])}
    assert lit == {("text", TEXT, "gorgeous"), ("categorical", COLOR, "navy blue"), ("numeric", PRICE, None)}


def test_the_explainer_graph_follows_the_contract(multiclass: Exported) -> None:
    manifest = multiclass.manifest
    spec = manifest.explainer
    assert spec is not None
    width = manifest.stages["transformer"].outputs[0].shape[1]
    assert (spec.method, spec.baseline, spec.score) == ("linear", "absent", "margin")
    assert [(t.name, t.dtype, t.shape) for t in spec.stage.inputs] == [("features", "float32", [None, width])]
    assert [(t.name, t.dtype, t.shape) for t in spec.stage.outputs] == [
        ("contributions", "float32", [None, 3, width]),
        ("base_values", "float32", [3]),
    ]
    assert (spec.stage.file, spec.features_file) == (EXPLAINER_FILE, EXPLAINER_FEATURES_FILE)
    assert [t.model_dump() for t in spec.tokenizers] == [
        {"column": TEXT, "token_pattern": TOKEN_PATTERN, "lowercase": True, "ngram_max": 2}
    ]
    graph = onnx.load(str(multiclass.directory / EXPLAINER_FILE))
    assert graph.graph.name == "explainer"
    assert [(o.domain, o.version) for o in graph.opset_import] == [("", 21)]
    assert graph.ir_version == onnx.helper.find_min_ir_version_for([onnx.helper.make_opsetid("", 21)])


def test_the_manifest_lists_and_hashes_the_explainer_files(multiclass: Exported) -> None:
    files = multiclass.manifest.files
    for name in (EXPLAINER_FILE, EXPLAINER_FEATURES_FILE):
        assert files[name] == sha256_file(multiclass.directory / name)
    assert {EXPLAINER_FILE, EXPLAINER_FEATURES_FILE} <= set(multiclass.manifest.listed_files)


@pytest.mark.parametrize("name", [EXPLAINER_FILE, EXPLAINER_FEATURES_FILE])
def test_a_tampered_explainer_file_is_refused(multiclass: Exported, tmp_path: Path, name: str) -> None:
    copy = tmp_path / "v1"
    shutil.copytree(multiclass.directory, copy)
    path = copy / name
    data = bytearray(path.read_bytes())
    data[-2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match=rf"{name} does not match its sha256 in the manifest"):
        ModelArtifact.from_directory(copy)


def test_a_manifest_without_the_explainer_digests_is_refused(multiclass: Exported, tmp_path: Path) -> None:
    copy = tmp_path / "v1"
    shutil.copytree(multiclass.directory, copy)
    manifest = Manifest.model_validate_json((copy / MANIFEST_NAME).read_text())
    files = {k: v for k, v in manifest.files.items() if k != EXPLAINER_FILE}
    encoded = manifest.model_copy(update={"files": files}).model_dump_json(indent=2).encode()
    (copy / MANIFEST_NAME).write_bytes(encoded)
    (copy / MANIFEST_DIGEST_NAME).write_text(manifest_digest_line(encoded))
    with pytest.raises(
        ModelIntegrityError, match=r"explainer\.onnx is a stage of the model but has no digest"
    ):
        ModelArtifact.from_directory(copy)


def test_two_exports_of_one_model_write_identical_explainer_bytes(
    multiclass: Exported, tmp_path: Path
) -> None:
    again = _export(multiclass.model, multiclass.split, tmp_path / "again")
    for name in (EXPLAINER_FILE, EXPLAINER_FEATURES_FILE):
        assert sha256_file(again / name) == sha256_file(multiclass.directory / name), name
    rebuilt = ModelArtifact.from_directory(again).manifest.explainer
    assert rebuilt == multiclass.manifest.explainer


def test_an_explainer_that_does_not_add_up_to_the_model_publishes_nothing(
    multiclass: Exported, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = multiclass.model
    honest = model.explainer()
    wrong = dataclasses.replace(honest, weights=honest.weights[::-1].copy())  # classes swapped
    assert isinstance(wrong, LinearExplainer)
    monkeypatch.setattr(model, "explainer", lambda: wrong)
    root = tmp_path / "wrong"
    with pytest.raises(
        ExplainerError,
        match=r"explainer\.onnx is not exact on 72 held-out rows: max \|Δ\| vs shap [\d.e-]+, "
        r"max additivity error [\d.e+-]+ \(required <= 0\.0001",
    ):
        _export(model, multiclass.split, root)
    assert list(root.iterdir()) == []  # no version, no latest link, no staging directory
    assert issubclass(ExplainerError, ParityError)  # every caller that refuses a parity failure refuses this


def test_an_ensemble_of_linear_models_exports_no_explainer(multiclass: Exported, tmp_path: Path) -> None:
    problem = multiclass.model.problem
    other = TfidfLinear(problem, {**multiclass.model.params, "C": 0.1}).fit(
        multiclass.split.train, multiclass.split.validation
    )
    ensemble = SoftVotingEnsemble(
        problem, {"members": [0, 1], "weights": [0.5, 0.5]}, members=[multiclass.model, other]
    )
    assert ensemble.explainer() is None  # a blend of probabilities is not linear in the features
    directory = _export(ensemble, multiclass.split, tmp_path / "ensemble")
    manifest = ModelArtifact.from_directory(directory).manifest
    assert manifest.explainer is None
    assert not {EXPLAINER_FILE, EXPLAINER_FEATURES_FILE} & set(manifest.files)
    assert not (directory / EXPLAINER_FILE).exists()


def test_reviews_model_explains_exactly(prepared_reviews: pd.DataFrame, tmp_path: Path) -> None:
    """A few hundred bundled reviews, review text only, the ``tripod train`` hyperparameters."""
    sample = stratified_sample(prepared_reviews, TARGET, 500, seed=1)
    split = split_frame(sample, TARGET, seed=1)
    problem = Problem(
        TARGET, "multiclass", ("negative", "neutral", "positive"), ColumnRoles(text=(TEXT_COLUMN,))
    )
    model = TfidfLinear(problem, TfidfLinear.default_params("balanced", problem)).fit(
        split.train, split.validation
    )
    directory = _export(model, split, tmp_path / "reviews")
    spec = ModelArtifact.from_directory(directory).manifest.explainer
    assert spec is not None and spec.check.passed and spec.check.rows == len(split.test)
    assert spec.check.max_abs_diff_vs_shap <= 1e-6 and spec.check.max_additivity_error <= 1e-5
    features = json.loads((directory / EXPLAINER_FEATURES_FILE).read_text())["features"]
    assert features[:2] == [
        {"column": TEXT_COLUMN, "kind": "text", "term": term}
        for term in model.transformer_.transformers_[0][1].get_feature_names_out()[:2]
    ]


def test_the_check_compares_evenly_spaced_rows_up_to_its_limit() -> None:
    assert check_rows(5, 10).tolist() == [0, 1, 2, 3, 4]
    assert check_rows(10, 4).tolist() == [0, 3, 6, 9]
    assert len(set(check_rows(2265, 1000).tolist())) == 1000

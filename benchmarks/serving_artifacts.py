"""What the serving benchmarks serve, built from one fitted model: every variant has the same weights.

- :func:`prepare_tfidf` fits the ``tripod train`` baseline (TF-IDF + logistic regression, seed 42, the same
  split and defaults) once, and from that one fitted object writes the Tripod model directory (export with
  parity), the pickled scikit-learn ``Pipeline`` a user would serve by hand, and the fused ONNX graph.
- :func:`fuse_stages` merges a model directory's three graphs into one (``onnx.compose.merge_models``).
- :func:`prepare_minilm` gives the transformer scenario a Tripod model directory and a Hugging Face directory
  (``save_pretrained``) with the same weights: either built here (a MiniLM candidate fitted for a few steps,
  enough to measure serving, not to be accurate) or taken from ``--minilm-model``.
- :func:`write_bodies` pre-encodes the request bodies the load client sends.

Everything is cached under a work directory keyed by its inputs, so a second ``make bench`` skips the fits.
"""

from __future__ import annotations

import copy
import hashlib
import json
import pickle
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import compose, helper

from services.artifacts import ModelArtifact

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from benchmarks/: make loadtests/ importable
    sys.path.insert(0, str(ROOT))

from loadtests.sample import held_out_records  # noqa: E402

SEED = 42
STAGE_ORDER = ("transformer", "classifier", "inverse_label")


@dataclass(frozen=True)
class TfidfArtifacts:
    model_dir: Path
    """The Tripod model version directory (three ONNX stages + manifest)."""
    sklearn_pickle: Path
    """``{"pipeline": sklearn Pipeline, "labels": [...]}``: what the hand-written service unpickles."""
    fused_onnx: Path
    """The three stages merged into one graph: ``review_body`` → ``probabilities``, ``predicted_label``."""
    records: list[dict[str, str]]
    """Held-out records (the test split), in a fixed shuffled order."""


@dataclass(frozen=True)
class MiniLMArtifacts:
    model_dir: Path
    hf_dir: Path | None
    """``save_pretrained`` weights + tokenizer; None: the hand-written service loads the bundled base weights
    with a fresh head (the same computation, different answers)."""
    same_weights: bool


def _key(**values: Any) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _cached(directory: Path, key: str) -> bool:
    stamp = directory / "key.txt"
    return stamp.exists() and stamp.read_text() == key


def fuse_stages(model_dir: Path) -> onnx.ModelProto:
    """One graph computing what the three stages compute, for a classification model directory.

    The stages declare different versions of the ``ai.onnx.ml`` domain (1 for the vectorizer and classifier,
    3 for the label encoder), which ``merge_models`` refuses; every graph is given the highest version of each
    domain, which the operators used (``LinearClassifier``, ``Normalizer``, ``LabelEncoder``) accept as they
    are.
    The result is checked against the three stages by the tests, not assumed.
    """
    model_dir = Path(model_dir).resolve()
    manifest = ModelArtifact.from_directory(model_dir).manifest
    missing = [stage for stage in STAGE_ORDER if stage not in manifest.stages]
    if missing:
        raise ValueError(f"{model_dir} has no {missing} stage: only classification models can be fused")
    graphs = [onnx.load(model_dir / manifest.stages[stage].file) for stage in STAGE_ORDER]  # type: ignore[index]
    versions: dict[str, int] = {}
    for graph in graphs:
        for opset in graph.opset_import:
            versions[opset.domain] = max(versions.get(opset.domain, 0), opset.version)
    ir_version = max(graph.ir_version for graph in graphs)
    for graph in graphs:
        del graph.opset_import[:]
        graph.opset_import.extend(helper.make_opsetid(domain, v) for domain, v in sorted(versions.items()))
        graph.ir_version = ir_version
    transformer, classifier, inverse_label = graphs
    features = manifest.stages["transformer"].outputs[0].name
    fused = compose.merge_models(transformer, classifier, io_map=[(features, features)])
    fused = compose.merge_models(fused, inverse_label, io_map=[("label", "label")])
    onnx.checker.check_model(fused)
    return fused


def _fit_tfidf(data: Path, target: str, text_columns: Sequence[str], sample: int | None, out: Path) -> Any:
    """``tripod train``'s steps (training/train.py) with the fitted model kept: load, split, fit, export."""
    from training.automl.families.tfidf import TfidfLinear
    from training.data import fingerprint, load_table, split_frame, stratified_sample
    from training.export import export_candidate
    from training.problem import label_strings
    from training.train import evaluation_report, text_problem

    frame = load_table(data)
    frame = frame.loc[frame[target].notna()]
    frame = frame.assign(**{target: label_strings(frame[target])})
    if sample is not None:
        frame = stratified_sample(frame, target, sample, seed=SEED)
    problem = text_problem(frame, target, text_columns)
    split = split_frame(frame, target, seed=SEED)
    model = TfidfLinear(problem, TfidfLinear.default_params("balanced", problem), seed=SEED)
    model.fit(split.train, split.validation)
    metrics, report = evaluation_report(model, split)
    version_dir = export_candidate(
        model,
        model_root=out,
        parity_frame=split.test,
        data_fingerprint=fingerprint(frame, [*text_columns, target]),
        metrics=metrics,
        metrics_report={**report, "n_features": model.n_features_},
    )
    return model, version_dir


def prepare_tfidf(
    data: Path,
    work: Path,
    *,
    target: str = "sentiment",
    text_columns: Sequence[str] = ("review_body",),
    sample: int | None = None,
    sample_records: int = 2000,
) -> TfidfArtifacts:
    """Fit (or reuse) the baseline and write the three served forms of it under ``work/tfidf``."""
    from sklearn.pipeline import Pipeline

    directory = Path(work).resolve() / "tfidf"
    data = Path(data)
    key = _key(
        data=str(data.resolve()),
        size=data.stat().st_size,
        mtime=data.stat().st_mtime,
        target=target,
        columns=list(text_columns),
        sample=sample,
    )
    model_dir = directory / "models" / "reviews" / "v1"
    pickled, fused_path = directory / "sklearn_pipeline.pkl", directory / "fused.onnx"
    if not _cached(directory, key):
        if directory.exists():
            import shutil

            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        model, model_dir = _fit_tfidf(data, target, text_columns, sample, directory / "models" / "reviews")
        pipeline = Pipeline([("features", model.transformer_), ("classifier", model.estimator_)])
        with pickled.open("wb") as handle:
            pickle.dump({"pipeline": pipeline, "labels": list(model.problem.labels)}, handle)
        onnx.save_model(fuse_stages(model_dir), fused_path)
        (directory / "key.txt").write_text(key)
    records = held_out_records(
        data, target, list(text_columns), sample=sample, limit=sample_records, seed=SEED
    )
    return TfidfArtifacts(model_dir, pickled, fused_path, records)


def save_for_transformers(model: Any, directory: Path) -> None:
    """Write a fitted MiniLM's weights as a plain ``transformers`` user would load them, with the prior
    offsets that the ONNX graph adds to the logits folded into the head's bias (both serve the same answers).

    A mean-pooling model (``MeanPoolingClassifier``: encoder + mean over real tokens + linear head) becomes
    the encoder's ``save_pretrained`` plus ``head.pt``; a ``*ForSequenceClassification`` model is saved whole.
    ``tripod.json`` says which, with the labels, ``max_length`` and the input column.
    """
    import torch

    torch_model = copy.deepcopy(model.model_).eval()
    offsets = getattr(model, "offsets_", None)
    labels = list(model.problem.labels)
    head = getattr(torch_model, "head", None) or getattr(torch_model, "classifier", None)
    if head is None:
        raise ValueError(f"do not know how to save a {type(torch_model).__name__} for transformers")
    if offsets is not None:
        final = head if isinstance(head, torch.nn.Linear) else head.out_proj
        with torch.no_grad():
            final.bias += torch.from_numpy(np.asarray(offsets, dtype=np.float32))
    if hasattr(torch_model, "encoder") and hasattr(torch_model, "head"):
        torch_model.encoder.save_pretrained(directory)
        torch.save(torch_model.head.state_dict(), directory / "head.pt")
        pooling = "mean"
    else:
        torch_model.config.id2label = dict(enumerate(labels))
        torch_model.config.label2id = {label: i for i, label in enumerate(labels)}
        torch_model.save_pretrained(directory)
        pooling = "model"
    model.tokenizer_.save_pretrained(directory)
    (directory / "tripod.json").write_text(
        json.dumps(
            {
                "pooling": pooling,
                "labels": labels,
                "max_length": model.max_length_,
                "input": model.problem.roles.text[0],
            }
        )
    )


def _source_digest() -> str:
    """The MiniLM family's source (the model and its ONNX graphs): a change to either rebuilds the cached model."""
    from training.automl.families import minilm, minilm_onnx

    digest = hashlib.sha256()
    for module in (minilm, minilm_onnx):
        assert module.__file__ is not None
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:16]


def is_quantized(onnx_path: Path) -> bool:
    """Whether an estimator graph was int8-quantized (dynamic quantization's operators are in it)."""
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return any(
        node.op_type in ("DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeMatMul")
        for node in graph.node
    )


def build_minilm(
    data: Path,
    work: Path,
    *,
    target: str = "sentiment",
    text_column: str = "review_body",
    rows: int = 256,
    max_length: int = 128,
) -> MiniLMArtifacts:
    """Fit a MiniLM candidate for a few steps (every encoder layer frozen) and export both served forms.

    The point is serving cost, which does not depend on how well the head is trained: the encoder, the
    tokenizer graph, ``max_length`` and the int8 choice are those of the ``minilm`` family.
    """
    from training.automl.families.minilm import MiniLMModel
    from training.data import fingerprint, load_table, split_frame, stratified_sample
    from training.export import export_candidate
    from training.problem import infer_problem, label_strings
    from training.train import evaluation_report

    directory = Path(work).resolve() / "minilm"
    key = _key(
        data=str(Path(data).resolve()),
        rows=rows,
        max_length=max_length,
        target=target,
        column=text_column,
        family=_source_digest(),
    )
    hf_dir = directory / "hf"
    if _cached(directory, key):
        return MiniLMArtifacts(directory / "models" / "reviews" / "v1", hf_dir, True)
    if directory.exists():
        import shutil

        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    frame = load_table(data)
    frame = frame.loc[frame[target].notna(), [text_column, target]]
    frame = frame.assign(**{target: label_strings(frame[target])})
    split = split_frame(frame, target, seed=SEED)
    train = stratified_sample(split.train, target, rows, seed=SEED)
    validation = stratified_sample(split.validation, target, min(48, len(split.validation)), seed=SEED)
    problem = infer_problem(train, target, text=[text_column])
    params = {
        **MiniLMModel.default_params("fast", problem),
        "max_length": max_length,
        "freeze_layers": 6,
        "epoch_rows": rows,
        "max_epochs": 1,
        "eval_rows": len(validation),
        "lr": 3e-3,
    }
    model = MiniLMModel(problem, params, seed=SEED).fit(train, validation)
    parity = split.test.iloc[:200]
    metrics, report = evaluation_report(model, type(split)(train=train, validation=validation, test=parity))
    model_dir = export_candidate(
        model,
        model_root=directory / "models" / "reviews",
        parity_frame=parity,
        data_fingerprint=fingerprint(train, [text_column, target]),
        metrics=metrics,
        metrics_report=report,
    )
    hf_dir.mkdir(parents=True, exist_ok=True)
    save_for_transformers(model, hf_dir)
    (directory / "key.txt").write_text(key)
    return MiniLMArtifacts(model_dir, hf_dir, True)


def write_bodies(
    path: Path,
    records: Sequence[dict[str, str]],
    per_request: int,
    count: int = 200,
    envelope: Callable[[Sequence[dict[str, str]]], dict[str, Any] | str] | None = None,
) -> Path:
    """``count`` pre-encoded request bodies of ``per_request`` consecutive held-out records each: Tripod's
    ``/predict`` body, or ``envelope``'s (another protocol's JSON, or a text body such as CSV) around the same
    records."""
    lines = []
    n = len(records)
    for i in range(count):
        chunk = [records[(i * per_request + j) % n] for j in range(per_request)]
        body = envelope(chunk) if envelope is not None else {"records": chunk}
        lines.append(json.dumps(body if isinstance(body, str) else json.dumps(body)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path

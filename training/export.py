"""Export any fitted candidate as ONNX stages, prove parity, and publish the model directory.

Parity is proven, not assumed: before anything is published, the stages are run through the serving runtime
(``services.runtime.pipeline.Pipeline``) on the whole held-out split and compared with the training framework's
own scores.  Classification: labels must agree on ≥ 99.9 % of rows (the classifier graph's ``label`` output
must also equal the arg-max of its probabilities) and every probability must be within the family's tolerance
(1e-3 unless a family states otherwise).  Regression: every value within that tolerance, relative to
``max(1, |value|)``.  A failure raises :class:`ParityError` and publishes nothing.

A candidate with an exact explainer (a linear model, :meth:`CandidateModel.explainer`) also gets
``explainer.onnx`` and ``explainer_features.json``, proven against ``shap`` and the model's own scores on
(at most 500 of) the same held-out rows by :func:`training.explain.linear.check_linear_explainer`; a failure
raises :class:`~training.errors.ExplainerError` and publishes nothing either.
"""

from __future__ import annotations

import logging
import platform
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import pandas as pd
from onnx import TensorProto, helper

from services.artifacts import (
    FEATURES,
    LABEL,
    PREDICTED_LABEL,
    STAGE_NAMES,
    Candidate,
    ExplainerSpec,
    Manifest,
    Parity,
    StageSpec,
    TensorSpec,
    dump_json,
    ensure_model_root,
    next_version_dir,
    point_latest,
    utc_now,
    write_manifest,
)
from services.runtime.pipeline import Pipeline
from services.runtime.schema import Records
from services.runtime.stages import LocalStages
from training.errors import ParityError

if TYPE_CHECKING:
    from training.automl.candidate import CandidateModel, OnnxStages

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
UNKNOWN_LABEL = "<unknown>"
OPSET = 21
ML_OPSET = 3
_PARITY_CHUNK = 512  # rows per runtime call: bounds the dense (rows, F) feature matrix in memory


@dataclass(frozen=True)
class ExportOptions:
    """How closely the ONNX stages must reproduce the training framework.

    Attributes:
        min_label_agreement: Smallest acceptable share of held-out rows whose predicted labels agree.
        max_probability_tolerance: Largest acceptable absolute difference of any class probability (or of a
            regression value, relative to ``max(1, |value|)``); None takes the family's own tolerance.
    """

    min_label_agreement: float = 0.999
    max_probability_tolerance: float | None = None


def build_inverse_label(labels: Sequence[str]) -> onnx.ModelProto:
    """``inverse_label.onnx``: an ``ai.onnx.ml.LabelEncoder`` from class index ``i`` to ``labels[i]``.

    Keeping this a graph (not Python) means any ONNX client reproduces the served labels from the files alone.
    An index outside ``0..len(labels)-1`` maps to ``"<unknown>"``.
    """
    node = helper.make_node(
        "LabelEncoder",
        [LABEL],
        [PREDICTED_LABEL],
        domain="ai.onnx.ml",
        keys_int64s=list(range(len(labels))),
        values_strings=[str(label) for label in labels],
        default_string=UNKNOWN_LABEL,
        name="inverse_label",
    )
    graph = helper.make_graph(
        [node],
        "inverse_label",
        [helper.make_tensor_value_info(LABEL, TensorProto.INT64, [None])],
        [helper.make_tensor_value_info(PREDICTED_LABEL, TensorProto.STRING, [None])],
    )
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("ai.onnx.ml", ML_OPSET)]
    # The lowest IR version for these opsets, not onnx's newest: onnxruntime refuses newer IR versions.
    onx = helper.make_model(
        graph, opset_imports=opsets, ir_version=helper.find_min_ir_version_for(opsets), producer_name="tripod"
    )
    onnx.checker.check_model(onx)
    return onx


def check_parity(
    candidate: CandidateModel,
    paths: Mapping[str, Path],
    frame: pd.DataFrame,
    options: ExportOptions = ExportOptions(),
) -> Parity:
    """Run the written stages through the serving runtime and compare them with ``candidate.predict_scores``.

    Returns:
        The parity record for the manifest (``passed`` is always True when this returns).

    Raises:
        ParityError: Agreement or the largest difference is outside the tolerances.
    """
    problem = candidate.problem
    tolerance = options.max_probability_tolerance or candidate.max_probability_tolerance
    pipeline = Pipeline.from_stage_files(paths, problem.roles.inputs, problem.labels)
    # Rows of similar text length share a chunk, so sequence models (which trim padding to the chunk's longest
    # row) score held-out data about 1.5x faster; the comparison is row by row, so the order changes nothing.
    order = np.argsort(_text_lengths(problem.input_frame(frame)), kind="stable")
    frame = frame.iloc[order]
    inputs = problem.input_frame(frame)
    expected_scores = np.asarray(candidate.predict_scores(frame), dtype=np.float64)
    agreeing, max_diff = 0, 0.0
    for start in range(0, len(inputs), _PARITY_CHUNK):
        chunk = inputs.iloc[start : start + _PARITY_CHUNK]
        expected = expected_scores[start : start + len(chunk)]
        records = Records(chunk.to_numpy(dtype=object).tolist())
        batch = pipeline.predict(records)
        if batch.values is not None:
            diff = np.abs(batch.values - expected) / np.maximum(1.0, np.abs(expected))
            agreeing += int((diff <= tolerance).sum())
        else:
            assert batch.probabilities is not None
            expected_labels = np.asarray(problem.labels, dtype=object)[expected.argmax(axis=1)]
            agree = np.asarray(batch.labels, dtype=object) == expected_labels
            if start == 0:
                # Serving reads the arg-max of ``probabilities``; the classifier's own ``label`` output must
                # agree with it too, for clients that use the graph directly.  It is the ArgMax node of the same
                # tensor, so one chunk proves the wiring without running the estimator twice on every row.
                assert isinstance(pipeline.stages, LocalStages)
                features = pipeline.stages.run("transformer", pipeline.validate(records))
                agree &= (
                    pipeline.stages.stages["classifier"].run({FEATURES: features})[LABEL] == batch.indices
                )
            agreeing += int(agree.sum())
            diff = np.abs(batch.probabilities.astype(np.float64) - expected)
        max_diff = max(max_diff, float(diff.max(initial=0.0)))
    rows = len(inputs)
    agreement = agreeing / rows if rows else 0.0
    passed = rows > 0 and agreement >= options.min_label_agreement and max_diff <= tolerance
    parity = Parity(
        rows=rows,
        label_agreement=agreement,
        max_abs_probability_diff=max_diff,
        min_label_agreement=options.min_label_agreement,
        max_probability_tolerance=tolerance,
        passed=passed,
    )
    if not passed:
        what = "value" if problem.problem_type == "regression" else "probability"
        raise ParityError(
            f"ONNX stages do not match {candidate.family} on {rows} held-out rows: label agreement {agreement:.4f} "
            f"(required >= {options.min_label_agreement}), max |Δ{what}| {max_diff:.3g} "
            f"(required <= {tolerance:g})"
        )
    return parity


def _text_lengths(inputs: pd.DataFrame) -> np.ndarray:
    """Characters of text per row over the string columns (zeros when there are none)."""
    lengths = np.zeros(len(inputs), dtype=np.int64)
    for column in inputs.columns:
        if inputs[column].dtype == object or pd.api.types.is_string_dtype(inputs[column]):
            lengths += (
                inputs[column].map(lambda v: len(v) if isinstance(v, str) else 0).to_numpy(dtype=np.int64)
            )
    return lengths


def _dtype_name(elem_type: int) -> str:
    if elem_type == TensorProto.STRING:
        return "string"
    return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).name


def _tensor_specs(values: Iterable[onnx.ValueInfoProto]) -> list[TensorSpec]:
    specs = []
    for value in values:
        tensor = value.type.tensor_type
        shape = [dim.dim_value if dim.HasField("dim_value") else None for dim in tensor.shape.dim]
        specs.append(TensorSpec(name=value.name, dtype=_dtype_name(tensor.elem_type), shape=shape))
    return specs


def stage_spec(path: Path) -> StageSpec:
    """The manifest's description of a stage, read from the written graph itself so it cannot drift."""
    model = onnx.load(str(path), load_external_data=False)
    return StageSpec(
        file=path.name, inputs=_tensor_specs(model.graph.input), outputs=_tensor_specs(model.graph.output)
    )


def library_versions() -> dict[str, str]:
    """Versions that produced the model, and the opsets it targets."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version(), "onnx_opset": str(OPSET), "onnx_ml_opset": str(ML_OPSET)}
    for name in (
        "scikit-learn",
        "skl2onnx",
        "onnx",
        "onnxruntime",
        "numpy",
        "pandas",
        "torch",
        "transformers",
        "lightgbm",
        "onnxmltools",
        "optuna",
    ):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def _json_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Hyperparameters as the manifest stores them (JSON scalars or lists of ints)."""
    clean: dict[str, Any] = {}
    for key, raw in params.items():
        value = list(raw) if isinstance(raw, tuple) else raw.item() if isinstance(raw, np.generic) else raw
        clean[key] = (
            value if isinstance(value, (str, int, float, bool, list)) or value is None else str(value)
        )
    return clean


def export_candidate(
    candidate: CandidateModel,
    *,
    model_root: Path,
    parity_frame: pd.DataFrame,
    data_fingerprint: str,
    metrics: Mapping[str, float],
    metrics_report: Mapping[str, Any],
    reports: Path | None = None,
    stages: OnnxStages | None = None,
    options: ExportOptions = ExportOptions(),
    baseline_frame: pd.DataFrame | None = None,
) -> Path:
    """Convert, prove parity, and publish ``model_root/v<N>`` with its manifest; then repoint ``latest``.

    A linear candidate's explainer is written and checked with the stages, and the manifest describes it.

    The stages are written to a staging directory first, so a failed parity check leaves no half-written
    version behind and does not take a version number.

    Args:
        candidate: The fitted candidate.
        model_root: ``models/<name>``; the model's name is its last component.
        parity_frame: Held-out rows (the test split) for the parity check.
        data_fingerprint: :func:`training.data.fingerprint` of the training table.
        metrics: Flat metrics for the manifest.
        metrics_report: The full evaluation, written as ``metrics.json``.
        reports: A directory copied into the model directory as ``reports/`` (leaderboard, notebooks, plots).
        stages: Already-converted stages (default: ``candidate.to_onnx()``).
        options: Parity tolerances.
        baseline_frame: The training rows: the version gets its monitoring baseline from them
            (``monitoring/``, :mod:`training.monitor.baseline`), listed and hashed in the manifest.

    Returns:
        The version directory.

    Raises:
        ExportError: The model cannot be converted faithfully.
        ParityError: The ONNX stages disagree with the training framework beyond the tolerances (or,
            as :class:`~training.errors.ExplainerError`, the explainer is not exact).
    """
    model_root = ensure_model_root(Path(model_root))
    stages = stages or candidate.to_onnx()
    explainer = candidate.explainer()
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=model_root))
    try:
        paths = stages.save(staging)
        parity = check_parity(candidate, paths, parity_frame, options)
        logger.info(
            "parity on %d rows: agreement %.4f, max |Δ| %.2g",
            parity.rows,
            parity.label_agreement,
            parity.max_abs_probability_diff,
        )
        specs = {stage: stage_spec(paths[stage]) for stage in STAGE_NAMES if stage in paths}
        explainer_spec = None
        if explainer is not None:
            # Imported here: it brings skl2onnx and shap, which exports without an explainer never need.
            from training.explain.linear import check_linear_explainer

            explainer_path = explainer.save(staging)
            check = check_linear_explainer(explainer, paths, explainer_path, parity_frame)
            logger.info(
                "explainer on %d rows: max |Δ| vs shap %.2g, additivity %.2g",
                check.rows,
                check.max_abs_diff_vs_shap,
                check.max_additivity_error,
            )
            explainer_spec = ExplainerSpec(
                stage=stage_spec(explainer_path), tokenizers=explainer.tokenizers, check=check
            )
        dump_json(staging / METRICS_FILE, dict(metrics_report))
        if reports is not None:
            shutil.copytree(reports, staging / "reports")
        version_dir = next_version_dir(model_root)
        for path in sorted(staging.iterdir()):
            path.replace(version_dir / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    problem = candidate.problem
    manifest = Manifest(
        name=model_root.name,
        version=version_dir.name,
        created_at=utc_now(),
        problem_type=problem.problem_type,
        target=problem.target,
        inputs=problem.roles.inputs,
        labels=list(problem.labels),
        stages=specs,
        metrics=dict(metrics),
        parity=parity,
        data_fingerprint=data_fingerprint,
        candidate=Candidate(family=candidate.family, params=_json_params(candidate.params)),
        libraries=library_versions(),
        explainer=explainer_spec,
    )
    write_manifest(version_dir, manifest)
    if baseline_frame is not None:
        # Built from the written version (the serving pipeline on its stages), then hashed with the rest:
        # the manifest is written again, and only then does ``latest`` move.
        from training.monitor.baseline import MODEL_BASELINE_DIR, build_baseline, write_baseline

        baseline = build_baseline(
            version_dir,
            baseline_frame,
            source=f"training split ({data_fingerprint})",
            progress=False,
            embedded=True,
        )
        write_baseline(baseline, version_dir / MODEL_BASELINE_DIR)
        write_manifest(version_dir, manifest)
    point_latest(model_root, version_dir)
    return version_dir

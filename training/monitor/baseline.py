"""``tripod monitor baseline``: the training table through the model, as the reference every run compares with.

A baseline folder holds:

* ``statistics.json``: Model Monitor's statistics of each input (:mod:`training.monitor.profile`), the
  predicted-label distribution of the model on this table, and the model it describes (``model``: name,
  version, manifest sha256, inputs, labels, test metrics);
* ``constraints.json``: Model Monitor's constraints (per feature ``inferred_type``, ``completeness``,
  ``num_constraints`` / ``string_constraints``) and ``monitoring_config``, the thresholds of every check
  (:mod:`training.monitor.config`);
* ``vocabulary.json``: each text column's vocabulary (:mod:`training.monitor.vocabulary`), so a run needs the
  baseline alone, not the model;
* ``reference_sample.jsonl``: a seeded uniform sample of the table's texts (at most ``sample_size`` rows), the
  reference side of the domain-classifier test.

Export writes one into every model version (``<version>/monitoring/``, from the training split), so it is
listed and hashed in the manifest like the stages: ``tripod monitor run --baseline <model dir>`` verifies the
model and uses it.  That copy leaves out what would differ between two identical trainings (the version, the
manifest's digest, the time: the same data and seed give the same files) and what cannot be known before the
manifest exists; :func:`read_baseline` fills the version and digest in from the verified directory.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from services.artifacts import MANIFEST_NAME, InputColumn, ModelArtifact
from services.runtime.limits import DEFAULT_MAX_TEXT_CHARS
from training.data import require_columns
from training.monitor.config import Thresholds
from training.monitor.errors import MonitorError
from training.monitor.profile import FLUSH_ROWS, MAX_CATEGORIES, Bins, Layout, Profile
from training.monitor.vocabulary import Vocabulary, model_vocabularies
from training.reports import write_json

MODEL_BASELINE_DIR = "monitoring"
"""Where export writes a model version's own baseline."""
STATISTICS = "statistics.json"
CONSTRAINTS = "constraints.json"
VOCABULARY = "vocabulary.json"
REFERENCE_SAMPLE = "reference_sample.jsonl"
BASELINE_FILES = (STATISTICS, CONSTRAINTS, VOCABULARY, REFERENCE_SAMPLE)


@dataclass
class Baseline:
    """A baseline, as written to or read from its folder."""

    statistics: dict[str, Any]
    constraints: dict[str, Any]
    vocabularies: dict[str, Vocabulary] = field(default_factory=dict)
    reference: list[dict[str, str]] = field(default_factory=list)

    @property
    def model(self) -> dict[str, Any]:
        return dict(self.statistics.get("model") or {})

    @property
    def inputs(self) -> list[InputColumn]:
        try:
            return [InputColumn.model_validate(column) for column in self.model["inputs"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise MonitorError(f"{STATISTICS} does not describe the model's inputs ({exc})") from exc

    @property
    def labels(self) -> list[str]:
        return [str(label) for label in self.model.get("labels") or []]

    @property
    def max_text_chars(self) -> int:
        return int(self.model.get("max_text_chars") or DEFAULT_MAX_TEXT_CHARS)

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds.from_monitoring_config(self.constraints.get("monitoring_config") or {})

    @property
    def skipped(self) -> dict[str, str]:
        """Why a text column has no vocabulary."""
        reasons = {}
        for feature in self.statistics.get("features", []):
            oov = (feature.get("text_statistics") or {}).get("oov") or {}
            if "skipped" in oov:
                reasons[feature["name"]] = str(oov["skipped"])
        return reasons

    def layout(self) -> Layout:
        """The bins the baseline measured drift on, for a run to count in the same bins."""
        layout = Layout()
        for feature in self.statistics.get("features", []):
            bins = Bins.from_json(feature.get("bins"))
            if bins is not None:
                layout.values[feature["name"]] = bins
            length = ((feature.get("text_statistics") or {}).get("length") or {}).get("bins")
            length_bins = Bins.from_json(length)
            if length_bins is not None:
                layout.lengths[feature["name"]] = length_bins
        return layout

    def feature(self, name: str, which: str = "statistics") -> dict[str, Any] | None:
        source = self.statistics if which == "statistics" else self.constraints
        return next((f for f in source.get("features", []) if f.get("name") == name), None)


def frame_rows(frame: pd.DataFrame, inputs: list[InputColumn], max_text_chars: int) -> np.ndarray:
    """A table's model inputs as rows ``(n_samples, n_inputs)``, as a profile takes them: strings cut to the
    serving limit (None when missing), floats (NaN when missing)."""
    columns = []
    for column in inputs:
        values = frame[column.name]
        if column.dtype == "string":
            present = values.notna().to_numpy()
            texts = values.astype(str).str.slice(0, max_text_chars).to_numpy(dtype=object)
            texts[~present] = None
            columns.append(texts)
        else:
            columns.append(pd.to_numeric(values, errors="coerce").astype("float64").to_numpy(dtype=object))
    if not len(frame):
        return np.empty((0, len(inputs)), dtype=object)
    return np.stack(columns, axis=1)


def layout_of(frame: pd.DataFrame, rows: np.ndarray, inputs: list[InputColumn]) -> Layout:
    """Drift bins from the baseline table: deciles of numbers and text lengths, top categories."""
    layout = Layout()
    for position, column in enumerate(inputs):
        values = rows[:, position]
        if column.role == "text":
            lengths = np.array([len(v) for v in values if isinstance(v, str)], dtype=np.float64)
            layout.lengths[column.name] = Bins.quantiles(lengths)
        elif column.role == "categorical":
            counts = frame[column.name].dropna().astype(str).value_counts()
            layout.values[column.name] = Bins.top({str(k): int(v) for k, v in counts.items()})
        else:
            numbers = np.asarray(values, dtype=np.float64)
            layout.values[column.name] = Bins.quantiles(numbers[~np.isnan(numbers)])
    return layout


def build_baseline(
    model_dir: Path,
    frame: pd.DataFrame,
    *,
    source: str = "",
    sample_size: int = 5000,
    seed: int = 42,
    thresholds: Thresholds | None = None,
    progress: bool = True,
    embedded: bool = False,
) -> Baseline:
    """Profile ``frame`` and the model's predictions on it.

    ``embedded``: the copy export writes into the model directory (see the module docstring).

    Raises:
        ModelIntegrityError: the model directory does not verify.
        DataError: the table lacks one of the model's inputs, or is empty.
    """
    from training.bias.analysis import predict_with_model

    artifact = ModelArtifact.from_directory(model_dir)
    manifest = artifact.manifest
    require_columns(frame, manifest.input_names)
    if not len(frame):
        raise MonitorError("the baseline table has no rows")
    inputs = list(manifest.inputs)
    rows = frame_rows(frame, inputs, DEFAULT_MAX_TEXT_CHARS)
    vocabularies, skipped = model_vocabularies(artifact.directory, manifest)
    profile = Profile(
        inputs,
        labels=manifest.labels,
        layout=layout_of(frame, rows, inputs),
        vocabularies=vocabularies,
        skipped=skipped,
        sample_size=sample_size,
        seed=seed,
    )
    predicted: list[str | None] | None = None
    if not manifest.is_regression:
        predicted = [str(v) for v in predict_with_model(frame, artifact.directory, progress=progress)]
    for start in range(0, len(rows), FLUSH_ROWS):
        stop = start + FLUSH_ROWS
        profile.add(rows[start:stop], predicted=predicted[start:stop] if predicted is not None else None)
    statistics = profile.statistics({"source": source, "reference_sample": len(profile.sample.items)})
    metrics = {k: manifest.metrics[k] for k in ("accuracy", "macro_f1") if k in manifest.metrics}
    statistics["model"] = {
        "name": manifest.name,
        **(
            {}
            if embedded
            else {
                "version": manifest.version,
                "directory": str(artifact.directory),
                "manifest_sha256": artifact.manifest_digest,
            }
        ),
        "problem_type": manifest.problem_type,
        "family": manifest.candidate.family,
        "labels": list(manifest.labels),
        "inputs": [column.model_dump() for column in inputs],
        "metrics": metrics,
        "max_text_chars": DEFAULT_MAX_TEXT_CHARS,
    }
    if not embedded:
        statistics["created_at"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    text_names = [inputs[i].name for i in profile.text_positions]
    reference = [dict(zip(text_names, texts, strict=True)) for texts in profile.sample.items]
    return Baseline(
        statistics=statistics,
        constraints=constraints_of(statistics, thresholds or Thresholds()),
        vocabularies=vocabularies,
        reference=reference,
    )


def constraints_of(statistics: Mapping[str, Any], thresholds: Thresholds) -> dict[str, Any]:
    """Model Monitor's suggested constraints: each feature's type and completeness, non-negativity of numbers
    and the domain of a categorical input with few values."""
    features = []
    records = int(statistics["dataset"]["item_count"])
    for feature in statistics["features"]:
        stats = feature.get("numerical_statistics") or feature.get("string_statistics") or {}
        common = stats.get("common", {})
        present = int(common.get("num_present", 0))
        constraint: dict[str, Any] = {
            "name": feature["name"],
            "inferred_type": feature["inferred_type"],
            "completeness": present / records if records else 0.0,
        }
        if "numerical_statistics" in feature:
            low = feature["numerical_statistics"].get("min")
            constraint["num_constraints"] = {"is_non_negative": low is not None and low >= 0}
        buckets = ((stats.get("distribution") or {}).get("categorical") or {}).get("buckets")
        if buckets and stats.get("distinct_count", MAX_CATEGORIES + 1) <= MAX_CATEGORIES:
            constraint["string_constraints"] = {"domains": [bucket["value"] for bucket in buckets]}
        features.append(constraint)
    return {"version": 0, "features": features, "monitoring_config": thresholds.monitoring_config()}


def write_baseline(baseline: Baseline, out: Path) -> dict[str, Path]:
    """Write the baseline's four files into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        STATISTICS: write_json(out / STATISTICS, baseline.statistics),
        CONSTRAINTS: write_json(out / CONSTRAINTS, baseline.constraints),
        VOCABULARY: write_json(
            out / VOCABULARY, {"columns": [v.json() for v in baseline.vocabularies.values()]}
        ),
    }
    sample = out / REFERENCE_SAMPLE
    with sample.open("w", encoding="utf-8") as handle:
        for record in baseline.reference:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    paths[REFERENCE_SAMPLE] = sample
    return paths


def read_baseline(folder: Path) -> Baseline:
    """Read a baseline folder, or the baseline of a model directory (verified first, digests and all).

    Raises:
        MonitorError: the folder or one of its files is missing or not what ``monitor baseline`` writes.
        ModelIntegrityError: a model directory that does not verify.
    """
    if (folder / MANIFEST_NAME).is_file():
        artifact = ModelArtifact.from_directory(folder)
        baseline = read_baseline(artifact.directory / MODEL_BASELINE_DIR)
        model = baseline.statistics["model"]
        model.update(
            version=artifact.manifest.version,
            directory=str(artifact.directory),
            manifest_sha256=artifact.manifest_digest,
        )
        return baseline
    if not folder.is_dir():
        raise MonitorError(
            f"no baseline at {folder}: run tripod monitor baseline --model DIR --data TABLE --out {folder}"
        )
    missing = [name for name in BASELINE_FILES if not (folder / name).is_file()]
    if missing:
        raise MonitorError(f"{folder} is not a baseline: {', '.join(missing)} missing")

    def load(name: str) -> Any:
        try:
            return json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise MonitorError(f"cannot read {folder / name} ({exc})") from exc

    statistics, constraints, vocabulary = load(STATISTICS), load(CONSTRAINTS), load(VOCABULARY)
    if not isinstance(statistics, dict) or "features" not in statistics or "model" not in statistics:
        raise MonitorError(f"{folder / STATISTICS} is not a Tripod baseline's statistics")
    if not isinstance(constraints, dict) or "features" not in constraints:
        raise MonitorError(f"{folder / CONSTRAINTS} is not a constraints file")
    reference: list[dict[str, str]] = []
    try:
        with (folder / REFERENCE_SAMPLE).open(encoding="utf-8") as handle:
            reference = [json.loads(line) for line in handle if line.strip()]
    except (OSError, ValueError) as exc:
        raise MonitorError(f"cannot read {folder / REFERENCE_SAMPLE} ({exc})") from exc
    vocabularies = {
        vocab.column: vocab
        for vocab in (Vocabulary.from_json(entry) for entry in (vocabulary or {}).get("columns", []))
    }
    baseline = Baseline(statistics, constraints, vocabularies, reference)
    baseline.inputs  # noqa: B018 - fail now, with the file named, rather than mid-run
    baseline.thresholds  # noqa: B018
    return baseline

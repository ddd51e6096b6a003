"""The model directory: the one contract between training and serving.

A model directory holds the ONNX stages, ``manifest.json`` and any reports.  Training writes it with
:func:`write_manifest`; serving opens it with :meth:`ModelArtifact.from_directory`, which refuses a directory
whose files do not match the sha256 digests recorded in the manifest.  Nothing else crosses from training to
serving, so this module imports only the standard library and pydantic.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from services.errors import ModelIntegrityError

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
LATEST_LINK = "latest"
_HASH_CHUNK = 1 << 20

ProblemType = Literal["binary", "multiclass", "regression"]
ColumnType = Literal["string", "float"]
ColumnRole = Literal["text", "categorical", "numeric"]
StageName = Literal["transformer", "classifier", "inverse_label", "regressor"]
STAGES_BY_PROBLEM: dict[str, tuple[str, ...]] = {
    "binary": ("transformer", "classifier", "inverse_label"),
    "multiclass": ("transformer", "classifier", "inverse_label"),
    "regression": ("transformer", "regressor"),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputColumn(_Strict):
    """One column a client sends; its name is the ONNX input name of the transformer stage.

    ``string`` columns (text, categorical) are ``tensor(string)`` inputs; ``float`` columns (numeric) are
    ``tensor(float)`` inputs where a missing value is NaN.
    """

    name: str
    dtype: ColumnType
    role: ColumnRole


class TensorSpec(_Strict):
    name: str
    dtype: str
    shape: list[int | str | None]


class StageSpec(_Strict):
    """One ONNX graph of the pipeline with its named inputs and outputs."""

    file: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


class Parity(_Strict):
    """How closely the ONNX stages reproduce the training framework on held-out rows."""

    rows: int
    label_agreement: float
    max_abs_probability_diff: float
    min_label_agreement: float
    max_probability_tolerance: float
    passed: bool


class Candidate(_Strict):
    """The search candidate that produced the model: its family and hyperparameters."""

    family: str
    params: dict[str, Any] = Field(description="JSON hyperparameters of the family")


class Manifest(_Strict):
    """Everything needed to use a model directory, in JSON beside its ONNX files."""

    schema_version: int = SCHEMA_VERSION
    name: str
    version: str
    created_at: str
    problem_type: ProblemType
    target: str
    inputs: list[InputColumn]
    labels: list[str] = Field(description="label strings in class-index order; empty for regression")
    stages: dict[StageName, StageSpec]
    metrics: dict[str, float]
    parity: Parity
    data_fingerprint: str
    candidate: Candidate
    libraries: dict[str, str]
    files: dict[str, str] = Field(default_factory=dict, description="relative path -> sha256")

    @property
    def input_names(self) -> list[str]:
        return [column.name for column in self.inputs]

    @model_validator(mode="after")
    def _stages_fit_the_problem(self) -> Manifest:
        expected = STAGES_BY_PROBLEM[self.problem_type]
        if tuple(sorted(self.stages)) != tuple(sorted(expected)):
            raise ValueError(
                f"a {self.problem_type} model has stages {list(expected)}, not {sorted(self.stages)}"
            )
        if (self.problem_type == "regression") != (not self.labels):
            raise ValueError("labels are required for classification and must be empty for regression")
        return self


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks so large graphs do not sit in memory twice."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_manifest(model_dir: Path, manifest: Manifest) -> Manifest:
    """Hash every file under ``model_dir`` (except the manifest) and write ``manifest.json``.

    Returns:
        The manifest as written, with its ``files`` digests filled in.
    """
    files = {
        path.relative_to(model_dir).as_posix(): sha256_file(path)
        for path in sorted(model_dir.rglob("*"))
        if path.is_file() and path.name != MANIFEST_NAME
    }
    final = manifest.model_copy(update={"files": files})
    (model_dir / MANIFEST_NAME).write_text(final.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return final


def read_manifest(model_dir: Path) -> Manifest:
    """Parse ``manifest.json`` without checking file digests (see :func:`verify`)."""
    path = model_dir / MANIFEST_NAME
    if not path.is_file():
        raise ModelIntegrityError(f"{model_dir} is not a model directory: {MANIFEST_NAME} is missing")
    try:
        manifest = Manifest.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise ModelIntegrityError(f"{path} is not a valid manifest: {exc.error_count()} problem(s)") from exc
    if manifest.schema_version != SCHEMA_VERSION:
        raise ModelIntegrityError(
            f"{path} has schema version {manifest.schema_version}; this Tripod reads {SCHEMA_VERSION}"
        )
    return manifest


def verify(model_dir: Path, manifest: Manifest) -> None:
    """Refuse a model directory whose files are missing or differ from the manifest's digests."""
    for stage in manifest.stages.values():
        if stage.file not in manifest.files:
            raise ModelIntegrityError(
                f"{stage.file} is a stage of the model but has no digest in the manifest"
            )
    for relative, expected in manifest.files.items():
        path = model_dir / relative
        if not path.is_file():
            raise ModelIntegrityError(f"{relative} is listed in the manifest but missing from {model_dir}")
        actual = sha256_file(path)
        if actual != expected:
            raise ModelIntegrityError(
                f"{relative} does not match its sha256 in the manifest (expected {expected[:12]}…, "
                f"found {actual[:12]}…): the model directory was modified after export"
            )


def load_manifest(model_dir: Path) -> Manifest:
    """Read and verify a model directory's manifest; the only way serving opens a model."""
    resolved = Path(model_dir).resolve()
    manifest = read_manifest(resolved)
    verify(resolved, manifest)
    return manifest


def next_version_dir(model_root: Path) -> Path:
    """The next free ``v<N>`` directory under ``models/<name>/``, created empty."""
    model_root.mkdir(parents=True, exist_ok=True)
    taken = [int(p.name[1:]) for p in model_root.glob("v*") if p.name[1:].isdigit()]
    version_dir = model_root / f"v{max(taken, default=0) + 1}"
    version_dir.mkdir()
    return version_dir


def point_latest(model_root: Path, version_dir: Path) -> Path:
    """Atomically repoint ``models/<name>/latest`` at ``version_dir`` (a relative symlink)."""
    link = model_root / LATEST_LINK
    tmp = model_root / f".{LATEST_LINK}.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(version_dir.name, tmp)
    os.replace(tmp, link)
    return link


def dump_json(path: Path, payload: object) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")

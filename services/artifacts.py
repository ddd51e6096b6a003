"""The model directory: the one contract between training and serving.

A model directory holds the ONNX stages, ``manifest.json``, ``manifest.sha256`` and any reports.  Training
writes it with :func:`write_manifest`; serving opens it with :meth:`ModelArtifact.from_directory`, which
refuses a directory unless

- ``manifest.sha256`` matches ``manifest.json`` (so the manifest itself cannot be edited unnoticed: it is the
  one file to sign, e.g. with a detached signature, since it pins the manifest, which pins every other file);
- the manifest parses, has this schema version, and every file it lists is a plain relative path that stays
  inside the directory (no ``..``, no absolute path, no symlink leading out) and matches its sha256.

What the files *mean* (stage inputs and outputs fit each other, the labels are what ``inverse_label.onnx``
emits) needs onnxruntime and is checked where the stages are opened (``services/runtime/stages.py``).

Nothing else crosses from training to serving, so this module imports only the standard library and pydantic.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from services.errors import ModelIntegrityError, StorageError

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
MANIFEST_DIGEST_NAME = "manifest.sha256"
LATEST_LINK = "latest"
VERSION_NAME = re.compile(r"v[0-9]+")
"""How a version directory is named: ``v<N>`` (:func:`next_version_dir`)."""
_HASH_CHUNK = 1 << 20

# Stage files and the tensor names that connect the stages (models/README.md).
TRANSFORMER_FILE = "transformer.onnx"
CLASSIFIER_FILE = "classifier.onnx"
INVERSE_LABEL_FILE = "inverse_label.onnx"
REGRESSOR_FILE = "regressor.onnx"
FEATURES = "features"
LABEL = "label"
PROBABILITIES = "probabilities"
PREDICTED_LABEL = "predicted_label"
PREDICTIONS = "predictions"
EXPLAINER_FILE = "explainer.onnx"
EXPLAINER_FEATURES_FILE = "explainer_features.json"
CONTRIBUTIONS = "contributions"
BASE_VALUES = "base_values"

ProblemType = Literal["binary", "multiclass", "regression"]
ColumnType = Literal["string", "float"]
ColumnRole = Literal["text", "categorical", "numeric"]
StageName = Literal["transformer", "classifier", "inverse_label", "regressor"]
STAGE_NAMES: tuple[StageName, ...] = ("transformer", "classifier", "inverse_label", "regressor")
STAGES_BY_PROBLEM: dict[str, tuple[StageName, ...]] = {
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


class TextTokenizer(_Strict):
    """How a text column's vectorizer cut words, so serving can point each n-gram back at the characters of the
    request that produced it (the explainer's ``token`` offsets)."""

    column: str
    token_pattern: str = Field(
        description="the vectorizer's regular expression for one word (Python re syntax)"
    )
    lowercase: bool
    ngram_max: int = Field(ge=1)


class ExplainedFeature(_Strict):
    """What one column of ``features`` is: an n-gram of a text column, a value of a categorical column (one-hot),
    or a numeric column (scaled)."""

    column: str
    kind: ColumnRole
    term: str | None = Field(
        default=None,
        description="text: the n-gram as the vectorizer writes it (words joined by one space); categorical: the value; numeric: null",
    )


class ExplainerFeatures(_Strict):
    """``explainer_features.json``: one entry per column of ``features``, in order."""

    features: list[ExplainedFeature]


class ExplainerCheck(_Strict):
    """How the exported explainer agreed with ``shap`` (and with the model's own scores) on held-out rows."""

    rows: int
    max_abs_diff_vs_shap: float
    max_additivity_error: float
    tolerance: float
    shap_version: str
    passed: bool


class ExplainerSpec(_Strict):
    """An exact explainer stage exported with a linear model (``explainer.onnx``).

    It takes ``features`` and gives ``contributions`` ``float32 [N, C, F]`` (each feature's share of each
    class's score) and ``base_values`` ``float32 [C]``.  ``score`` is the class's margin: the log-odds of the
    class for a binary model, the softmax input for a multiclass one, the value for a regression (C = 1).  The
    baseline is the all-absent feature vector (zeros), so ``base_values`` are the intercepts, a feature that is
    zero (a word the text does not contain) contributes exactly nothing, and contributions + base = score.
    """

    method: Literal["linear"] = "linear"
    baseline: Literal["absent"] = "absent"
    score: Literal["margin"] = "margin"
    stage: StageSpec
    features_file: str = EXPLAINER_FEATURES_FILE
    tokenizers: list[TextTokenizer] = Field(default_factory=list)
    check: ExplainerCheck


def contained_path(relative: str) -> PurePosixPath:
    """A manifest file name as a path that cannot leave the model directory.

    Raises:
        ValueError: empty, absolute, a Windows drive or backslash, or a ``.``/``..`` component.
    """
    path = PurePosixPath(relative)
    if (
        not relative
        or "\\" in relative
        or "\x00" in relative
        or path.is_absolute()
        or any(part in ("", ".", "..") for part in relative.split("/"))
        or (len(relative) > 1 and relative[1] == ":")
    ):
        raise ValueError(f"{relative!r} is not a plain relative path inside the model directory")
    return path


class Manifest(_Strict):
    """Everything needed to use a model directory, in JSON beside its ONNX files."""

    schema_version: int = SCHEMA_VERSION
    name: str
    version: str
    created_at: str
    problem_type: ProblemType
    target: str
    inputs: list[InputColumn] = Field(min_length=1)
    labels: list[str] = Field(description="label strings in class-index order; empty for regression")
    stages: dict[StageName, StageSpec]
    metrics: dict[str, float]
    parity: Parity
    data_fingerprint: str
    candidate: Candidate
    libraries: dict[str, str]
    files: dict[str, str] = Field(default_factory=dict, description="relative path -> sha256")
    explainer: ExplainerSpec | None = Field(
        default=None, description="the exact explainer stage of a linear model; None for other families"
    )

    @property
    def input_names(self) -> list[str]:
        return [column.name for column in self.inputs]

    @property
    def is_regression(self) -> bool:
        return self.problem_type == "regression"

    @field_validator("files")
    @classmethod
    def _files_stay_inside(cls, files: dict[str, str]) -> dict[str, str]:
        for relative, digest in files.items():
            contained_path(relative)
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ValueError(f"the digest of {relative!r} is not a sha256 hex string")
        return files

    @model_validator(mode="after")
    def _stages_fit_the_problem(self) -> Manifest:
        expected = STAGES_BY_PROBLEM[self.problem_type]
        if tuple(sorted(self.stages)) != tuple(sorted(expected)):
            raise ValueError(
                f"a {self.problem_type} model has stages {list(expected)}, not {sorted(self.stages)}"
            )
        if (self.problem_type == "regression") != (not self.labels):
            raise ValueError("labels are required for classification and must be empty for regression")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"labels must be distinct, got {self.labels}")
        if len(set(self.input_names)) != len(self.input_names):
            raise ValueError(f"input column names must be distinct, got {self.input_names}")
        for stage in self.stages.values():
            contained_path(stage.file)
        if self.explainer is not None:
            contained_path(self.explainer.stage.file)
            contained_path(self.explainer.features_file)
        return self

    @property
    def listed_files(self) -> list[str]:
        """Files the model cannot be used without: the stages, and the explainer's when it has one."""
        listed = [stage.file for stage in self.stages.values()]
        if self.explainer is not None:
            listed += [self.explainer.stage.file, self.explainer.features_file]
        return listed


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks so large graphs do not sit in memory twice."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def manifest_digest_line(manifest_bytes: bytes) -> str:
    """The line of ``manifest.sha256``, in ``sha256sum`` format so ``sha256sum -c manifest.sha256`` checks it."""
    return f"{hashlib.sha256(manifest_bytes).hexdigest()}  {MANIFEST_NAME}\n"


def write_manifest(model_dir: Path, manifest: Manifest) -> Manifest:
    """Hash every file under ``model_dir``, write ``manifest.json``, then ``manifest.sha256`` over it.

    Returns:
        The manifest as written, with its ``files`` digests filled in.
    """
    files = {
        path.relative_to(model_dir).as_posix(): sha256_file(path)
        for path in sorted(model_dir.rglob("*"))
        if path.is_file() and path.name not in (MANIFEST_NAME, MANIFEST_DIGEST_NAME)
    }
    final = manifest.model_copy(update={"files": files})
    encoded = (final.model_dump_json(indent=2) + "\n").encode("utf-8")
    (model_dir / MANIFEST_NAME).write_bytes(encoded)
    (model_dir / MANIFEST_DIGEST_NAME).write_text(manifest_digest_line(encoded), encoding="utf-8")
    return final


def resolve_model_dir(model_dir: Path) -> Path:
    """The real directory behind ``model_dir`` (a ``latest`` link is followed).

    Raises:
        ModelIntegrityError: a symlink loop, or no directory there.
    """
    try:
        resolved = Path(model_dir).resolve(strict=True)
    except RuntimeError as exc:  # Python 3.11 reports a symlink loop this way
        raise ModelIntegrityError(f"{model_dir} is a symlink loop") from exc
    except FileNotFoundError as exc:
        raise ModelIntegrityError(f"{model_dir} does not exist") from exc
    except OSError as exc:  # ELOOP from the OS, permission denied, …
        raise ModelIntegrityError(f"{model_dir} cannot be opened: {exc.strerror or exc}") from exc
    if not resolved.is_dir():
        raise ModelIntegrityError(f"{model_dir} is not a model directory")
    return resolved


def _read_verified_manifest_bytes(model_dir: Path) -> bytes:
    path = model_dir / MANIFEST_NAME
    if not path.is_file():
        raise ModelIntegrityError(f"{model_dir} is not a model directory: {MANIFEST_NAME} is missing")
    data = path.read_bytes()
    digest_path = model_dir / MANIFEST_DIGEST_NAME
    if not digest_path.is_file():
        raise ModelIntegrityError(
            f"{MANIFEST_DIGEST_NAME} is missing from {model_dir}: the manifest cannot be verified (re-export the model)"
        )
    _check_manifest_digest(data, digest_path.read_bytes())
    return data


def _check_manifest_digest(data: bytes, digest_line: bytes) -> None:
    expected = digest_line.decode("utf-8", errors="replace").split(maxsplit=1)[:1]
    if expected != [hashlib.sha256(data).hexdigest()]:
        raise ModelIntegrityError(
            f"{MANIFEST_NAME} does not match {MANIFEST_DIGEST_NAME}: the manifest was modified after export"
        )


def read_manifest(model_dir: Path) -> Manifest:
    """Parse a model directory's manifest after checking it against ``manifest.sha256``, without checking the
    other files (see :meth:`ModelArtifact.from_directory`)."""
    return _parse_manifest(_read_verified_manifest_bytes(model_dir), str(model_dir))


def manifest_from_bytes(data: bytes, digest_line: bytes, where: str) -> Manifest:
    """Parse a manifest read from anywhere (an object store's prefix) after checking it against the bytes of its
    ``manifest.sha256``: the checks of :func:`read_manifest`, without a directory.

    Args:
        data: the bytes of ``manifest.json``.
        digest_line: the bytes of ``manifest.sha256``.
        where: the directory or prefix the two came from, for messages.

    Raises:
        ModelIntegrityError: the manifest does not match its digest, does not parse, or has another schema.
    """
    _check_manifest_digest(data, digest_line)
    return _parse_manifest(data, where.rstrip("/"))


def _parse_manifest(data: bytes, where: str) -> Manifest:
    try:
        manifest = Manifest.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        location = ".".join(str(part) for part in first["loc"]) or "manifest"
        raise ModelIntegrityError(
            f"{where}/{MANIFEST_NAME} is not a valid manifest: {location}: {first['msg']}"
        ) from exc
    if manifest.schema_version != SCHEMA_VERSION:
        raise ModelIntegrityError(
            f"{where}/{MANIFEST_NAME} has schema version {manifest.schema_version}; this Tripod reads {SCHEMA_VERSION}"
        )
    return manifest


def verify_files(model_dir: Path, manifest: Manifest) -> None:
    """Refuse a model directory whose listed files are missing, lead outside it, or differ from their digests.

    A path leading outside is refused before it is opened, so nothing outside the directory is ever read.
    """
    for required in manifest.listed_files:
        if required not in manifest.files:
            raise ModelIntegrityError(f"{required} is a stage of the model but has no digest in the manifest")
    for relative, expected in manifest.files.items():
        path = model_dir / relative
        real = Path(os.path.realpath(path))
        if not real.is_relative_to(model_dir):
            raise ModelIntegrityError(f"{relative} leads outside the model directory {model_dir}")
        if not real.is_file():
            raise ModelIntegrityError(f"{relative} is listed in the manifest but missing from {model_dir}")
        if sha256_file(real) != expected:
            raise ModelIntegrityError(
                f"{relative} does not match its sha256 in the manifest: the model directory was modified after export"
            )


@dataclass(frozen=True)
class ModelGraphs:
    """The stage graphs of a model and what they must fit: all the runtime needs to open and run them.

    A verified model directory gives one (:attr:`ModelArtifact.graphs`); export builds one from the stage
    files it just wrote (:meth:`from_files`), so its parity check runs the very code that will serve them.
    """

    paths: dict[StageName, Path]
    inputs: list[InputColumn]
    labels: list[str]
    specs: dict[StageName, StageSpec] | None = None
    """What the manifest says about each graph (checked when opened); None before export writes it."""

    @property
    def is_regression(self) -> bool:
        return "regressor" in self.paths

    @classmethod
    def from_files(
        cls, paths: Mapping[str, Path], inputs: Sequence[InputColumn], labels: Sequence[str]
    ) -> ModelGraphs:
        """Stage files that have no manifest yet (``transformer`` and ``classifier`` + ``inverse_label``, or
        ``regressor``)."""
        stages = {stage: Path(path) for stage, path in paths.items() if stage in STAGE_NAMES}
        return cls(paths=stages, inputs=list(inputs), labels=list(labels))


@dataclass(frozen=True)
class ModelArtifact:
    """A verified model directory: where it is and what its manifest says.  Open one with
    :meth:`from_directory`, once per process; everything that serves or predicts takes this object."""

    directory: Path
    """The resolved version directory (a ``latest`` link already followed)."""
    manifest: Manifest

    @classmethod
    def from_directory(cls, model_dir: Path) -> ModelArtifact:
        """Resolve, read and verify a model directory: the manifest against ``manifest.sha256``, every file
        against the manifest.

        Raises:
            ModelIntegrityError: naming the first problem found.
        """
        directory = resolve_model_dir(model_dir)
        manifest = read_manifest(directory)
        verify_files(directory, manifest)
        return cls(directory=directory, manifest=manifest)

    @property
    def manifest_digest(self) -> str:
        """The sha256 of the manifest, which holds every file's digest: the model's identity (what
        ``manifest.sha256`` records)."""
        return hashlib.sha256((self.directory / MANIFEST_NAME).read_bytes()).hexdigest()

    @property
    def graphs(self) -> ModelGraphs:
        manifest = self.manifest
        return ModelGraphs(
            paths={stage: self.directory / spec.file for stage, spec in manifest.stages.items()},
            inputs=manifest.inputs,
            labels=manifest.labels,
            specs=dict(manifest.stages),
        )


def ensure_model_root(model_root: Path) -> Path:
    """Create ``models/<name>/`` (and its parents) if needed.

    Raises:
        StorageError: a file stands where a directory must be, or no permission.
    """
    try:
        model_root.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise StorageError(
            f"cannot create the model directory {model_root}: {exc.filename} is a file"
        ) from exc
    except OSError as exc:
        raise StorageError(f"cannot create the model directory {model_root}: {exc.strerror or exc}") from exc
    return model_root


def next_version_dir(model_root: Path) -> Path:
    """The next free ``v<N>`` directory under ``models/<name>/``, created empty."""
    ensure_model_root(model_root)
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
    tmp.symlink_to(version_dir.name)
    tmp.replace(link)
    return link


def pointer_text(version: str) -> bytes:
    """The body of an object store's ``<registry>/<name>/latest`` object, which stands for the local symlink
    (S3 has no links): the version's name and a newline, ``b"v3\\n"``."""
    return f"{check_version_name(version)}\n".encode()


def parse_pointer(data: bytes, where: str) -> str:
    """The version a ``latest`` pointer object names (see :func:`pointer_text`).

    Raises:
        ModelIntegrityError: the object does not hold one version name.
    """
    text = data.decode("utf-8", errors="replace").strip()
    try:
        return check_version_name(text)
    except ValueError as exc:
        raise ModelIntegrityError(
            f"{where} is not a model pointer: it must hold one version name such as v3, not {text[:40]!r}"
        ) from exc


def check_version_name(version: str) -> str:
    """``version`` if it names a version directory (``v<N>``, what :func:`next_version_dir` creates).

    Raises:
        ValueError: anything else.
    """
    if VERSION_NAME.fullmatch(version) is None:
        raise ValueError(f"{version!r} is not a version name (v1, v2, …)")
    return version


def dump_json(path: Path, payload: object) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")

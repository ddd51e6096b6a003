"""The model-directory contract: digests are written at export and every load verifies them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.artifacts import (
    Candidate,
    InputColumn,
    Manifest,
    Parity,
    StageSpec,
    TensorSpec,
    load_manifest,
    next_version_dir,
    point_latest,
    write_manifest,
)
from services.errors import ModelIntegrityError

STAGE_FILES = {
    "transformer": "transformer.onnx",
    "classifier": "classifier.onnx",
    "inverse_label": "inverse_label.onnx",
}


def _manifest() -> Manifest:
    tensor = TensorSpec(name="x", dtype="float", shape=[None, 3])
    return Manifest(
        name="toy",
        version="v1",
        created_at="2026-01-01T00:00:00+00:00",
        problem_type="multiclass",
        target="sentiment",
        inputs=[InputColumn(name="review_body", dtype="string", role="text")],
        labels=["negative", "neutral", "positive"],
        stages={
            stage: StageSpec(file=file, inputs=[tensor], outputs=[tensor])
            for stage, file in STAGE_FILES.items()
        },
        metrics={"accuracy": 0.5},
        parity=Parity(
            rows=10,
            label_agreement=1.0,
            max_abs_probability_diff=0.0,
            min_label_agreement=0.999,
            max_probability_tolerance=1e-3,
            passed=True,
        ),
        data_fingerprint="0" * 64,
        candidate=Candidate(family="tfidf_logreg", params={"C": 1.0}),
        libraries={"onnxruntime": "1"},
    )


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    for file in STAGE_FILES.values():
        (tmp_path / file).write_bytes(b"graph bytes of " + file.encode())
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "metrics.json").write_text("{}")
    write_manifest(tmp_path, _manifest())
    return tmp_path


def test_write_manifest_records_a_sha256_for_every_file(model_dir: Path) -> None:
    files = json.loads((model_dir / "manifest.json").read_text())["files"]
    assert set(files) == {*STAGE_FILES.values(), "reports/metrics.json"}
    assert all(len(digest) == 64 for digest in files.values())


def test_load_manifest_accepts_an_untouched_directory(model_dir: Path) -> None:
    manifest = load_manifest(model_dir)
    assert manifest.labels == ["negative", "neutral", "positive"]
    assert manifest.input_names == ["review_body"]


def test_a_tampered_byte_is_refused_naming_the_file(model_dir: Path) -> None:
    path = model_dir / "classifier.onnx"
    data = bytearray(path.read_bytes())
    data[3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match=r"classifier\.onnx does not match its sha256"):
        load_manifest(model_dir)


def test_a_missing_file_is_refused_naming_the_file(model_dir: Path) -> None:
    (model_dir / "inverse_label.onnx").unlink()
    with pytest.raises(
        ModelIntegrityError, match=r"inverse_label\.onnx is listed in the manifest but missing"
    ):
        load_manifest(model_dir)


def test_a_directory_without_manifest_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelIntegrityError, match="manifest.json is missing"):
        load_manifest(tmp_path)


def test_a_corrupt_manifest_is_refused(model_dir: Path) -> None:
    (model_dir / "manifest.json").write_text('{"name": 3}')
    with pytest.raises(ModelIntegrityError, match="is not a valid manifest"):
        load_manifest(model_dir)


def test_versions_count_up_and_latest_follows_the_newest(tmp_path: Path) -> None:
    first = next_version_dir(tmp_path)
    point_latest(tmp_path, first)
    second = next_version_dir(tmp_path)
    link = point_latest(tmp_path, second)
    assert (first.name, second.name) == ("v1", "v2")
    assert link.resolve() == second.resolve()

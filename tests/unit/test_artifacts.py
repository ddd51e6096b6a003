"""The model-directory contract: digests are written at export and every load verifies them, the manifest
included, and nothing outside the directory is ever read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.artifacts import (
    MANIFEST_DIGEST_NAME,
    Candidate,
    InputColumn,
    Manifest,
    ModelArtifact,
    Parity,
    StageSpec,
    TensorSpec,
    ensure_model_root,
    manifest_digest_line,
    next_version_dir,
    point_latest,
    write_manifest,
)
from services.errors import ModelIntegrityError, StorageError

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


def test_an_untouched_directory_loads(model_dir: Path) -> None:
    manifest = ModelArtifact.from_directory(model_dir).manifest
    assert manifest.labels == ["negative", "neutral", "positive"]
    assert manifest.input_names == ["review_body"]


def test_a_tampered_byte_is_refused_naming_the_file(model_dir: Path) -> None:
    path = model_dir / "classifier.onnx"
    data = bytearray(path.read_bytes())
    data[3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match=r"classifier\.onnx does not match its sha256"):
        ModelArtifact.from_directory(model_dir)


def test_a_missing_file_is_refused_naming_the_file(model_dir: Path) -> None:
    (model_dir / "inverse_label.onnx").unlink()
    with pytest.raises(
        ModelIntegrityError, match=r"inverse_label\.onnx is listed in the manifest but missing"
    ):
        ModelArtifact.from_directory(model_dir)


def test_a_directory_without_manifest_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelIntegrityError, match=r"manifest\.json is missing"):
        ModelArtifact.from_directory(tmp_path)


def test_a_corrupt_manifest_with_a_matching_digest_is_refused_naming_the_field(model_dir: Path) -> None:
    rewrite_manifest(model_dir, {"name": 3})
    with pytest.raises(ModelIntegrityError, match="is not a valid manifest: name: "):
        ModelArtifact.from_directory(model_dir)


def test_versions_count_up_and_latest_follows_the_newest(tmp_path: Path) -> None:
    first = next_version_dir(tmp_path)
    point_latest(tmp_path, first)
    second = next_version_dir(tmp_path)
    link = point_latest(tmp_path, second)
    assert (first.name, second.name) == ("v1", "v2")
    assert link.resolve() == second.resolve()


def rewrite_manifest(model_dir: Path, change: dict[str, object]) -> None:
    """What an attacker (or a careless edit) that also regenerates manifest.sha256 would leave behind."""
    manifest = json.loads((model_dir / "manifest.json").read_text())
    manifest.update(change)
    encoded = (json.dumps(manifest, indent=2) + "\n").encode()
    (model_dir / "manifest.json").write_bytes(encoded)
    (model_dir / MANIFEST_DIGEST_NAME).write_text(manifest_digest_line(encoded))


def test_the_manifest_digest_is_in_sha256sum_format(model_dir: Path) -> None:
    import hashlib

    line = (model_dir / MANIFEST_DIGEST_NAME).read_text()
    assert (
        line == f"{hashlib.sha256((model_dir / 'manifest.json').read_bytes()).hexdigest()}  manifest.json\n"
    )


def test_an_edited_manifest_is_refused(model_dir: Path) -> None:
    manifest = json.loads((model_dir / "manifest.json").read_text())
    manifest["labels"] = list(reversed(manifest["labels"]))
    (model_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    with pytest.raises(ModelIntegrityError, match=r"manifest\.json does not match manifest\.sha256"):
        ModelArtifact.from_directory(model_dir)


def test_a_manifest_without_its_digest_is_refused(model_dir: Path) -> None:
    (model_dir / MANIFEST_DIGEST_NAME).unlink()
    with pytest.raises(ModelIntegrityError, match=r"manifest\.sha256 is missing"):
        ModelArtifact.from_directory(model_dir)


@pytest.mark.parametrize("path", ["../secret.onnx", "/etc/passwd", "reports/../../x", "C:/x", "a\\b", ""])
def test_file_entries_that_leave_the_directory_are_refused_before_anything_is_read(
    model_dir: Path, path: str
) -> None:
    rewrite_manifest(model_dir, {"files": {path: "0" * 64}})
    with pytest.raises(ModelIntegrityError, match="not a plain relative path inside the model directory"):
        ModelArtifact.from_directory(model_dir)


def test_a_symlink_leading_out_of_the_directory_is_refused_and_not_hashed(
    model_dir: Path, tmp_path: Path
) -> None:
    outside = tmp_path.parent / "outside.bin"
    outside.write_bytes(b"someone else's file")
    (model_dir / "reports" / "metrics.json").unlink()
    (model_dir / "reports" / "metrics.json").symlink_to(outside)
    with pytest.raises(
        ModelIntegrityError, match=r"reports/metrics\.json leads outside the model directory"
    ) as raised:
        ModelArtifact.from_directory(model_dir)
    assert "sha256" not in str(raised.value)


def test_a_latest_link_that_loops_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "latest").symlink_to("other")
    (tmp_path / "other").symlink_to("latest")
    with pytest.raises(ModelIntegrityError, match="symlink loop"):
        ModelArtifact.from_directory(tmp_path / "latest")


def test_a_wrong_digest_names_the_file_but_prints_no_hash(model_dir: Path) -> None:
    (model_dir / "classifier.onnx").write_bytes(b"other bytes")
    with pytest.raises(ModelIntegrityError) as raised:
        ModelArtifact.from_directory(model_dir)
    assert "classifier.onnx" in str(raised.value)
    assert not any(
        len(word) >= 12 and all(c in "0123456789abcdef…" for c in word) for word in str(raised.value).split()
    )


def test_a_model_root_under_a_file_is_a_one_line_storage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StorageError, match="is a file"):
        ensure_model_root(tmp_path / "file" / "models" / "reviews")

"""``tripod models pull s3://…`` through moto's S3 server on loopback, reached by the standard AWS variables —
what a Kubernetes init container runs.  Here, with the S3 fixtures of tests/conftest.py; the local
behaviour is proven in tests/unit/test_delivery.py."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from services.artifacts import MANIFEST_NAME, ModelArtifact, read_manifest, write_manifest
from services.delivery import pull_model
from tests.cli import error_line, run_cli


def upload(s3_client: Any, bucket: str, folder: Path, prefix: str) -> str:
    """Every file of ``folder`` under ``prefix``; returns the prefix's URL."""
    name = bucket.removeprefix("s3://")
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            s3_client.put_object(
                Bucket=name, Key=f"{prefix}/{path.relative_to(folder).as_posix()}", Body=path.read_bytes()
            )
    return f"{bucket}/{prefix}"


def model_variant(source: Path, folder: Path, version: str, extra: bytes = b"") -> Path:
    """A copy of a model as another version (another manifest digest), with ``reports/extra.bin`` if given."""
    copy = folder / version
    shutil.copytree(source, copy)
    if extra:
        (copy / "reports").mkdir(exist_ok=True)
        (copy / "reports" / "extra.bin").write_bytes(extra)
    write_manifest(copy, read_manifest(copy).model_copy(update={"version": version}))
    return copy


def manifest_digest(model_dir: Path) -> str:
    return hashlib.sha256((model_dir / MANIFEST_NAME).read_bytes()).hexdigest()


def test_pull_from_s3_streams_every_listed_object_and_gives_the_models_bytes_at_dest(
    trained_model_dir: Path,
    s3_client: Any,
    s3_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # 9 MiB: more than one 8 MiB S3 read block (storage.BLOCK_SIZE), so the copy spans several ranged GETs.
    model = model_variant(trained_model_dir, tmp_path, "v3", extra=os.urandom(9 << 20))
    src = upload(s3_client, s3_bucket, model, "models/reviews/v3")
    dest = tmp_path / "models" / "current"

    code, out, err = run_cli(["models", "pull", src + "/", str(dest)], monkeypatch, capsys)

    assert code == 0, err
    manifest, digest = read_manifest(model), manifest_digest(model)
    pulled = re.fullmatch(
        rf"pulled {manifest.name} v3 \({len(manifest.files) + 2} files, (\d+\.\d) MiB\) "
        rf"from {re.escape(src)}/ to {re.escape(str(dest))}, manifest sha256 {digest[:12]}\n",
        out,
    )
    assert pulled is not None and float(pulled[1]) >= 9.0  # the extra 9 MiB and the model's own files
    artifact = ModelArtifact.from_directory(dest)
    assert artifact.manifest_digest == digest
    assert all(
        (artifact.directory / name).read_bytes() == (model / name).read_bytes() for name in manifest.files
    )

    code, out, _ = run_cli(["models", "pull", src, str(dest)], monkeypatch, capsys)

    assert code == 0 and out.endswith(": nothing to pull\n")


def test_a_tampered_object_on_s3_fails_in_one_line_and_dest_keeps_its_model(
    trained_model_dir: Path,
    s3_client: Any,
    s3_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dest = tmp_path / "models" / "current"
    pull_model(str(trained_model_dir), dest)
    held = os.readlink(dest)
    src = upload(s3_client, s3_bucket, model_variant(trained_model_dir, tmp_path, "v4"), "models/reviews/v4")
    s3_client.put_object(
        Bucket=s3_bucket.removeprefix("s3://"), Key="models/reviews/v4/classifier.onnx", Body=b"x"
    )

    code, _, err = run_cli(["models", "pull", src, str(dest)], monkeypatch, capsys)

    assert code == 2
    assert error_line(err) == (
        f"tripod: error: classifier.onnx at {src} does not match its sha256 in the manifest: "
        "the source was modified after export"
    )
    assert os.readlink(dest) == held
    assert sorted(entry.name for entry in dest.parent.iterdir()) == sorted([".current.lock", "current", held])


def test_an_s3_prefix_without_a_model_is_one_line(
    s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(
        ["models", "pull", f"{s3_bucket}/models/nothing/v1", str(tmp_path / "current")], monkeypatch, capsys
    )

    assert code == 2
    assert error_line(err) == (
        f"tripod: error: {s3_bucket}/models/nothing/v1 is not a model directory: manifest.sha256 is missing"
    )
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_s3_endpoint_is_one_line_without_credentials_and_dest_keeps_its_model(
    trained_model_dir: Path,
    s3_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from harness.server import free_port

    dest = tmp_path / "current"
    pull_model(str(trained_model_dir), dest)
    before = sorted(entry.name for entry in tmp_path.iterdir())
    secret = "do-not-print-this-secret"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")

    code, _, err = run_cli(
        ["models", "pull", "s3://bucket/models/reviews/v3", str(dest)], monkeypatch, capsys
    )

    assert code == 2
    assert error_line(err).startswith(
        "tripod: error: cannot read s3://bucket/models/reviews/v3/manifest.sha256: Could not connect"
    )
    assert secret not in err and "Traceback" not in err
    assert sorted(entry.name for entry in tmp_path.iterdir()) == before
    assert ModelArtifact.from_directory(dest).manifest_digest == manifest_digest(trained_model_dir)

"""The model lifecycle on an S3 registry, through moto on loopback (tests/conftest.py): the pointer is an object
``<name>/latest`` holding the version's name, written by one PUT only after the version was pulled and verified;
the history is rewritten whole; ``tripod models pull s3://…/<name>/latest`` follows the pointer (the local
registry is in tests/unit/test_registry.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from harness.models import model_version_copy
from services.artifacts import MANIFEST_NAME, ModelArtifact
from tests.cli import error_line, run_cli


def upload(s3_client: Any, bucket: str, folder: Path, prefix: str) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            s3_client.put_object(
                Bucket=bucket.removeprefix("s3://"),
                Key=f"{prefix}/{path.relative_to(folder).as_posix()}",
                Body=path.read_bytes(),
            )


def get(s3_client: Any, bucket: str, key: str) -> bytes:
    return bytes(s3_client.get_object(Bucket=bucket.removeprefix("s3://"), Key=key)["Body"].read())


def manifest_digest(model_dir: Path) -> str:
    return hashlib.sha256((model_dir / MANIFEST_NAME).read_bytes()).hexdigest()


@pytest.fixture
def versions(trained_model_dir: Path, tmp_path: Path) -> dict[str, Path]:
    """Two versions of the trained model, each manifest naming its own version (two digests)."""
    return {
        version: model_version_copy(trained_model_dir, tmp_path / "local", version)
        for version in ("v1", "v2")
    }


@pytest.fixture
def registry(versions: dict[str, Path], s3_client: Any, s3_bucket: str) -> str:
    """``s3://bucket/registry/reviews/{v1,v2}``, no pointer yet: as ``aws s3 cp --recursive`` leaves it."""
    for version, folder in versions.items():
        upload(s3_client, s3_bucket, folder, f"registry/reviews/{version}")
    return f"{s3_bucket}/registry"


def test_promote_writes_the_pointer_object_and_the_history_and_pull_follows_it(
    registry: str,
    versions: dict[str, Path],
    s3_client: Any,
    s3_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TRIPOD_USER", "ci")
    code, out, err = run_cli(["models", "list", "--registry", registry, "--json"], monkeypatch, capsys)
    assert code == 0, err
    (model,) = json.loads(out)["models"]
    assert (model["name"], model["current"]) == ("reviews", None)
    assert [v["version"] for v in model["versions"]] == ["v1", "v2"]
    assert model["versions"][1]["size"] == sum(
        path.stat().st_size for path in versions["v2"].rglob("*") if path.is_file()
    )
    assert model["versions"][1]["manifest_sha256"] == manifest_digest(versions["v2"])

    for version in ("v1", "v2"):
        code, out, err = run_cli(
            ["models", "promote", "--registry", registry, "--name", "reviews", "--version", version],
            monkeypatch,
            capsys,
        )
        assert code == 0, err

    files = sum(1 for path in versions["v2"].rglob("*") if path.is_file())  # the manifest and its digest too
    assert out.startswith(f"promoted reviews v2 (was v1): verified {files} files, ")
    assert out.endswith(f"; recorded in {registry}/reviews/history.jsonl\n")
    assert get(s3_client, s3_bucket, "registry/reviews/latest") == b"v2\n"
    history = [
        json.loads(line) for line in get(s3_client, s3_bucket, "registry/reviews/history.jsonl").splitlines()
    ]
    assert [(e["action"], e["from"], e["to"], e["who"]) for e in history] == [
        ("promote", None, "v1", "ci"),
        ("promote", "v1", "v2", "ci"),
    ]
    code, out, err = run_cli(["models", "list", "--registry", registry], monkeypatch, capsys)
    assert code == 0, err
    assert [row.split()[:3] for row in out.splitlines()[1:]][1] == ["reviews", "v2", "*"]

    dest = tmp_path / "models" / "current"
    code, out, err = run_cli(["models", "pull", f"{registry}/reviews/latest", str(dest)], monkeypatch, capsys)
    assert code == 0, err
    assert out.startswith(f"pulled reviews v2 ({files} files, ")
    assert ModelArtifact.from_directory(dest).manifest_digest == manifest_digest(versions["v2"])

    code, out, err = run_cli(
        ["models", "rollback", "--registry", registry, "--name", "reviews", "--reason", "drift"],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    assert out.startswith("rolled reviews back to v1 (was v2): ")
    assert get(s3_client, s3_bucket, "registry/reviews/latest") == b"v1\n"
    code, out, err = run_cli(["models", "pull", f"{registry}/reviews/latest", str(dest)], monkeypatch, capsys)
    assert code == 0, err
    assert ModelArtifact.from_directory(dest).manifest_digest == manifest_digest(versions["v1"])

    code, out, err = run_cli(
        ["models", "show", "--registry", registry, "--name", "reviews", "--json"], monkeypatch, capsys
    )
    assert code == 0, err
    shown = json.loads(out)
    assert (shown["version"], shown["current"], shown["location"]) == ("v1", True, f"{registry}/reviews/v1")
    assert [(e["action"], e["to"], e["reason"]) for e in shown["history"]] == [
        ("promote", "v1", None),
        ("promote", "v2", None),
        ("rollback", "v1", "drift"),
    ]


def test_a_tampered_version_on_s3_is_refused_and_the_pointer_and_history_stay(
    registry: str,
    s3_client: Any,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    promote = ["models", "promote", "--registry", registry, "--name", "reviews", "--version"]
    assert run_cli([*promote, "v1"], monkeypatch, capsys)[0] == 0
    history = get(s3_client, s3_bucket, "registry/reviews/history.jsonl")
    s3_client.put_object(
        Bucket=s3_bucket.removeprefix("s3://"), Key="registry/reviews/v2/classifier.onnx", Body=b"x"
    )

    code, _, err = run_cli([*promote, "v2"], monkeypatch, capsys)

    assert code == 2
    assert error_line(err) == (
        f"tripod: error: refusing to promote reviews v2: classifier.onnx at {registry}/reviews/v2 does not match "
        "its sha256 in the manifest: the source was modified after export"
    )
    assert get(s3_client, s3_bucket, "registry/reviews/latest") == b"v1\n"
    assert get(s3_client, s3_bucket, "registry/reviews/history.jsonl") == history


def test_a_pointer_object_that_names_no_version_is_one_line(
    registry: str,
    s3_client: Any,
    s3_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    s3_client.put_object(
        Bucket=s3_bucket.removeprefix("s3://"), Key="registry/reviews/latest", Body=b"../../etc\n"
    )
    pointer = f"{registry}/reviews/latest"
    message = f"tripod: error: {pointer} is not a model pointer: it must hold one version name such as v3, not '../../etc'"

    dest = tmp_path / "models" / "current"

    code, _, err = run_cli(["models", "pull", pointer, str(dest)], monkeypatch, capsys)

    assert (code, error_line(err)) == (2, message)
    assert not dest.parent.exists()
    code, _, err = run_cli(["models", "list", "--registry", registry], monkeypatch, capsys)
    assert (code, error_line(err)) == (2, message)


def test_unknown_models_and_versions_on_s3_are_one_line(
    registry: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(
        ["models", "show", "--registry", registry, "--name", "reviews"], monkeypatch, capsys
    )
    assert (code, error_line(err)) == (
        2,
        f"tripod: error: reviews has no current version in {registry} (no latest): name one with --version",
    )
    code, _, err = run_cli(
        ["models", "promote", "--registry", registry, "--name", "reviews", "--version", "v3"],
        monkeypatch,
        capsys,
    )
    assert (code, error_line(err)) == (
        2,
        f"tripod: error: reviews has no version v3 in {registry} (versions: v1, v2)",
    )
    code, _, err = run_cli(
        ["models", "list", "--registry", f"{registry}-empty", "--name", "x"], monkeypatch, capsys
    )
    assert (code, error_line(err)) == (
        2,
        f"tripod: error: no model named x in {registry}-empty: it holds no models",
    )

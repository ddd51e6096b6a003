"""Model delivery: ``tripod models pull`` puts a verified model at DEST atomically or leaves DEST as it was, and
``tripod models verify`` makes the server's start-up checks in place (the S3 pull is in
tests/batch/test_model_pull_s3.py, beside the S3 fixtures)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from services.artifacts import (
    MANIFEST_DIGEST_NAME,
    MANIFEST_NAME,
    ModelArtifact,
    manifest_digest_line,
    read_manifest,
    write_manifest,
)
from services.delivery import pull_model
from tests.cli import error_line, run_cli


def copy_model(source: Path, folder: Path, version: str | None = None) -> Path:
    """A copy of a model directory; with ``version``, a different model (another manifest digest)."""
    copy = folder / (version or source.name)
    shutil.copytree(source, copy)
    if version is not None:
        write_manifest(copy, read_manifest(copy).model_copy(update={"version": version}))
    return copy


def manifest_digest(model_dir: Path) -> str:
    return hashlib.sha256((model_dir / MANIFEST_NAME).read_bytes()).hexdigest()


def state(dest: Path) -> dict[str, object]:
    """What a reader sees at DEST and beside it: where the link points, and every entry of the folder."""
    return {
        "link": os.readlink(dest) if dest.is_symlink() else None,
        "entries": sorted(entry.name for entry in dest.parent.iterdir()),
    }


def rewrite_manifest(model_dir: Path, edit: dict[str, object]) -> None:
    """Edit the manifest and re-sign it (a new manifest.sha256), as someone who can write the source could."""
    document = json.loads((model_dir / MANIFEST_NAME).read_bytes())
    document.update(edit)
    encoded = (json.dumps(document, indent=2) + "\n").encode()
    (model_dir / MANIFEST_NAME).write_bytes(encoded)
    (model_dir / MANIFEST_DIGEST_NAME).write_text(manifest_digest_line(encoded))


# --- pull ----------------------------------------------------------------------------------------------------


def test_pull_copies_every_listed_file_verified_and_dest_is_a_relative_link_to_them(
    trained_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dest = tmp_path / "models" / "current"

    code, out, err = run_cli(["models", "pull", str(trained_model_dir), str(dest)], monkeypatch, capsys)

    assert code == 0, err
    manifest = read_manifest(trained_model_dir)
    digest = manifest_digest(trained_model_dir)
    assert re.fullmatch(
        rf"pulled {manifest.name} {manifest.version} \({len(manifest.files) + 2} files, \d+\.\d MiB\) "
        rf"from {re.escape(str(trained_model_dir))} to {re.escape(str(dest))}, manifest sha256 {digest[:12]}\n",
        out,
    )
    link = os.readlink(dest)
    assert not os.path.isabs(link) and link.startswith(f".current.{digest[:12]}.")
    artifact = ModelArtifact.from_directory(dest)
    assert artifact.manifest_digest == digest
    pulled = {
        p.relative_to(artifact.directory).as_posix() for p in artifact.directory.rglob("*") if p.is_file()
    }
    assert pulled == {*manifest.files, MANIFEST_NAME, MANIFEST_DIGEST_NAME}
    assert all(
        (artifact.directory / name).read_bytes() == (trained_model_dir / name).read_bytes() for name in pulled
    )
    assert state(dest)["entries"] == sorted([".current.lock", link, "current"])


def test_pull_follows_a_latest_link_at_the_source(trained_model_dir: Path, tmp_path: Path) -> None:
    latest = trained_model_dir.parent / "latest"
    assert latest.is_symlink()

    summary = pull_model(str(latest), tmp_path / "current")

    assert summary.manifest_digest == manifest_digest(trained_model_dir)


def test_a_second_pull_of_the_same_model_does_nothing_and_says_so(
    trained_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dest = tmp_path / "current"
    assert run_cli(["models", "pull", str(trained_model_dir), str(dest)], monkeypatch, capsys)[0] == 0
    before = state(dest)

    code, out, _ = run_cli(["models", "pull", str(trained_model_dir), str(dest)], monkeypatch, capsys)

    manifest = read_manifest(trained_model_dir)
    assert code == 0
    assert out == (
        f"{manifest.name} {manifest.version} is already at {dest}, "
        f"manifest sha256 {manifest_digest(trained_model_dir)[:12]}: nothing to pull\n"
    )
    assert state(dest) == before


def test_pulling_another_model_repoints_dest_and_keeps_only_the_model_it_replaced(
    trained_model_dir: Path, tmp_path: Path
) -> None:
    first = copy_model(trained_model_dir, tmp_path, "v1")
    second = copy_model(trained_model_dir, tmp_path, "v2")
    dest = tmp_path / "volume" / "current"
    pull_model(str(first), dest)
    first_dir = os.readlink(dest)

    summary = pull_model(str(second), dest)

    assert not summary.unchanged and summary.manifest.version == "v2"
    assert ModelArtifact.from_directory(dest).manifest_digest == manifest_digest(second)
    second_dir = os.readlink(dest)
    assert ModelArtifact.from_directory(dest.parent / first_dir).manifest.version == "v1"  # kept for rollback

    pull_model(str(first), dest)  # a rollback is a third pull: the v1 directory before it is removed

    third_dir = os.readlink(dest)
    assert ModelArtifact.from_directory(dest).manifest.version == "v1"
    assert state(dest)["entries"] == sorted([".current.lock", "current", second_dir, third_dir])


def test_an_empty_directory_at_dest_is_replaced_by_the_link(trained_model_dir: Path, tmp_path: Path) -> None:
    dest = tmp_path / "current"
    dest.mkdir()

    pull_model(str(trained_model_dir), dest)

    assert dest.is_symlink() and ModelArtifact.from_directory(dest).manifest_digest == manifest_digest(
        trained_model_dir
    )


def test_a_tampered_source_file_fails_in_one_line_and_leaves_dest_on_the_model_it_had(
    trained_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dest = tmp_path / "volume" / "current"
    pull_model(str(trained_model_dir), dest)
    before = state(dest)
    source = copy_model(trained_model_dir, tmp_path, "v2")
    with (source / "classifier.onnx").open("ab") as handle:
        handle.write(b"\0")

    code, out, err = run_cli(["models", "pull", str(source), str(dest)], monkeypatch, capsys)

    assert code == 2 and out == ""
    assert error_line(err) == (
        f"tripod: error: classifier.onnx at {source} does not match its sha256 in the manifest: "
        "the source was modified after export"
    )
    assert "Traceback" not in err
    assert state(dest) == before
    assert ModelArtifact.from_directory(dest).manifest_digest == manifest_digest(trained_model_dir)


def test_a_missing_source_file_fails_naming_it_and_leaves_nothing_at_dest(
    trained_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = copy_model(trained_model_dir, tmp_path)
    (source / "inverse_label.onnx").unlink()
    dest = tmp_path / "volume" / "current"

    code, _, err = run_cli(["models", "pull", str(source), str(dest)], monkeypatch, capsys)

    assert code == 2
    assert error_line(err) == (
        f"tripod: error: inverse_label.onnx is listed in the manifest but missing from {source}"
    )
    assert not dest.exists() and not dest.is_symlink()
    assert state(dest)["entries"] == [".current.lock"]


@pytest.mark.parametrize(
    ("arrange", "message"),
    [
        (shutil.rmtree, "{source} does not exist"),
        (
            lambda source: (source / MANIFEST_DIGEST_NAME).unlink(),
            "{source} is not a model directory: manifest.sha256 is missing",
        ),
        (
            lambda source: (source / MANIFEST_NAME).write_bytes((source / MANIFEST_NAME).read_bytes() + b" "),
            "manifest.json does not match manifest.sha256: the manifest was modified after export",
        ),
    ],
    ids=["missing-source", "missing-manifest-digest", "manifest-not-matching-its-digest"],
)
def test_a_source_that_is_not_a_verified_model_directory_is_refused_before_any_file_is_copied(
    arrange: Callable[[Path], object],
    message: str,
    trained_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = copy_model(trained_model_dir, tmp_path)
    arrange(source)
    dest = tmp_path / "volume" / "current"

    code, _, err = run_cli(["models", "pull", str(source), str(dest)], monkeypatch, capsys)

    assert code == 2
    assert error_line(err) == "tripod: error: " + message.format(source=source)
    assert not dest.exists() and not dest.is_symlink()
    assert not dest.parent.exists() or [entry.name for entry in dest.parent.iterdir()] == [".current.lock"]


def test_a_listed_path_that_leaves_the_directory_is_refused_even_with_a_matching_manifest_digest(
    trained_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = copy_model(trained_model_dir, tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("not part of any model")
    files = read_manifest(source).files
    rewrite_manifest(
        source, {"files": {**files, "../secret.txt": hashlib.sha256(secret.read_bytes()).hexdigest()}}
    )
    dest = tmp_path / "volume" / "current"

    code, _, err = run_cli(["models", "pull", str(source), str(dest)], monkeypatch, capsys)

    assert code == 2
    assert error_line(err).startswith(
        f"tripod: error: {source}/manifest.json is not a valid manifest: files: "
    )
    assert "'../secret.txt' is not a plain relative path inside the model directory" in err
    assert not dest.is_symlink()


def test_a_listed_file_that_is_a_symlink_leading_out_of_the_source_is_not_read(
    trained_model_dir: Path, tmp_path: Path
) -> None:
    from services.errors import ModelIntegrityError

    source = copy_model(trained_model_dir, tmp_path)
    outside = tmp_path / "elsewhere.onnx"
    shutil.move(source / "classifier.onnx", outside)
    (source / "classifier.onnx").symlink_to(outside)  # the same bytes, outside the directory

    with pytest.raises(ModelIntegrityError, match=r"^classifier\.onnx leads outside the model directory "):
        pull_model(str(source), tmp_path / "current")
    assert not (tmp_path / "current").is_symlink()


def file_in_the_way(folder: Path) -> None:
    (folder / "volume").write_text("a file")


def directory_of_someone_else(folder: Path) -> None:
    (folder / "volume" / "current").mkdir(parents=True)
    (folder / "volume" / "current" / "notes.txt").write_text("someone's files")


@pytest.mark.parametrize(
    ("arrange", "message"),
    [
        (file_in_the_way, "cannot write {dest}: a file is in the way of a directory"),
        (
            directory_of_someone_else,
            (
                "{dest} is a directory that tripod models pull did not make and that cannot be replaced "
                "atomically: remove it or pull to another path"
            ),
        ),
    ],
    ids=["a-file-in-the-way", "a-directory-of-someone-else"],
)
def test_an_unwritable_dest_fails_in_one_line_and_is_left_as_it_was(
    arrange: Callable[[Path], object],
    message: str,
    trained_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    arrange(tmp_path)
    dest = tmp_path / "volume" / "current"
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))

    code, _, err = run_cli(["models", "pull", str(trained_model_dir), str(dest)], monkeypatch, capsys)

    assert code == 2
    assert error_line(err) == "tripod: error: " + message.format(dest=dest)
    after = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.name != ".current.lock")
    assert after == before


def test_a_read_only_volume_fails_in_one_line(trained_model_dir: Path, tmp_path: Path) -> None:
    """Run as a non-root user (a user namespace): this machine's root would write into a read-only folder."""
    volume = tmp_path / "volume"
    volume.mkdir()
    volume.chmod(0o555)
    command = [
        sys.executable,
        "-m",
        "tripod.cli",
        "models",
        "pull",
        str(trained_model_dir),
        str(volume / "current"),
    ]
    try:
        finished = subprocess.run(
            ["unshare", "--user", "--map-user=1034", "--map-group=1034", *command],
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        volume.chmod(0o755)
    assert finished.returncode == 2
    assert (
        finished.stderr.startswith("tripod: error: cannot write ") and "permission denied" in finished.stderr
    )
    assert len(finished.stderr.strip().splitlines()) == 1
    assert list(volume.iterdir()) == []


# --- verify --------------------------------------------------------------------------------------------------


def test_verify_accepts_a_pulled_model_in_one_line(
    trained_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dest = tmp_path / "current"
    pull_model(str(trained_model_dir), dest)

    code, out, err = run_cli(["models", "verify", str(dest)], monkeypatch, capsys)

    manifest = read_manifest(trained_model_dir)
    assert code == 0, err
    assert re.fullmatch(
        rf"verified {manifest.name} {manifest.version} at {re.escape(str(dest.resolve()))} "
        rf"\({len(manifest.files) + 2} files, \d+\.\d MiB\), manifest sha256 {manifest_digest(dest)[:12]}\n",
        out,
    )


def test_verify_refuses_a_tampered_model_with_exit_2(
    trained_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model = copy_model(trained_model_dir, tmp_path)
    with (model / "transformer.onnx").open("ab") as handle:
        handle.write(b"\0")

    code, out, err = run_cli(["models", "verify", str(model)], monkeypatch, capsys)

    assert code == 2 and out == ""
    assert error_line(err) == (
        "tripod: error: transformer.onnx does not match its sha256 in the manifest: "
        "the model directory was modified after export"
    )
    assert "Traceback" not in err

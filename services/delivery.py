"""Model delivery: copy a model directory from object storage (or a local path) to where a server reads it,
verified by its digests, and verify a model directory in place.

A Kubernetes init container runs ``tripod models pull s3://bucket/models/reviews/v3 /models/current`` into an
``emptyDir`` volume mounted at ``/models``; the server container then reads ``TRIPOD_MODEL_DIR=/models/current``.
One image serves any model version, and changing the model is a rollout.

The layout at the destination (``DEST=/models/current``)::

    /models/                        the emptyDir mount point: it cannot be renamed, but its entries can
      current -> .current.3f2a9c1b04de.k3j9x2a1   a relative symlink, the one thing a pull changes atomically
      .current.3f2a9c1b04de.k3j9x2a1/           a verified model directory (named by its manifest sha256)
      .current.lock                  serialises pulls to the same DEST

Why a symlink and not the directory itself: ``rename(2)`` cannot replace a non-empty directory, and swapping
two directories atomically needs ``renameat2(RENAME_EXCHANGE)``, which Python does not offer and not every
filesystem supports; renaming a new symlink over the old one is atomic on every POSIX filesystem, and is what
``models/<name>/latest`` already does (:func:`services.artifacts.point_latest`).  The server follows the link
once at start (:func:`services.artifacts.resolve_model_dir`), so ``TRIPOD_MODEL_DIR`` needs no change.  The
link is relative, so it holds wherever the volume is mounted (the init container and the server may mount it
at different paths).

A pull reads ``manifest.sha256`` and ``manifest.json`` from the source first and checks one against the other
(with the very code the server runs, :func:`services.artifacts.read_manifest`); then it streams exactly the
files the manifest lists into a fresh hidden directory beside DEST, hashing as it copies, verifies that
directory as the server will (:meth:`ModelArtifact.from_directory`), and only then repoints the link.  Any
failure removes the new directory, so DEST is left as it was: there is never a partial model at DEST.  A DEST
that already holds a model with the same manifest digest (and still verifies) is left alone.  After a
replacement the previous model directory is kept (a process that resolved the old link keeps a complete
model; a rollback needs no download) and older ones are removed, so the volume holds at most two models.

DEST may also be missing (it is created, with its parents) or an empty directory (it is replaced by the link:
the one step that is not atomic, and harmless, since nothing was there).  A DEST that is a mount point, a file,
or a non-empty directory not made by a pull is refused: pull to ``DEST/current`` instead.

Storage goes through :mod:`services.batch.storage` (fsspec; s3fs for ``s3://`` with the standard ``AWS_*``
settings), so errors are one line and no credential is ever printed.  A local source may be a ``latest`` link;
an S3 source may be a registry's pointer object ``s3://bucket/registry/<name>/latest`` (S3 has no links: the
object's body names the version, ``v3``; see :mod:`services.registry`), which is read once and its version
pulled, so an init container that pulls ``…/latest`` starts the pod on whatever ``tripod models promote`` chose.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

from services.artifacts import (
    LATEST_LINK,
    MANIFEST_DIGEST_NAME,
    MANIFEST_NAME,
    Manifest,
    ModelArtifact,
    parse_pointer,
    read_manifest,
    resolve_model_dir,
)
from services.batch import storage
from services.errors import ModelIntegrityError, StorageError

_COPY_CHUNK = 1 << 20
_MiB = 1 << 20
_T = TypeVar("_T")


@dataclass(frozen=True)
class ModelSummary:
    """What one line about a model directory says: which model, how big, and its identity.

    Attributes:
        manifest: the verified manifest.
        directory: the model directory (for a pull, the resolved directory behind DEST).
        files: files in the directory: every listed file, the manifest and its digest.
        size: bytes of those files.
        manifest_digest: the sha256 of ``manifest.json``.
        unchanged: True when a pull found the same model already at DEST and did nothing.
    """

    manifest: Manifest
    directory: Path
    files: int
    size: int
    manifest_digest: str
    unchanged: bool = False

    @property
    def mib(self) -> float:
        return self.size / _MiB


# --- verify --------------------------------------------------------------------------------------------------


def verify_model(model_dir: Path) -> ModelSummary:
    """Verify a model directory in place with the checks ``tripod serve`` makes before it starts: the manifest
    against ``manifest.sha256``, every file against the manifest, and the ONNX stages against the manifest and
    each other (this opens them with onnxruntime).

    Raises:
        ModelIntegrityError: naming the first problem found.
    """
    from services.runtime.stages import LocalStages  # onnxruntime: only this verb pays for it

    artifact = ModelArtifact.from_directory(model_dir)
    LocalStages(artifact.graphs)
    return _summary(artifact)


def _summary(artifact: ModelArtifact, *, unchanged: bool = False) -> ModelSummary:
    names = [*artifact.manifest.files, MANIFEST_NAME, MANIFEST_DIGEST_NAME]
    size = sum((artifact.directory / name).stat().st_size for name in names)
    return ModelSummary(
        manifest=artifact.manifest,
        directory=artifact.directory,
        files=len(names),
        size=size,
        manifest_digest=artifact.manifest_digest,
        unchanged=unchanged,
    )


# --- pull ----------------------------------------------------------------------------------------------------


def pull_model(source: str, dest: Path) -> ModelSummary:
    """Copy the model directory at ``source`` to ``dest``, verified, and make it appear there atomically.

    Args:
        source: a local model directory (or its ``latest`` link), an S3 prefix ``s3://bucket/models/name/v3``, or
            an S3 registry's pointer object ``s3://bucket/models/name/latest``.
        dest: where the server reads the model: a symlink this function (re)points (see the module docstring).

    Returns:
        The model now at ``dest``; ``unchanged`` when it was already there.

    Raises:
        ModelIntegrityError: the source is not a model directory, its manifest does not match its digest, or a
            listed file is missing, leads outside the directory, or differs from its digest.
        StorageError: the source cannot be read (an unreachable endpoint, no permission) or ``dest`` cannot be
            written.  In every case ``dest`` is left as it was.
    """
    url = _source_url(source)
    digest_line = _read_source_file(url, MANIFEST_DIGEST_NAME)
    manifest_bytes = _read_source_file(url, MANIFEST_NAME)
    digest = hashlib.sha256(manifest_bytes).hexdigest()
    dest = Path(os.path.abspath(dest))
    _refuse_unreplaceable(dest)
    parent = _make_parent(dest)
    with _locked(parent, dest.name):
        staging = _staging_directory(parent, dest, digest)
        try:
            _write(staging / MANIFEST_DIGEST_NAME, digest_line, dest)
            _write(staging / MANIFEST_NAME, manifest_bytes, dest)
            manifest = _naming_source(staging, url, lambda: read_manifest(staging))
            current = _current_model(dest)
            if current is not None and current.manifest_digest == digest:
                shutil.rmtree(staging)
                return _summary(current, unchanged=True)
            _refuse_foreign_directory(dest)
            for relative, expected in manifest.files.items():
                _copy_verified(url, relative, expected, staging, dest)
            artifact = _naming_source(staging, url, lambda: ModelArtifact.from_directory(staging))
            previous = _point(dest, staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _remove_old_models(parent, dest.name, keep={staging.name, previous})
    return _summary(artifact)


def _source_url(source: str) -> str:
    """An S3 prefix without its trailing ``/`` (a ``latest`` pointer object followed), or the real local
    directory (a ``latest`` link followed)."""
    if storage.is_s3(source):
        url = source.rstrip("/")
        if url.rpartition("/")[2] == LATEST_LINK and storage.exists(url):
            return resolve_s3_pointer(url)
        return url
    return str(resolve_model_dir(Path(source.removeprefix("file://"))))


def resolve_s3_pointer(url: str) -> str:
    """The version prefix that the pointer object ``s3://…/<name>/latest`` names (its body is ``v3``), beside it.

    Raises:
        ModelIntegrityError: the object does not hold a version name.
        StorageError: it cannot be read.
    """
    version = parse_pointer(storage.read_bytes(url), url)
    return f"{url.rpartition('/')[0]}/{version}"


def _read_source_file(url: str, name: str) -> bytes:
    """A small file of the source (the manifest, its digest); a missing one means no model directory there."""
    try:
        return storage.read_bytes(f"{url}/{name}")
    except StorageError as exc:
        if isinstance(exc.__cause__, FileNotFoundError | NotADirectoryError):
            raise ModelIntegrityError(f"{url} is not a model directory: {name} is missing") from exc
        raise


def _refuse_unreplaceable(dest: Path) -> None:
    """Refuse, before anything is read or written, a DEST that no symlink can replace."""
    if dest.is_symlink() or not dest.exists():
        return
    if os.path.ismount(dest):
        raise StorageError(f"{dest} is a mount point, which cannot be replaced: pull to {dest / 'current'}")
    if not dest.is_dir():
        raise StorageError(f"cannot write {dest}: a file is in the way")


def _refuse_foreign_directory(dest: Path) -> None:
    """Refuse a non-empty real directory at DEST (one that holds the same model was accepted before)."""
    if not dest.is_symlink() and dest.is_dir() and any(dest.iterdir()):
        raise StorageError(
            f"{dest} is a directory that tripod models pull did not make and that cannot be replaced "
            "atomically: remove it or pull to another path"
        )


def _make_parent(dest: Path) -> Path:
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot write {dest}: {storage._reason(exc)}") from exc
    return dest.parent.resolve()


@contextlib.contextmanager
def _locked(parent: Path, name: str) -> Iterator[None]:
    """Hold ``.<name>.lock`` beside DEST, so two pulls to one DEST take turns and never remove each other's
    downloads."""
    try:
        handle = (parent / f".{name}.lock").open("a+b")
    except OSError as exc:
        raise StorageError(f"cannot write {parent / name}: {storage._reason(exc)}") from exc
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _staging_directory(parent: Path, dest: Path, digest: str) -> Path:
    """A new, empty, hidden directory beside DEST, ``.<name>.<digest12>.<random>``, readable by the server (which
    may run as another user than the init container)."""
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.{digest[:12]}.", dir=parent))
    except OSError as exc:
        raise StorageError(f"cannot write {dest}: {storage._reason(exc)}") from exc
    staging.chmod(0o755)
    return staging


def _write(path: Path, data: bytes, dest: Path) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:  # a full volume
        raise StorageError(f"cannot write {dest}: {storage._reason(exc)}") from exc


def _naming_source(staging: Path, url: str, check: Callable[[], _T]) -> _T:
    """Run a check of the staging directory; its error names the source, the directory the user knows."""
    try:
        return check()
    except ModelIntegrityError as exc:
        raise ModelIntegrityError(str(exc).replace(str(staging), url)) from exc


def _current_model(dest: Path) -> ModelArtifact | None:
    """The model at DEST now, if it still verifies; None when there is none (or a broken one, to be replaced)."""
    if not dest.exists():
        return None
    try:
        return ModelArtifact.from_directory(dest)
    except ModelIntegrityError:
        return None


def _copy_verified(url: str, relative: str, expected: str, staging: Path, dest: Path) -> None:
    """Stream one listed file into the staging directory, hashing it on the way: a file that differs from its
    digest is refused naming the source, before any other is copied."""
    source = f"{url}/{relative}"
    if not storage.is_s3(url) and not Path(os.path.realpath(source)).is_relative_to(url):
        raise ModelIntegrityError(f"{relative} leads outside the model directory {url}")
    try:
        reader = storage.open_input(storage.InputObject(url=source, relative=relative, size=0, version=""))
    except StorageError as exc:
        if isinstance(exc.__cause__, FileNotFoundError | IsADirectoryError | NotADirectoryError):
            raise ModelIntegrityError(f"{relative} is listed in the manifest but missing from {url}") from exc
        raise
    digest = hashlib.sha256()
    target = staging / relative
    with reader:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("xb") as out:
                while chunk := _read_chunk(reader, source):
                    digest.update(chunk)
                    out.write(chunk)
        except OSError as exc:
            raise StorageError(f"cannot write {dest}: {storage._reason(exc)}") from exc
    if digest.hexdigest() != expected:
        raise ModelIntegrityError(
            f"{relative} at {url} does not match its sha256 in the manifest: the source was modified after export"
        )


def _read_chunk(reader: BinaryIO, source: str) -> bytes:
    try:
        return reader.read(_COPY_CHUNK)
    except storage._failures() as exc:
        raise StorageError(f"cannot read {source}: {storage._reason(exc)}") from exc


def _point(dest: Path, staging: Path) -> str | None:
    """Atomically point DEST at the staging directory (a relative symlink renamed over DEST); returns the name
    DEST pointed at before, if it was a link."""
    previous = os.readlink(dest) if dest.is_symlink() else None
    link = dest.parent / f".{dest.name}.link-{secrets.token_hex(4)}"
    try:
        link.symlink_to(staging.name)
        if not dest.is_symlink() and dest.is_dir():
            dest.rmdir()  # an empty directory: checked by _refuse_foreign_directory
        os.replace(link, dest)
    except OSError as exc:
        link.unlink(missing_ok=True)
        raise StorageError(f"cannot write {dest}: {storage._reason(exc)}") from exc
    storage._sync_directory(str(dest.parent))
    return previous


def _remove_old_models(parent: Path, name: str, keep: set[str | None]) -> None:
    """Remove model directories of earlier pulls to DEST (and downloads a killed pull left), except ``keep``:
    the new model and the one it replaced.  Best effort: a leftover costs disk, not correctness."""
    pattern = re.compile(rf"^\.{re.escape(name)}\.[0-9a-f]{{12}}\.[a-z0-9_]+$")
    for entry in parent.iterdir():
        if pattern.match(entry.name) and entry.name not in keep and not entry.is_symlink() and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)

"""The model registry: every version of each model, the pointer a server follows, and who moved it, when and why.

A registry is a local directory or an S3 prefix laid out as ``tripod train`` and ``tripod automl`` write it
(models/README.md)::

    <registry>/<name>/v1/ v2/ …         verified model directories, never modified
    <registry>/<name>/latest            the pointer: locally the relative symlink ``latest -> v2``; on S3, which
                                        has no links, an object whose body is the version's name, ``v2\\n``
    <registry>/<name>/history.jsonl     one JSON object per line for each promote and rollback
    <registry>/<name>/.lock             (local) held while a promote or rollback runs

A promote or rollback verifies the version completely first — the manifest against ``manifest.sha256``, every
file against the manifest, the ONNX stages opened with onnxruntime against the manifest, as ``tripod serve``
does at start (an S3 version is pulled into a temporary directory with :func:`services.delivery.pull_model` and
verified there) — and only then moves the pointer, in one atomic step: a symlink renamed over the old one, or
one PUT of the pointer object.  A version that does not verify is refused and the pointer stays where it was.
Then it adds a line to the history.

Locally a promote or rollback holds ``fcntl.flock`` on the model's ``.lock`` from reading the pointer to
appending the history, so two at once take turns: each history line's ``from`` is the ``to`` of the line before
it, and the pointer ends where the last line says.  S3 has neither locks nor appends: the history is read, one
line added, and the whole object written back, so of two promotions at the same moment the last writer wins
(the pointer is still one whole version name, never a torn one, but a history line may be lost).

``tripod train`` and ``tripod automl`` also move the local pointer (to the version they export) without a
history line; a rollback from a version that the history did not promote goes to the newest version older than
it, which is what such an export replaced.

This module reads manifests and opens stages with onnxruntime only: the serving image runs these verbs too, so
it imports no training library.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import hashlib
import os
import socket
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.artifacts import (
    LATEST_LINK,
    MANIFEST_DIGEST_NAME,
    MANIFEST_NAME,
    VERSION_NAME,
    Manifest,
    check_version_name,
    manifest_from_bytes,
    parse_pointer,
    point_latest,
    pointer_text,
    read_manifest,
    utc_now,
)
from services.batch import storage
from services.delivery import ModelSummary, pull_model, verify_model
from services.errors import InvalidInput, ModelIntegrityError, ModelNotFound, StorageError

HISTORY_NAME = "history.jsonl"
LOCK_NAME = ".lock"
KEY_METRICS = ("accuracy", "macro_f1", "rmse", "mae", "r2")
"""The metrics ``tripod models list`` shows, those a manifest has: classification's, or regression's."""

Action = Literal["promote", "rollback"]


class HistoryEntry(BaseModel):
    """One line of ``history.jsonl``: the pointer moved ``from`` one version ``to`` another."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    time: str = Field(description="when, ISO-8601 UTC")
    action: Action
    from_: str | None = Field(alias="from", description="the version the pointer left; null if it had none")
    to: str
    who: str = Field(description="$TRIPOD_USER, else the login name")
    host: str
    reason: str | None = None

    def line(self) -> bytes:
        return (self.model_dump_json(by_alias=True) + "\n").encode("utf-8")


@dataclass(frozen=True)
class VersionInfo:
    """One version as a listing shows it: its manifest (checked against ``manifest.sha256`` only; a promote checks
    every file) or why it cannot be read.

    Attributes:
        version: the directory's name, ``v3``.
        current: whether the pointer names it.
        manifest: the manifest, or None when it cannot be read (``problem`` says why).
        manifest_digest: sha256 of ``manifest.json``.
        size: bytes of the files the manifest lists, the manifest and its digest.
        problem: why the manifest cannot be read; None when it can.
    """

    version: str
    current: bool
    manifest: Manifest | None = None
    manifest_digest: str | None = None
    size: int | None = None
    problem: str | None = None

    @property
    def key_metrics(self) -> dict[str, float]:
        metrics = self.manifest.metrics if self.manifest else {}
        return {name: metrics[name] for name in KEY_METRICS if name in metrics}

    @property
    def files(self) -> int | None:
        return None if self.manifest is None else len(self.manifest.files) + 2

    def as_json(self) -> dict[str, Any]:
        manifest = self.manifest
        return {
            "version": self.version,
            "current": self.current,
            "created_at": manifest.created_at if manifest else None,
            "problem_type": manifest.problem_type if manifest else None,
            "family": manifest.candidate.family if manifest else None,
            "metrics": self.key_metrics,
            "parity_passed": manifest.parity.passed if manifest else None,
            "explainer": manifest.explainer is not None if manifest else None,
            "size": self.size,
            "manifest_sha256": self.manifest_digest,
            "error": self.problem,
        }


@dataclass(frozen=True)
class ModelInfo:
    """A model of the registry: its versions (oldest first) and the one its pointer names."""

    name: str
    current: str | None
    versions: list[VersionInfo]

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "current": self.current,
            "versions": [version.as_json() for version in self.versions],
        }


@dataclass(frozen=True)
class ModelDetail:
    """What ``tripod models show`` shows: one version, where it is, and the model's history."""

    name: str
    location: str
    info: VersionInfo
    history: list[HistoryEntry]

    @property
    def manifest(self) -> Manifest:
        assert self.info.manifest is not None  # show refuses an unreadable manifest
        return self.info.manifest


@dataclass(frozen=True)
class Move:
    """A promote or rollback that happened: its history line, and the version as verified before the move."""

    entry: HistoryEntry
    verified: ModelSummary
    history: str
    """Where the line was written."""


# --- the store: a local directory or an S3 prefix -------------------------------------------------------------


class _Store(ABC):
    """How one kind of storage holds a registry; :class:`Registry` says what the verbs do with it."""

    def __init__(self, root: str) -> None:
        self.root = root

    def url(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    @abstractmethod
    def names(self) -> list[str]:
        """Model names that have a pointer or at least one version, sorted."""

    @abstractmethod
    def versions(self, name: str) -> list[str]:
        """The version directories of a model, in version order."""

    def has(self, name: str) -> bool:
        """Whether the registry holds a model of that name (without listing the others)."""
        return bool(self.versions(name)) or self.pointer(name) is not None

    @abstractmethod
    def pointer(self, name: str) -> str | None:
        """The version the pointer names (a local link to anything else: its target as written); None if none."""

    @abstractmethod
    def describe(self, name: str, version: str, current: bool) -> VersionInfo:
        """A version's manifest, checked against its digest only."""

    @abstractmethod
    def read_history(self, name: str) -> bytes:
        """The history's bytes; empty when there is none yet."""

    @abstractmethod
    def verify(self, name: str, version: str) -> ModelSummary:
        """Verify a version completely, as ``tripod serve`` does at start.

        Raises:
            ModelIntegrityError: naming the first problem.
        """

    @abstractmethod
    def locked(self, name: str) -> contextlib.AbstractContextManager[None]:
        """Hold the model against other promotions for the duration."""

    @abstractmethod
    def move_pointer(self, name: str, version: str) -> None:
        """Point the model at ``version`` in one atomic step."""

    @abstractmethod
    def append_history(self, name: str, entry: HistoryEntry) -> None:
        """Add one line to the history."""


class _LocalStore(_Store):
    def __init__(self, root: str) -> None:
        super().__init__(os.path.abspath(root.removeprefix("file://")))
        self.path = Path(self.root)
        if not self.path.is_dir():
            raise StorageError(
                f"registry {root} {'is not a directory' if self.path.exists() else 'does not exist'}"
            )

    def names(self) -> list[str]:
        try:
            entries = sorted(self.path.iterdir())
        except OSError as exc:
            raise StorageError(f"cannot list {self.root}: {storage._reason(exc)}") from exc
        return [
            entry.name
            for entry in entries
            if not entry.name.startswith(".")
            and entry.is_dir()
            and ((entry / LATEST_LINK).is_symlink() or self.versions(entry.name))
        ]

    def versions(self, name: str) -> list[str]:
        folder = self.path / name
        try:
            found = [
                entry.name
                for entry in folder.iterdir()
                if VERSION_NAME.fullmatch(entry.name) and entry.is_dir()
            ]
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise StorageError(f"cannot list {folder}: {storage._reason(exc)}") from exc
        return sorted(found, key=version_number)

    def pointer(self, name: str) -> str | None:
        link = self.path / name / LATEST_LINK
        if link.is_symlink():
            target = os.readlink(link)
            if VERSION_NAME.fullmatch(target):
                return target
            real = Path(os.path.realpath(link))
            return real.name if real.parent == (self.path / name).resolve() else target
        if link.is_file():  # a copy of an S3 registry (aws s3 sync): the pointer object, as a file
            return parse_pointer(link.read_bytes(), str(link))
        return None

    def describe(self, name: str, version: str, current: bool) -> VersionInfo:
        directory = self.path / name / version
        try:
            manifest = read_manifest(directory)
        except ModelIntegrityError as exc:
            return VersionInfo(version=version, current=current, problem=str(exc))
        names = [*manifest.files, MANIFEST_NAME, MANIFEST_DIGEST_NAME]
        paths = [directory / relative for relative in names]
        return VersionInfo(
            version=version,
            current=current,
            manifest=manifest,
            manifest_digest=hashlib.sha256((directory / MANIFEST_NAME).read_bytes()).hexdigest(),
            size=sum(path.stat().st_size for path in paths if path.is_file()),
        )

    def read_history(self, name: str) -> bytes:
        try:
            return (self.path / name / HISTORY_NAME).read_bytes()
        except FileNotFoundError:
            return b""
        except OSError as exc:
            raise StorageError(f"cannot read {self.url(name, HISTORY_NAME)}: {storage._reason(exc)}") from exc

    def verify(self, name: str, version: str) -> ModelSummary:
        return verify_model(self.path / name / version)

    @contextlib.contextmanager
    def locked(self, name: str) -> Iterator[None]:
        path = self.path / name / LOCK_NAME
        try:
            handle = path.open("a+b")
        except OSError as exc:
            raise StorageError(f"cannot write {path}: {storage._reason(exc)}") from exc
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
            yield

    def move_pointer(self, name: str, version: str) -> None:
        folder = self.path / name
        try:
            point_latest(folder, folder / version)
        except OSError as exc:
            raise StorageError(f"cannot write {folder / LATEST_LINK}: {storage._reason(exc)}") from exc
        storage._sync_directory(str(folder))

    def append_history(self, name: str, entry: HistoryEntry) -> None:
        path = self.path / name / HISTORY_NAME
        try:
            with path.open("a+b") as handle:
                handle.seek(0, os.SEEK_END)
                if handle.tell():
                    handle.seek(-1, os.SEEK_END)
                    torn = handle.read(1) != b"\n"  # a line a crash cut short stays a line of its own
                else:
                    torn = False
                handle.write((b"\n" if torn else b"") + entry.line())
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise StorageError(f"cannot write {path}: {storage._reason(exc)}") from exc


class _S3Store(_Store):
    def __init__(self, root: str) -> None:
        super().__init__(root.rstrip("/"))
        if not self.root.removeprefix(storage.S3).partition("/")[0]:
            raise InvalidInput(f"{root}: an S3 registry names a bucket: s3://bucket/prefix")
        self._listings: dict[str, dict[str, int]] = {}

    def _listing(self, name: str | None = None) -> dict[str, int]:
        """Every object under the registry (or one model), by key relative to the registry, with its size;
        listed once per command."""
        key = name or ""
        if key not in self._listings:
            prefix = self.url(name) if name else self.root
            try:
                objects = storage.list_inputs(prefix + "/")
            except InvalidInput:  # nothing there (the URL's form was checked above)
                objects = []
            base = len(self.root) + 1
            self._listings[key] = {obj.url[base:]: obj.size for obj in objects}
        return self._listings[key]

    def _listing_for(self, name: str) -> dict[str, int]:
        return self._listings[""] if "" in self._listings else self._listing(name)

    def names(self) -> list[str]:
        found = set()
        for key in self._listing():
            parts = key.split("/")
            if (len(parts) == 2 and parts[1] == LATEST_LINK) or (
                len(parts) > 2 and VERSION_NAME.fullmatch(parts[1])
            ):
                found.add(parts[0])
        return sorted(found)

    def versions(self, name: str) -> list[str]:
        found = set()
        for key in self._listing_for(name):
            parts = key.split("/")
            if len(parts) > 2 and parts[0] == name and VERSION_NAME.fullmatch(parts[1]):
                found.add(parts[1])
        return sorted(found, key=version_number)

    def _read(self, url: str) -> bytes | None:
        try:
            return storage.read_bytes(url)
        except StorageError as exc:
            if isinstance(exc.__cause__, FileNotFoundError):
                return None
            raise

    def pointer(self, name: str) -> str | None:
        url = self.url(name, LATEST_LINK)
        data = self._read(url)
        return None if data is None else parse_pointer(data, url)

    def describe(self, name: str, version: str, current: bool) -> VersionInfo:
        prefix = self.url(name, version)
        data, digest_line = (
            self._read(f"{prefix}/{MANIFEST_NAME}"),
            self._read(f"{prefix}/{MANIFEST_DIGEST_NAME}"),
        )
        try:
            if data is None or digest_line is None:
                missing = MANIFEST_NAME if data is None else MANIFEST_DIGEST_NAME
                raise ModelIntegrityError(f"{prefix} is not a model directory: {missing} is missing")
            manifest = manifest_from_bytes(data, digest_line, prefix)
        except ModelIntegrityError as exc:
            return VersionInfo(version=version, current=current, problem=str(exc))
        sizes = self._listing_for(name)
        names = [*manifest.files, MANIFEST_NAME, MANIFEST_DIGEST_NAME]
        return VersionInfo(
            version=version,
            current=current,
            manifest=manifest,
            manifest_digest=hashlib.sha256(data).hexdigest(),
            size=sum(sizes.get(f"{name}/{version}/{relative}", 0) for relative in names),
        )

    def read_history(self, name: str) -> bytes:
        return self._read(self.url(name, HISTORY_NAME)) or b""

    def verify(self, name: str, version: str) -> ModelSummary:
        source = self.url(name, version)
        with tempfile.TemporaryDirectory(prefix="tripod-promote-") as folder:
            pulled = Path(folder) / "model"
            pull_model(source, pulled)
            try:
                return verify_model(pulled)
            except ModelIntegrityError as exc:
                raise ModelIntegrityError(str(exc).replace(str(pulled.resolve()), source)) from exc

    @contextlib.contextmanager
    def locked(self, name: str) -> Iterator[None]:
        yield  # S3 has no locks: concurrent promotions are last-writer-wins (module docstring)

    def move_pointer(self, name: str, version: str) -> None:
        storage.write_bytes(self.url(name, LATEST_LINK), pointer_text(version))  # one PUT: atomic

    def append_history(self, name: str, entry: HistoryEntry) -> None:
        before = self.read_history(name)
        if before and not before.endswith(b"\n"):
            before += b"\n"
        storage.write_bytes(self.url(name, HISTORY_NAME), before + entry.line())


# --- the verbs ----------------------------------------------------------------------------------------------


def version_number(version: str) -> int:
    return int(version[1:])


def version_arg(text: str) -> str:
    """A version as a user types it, ``v3`` or ``3``, as the directory's name.

    Raises:
        InvalidInput: not a version name.
    """
    candidate = f"v{text}" if text.isdigit() else text
    try:
        return check_version_name(candidate)
    except ValueError as exc:
        raise InvalidInput(f"{text!r} is not a version: versions are v1, v2, …") from exc


def current_user() -> str:
    """Who moves a pointer: ``$TRIPOD_USER`` (a CI job names itself), else the login name."""
    configured = os.environ.get("TRIPOD_USER", "").strip()
    if configured:
        return configured
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # a container's user without a passwd entry
        return f"uid {os.getuid()}"


def parse_history(data: bytes) -> list[HistoryEntry]:
    """The entries of ``history.jsonl``, oldest first; a line that is not one (cut short by a crash, edited by
    hand) is skipped."""
    entries = []
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            entries.append(HistoryEntry.model_validate_json(line))
        except ValidationError:
            continue
    return entries


def previous_version(history: list[HistoryEntry], current: str, versions: list[str]) -> str | None:
    """The version before ``current``: the ``from`` of the last promotion to it, or, when the history promoted
    nothing to it (``tripod train`` published it), the newest version older than it.

    Args:
        history: the model's history, oldest first.
        current: the version the pointer names.
        versions: the model's versions, in version order.
    """
    for entry in reversed(history):
        if entry.action == "promote" and entry.to == current:
            return entry.from_
    if VERSION_NAME.fullmatch(current) is None:
        return None
    older = [version for version in versions if version_number(version) < version_number(current)]
    return older[-1] if older else None


class Registry:
    """A model registry at a local directory or an S3 prefix (see the module docstring).

    Args:
        root: ``models``, ``/srv/registry`` or ``s3://bucket/registry``.

    Raises:
        StorageError: a local registry that does not exist.
        InvalidInput: an S3 URL without a bucket, or a URL of another scheme.
    """

    def __init__(self, root: str) -> None:
        if "://" in root and not root.startswith(("file://", storage.S3)):
            raise InvalidInput(f"{root}: a registry is a local directory or an s3:// prefix")
        self._store: _Store = _S3Store(root) if storage.is_s3(root) else _LocalStore(root)

    @property
    def root(self) -> str:
        return self._store.root

    def location(self, name: str, *parts: str) -> str:
        return self._store.url(name, *parts)

    def models(self, name: str | None = None) -> list[ModelInfo]:
        """Every model (or only ``name``) with its versions, oldest first.

        Raises:
            ModelNotFound: ``name`` is not in the registry.
        """
        names = [self._known(name)] if name is not None else self._store.names()
        listed = []
        for model in names:
            current = self._store.pointer(model)
            versions = [
                self._store.describe(model, version, version == current)
                for version in self._store.versions(model)
            ]
            listed.append(ModelInfo(name=model, current=current, versions=versions))
        return listed

    def show(self, name: str, version: str | None = None) -> ModelDetail:
        """One version (by default the current one) and the model's history.

        Raises:
            ModelNotFound: an unknown model or version, or no current version and none named.
            ModelIntegrityError: the version's manifest cannot be read.
        """
        self._known(name)
        current = self._store.pointer(name)
        if version is None:
            if current is None:
                raise ModelNotFound(
                    f"{name} has no current version in {self.root} (no {LATEST_LINK}): name one with --version"
                )
            version = current
        self._existing(name, version)
        info = self._store.describe(name, version, version == current)
        if info.problem is not None:
            raise ModelIntegrityError(info.problem)
        history = parse_history(self._store.read_history(name))
        return ModelDetail(name=name, location=self.location(name, version), info=info, history=history)

    def history(self, name: str) -> list[HistoryEntry]:
        return parse_history(self._store.read_history(self._known(name)))

    def promote(
        self, name: str, version: str, *, reason: str | None = None, who: str | None = None
    ) -> Move | None:
        """Verify ``version`` completely, point the model at it, and record it in the history.

        Returns:
            What moved; None when ``version`` is already current (nothing is checked, moved or recorded).

        Raises:
            ModelNotFound: an unknown model or version.
            ModelIntegrityError: the version does not verify; the pointer has not moved.
        """
        self._known(name)
        with self._store.locked(name):
            self._existing(name, version)
            current = self._store.pointer(name)
            if current == version:
                return None
            return self._move(name, "promote", current, version, reason, who)

    def rollback(
        self, name: str, *, to: str | None = None, reason: str | None = None, who: str | None = None
    ) -> Move:
        """Point the model back at the version before the current one (:func:`previous_version`), or at ``to``,
        verified first, and record it in the history.

        Raises:
            ModelNotFound: an unknown model or version.
            InvalidInput: no current version, ``to`` is the current one, or nothing to go back to.
            ModelIntegrityError: the version does not verify; the pointer has not moved.
        """
        self._known(name)
        with self._store.locked(name):
            current = self._store.pointer(name)
            if current is None:
                raise InvalidInput(f"{name} has no current version in {self.root}: nothing to roll back")
            if to is None:
                history = parse_history(self._store.read_history(name))
                to = previous_version(history, current, self._store.versions(name))
                if to is None:
                    raise InvalidInput(
                        f"no version of {name} before {current} in its history or its versions: name one with --to"
                    )
            elif to == current:
                raise InvalidInput(f"{name} {to} is already the current version: nothing to roll back to")
            self._existing(name, to)
            return self._move(name, "rollback", current, to, reason, who)

    def _move(
        self,
        name: str,
        action: Action,
        current: str | None,
        version: str,
        reason: str | None,
        who: str | None,
    ) -> Move:
        try:
            verified = self._store.verify(name, version)
        except ModelIntegrityError as exc:
            raise ModelIntegrityError(f"refusing to {action} {name} {version}: {exc}") from exc
        if not verified.manifest.parity.passed:
            raise ModelIntegrityError(
                f"refusing to {action} {name} {version}: its parity check failed at export"
            )
        self._store.move_pointer(name, version)
        entry = HistoryEntry(
            time=utc_now(),
            action=action,
            from_=current,
            to=version,
            who=who or current_user(),
            host=socket.gethostname(),
            reason=reason or None,
        )
        self._store.append_history(name, entry)
        return Move(entry=entry, verified=verified, history=self.location(name, HISTORY_NAME))

    def _known(self, name: str) -> str:
        if not name or "/" in name or name.startswith(".") or "\\" in name:
            raise InvalidInput(f"{name!r} is not a model name")
        if not self._store.has(name):
            names = self._store.names()
            listed = f" (models: {', '.join(names)})" if names else ": it holds no models"
            raise ModelNotFound(f"no model named {name} in {self.root}{listed}")
        return name

    def _existing(self, name: str, version: str) -> None:
        versions = self._store.versions(name)
        if version not in versions:
            raise ModelNotFound(
                f"{name} has no version {version} in {self.root} (versions: {', '.join(versions) or 'none'})"
            )

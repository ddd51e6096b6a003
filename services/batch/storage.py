"""Where a batch-transform job reads and writes: a local path or an S3 prefix, through fsspec (s3fs for S3).

Inputs are listed the way SageMaker lists them (``S3Prefix``: every key starting with the prefix;
``ManifestFile``: a JSON list of relative paths under one prefix), sorted by the relative path that names their
output, because shards divide the list by position and must all see the same order.  Outputs and the job's
state are written atomically: an object appears complete or not at all, so a job that dies half-way leaves
nothing that a rerun could mistake for a finished output.

S3's endpoint and credentials come only from the standard AWS settings (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, profiles), read by botocore; they are
never logged nor put in a message.  s3fs (and botocore) are imported only once an ``s3://`` URL is used, so
local jobs and the serving process never pay for them.  Local listing and atomic renames use ``os`` itself:
they need what fsspec does not offer (pruning hidden folders while walking, fsync, an atomic replace).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import secrets
import stat
import sys
from contextlib import suppress
from dataclasses import dataclass
from functools import lru_cache
from gzip import GzipFile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, NoReturn, cast

from services.errors import InvalidInput, StorageError

if TYPE_CHECKING:
    from types import TracebackType

    from _typeshed import ReadableBuffer, WriteableBuffer

S3 = "s3://"
BLOCK_SIZE = 8 << 20
"""Bytes per S3 request: the read-ahead of a streamed read, and the part size of a multipart upload (outputs
larger than this are uploaded in parts, so memory stays bounded whatever the output's size)."""

# Every setting botocore reads to choose an endpoint and credentials: a filesystem is reused only while they
# are unchanged (a test, or a long-lived process, may point the variables elsewhere).
_AWS_SETTINGS = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_MAX_ATTEMPTS",
    "AWS_RETRY_MODE",
)
# AtomicWriter's temporary files: hidden (so input listings skip them) and recognisable (so list_urls does).
_TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{16}\.tmp$")


@dataclass(frozen=True)
class InputObject:
    """One object a job transforms.

    Attributes:
        url: what to open: an absolute local path or ``s3://bucket/key``.
        relative: the POSIX path, relative to the input prefix, that names the output
            (``<output>/<relative>.out``).
        size: bytes stored (the compressed size of a gzip object).
        version: a token that changes when the object does: the S3 ETag, or ``<mtime_ns>-<size>`` locally.
    """

    url: str
    relative: str
    size: int
    version: str


# --- locations ---------------------------------------------------------------------------------------------


def is_s3(url: str) -> bool:
    """Whether ``url`` names an S3 object or prefix rather than a local path."""
    return url.startswith(S3)


def _location(url: str) -> tuple[Any, str]:
    """The fsspec filesystem holding ``url`` and the path it knows it by (``bucket/key``, or an absolute path)."""
    if is_s3(url):
        path = url[len(S3) :]
        if not path.partition("/")[0]:
            raise InvalidInput(f"{url}: an S3 URL names a bucket: s3://bucket/key")
        return _s3_filesystem(), path
    if url.startswith("file://"):
        url = url[len("file://") :]
    elif "://" in url:
        raise InvalidInput(f"{url}: only local paths and s3:// URLs are supported")
    return _local_filesystem(), os.path.abspath(url)


@lru_cache(maxsize=1)
def _local_filesystem() -> Any:
    # fsspec costs ~0.1 s to import: only a job that touches storage pays it, never a module that imports this.
    from fsspec.implementations.local import LocalFileSystem

    return LocalFileSystem()


def _s3_filesystem() -> Any:
    """An s3fs filesystem for the current AWS settings, shared by every call while they stay the same.

    Sharing keeps botocore's client and its HTTP connections across the thousands of objects a job may open.
    The cache is keyed by a digest of the settings (so it holds no secret) and by the process id: a filesystem
    is bound to an event loop that a forked child does not inherit.
    """
    settings = "\0".join(os.environ.get(name, "\x01") for name in _AWS_SETTINGS)
    return _s3_for(hashlib.sha256(settings.encode()).hexdigest(), os.getpid())


@lru_cache(maxsize=4)
def _s3_for(settings_digest: str, pid: int) -> Any:
    try:
        import s3fs
    except ImportError as exc:
        raise StorageError("s3:// URLs need s3fs: pip install s3fs") from exc
    # skip_instance_cache: fsspec's own cache ignores the environment.  No listings cache: other workers and
    # shards write the same prefixes, and a cached listing would hide their objects.
    return s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)


def _failures() -> tuple[type[BaseException], ...]:
    """What storage calls raise: OSError, and botocore's own errors (no credentials, an unreachable endpoint),
    which s3fs lets through untranslated.  botocore is only looked at once something imported it."""
    botocore = sys.modules.get("botocore.exceptions")
    return (OSError,) if botocore is None else (OSError, botocore.BotoCoreError)


def _reason(exc: BaseException) -> str:
    """Why a storage call failed, in a few words on one line (s3fs's messages are often just the path)."""
    if isinstance(exc, FileNotFoundError):
        return "does not exist"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, NotADirectoryError | FileExistsError):
        return "a file is in the way of a directory"
    if isinstance(exc, IsADirectoryError):
        return "is a directory"
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return " ".join(text.split()) or type(exc).__name__


def _fail(verb: str, url: str, exc: BaseException) -> NoReturn:
    raise StorageError(f"cannot {verb} {url}: {_reason(exc)}") from exc


def _etag(info: dict[str, Any]) -> str:
    return str(info.get("ETag", "")).strip('"')


# --- listing inputs ----------------------------------------------------------------------------------------


def list_inputs(source: str, input_type: Literal["prefix", "manifest"] = "prefix") -> list[InputObject]:
    """Every object a job reads from ``source``, sorted by relative path.

    Args:
        source: with ``prefix``: a local file, a local directory (every regular file below it, hidden
            entries skipped) or an S3 key prefix (every key starting with it, as SageMaker's ``S3Prefix``).
            With ``manifest``: a JSON manifest in SageMaker's ``ManifestFile`` format, local or on S3.
        input_type: how to read ``source``.

    Returns:
        The objects, sorted by ``relative``: shards divide this list by position, so its order is fixed.

    Raises:
        InvalidInput: nothing to read, or a malformed manifest (the message names the problem).
        StorageError: the location cannot be listed (permissions, an unreachable endpoint).
    """
    if input_type == "manifest":
        objects = _manifest_inputs(source)
    elif input_type == "prefix":
        objects = _s3_prefix_inputs(source) if is_s3(source) else _local_inputs(source)
    else:
        raise InvalidInput(f"{source}: the input type is 'prefix' or 'manifest', not {input_type!r}")
    if not objects:
        raise InvalidInput(f"no input objects under {source}")
    return sorted(objects, key=lambda obj: obj.relative)


def _local_object(path: str, relative: str, status: os.stat_result) -> InputObject:
    return InputObject(
        url=path, relative=relative, size=status.st_size, version=f"{status.st_mtime_ns}-{status.st_size}"
    )


def _local_inputs(source: str) -> list[InputObject]:
    """A file is one input named by its basename; a directory gives every regular file below it."""
    _, top = _location(source)
    try:
        status = os.stat(top)
    except FileNotFoundError:
        return []
    except OSError as exc:
        _fail("read", source, exc)
    if stat.S_ISREG(status.st_mode):
        return [_local_object(top, os.path.basename(top), status)]

    def unreadable(exc: OSError) -> NoReturn:
        # os.walk skips what it cannot read unless told otherwise: a silently smaller job would be worse.
        _fail("list", exc.filename or source, exc)

    objects = []
    # Symbolic links to directories are not followed (a link loop would never end); links to files are read.
    for folder, directories, files in os.walk(top, onerror=unreadable):
        directories[:] = [name for name in directories if not name.startswith(".")]
        for name in files:
            if name.startswith("."):
                continue
            path = os.path.join(folder, name)
            try:
                status = os.stat(path)
            except FileNotFoundError:  # a dangling link, or a file removed while listing
                continue
            except OSError as exc:
                _fail("read", path, exc)
            if stat.S_ISREG(status.st_mode):
                objects.append(_local_object(path, Path(path).relative_to(top).as_posix(), status))
    return objects


def _s3_prefix_inputs(source: str) -> list[InputObject]:
    """Keys starting with the prefix; each is named from the prefix's last ``/`` on, as SageMaker names them."""
    fs, path = _location(source)
    bucket, _, key_prefix = path.partition("/")
    folder = key_prefix[: key_prefix.rfind("/") + 1]
    try:
        # s3fs's prefix= filters on the server: the listing costs the matching keys, not the whole folder.
        found = fs.find(f"{bucket}/{folder}".rstrip("/"), prefix=key_prefix[len(folder) :], detail=True)
    except FileNotFoundError:  # no such bucket
        return []
    except _failures() as exc:
        _fail("list", source, exc)
    objects = []
    for name, info in found.items():
        key = name.partition("/")[2]
        # Keys ending in "/" are the empty "folders" consoles create, not data.
        if key.startswith(key_prefix) and not key.endswith("/") and info.get("type") == "file":
            objects.append(
                InputObject(
                    url=S3 + name, relative=key[len(folder) :], size=int(info["size"]), version=_etag(info)
                )
            )
    return objects


# --- manifests ---------------------------------------------------------------------------------------------


def _manifest_inputs(source: str) -> list[InputObject]:
    """The objects a SageMaker ManifestFile lists: ``[{"prefix": "s3://bucket/p/"}, "a.csv", "sub/b.csv"]``.

    Each object's URL is the prefix followed by its entry, exactly as SageMaker joins them (no ``/`` added).
    """
    try:
        raw = _cat(source)
    except FileNotFoundError as exc:
        raise InvalidInput(f"{source}: the manifest does not exist") from exc
    prefix, entries = _parse_manifest(source, raw)
    objects: list[InputObject] = []
    missing: list[str] = []
    for entry in entries:
        found = _stat_object(prefix + entry, entry)
        if found is None:
            missing.append(prefix + entry)
        else:
            objects.append(found)
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise InvalidInput(
            f"{source}: {len(missing)} listed object(s) do not exist: {', '.join(missing[:3])}{more}"
        )
    return objects


def _parse_manifest(source: str, raw: bytes) -> tuple[str, list[str]]:
    """The manifest's prefix and its entries, refused with the first problem found."""
    try:
        document = json.loads(raw)
    except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8/16/32
        raise InvalidInput(f"{source}: the manifest is not JSON ({exc})") from exc
    if not isinstance(document, list):
        raise InvalidInput(f"{source}: a manifest is a JSON list, not a {type(document).__name__}")
    head = document[0] if document else None
    if not (isinstance(head, dict) and list(head) == ["prefix"] and isinstance(head["prefix"], str)):
        raise InvalidInput(f'{source}: a manifest starts with {{"prefix": "s3://bucket/prefix/"}}')
    prefix: str = head["prefix"]
    if not prefix:
        raise InvalidInput(f"{source}: the manifest's prefix is empty")
    entries = document[1:]
    if not entries:
        raise InvalidInput(f"{source}: the manifest lists no objects")
    seen: set[str] = set()
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, str):
            raise InvalidInput(f"{source}: manifest entry {number} is not a string: {json.dumps(entry)[:80]}")
        if not entry or entry.startswith("/") or "://" in entry or ".." in PurePosixPath(entry).parts:
            raise InvalidInput(
                f"{source}: manifest entry {number} ({entry!r}) is not a relative path inside the prefix"
            )
        if entry in seen:
            raise InvalidInput(f"{source}: manifest entry {number} ({entry!r}) is listed twice")
        seen.add(entry)
    return prefix, entries


def _stat_object(url: str, relative: str) -> InputObject | None:
    """The object at ``url``, or None when there is no object (or only a directory) there."""
    fs, path = _location(url)
    try:
        if not is_s3(url):
            status = os.stat(path)
            return _local_object(path, relative, status) if stat.S_ISREG(status.st_mode) else None
        info = fs.info(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except _failures() as exc:
        _fail("read", url, exc)
    if info.get("type") != "file":
        return None
    return InputObject(url=url, relative=relative, size=int(info["size"]), version=_etag(info))


# --- reading -----------------------------------------------------------------------------------------------


class _Range(io.RawIOBase):
    """At most ``length`` bytes of a file already positioned at the range's start, so no read runs past it."""

    def __init__(self, handle: Any, length: int) -> None:
        super().__init__()
        self._handle = handle
        self._left = length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        if self._left <= 0 or not len(view):
            return 0
        data = self._handle.read(min(len(view), self._left))
        view[: len(data)] = data
        self._left -= len(data)
        return len(data)

    def close(self) -> None:
        try:
            self._handle.close()
        finally:
            super().close()


class _GzipReader(GzipFile):
    """A GzipFile that also closes the file it decompresses (GzipFile leaves a file it was given open)."""

    def __init__(self, handle: Any) -> None:
        super().__init__(fileobj=handle, mode="rb")
        self._handle = handle

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._handle.close()


def open_input(obj: InputObject, *, gzip: bool = False, start: int = 0, end: int | None = None) -> BinaryIO:
    """``obj`` opened for binary reading, whole, decompressed, or only bytes ``[start, end)``.

    On S3 a range costs only the requests that cover it (s3fs turns seeks and reads into ranged GETs), so many
    workers can share one large object without each downloading it.

    Args:
        obj: the object, from :func:`list_inputs`.
        gzip: decompress as it is read.  A gzip stream cannot be entered in the middle, so no range then.
        start: first byte to read.
        end: first byte past the range; None reads to the end of the object.

    Raises:
        ValueError: a range with ``gzip``, or a range that ends before it starts.
        StorageError: the object is missing or cannot be read.
    """
    ranged = start != 0 or end is not None
    if gzip and ranged:
        raise ValueError("a gzip object is read whole: no start or end")
    if start < 0 or (end is not None and end < start):
        raise ValueError(f"bad byte range [{start}, {end})")
    fs, path = _location(obj.url)
    # A bounded range needs no read-ahead: each buffered read below is one GET of at most BLOCK_SIZE bytes.
    options: dict[str, Any] = {}
    if is_s3(obj.url):
        options = {"block_size": BLOCK_SIZE, "cache_type": "none" if end is not None else "readahead"}
    try:
        # A local file is opened directly: fsspec's local wrapper adds a Python call to every readline.
        handle = fs.open(path, "rb", **options) if is_s3(obj.url) else open(path, "rb")  # noqa: SIM115
        if start:
            handle.seek(start)
    except _failures() as exc:
        _fail("read", obj.url, exc)
    if gzip:
        return cast(BinaryIO, _GzipReader(handle))
    if end is not None:
        length = end - start
        return cast(
            BinaryIO, io.BufferedReader(_Range(handle, length), buffer_size=max(1, min(BLOCK_SIZE, length)))
        )
    if is_s3(obj.url):
        # s3fs's file reads ahead itself but has no readline(limit), which a reader of lines that may be
        # huge needs.
        return cast(BinaryIO, io.BufferedReader(handle, buffer_size=1 << 20))
    return cast(BinaryIO, handle)


def _cat(url: str) -> bytes:
    """The object's bytes; a missing object raises FileNotFoundError for the caller to judge."""
    fs, path = _location(url)
    try:
        return cast(bytes, fs.cat_file(path))
    except FileNotFoundError:
        raise
    except _failures() as exc:
        _fail("read", url, exc)


def read_bytes(url: str) -> bytes:
    """The whole object at ``url`` (a small one: a manifest, a state file).

    Raises:
        StorageError: missing or unreadable.
    """
    try:
        return _cat(url)
    except FileNotFoundError as exc:
        _fail("read", url, exc)


def exists(url: str) -> bool:
    """Whether an object (not a directory) is at ``url``.

    Raises:
        StorageError: the answer is unknown (no permission, an unreachable endpoint): guessing False would make
            a job redo, and guessing True skip, work it cannot see.
    """
    fs, path = _location(url)
    try:
        return bool(fs.info(path)["type"] == "file")
    except (FileNotFoundError, NotADirectoryError):
        return False
    except _failures() as exc:
        _fail("check", url, exc)


def list_urls(prefix_url: str) -> list[str]:
    """Every object below a local directory or an S3 "folder" (the job's state), sorted; none when missing.

    Writes still in progress (AtomicWriter's temporary files) are not listed.
    """
    fs, path = _location(prefix_url)
    try:
        names: list[str] = fs.find(path)
    except FileNotFoundError:
        return []
    except _failures() as exc:
        _fail("list", prefix_url, exc)
    if is_s3(prefix_url):
        return sorted(S3 + name for name in names if not name.endswith("/"))
    return sorted(name for name in names if not _TEMPORARY.match(os.path.basename(name)))


# --- writing -----------------------------------------------------------------------------------------------


def output_url(output: str, relative: str, suffix: str = ".out") -> str:
    """``<output>/<relative><suffix>``: where the answer to an input goes (SageMaker's naming).

    Args:
        output: a local directory or an S3 prefix (a trailing ``/`` or not).
        relative: the input's relative path (:attr:`InputObject.relative`).
        suffix: appended to the input's name.

    Raises:
        ValueError: ``relative`` would leave ``output`` (it comes from list_inputs, which never makes one).
    """
    if not relative or relative.startswith("/") or ".." in PurePosixPath(relative).parts:
        raise ValueError(f"{relative!r} is not a relative path")
    return f"{output.rstrip('/')}/{relative}{suffix}"


def write_bytes(url: str, data: bytes) -> None:
    """Write ``data`` to ``url`` atomically (see :class:`AtomicWriter`)."""
    with AtomicWriter(url) as out:
        out.write(data)


def remove(url: str) -> None:
    """Delete the object at ``url``; one already gone is fine (two workers may clean the same state)."""
    fs, path = _location(url)
    try:
        fs.rm_file(path)
    except FileNotFoundError:
        pass
    except _failures() as exc:
        _fail("remove", url, exc)


def remove_leftovers(url: str) -> None:
    """Delete the temporary files a killed :class:`AtomicWriter` of ``url`` left beside it (local paths).

    Only the one job unit that writes ``url`` calls this, so no other writer's temporary file is touched.  On
    S3 a killed writer leaves at most an incomplete multipart upload, invisible to readers; a bucket's
    ``AbortIncompleteMultipartUpload`` lifecycle rule removes it.
    """
    if is_s3(url):
        return
    _, path = _location(url)
    folder, name = os.path.split(path)
    try:
        leftovers = [entry for entry in os.listdir(folder) if entry.startswith(f".{name}.")]
    except FileNotFoundError:
        return
    except OSError as exc:
        _fail("list", url, exc)
    for entry in leftovers:
        if _TEMPORARY.match(entry) and len(entry) == len(name) + 22:
            with suppress(FileNotFoundError):
                os.remove(os.path.join(folder, entry))


class AtomicWriter:
    """An object written whole or not at all: ``with AtomicWriter(url) as out: out.write(b"...")``.

    The object appears only when the ``with`` block ends without an exception.  Locally the bytes go to a
    hidden temporary file beside the destination, synced and then renamed over it (a rename is atomic within a
    directory).  On S3 an object becomes visible only when its upload completes: small outputs are one PUT at
    the end, larger ones a multipart upload of BLOCK_SIZE parts that is aborted on failure, so no partial
    object and no billed orphan parts remain.

    Attributes:
        url: the destination.
        bytes_written: bytes written so far.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.bytes_written = 0
        self._fs, self._path = _location(url)
        self._handle: Any = None
        self._temporary: str | None = None

    def __enter__(self) -> AtomicWriter:
        try:
            if is_s3(self.url):
                self._handle = self._fs.open(self._path, "wb", block_size=BLOCK_SIZE)
            else:
                folder, name = os.path.split(self._path)
                os.makedirs(folder, exist_ok=True)
                self._temporary = os.path.join(folder, f".{name}.{secrets.token_hex(8)}.tmp")
                # Not tempfile.mkstemp: its 0600 mode would make outputs unreadable to the user's group.
                self._handle = open(self._temporary, "xb")  # closed by __exit__
        except _failures() as exc:
            _fail("write", self.url, exc)
        return self

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer) -> int:
        """Append ``data``; returns its length in bytes.

        Raises:
            StorageError: the write failed (a full disk, a lost connection); the ``with`` block then cleans up.
        """
        if self._handle is None:
            raise ValueError("AtomicWriter writes inside a with block")
        size = memoryview(data).nbytes
        try:
            self._handle.write(data)
        except _failures() as exc:
            _fail("write", self.url, exc)
        self.bytes_written += size
        return size

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self._discard()
            return
        try:
            self._commit()
        except _failures() as error:
            self._discard()
            _fail("write", self.url, error)

    def _commit(self) -> None:
        if is_s3(self.url):
            self._handle.close()  # completes the single PUT or the multipart upload
        else:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()
            assert self._temporary is not None
            os.replace(self._temporary, self._path)
            _sync_directory(os.path.dirname(self._path))
        self._handle = self._temporary = None

    def _discard(self) -> None:
        handle, temporary = self._handle, self._temporary
        self._handle = self._temporary = None
        if handle is None:
            return
        # Cleaning up must not hide the error that caused it; a multipart upload left behind by a lost
        # connection is what a bucket's AbortIncompleteMultipartUpload lifecycle rule is for.
        with suppress(*_failures()):
            if temporary is None:
                handle.discard()  # aborts a multipart upload (even after a failed completion); drops the buffer
                handle.closed = True  # else the file's finaliser would try to upload what is left
            else:
                handle.close()
                os.remove(temporary)


def _sync_directory(folder: str) -> None:
    """Make a rename durable: it lives in the directory, which has its own sync.  Best effort: some
    filesystems refuse to open or sync a directory, and the rename has already happened."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)

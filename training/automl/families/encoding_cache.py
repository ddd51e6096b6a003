"""Per-text vectors of a frozen encoder, kept in memory and on disk, so a search pays each encoding once.

A frozen encoder's features depend only on the text (and the encoder), so every trial of the family, the
ensemble, the report and a later run on the same data can share them.  Keys are per text (BLAKE2b-128 of its
UTF-8 bytes) inside a directory named for the encoder and its settings, which makes the cache a fingerprint of
the data at row level: a resumed study, a new split or a grown table re-encodes only the texts it has not seen.

On disk: one ``.npz`` shard per :meth:`EncodingCache.flush` (keys and vectors), written to a temporary name and
renamed, so a reader never sees half a shard and concurrent writers never collide.  A shard that cannot be read
(a crash mid-write on a file system without atomic rename, a truncated copy) is skipped with a warning: the
rows are encoded again, never trusted.

The location is ``$TRIPOD_CACHE_DIR/encodings`` (default ``~/.cache/tripod/encodings``), like Hugging Face's
``HF_HOME``; delete it any time.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import uuid
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

KEY_BYTES = 16


def cache_root() -> Path:
    return Path(os.environ.get("TRIPOD_CACHE_DIR") or Path.home() / ".cache" / "tripod") / "encodings"


def text_key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=KEY_BYTES).digest()


class EncodingCache:
    """Vectors of shape ``shape`` per text for one encoder (``name`` says which, with its settings).

    Counters (what tests and the leaderboard read): ``hits`` (texts answered from the cache), ``encoded``
    (texts the encoder ran on), ``loaded`` (rows read from disk shards).
    """

    def __init__(self, name: str, shape: tuple[int, ...], directory: Path | None = None) -> None:
        self.name = name
        self.shape = shape
        self.directory = (directory or cache_root()) / name
        self.hits = 0
        self.encoded = 0
        self.loaded = 0
        self._vectors: dict[bytes, np.ndarray] = {}
        self._unsaved: list[bytes] = []
        self._lock = threading.Lock()
        self._load()

    def __len__(self) -> int:
        return len(self._vectors)

    def _load(self) -> None:
        if not self.directory.is_dir():
            return
        for shard in sorted(self.directory.glob("*.npz")):
            try:
                with np.load(shard, allow_pickle=False) as data:
                    keys, vectors = data["keys"], data["vectors"]
                if vectors.shape[1:] != self.shape or keys.shape != (len(vectors), KEY_BYTES):
                    raise ValueError(f"shape {vectors.shape} for {len(keys)} keys")
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
                logger.warning("encoding cache: skipping unreadable shard %s (%s)", shard, exc)
                continue
            for key, vector in zip(keys, vectors, strict=True):
                self._vectors[key.tobytes()] = vector
            self.loaded += len(keys)

    def vectors(self, texts: Sequence[str], encode: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        """``(len(texts), *shape)`` float32: cached rows as they are, the others through ``encode`` (once per
        distinct text) and remembered."""
        keys = [text_key(t) for t in texts]
        with self._lock:
            missing: dict[bytes, str] = {}
            for key, text in zip(keys, texts, strict=True):
                if key not in self._vectors:
                    missing.setdefault(key, text)
            self.hits += len(texts) - sum(1 for k in keys if k in missing)
        if missing:
            fresh = np.asarray(encode(list(missing.values())), dtype=np.float32)
            with self._lock:
                for key, vector in zip(missing, fresh, strict=True):
                    self._vectors[key] = vector
                self._unsaved += list(missing)
                self.encoded += len(missing)
        out = np.empty((len(texts), *self.shape), dtype=np.float32)
        for row, key in enumerate(keys):
            out[row] = self._vectors[key]
        return out

    def flush(self) -> Path | None:
        """Write the rows encoded since the last flush as one shard; returns its path (None if nothing new)."""
        with self._lock:
            keys, self._unsaved = self._unsaved, []
            if not keys:
                return None
            vectors = np.stack([self._vectors[k] for k in keys])
        self.directory.mkdir(parents=True, exist_ok=True)
        name = uuid.uuid4().hex
        partial = self.directory / f".{name}.partial"
        with open(partial, "wb") as handle:
            # uint8 rows, not an ``S16`` array: NumPy's bytes type drops trailing NUL bytes of a digest
            raw = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), KEY_BYTES)
            np.savez(handle, keys=raw, vectors=vectors)
        final = self.directory / f"{name}.npz"
        os.replace(partial, final)
        return final


_caches: dict[tuple[str, Path], EncodingCache] = {}
_caches_lock = threading.Lock()


def shared_cache(name: str, shape: tuple[int, ...]) -> EncodingCache:
    """The process's one cache for ``name`` under the current :func:`cache_root` (trials share it)."""
    key = (name, cache_root())
    with _caches_lock:
        if key not in _caches:
            _caches[key] = EncodingCache(name, shape, key[1])
        return _caches[key]


def forget_shared_caches() -> None:
    """Drop the in-memory caches (what a new process starts with); the disk shards stay."""
    with _caches_lock:
        _caches.clear()

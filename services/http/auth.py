"""API keys: who may call which routes, and how often (``TRIPOD_AUTH_KEYS``; off when unset).

The keys file (YAML or JSON) holds a SHA-256 of each token, never the token (``tripod keys create`` makes a
token, prints it once and writes its hash)::

    keys:
      - name: web-shop              # logged with every request it makes; never the token
        sha256: 5f1d…               # hex digest of the token
        scopes: [predict]           # predict | admin | metrics
        rate: 100                   # optional: requests per second, per worker process (token bucket)
        burst: 200                  # optional: the bucket's size (default: one second of rate)

Tokens are random (``tpd_`` + 32 bytes, URL-safe base64), so an unsalted SHA-256 is the right hash: nothing
can be guessed from it, and verification costs one hash per request, not a password-hashing function's
hundreds of milliseconds.  The presented token's digest is compared with *every* key's digest with
:func:`hmac.compare_digest` — no early exit, no dictionary lookup — so timing says nothing about the keys.

Routes and scopes: the health routes (``/ping``, ``/livez``, ``/readyz``, ``/healthz``, OIP's
``/v2/health/*``) stay open for probes; ``/metrics`` needs ``metrics``; ``/admin/…`` and any PUT, PATCH or
DELETE need ``admin`` (reserved for the routes that change state: variant weights, model swaps); everything else
— the inference routes, explanations and model metadata — needs ``predict``.  No token, or one that matches no
key: 401 with ``WWW-Authenticate: Bearer``; a key without the route's scope: 403; over its rate: 429 with
``Retry-After`` (whole seconds).  The token is read from ``Authorization: Bearer <token>`` or ``X-Api-Key``.

Rotation: the file is looked at (one ``stat``) at most once a second on the request path and re-read when it
changed — a Kubernetes Secret's atomic symlink swap included — so keys are added and revoked without a restart.
A file that no longer parses is refused: the keys in use stay, and the log says why once per change.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import math
import os
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from starlette.types import ASGIApp, Receive, Scope, Send

from services.errors import TripodError
from services.http.errors import send_json_error
from services.monitoring.metrics import NOT_WORK
from services.monitoring.requests import CURRENT

logger = logging.getLogger("tripod.auth")

ScopeName = Literal["predict", "admin", "metrics"]
SCOPES: tuple[ScopeName, ...] = ("predict", "admin", "metrics")
TOKEN_PREFIX = "tpd_"
OPEN_PATHS = NOT_WORK - {"/metrics"}
_ADMIN_METHODS = frozenset({"PUT", "PATCH", "DELETE"})
_RECHECK_S = 1.0


class KeyEntry(BaseModel):
    """One key of the file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    scopes: tuple[ScopeName, ...] = Field(min_length=1)
    rate: float | None = Field(None, gt=0, description="requests per second per worker")
    burst: float | None = Field(None, ge=1, description="bucket size (default: max(1, rate))")

    @model_validator(mode="after")
    def _burst_needs_rate(self) -> KeyEntry:
        if self.burst is not None and self.rate is None:
            raise ValueError(f"key {self.name!r}: burst without rate")
        return self


class KeyFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    keys: tuple[KeyEntry, ...]

    @field_validator("keys")
    @classmethod
    def _unique(cls, keys: tuple[KeyEntry, ...]) -> tuple[KeyEntry, ...]:
        names = [k.name for k in keys]
        if len(set(names)) != len(names):
            raise ValueError("key names must be unique")
        digests = [k.sha256 for k in keys]
        if len(set(digests)) != len(digests):
            raise ValueError("two keys have the same sha256")
        return keys


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def new_token() -> str:
    """``tpd_`` + 32 random bytes, URL-safe base64 without padding."""
    return TOKEN_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def read_keys(path: Path) -> KeyFile:
    """Parse and validate a keys file.

    Raises:
        TripodError: unreadable, not YAML/JSON, or not the schema (one line naming the problem).
    """
    try:
        text = path.read_text(encoding="utf-8")
        raw = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
        return KeyFile.model_validate(raw if raw is not None else {"keys": []})
    except (OSError, UnicodeDecodeError) as exc:
        raise TripodError(f"keys file {path}: cannot read it ({exc})") from exc
    except (ValueError, yaml.YAMLError) as exc:
        detail = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc).splitlines()[0]
        raise TripodError(f"keys file {path}: {detail}") from exc


def write_keys(path: Path, keys: Sequence[KeyEntry]) -> None:
    """Write atomically (a temporary file renamed over the old one), readable by its owner only."""
    document = {"keys": [k.model_dump(exclude_none=True, mode="json") for k in keys]}
    partial = path.with_name(f".{path.name}.partial")
    text = json.dumps(document, indent=2) if path.suffix.lower() == ".json" else yaml.safe_dump(document)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(partial, path)


@dataclass
class TokenBucket:
    """``rate`` tokens a second up to ``burst``; one request takes one."""

    rate: float
    burst: float
    tokens: float = field(init=False)
    stamp: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = self.burst

    def take(self, now: float) -> float:
        """0 when allowed (a token taken), else the seconds until one is there."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


def required_scope(method: str, path: str) -> ScopeName | None:
    """The scope a request needs; None for the open health routes."""
    if path in OPEN_PATHS:
        return None
    if path == "/metrics":
        return "metrics"
    if method in _ADMIN_METHODS or path == "/admin" or path.startswith("/admin/"):
        return "admin"
    return "predict"


def presented_token(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            kind, _, token = value.decode("latin-1").partition(" ")
            if kind.lower() == "bearer" and token.strip():
                return token.strip()
        elif name == b"x-api-key" and value.strip():
            return value.decode("latin-1").strip()
    return None


class Denied(Exception):
    def __init__(self, status: int, message: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.headers = list(headers)


class Guard:
    """The keys of one file, re-read when it changes, and their rate buckets (module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._keys = read_keys(path).keys
        self._signature = self._stat()
        self._checked = time.monotonic()
        self._refused: tuple[int, int, int] | None = None
        self._buckets: dict[str, TokenBucket] = {}

    def _stat(self) -> tuple[int, int, int]:
        info = self.path.stat()
        return info.st_mtime_ns, info.st_size, info.st_ino

    def _refresh(self, now: float) -> None:
        if now - self._checked < _RECHECK_S:
            return
        with self._lock:
            if now - self._checked < _RECHECK_S:
                return
            self._checked = now
            try:
                signature = self._stat()
            except OSError as exc:
                if self._refused is None:
                    logger.error("keys file %s: cannot stat it (%s); the keys in use stay", self.path, exc)
                    self._refused = (0, 0, 0)
                return
            if signature == self._signature or signature == self._refused:
                return
            try:
                keys = read_keys(self.path).keys
            except TripodError as exc:
                logger.error("%s; the keys in use stay", exc)
                self._refused = signature
                return
            self._keys, self._signature, self._refused = keys, signature, None
            names = {k.name for k in keys}
            self._buckets = {name: b for name, b in self._buckets.items() if name in names}
            logger.info("keys file %s re-read: %d key(s)", self.path, len(keys))

    def match(self, token: str) -> KeyEntry | None:
        """The key whose digest equals the token's, comparing with every key in constant time."""
        digest = token_digest(token).encode()
        found = None
        for key in self._keys:
            if hmac.compare_digest(digest, key.sha256.encode()):
                found = key
        return found

    def check(self, method: str, path: str, token: str | None, now: float) -> KeyEntry | None:
        """The key allowed to make this request (None for an open route).

        Raises:
            Denied: 401, 403 or 429 with its message and headers.
        """
        needed = required_scope(method, path)
        if needed is None:
            return None
        self._refresh(now)
        if token is None:
            raise Denied(
                401,
                "authentication required: send Authorization: Bearer <token> (or X-Api-Key)",
                [(b"www-authenticate", b'Bearer realm="tripod"')],
            )
        key = self.match(token)
        if key is None:
            raise Denied(
                401, "invalid token", [(b"www-authenticate", b'Bearer realm="tripod", error="invalid_token"')]
            )
        if needed not in key.scopes:
            raise Denied(403, f"the key {key.name!r} does not have the {needed!r} scope this route needs")
        if key.rate is not None:
            bucket = self._buckets.get(key.name)
            if bucket is None or bucket.rate != key.rate:
                bucket = self._buckets[key.name] = TokenBucket(key.rate, key.burst or max(1.0, key.rate))
            wait = bucket.take(now)
            if wait > 0:
                raise Denied(
                    429,
                    f"the key {key.name!r} is over its rate of {key.rate:g} requests/s",
                    [(b"retry-after", str(max(1, math.ceil(wait))).encode())],
                )
        return key


GUARD: Guard | None = None
"""This worker's guard, set by the entry service when ``TRIPOD_AUTH_KEYS`` is set (None: no authentication)."""


class AuthMiddleware:
    """Lets a request through only with a key that may make it (module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        guard = GUARD
        if guard is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            key = guard.check(scope["method"], scope["path"], presented_token(scope), time.monotonic())
        except Denied as exc:
            await send_json_error(send, exc.status, str(exc), exc.headers)
            return
        request = CURRENT.get()
        if key is not None and request is not None:
            request.key = key.name
        await self.app(scope, receive, send)

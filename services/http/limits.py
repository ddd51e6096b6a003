"""The request body, bounded before any route sees it: size, read time, compression and media type.

:class:`RequestBodyMiddleware` reads the whole body first (every route needs all of it anyway), so that

- a body over ``max_bytes`` — declared or streamed, compressed or after decompression — is refused with 413
  and never buffered beyond the limit (the rest is read and dropped, so a client that reads only after
  uploading still sees the JSON answer instead of a reset);
- a body that does not arrive within ``read_timeout_s`` is refused with 408 and the connection closed, so a
  client holding a half-sent body cannot pin a worker or hold up a graceful shutdown (before this, 20 such
  clients kept SIGTERM waiting 59 s, until BentoML's request timeout);
- ``Content-Encoding: gzip`` or ``deflate`` bodies (``tritonclient`` offers both) are decompressed, bounded by
  the same limit (a 1 KB bomb cannot become 1 GB), and passed on as plain bodies;
- the typed JSON routes (``/predict``) refuse another ``Content-Type`` with 415: BentoML would try to read a
  multipart form there and answer 500.

The time to send the request *headers* is bounded one level down, in ``services/http/protocol.py``.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable, Callable, Collection, MutableMapping
from typing import Any

from services.http.errors import send_json_error

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ENCODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
"""``Content-Encoding`` → zlib window bits (gzip framing, or zlib framing for ``deflate`` as RFC 9110 says)."""
CLOSE = [(b"connection", b"close")]


class _Refused(Exception):
    def __init__(self, status: int, message: str, *, close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.close = close


class _Gone(Exception):
    """The client disconnected while sending its body."""


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def _decompress(body: bytes, encoding: str, max_bytes: int) -> bytes:
    wbits = ENCODINGS[encoding]
    try:
        decompressor = zlib.decompressobj(wbits)
        out = decompressor.decompress(body, max_bytes + 1)
        if len(out) > max_bytes:
            raise _Refused(
                413, f"the decompressed request body is larger than the limit of {max_bytes} bytes"
            )
        if not decompressor.eof:
            raise _Refused(400, f"the {encoding} request body is truncated")
    except zlib.error as exc:
        raise _Refused(400, f"the request body is not valid {encoding} data ({exc})") from exc
    return out


class RequestBodyMiddleware:
    """See the module docstring."""

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, read_timeout_s: float, json_paths: Collection[str] = ()
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout_s = read_timeout_s
        self.json_paths = frozenset(json_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            headers = list(scope.get("headers") or [])
            self._check_media_type(scope["path"], headers)
            body = await self._read(receive, headers)
            encoding = (
                (_header(headers, b"content-encoding") or b"identity").decode("latin-1").strip().lower()
            )
            if encoding != "identity":
                if encoding not in ENCODINGS:
                    raise _Refused(
                        415, f"Content-Encoding {encoding!r} is not supported; use gzip or deflate"
                    )
                body = _decompress(body, encoding, self.max_bytes)
                headers = [
                    (k, v) for k, v in headers if k.lower() not in (b"content-encoding", b"content-length")
                ]
                headers.append((b"content-length", str(len(body)).encode()))
                scope = {**scope, "headers": headers}
        except _Refused as refused:
            await send_json_error(send, refused.status, str(refused), CLOSE if refused.close else [])
            return
        except _Gone:
            return

        await self.app(scope, replay_body(body, receive), send)

    def _check_media_type(self, path: str, headers: list[tuple[bytes, bytes]]) -> None:
        if path not in self.json_paths:
            return
        content_type = _header(headers, b"content-type")
        kind = (content_type or b"application/json").split(b";")[0].strip().lower()
        if kind != b"application/json":
            raise _Refused(415, f"{path} takes application/json, not {kind.decode('latin-1')!r}", close=True)

    async def _read(self, receive: Receive, headers: list[tuple[bytes, bytes]]) -> bytes:
        declared = _header(headers, b"content-length")
        too_large = declared is not None and declared.isdigit() and int(declared) > self.max_bytes
        chunks: list[bytes] = []
        seen = 0
        try:
            async with asyncio.timeout_at(asyncio.get_running_loop().time() + self.read_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":  # the client went away: nothing to answer
                        raise _Gone
                    chunk = message.get("body", b"")
                    seen += len(chunk)
                    too_large = too_large or seen > self.max_bytes
                    if not too_large:
                        chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            raise _Refused(
                408, f"the request body did not arrive within {self.read_timeout_s:g} s", close=True
            ) from None
        if too_large:
            raise _Refused(413, f"request body is larger than the limit of {self.max_bytes} bytes")
        return b"".join(chunks)


def replay_body(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the app a body already read (in one message), then the client's next messages."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay

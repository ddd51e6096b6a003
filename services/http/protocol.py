"""uvicorn's HTTP protocol with a deadline for request headers and JSON for framing errors.

Two things happen before any ASGI middleware can act, inside uvicorn's connection protocol:

- **Slow or absent headers.**  uvicorn starts no timer when a connection opens, and cancels its keep-alive
  timer as soon as a byte arrives, so a client that connects and sends nothing, or sends its headers a byte
  at a time (slowloris), holds the connection for ever: 300 such connections stayed open indefinitely.
  Here every request's headers must be complete within ``header_timeout_s`` of the connection opening or of
  the request's first byte; otherwise the client gets a JSON 408 and the connection is closed.
- **Malformed framing.**  uvicorn answers it with a plain-text 400; here the body is ``{"error": ...}`` like
  every other error Tripod sends.

BentoML builds uvicorn's configuration itself and offers no way to pass a protocol class, so
:func:`install` points uvicorn's ``auto`` HTTP protocol at this class.  It must run in the worker before
uvicorn loads its configuration; the entry service module calls it when it is imported (which is how BentoML
starts a worker).  The class builds on ``HttpToolsProtocol`` (httptools is a pinned serving dependency).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from services.http.errors import error_body

DEFAULT_HEADER_TIMEOUT_S = 15.0
PROTOCOL_PATH = "services.http.protocol:GuardedHttpToolsProtocol"


def raw_json_response(status_line: bytes, message: str) -> bytes:
    """A complete HTTP/1.1 response with a JSON error body that closes the connection."""
    body = error_body(message)
    return b"".join(
        [
            status_line,
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
            body,
        ]
    )


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """See the module docstring."""

    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._header_deadline is None and (self.cycle is None or self.cycle.response_complete):
            self._arm()  # the first byte of a next request on a kept-alive connection
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        self._disarm()
        self.transport.write(raw_json_response(b"HTTP/1.1 400 Bad Request\r\n", msg))
        self.transport.close()

    def _arm(self) -> None:
        self._disarm()
        self._header_deadline = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self.transport.is_closing():
            return
        message = f"the request headers did not arrive within {self.header_timeout_s:g} s"
        self.transport.write(raw_json_response(b"HTTP/1.1 408 Request Timeout\r\n", message))
        self.transport.close()


def install(header_timeout_s: float) -> None:
    """Make uvicorn's ``auto`` HTTP protocol this class, with the given header deadline."""
    import uvicorn.config

    GuardedHttpToolsProtocol.header_timeout_s = header_timeout_s
    uvicorn.config.HTTP_PROTOCOLS["auto"] = PROTOCOL_PATH

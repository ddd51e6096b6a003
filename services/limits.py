"""ASGI middleware that refuses oversized bodies before the application buffers them."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def send_json_error(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """Answer 413 with a JSON body when a request declares or streams more than ``max_bytes``.

    Past the limit the body is read and discarded rather than buffered, and the 413 is sent after it, so
    every client (including those that only read a response once their upload is done) sees the JSON error
    instead of a reset connection.  Memory stays bounded by ``max_bytes``.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"request body is larger than the limit of {self.max_bytes} bytes"
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        too_large = declared is not None and declared.isdigit() and int(declared) > self.max_bytes

        chunks: list[bytes] = []
        seen = 0
        while True:
            incoming = await receive()
            if incoming["type"] != "http.request":  # the client went away: nothing to answer
                return
            chunk = incoming.get("body", b"")
            seen += len(chunk)
            too_large = too_large or seen > self.max_bytes
            if not too_large:
                chunks.append(chunk)
            if not incoming.get("more_body", False):
                break
        if too_large:
            await send_json_error(send, 413, message)
            return

        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

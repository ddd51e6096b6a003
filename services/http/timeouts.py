"""BentoML's request timeout, without the memory it kept: a 504 for a request not answered in time.

BentoML 1.4.39's ``TimeoutMiddleware`` schedules ``loop.call_later(timeout, …)`` for every request and never
cancels it.  The timer handle holds a future and the request's context (its OpenTelemetry span and context
variables) until it fires, so every answered request stays in memory for the whole timeout (60 s by default):
at 1,500 requests/s the entry worker grew from 140 MB to over 600 MB (measured with
``benchmarks/serving_compare.py``; in-process, 5 KB and 10 objects per request until the timer fires).

:class:`RequestTimeoutMiddleware` keeps the behaviour — a JSON 504 when no answer has *started* within the
timeout, no limit once it has — with ``asyncio.timeout``, whose timer is cancelled when the request ends.
BentoML builds its middleware stack itself, so :func:`install` puts this class where BentoML looks for its
own; the entry service calls it when it is imported, before any app is built.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from services.http.errors import send_json_error

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class RequestTimeoutMiddleware:
    """A JSON 504 when the application has not started its answer within ``timeout`` seconds."""

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = False
        try:
            async with asyncio.timeout(self.timeout) as deadline:

                async def send_and_stop_the_clock(message: Message) -> None:
                    nonlocal started
                    if not started:
                        started = True
                        deadline.reschedule(None)  # an answer under way is not cut off
                    await send(message)

                await self.app(scope, receive, send_and_stop_the_clock)
        except TimeoutError:
            if started:
                raise
            await send_json_error(send, 504, f"the request was not answered within {self.timeout:g} s")


def install() -> None:
    """Make BentoML build its request timeout from :class:`RequestTimeoutMiddleware`."""
    from bentoml._internal.server.http import traffic

    traffic.TimeoutMiddleware = RequestTimeoutMiddleware  # type: ignore[misc, assignment]

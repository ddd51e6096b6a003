"""Where errors become HTTP responses: one place, one JSON shape ``{"error": "..."}``, whatever failed.

- :func:`maps_errors` wraps every route: a :class:`~services.errors.TripodError` is the client's mistake and
  gets its status; anything else is a bug, logged with its traceback, answered 500.
- :func:`install_error_handlers` gives the protocol app the same shape for FastAPI's own errors (request
  validation, 404, 405).
- :class:`JsonErrorsMiddleware` is the net under everything: any error answer that is not JSON (Starlette's
  plain-text 404 and 405 for unknown routes and methods, a framework's text error) is rewritten to the JSON
  shape, and an exception that escapes before an answer started becomes a JSON 500 instead of uvicorn's
  plain text.  Malformed HTTP framing never reaches the application; ``services/http/protocol.py`` answers
  it in JSON too.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from http import HTTPStatus
from typing import Any, ParamSpec, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from services.errors import InvalidInput, TripodError

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
MAX_ERROR_CHARS = 500


class ErrorBody(BaseModel):
    """Every error answer: ``{"error": "what went wrong, naming the record and field"}``."""

    error: str


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        400: "undecodable body, invalid UTF-8, or a bad request parameter",
        404: "no model of that name",
        406: "Accept names no type this route produces",
        408: "the request was not received within the read timeout",
        413: "body or record count over the limit",
        415: "unsupported Content-Type or Content-Encoding",
        422: "a record does not fit the input schema (names the record and field)",
    }.items()
}
"""The error answers of the protocol routes, for their OpenAPI description."""


def error_body(message: str) -> bytes:
    return json.dumps({"error": message[:MAX_ERROR_CHARS]}).encode()


def error_response(exc: TripodError) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=exc.status_code)


def unexpected_response(exc: Exception) -> JSONResponse:
    """A JSON answer for an error that is not the client's: a stage shedding load (BentoML's 503) keeps its
    status; anything else is a bug, logged with its traceback, and answers 500."""
    from bentoml.exceptions import BentoMLException

    if isinstance(exc, BentoMLException) and int(exc.error_code) >= 500:
        return JSONResponse(
            {"error": f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]}, status_code=int(exc.error_code)
        )
    logger.error("unhandled error: %s", type(exc).__name__, exc_info=exc)
    return JSONResponse({"error": f"internal error: {type(exc).__name__}"}, status_code=500)


def maps_errors(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R | JSONResponse]]:
    """Answer every exception an async route raises with the JSON error shape, inside the route.

    Catching here, rather than in an app-wide handler for ``Exception``, matters: Starlette re-raises after
    such a handler and uvicorn then drops the keep-alive connection, so the client's next request on it
    fails.  The wrapper keeps the signature, so BentoML and FastAPI still derive the typed request model.
    """
    if not inspect.iscoroutinefunction(func):
        raise TypeError(f"{func.__qualname__} must be async to be wrapped by maps_errors")

    @functools.wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | JSONResponse:
        try:
            return await func(*args, **kwargs)
        except TripodError as exc:
            return error_response(exc)
        except Exception as exc:  # noqa: BLE001 - every other failure still answers JSON
            return unexpected_response(exc)

    return wrapper


def install_error_handlers(app: FastAPI) -> None:
    """Give a FastAPI app Tripod's one error shape: Tripod errors by their status, request-envelope
    validation as 400, Starlette's own HTTP errors (404, 405) with their status."""

    async def tripod_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, TripodError)
        return error_response(exc)

    async def validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(part) for part in first.get("loc", ())) or "request"
        return error_response(InvalidInput(f"{where}: {first.get('msg', 'invalid')}"))

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    app.add_exception_handler(TripodError, tripod_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)


def _is_json(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name.lower() == b"content-type":
            return value.split(b";")[0].strip().lower() == b"application/json"
    return False


async def send_json_error(
    send: Send, status: int, message: str, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """Answer an error in the JSON shape (from middleware, where no framework response class is at hand)."""
    body = error_body(message)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class JsonErrorsMiddleware:
    """Rewrite every non-JSON error answer to ``{"error": ...}`` and turn an escaped exception into a JSON
    500 (see the module docstring).  JSON answers and successes pass through untouched, at the cost of one
    status check per response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        chunks: list[bytes] = []
        started = False

        async def rewrite(message: Message) -> None:
            nonlocal held, started
            if message["type"] == "http.response.start":
                started = True
                if message["status"] >= 400 and not _is_json(list(message.get("headers", []))):
                    held = message
                    return
            elif held is not None and message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                status = held["status"]
                text = b"".join(chunks).decode("utf-8", "replace").strip()
                kept = [(k, v) for k, v in held.get("headers", []) if k.lower() in (b"allow", b"retry-after")]
                await send_json_error(send, status, text or _phrase(status), kept)
                return
            await send(message)

        try:
            await self.app(scope, receive, rewrite)
        except Exception as exc:
            if started:
                raise
            logger.error("unhandled error: %s", type(exc).__name__, exc_info=exc)
            await send_json_error(send, 500, f"internal error: {type(exc).__name__}")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"

"""Where Tripod's exceptions become HTTP responses: one place, one JSON shape ``{"error": "..."}``."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from services.errors import InvalidInput, TripodError

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


def error_response(exc: TripodError) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=exc.status_code)


def unexpected_response(exc: Exception) -> JSONResponse:
    """A JSON answer for an error that is not the client's: a stage shedding load (BentoML's 503) keeps its
    status; anything else is a bug, logged with its traceback, and answers 500."""
    from bentoml.exceptions import BentoMLException

    if isinstance(exc, BentoMLException) and int(exc.error_code) >= 500:
        return JSONResponse({"error": f"{type(exc).__name__}: {exc}"[:500]}, status_code=int(exc.error_code))
    logger.error("unhandled error: %s", type(exc).__name__, exc_info=exc)
    return JSONResponse({"error": f"internal error: {type(exc).__name__}"}, status_code=500)


def maps_errors(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R | JSONResponse]]:
    """Answer every exception an async route raises with the JSON error shape, inside the route.

    A :class:`TripodError` is the client's mistake and gets its status; anything else goes through
    :func:`unexpected_response`.  Catching here, rather than in an app-wide handler for ``Exception``,
    matters: Starlette re-raises after such a handler and uvicorn then drops the keep-alive connection, so the
    client's next request on it fails.  The wrapper keeps the signature, so BentoML and FastAPI still derive
    the typed request model from it.
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
    validation as 400, Starlette's own HTTP errors (404, 405) with their status, and anything else as
    :func:`unexpected_response` (routes wrap themselves in :func:`maps_errors`, so this last one is a net)."""

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

    async def bug(_: Request, exc: Exception) -> JSONResponse:  # outside a route wrapped by maps_errors
        return unexpected_response(exc)

    app.add_exception_handler(TripodError, tripod_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, bug)

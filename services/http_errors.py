"""Where Tripod's exceptions become HTTP responses: one place, one JSON shape ``{"error": "..."}``."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from starlette.responses import JSONResponse

from services.errors import TripodError

P = ParamSpec("P")
R = TypeVar("R")


def error_response(exc: TripodError) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=exc.status_code)


def maps_errors(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R | JSONResponse]]:
    """Turn a :class:`TripodError` raised by an async API method into its JSON error response.

    BentoML answers any other exception with a 500, which is right for bugs and wrong for a client's mistake;
    the wrapper keeps the signature so BentoML still derives the typed request model from it.
    """
    if not inspect.iscoroutinefunction(func):
        raise TypeError(f"{func.__qualname__} must be async to be wrapped by maps_errors")

    @functools.wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | JSONResponse:
        try:
            return await func(*args, **kwargs)
        except TripodError as exc:
            return error_response(exc)

    return wrapper

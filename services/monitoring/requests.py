"""The request being answered: its id and what the access line will say about it.

A context variable, so every layer of one request — middleware, routes, pipeline observers on the event loop or
a worker thread, the log filter, data capture — sees the same :class:`RequestLog` without passing it along.
Set by :class:`services.http.requestid.RequestContextMiddleware`; None outside a request.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass


@dataclass
class RequestLog:
    """What the access line says about one request; layers below the middleware fill in what they know."""

    request_id: str
    method: str
    route: str
    id_from_caller: bool
    status: int = 0
    records: int = 0
    variant: str | None = None
    model_version: str | None = None
    key: str | None = None
    error: str | None = None

    def fields(self, duration_ms: float) -> dict[str, object]:
        return {
            "request_id": self.request_id,
            "method": self.method,
            "route": self.route,
            "status": self.status,
            "records": self.records,
            "duration_ms": round(duration_ms, 3),
            "variant": self.variant,
            "model_version": self.model_version,
            "key": self.key,
            "error": self.error,
        }


CURRENT: contextvars.ContextVar[RequestLog | None] = contextvars.ContextVar("tripod_request", default=None)
"""The request being answered in this task (None outside a request: start-up, watchers, the CLI)."""


def current_request_id() -> str | None:
    request = CURRENT.get()
    return None if request is None else request.request_id

"""Log lines as JSON objects (``TRIPOD_LOG_FORMAT=json``) or text, each with the request id of its request.

``json``: one object per line with ``time`` (UTC, ISO 8601, milliseconds), ``level``, ``logger``, ``message``,
``request_id`` (when the line was written while answering a request), the access line's fields (route, status,
records, duration_ms, variant, model_version, key, error; :mod:`services.http.requestid`) and ``exception``
(the formatted traceback) when there is one.  Every handler BentoML configured in the worker gets the
formatter, so BentoML's and uvicorn's own lines are JSON too; BentoML's access line is switched off in JSON
mode because Tripod's carries the same facts as fields (``services/http/service.py``).

``text``: BentoML's format, with `` request_id=…`` appended to lines written for a request.

Nothing here reads request bodies or headers: a line holds what the code logged, the id, and the access
fields — never a token (the key's *name* is logged, not the key).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Literal

from services.monitoring.requests import current_request_id

LogFormat = Literal["json", "text"]
_LOGGERS = ("", "bentoml", "bentoml.access", "uvicorn", "uvicorn.error", "uvicorn.access", "tripod")


class RequestIdFilter(logging.Filter):
    """Sets ``record.request_id`` (None outside a request); never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record (module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            entry["request_id"] = request_id
        fields = getattr(record, "tripod", None)
        if isinstance(fields, dict):
            entry.update({k: v for k, v in fields.items() if v is not None})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextWithRequestId(logging.Formatter):
    """The handler's own text format, with `` request_id=…`` appended inside a request."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        text = self.inner.format(record)
        request_id = getattr(record, "request_id", None)
        return text if request_id is None else f"{text} request_id={request_id}"


def install(log_format: LogFormat, *, access_log: bool = True) -> None:
    """Give every handler of the root, BentoML, uvicorn and Tripod loggers the format and the id filter.

    ``access_log=False`` silences Tripod's access line (BentoML's is switched off in its service configuration).

    Idempotent: a second call replaces the formatters it installed."""
    handlers: list[logging.Handler] = []
    for name in _LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if handler not in handlers:
                handlers.append(handler)
    if not handlers:  # outside BentoML (tests, the CLI): one stderr handler on the root logger
        handler = logging.StreamHandler()
        logging.getLogger().addHandler(handler)
        handlers.append(handler)
    for handler in handlers:
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())
        current = handler.formatter
        if isinstance(current, TextWithRequestId):
            current = current.inner
        handler.setFormatter(JsonFormatter() if log_format == "json" else TextWithRequestId(current))
    logging.getLogger("tripod").setLevel(logging.INFO)
    # text: BentoML's access line is on (and gets the id); Tripod's structured one would repeat it
    json_access = access_log and log_format == "json"
    logging.getLogger("tripod.access").setLevel(logging.INFO if json_access else logging.WARNING)

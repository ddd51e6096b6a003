"""Request ids and the access log: one id per request, on its answer, on every log line and captured record.

The id comes from the caller when it sends one — ``X-Request-Id`` (the common proxy header), or SageMaker's
``X-Amzn-SageMaker-Inference-Id`` — and is generated (32 hex digits) otherwise.  The OIP routes also take the
``id`` of an inference request's body when no header named one (:func:`adopt_body_id`), as KServe does.  The
answer carries it as ``X-Request-Id``, 2xx, 4xx and 5xx alike, so a complaint can be traced to its log lines.

An id is text that lands in logs, so only a safe one is accepted: 1-128 characters of letters, digits and
``-._:``; anything else (a newline could forge a log line) is a JSON 400 naming the header.

:class:`RequestContextMiddleware` is the outermost middleware: it opens the request's :class:`RequestLog`
(a context variable every layer below can fill in: the variant that answered, the records, the model version,
the API key's name), and when the answer is sent writes Tripod's access line — one per request, with route,
status, records, duration, variant, model version and the error of a 4xx/5xx answer.  Bodies are never logged
(data capture is the record of what was sent).  Probes and scrapes are not logged at INFO, as BentoML skips them.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.http.errors import send_json_error
from services.monitoring.metrics import INVOKED_VARIANT_HEADER, NOT_WORK
from services.monitoring.requests import CURRENT, RequestLog
from services.runtime.pipeline import Call, Observer
from services.runtime.predictions import PredictionBatch

access_logger = logging.getLogger("tripod.access")

REQUEST_ID_HEADER = b"x-request-id"
INFERENCE_ID_HEADER = b"x-amzn-sagemaker-inference-id"
_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_ERROR_BYTES = 4096
"""Most of an error answer's body read back for the access line's ``error`` (JSON errors are short)."""


class BadRequestId(ValueError):
    status_code = 400


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def request_id_of(scope: Scope) -> tuple[str, bool]:
    """The caller's id (``X-Request-Id``, else SageMaker's inference id) and True, or a new one and False.

    Raises:
        BadRequestId: the header's value is not a safe id.
    """
    for name in (REQUEST_ID_HEADER, INFERENCE_ID_HEADER):
        value = _header(scope, name)
        if value is not None:
            if not _SAFE_ID.fullmatch(value):
                raise BadRequestId(
                    f"{name.decode()} must be 1-128 characters of letters, digits and -._: ({len(value)} given)"
                )
            return value, True
    return uuid.uuid4().hex, False


def adopt_body_id(body_id: object) -> None:
    """An OIP request's ``id`` becomes the request id when no header named one (and it is a safe id)."""
    request = CURRENT.get()
    if (
        request is not None
        and not request.id_from_caller
        and isinstance(body_id, str)
        and _SAFE_ID.fullmatch(body_id)
    ):
        request.request_id, request.id_from_caller = body_id, True


class RequestLogObserver(Observer):
    """Adds each pipeline call's records and the answering model's version to the request's log entry."""

    def __init__(self, model_version: str) -> None:
        self.model_version = model_version

    def call_done(self, call: Call, batch: PredictionBatch) -> None:
        request = CURRENT.get()
        if request is not None:
            request.records += len(batch)
            request.model_version = self.model_version


class RequestContextMiddleware:
    """Opens each request's :class:`RequestLog`, returns its id, and writes the access line (module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path = scope["path"]
        try:
            request_id, from_caller = request_id_of(scope)
        except BadRequestId as exc:
            request_id, from_caller = uuid.uuid4().hex, False
            request = RequestLog(request_id, scope["method"], path, from_caller, status=400, error=str(exc))
            CURRENT.set(request)
            await send_json_error(send, 400, str(exc), [(REQUEST_ID_HEADER, request_id.encode())])
            self._log(request, started)
            return
        request = RequestLog(request_id, scope["method"], path, from_caller)
        # Not reset afterwards: each request is its own task, and layers outside this one (BentoML's) may
        # still log for this request after it returns.
        CURRENT.set(request)
        error_body = bytearray()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                request.status = int(message["status"])
                headers = list(message.get("headers", ()))
                for name, value in headers:
                    if name == INVOKED_VARIANT_HEADER:
                        request.variant = value.decode("latin-1")
                headers.append((REQUEST_ID_HEADER, request.request_id.encode()))
                message["headers"] = headers
            elif (
                message["type"] == "http.response.body"
                and request.status >= 400
                and len(error_body) < _ERROR_BYTES
            ):
                error_body.extend(message.get("body", b"")[: _ERROR_BYTES - len(error_body)])
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if request.status >= 400 and request.error is None:
                request.error = _error_text(bytes(error_body))
            self._log(request, started)

    @staticmethod
    def _log(request: RequestLog, started: float) -> None:
        level = logging.DEBUG if request.route in NOT_WORK else logging.INFO
        if not access_logger.isEnabledFor(level):
            return
        duration_ms = (time.perf_counter() - started) * 1000
        access_logger.log(
            level,
            "%s %s %d",
            request.method,
            request.route,
            request.status,
            extra={"tripod": request.fields(duration_ms)},
        )


def _error_text(body: bytes) -> str | None:
    """The ``error`` of a JSON error answer, else None."""
    try:
        value = json.loads(body)
    except ValueError:
        return None
    error = value.get("error") if isinstance(value, dict) else None
    return error if isinstance(error, str) else None

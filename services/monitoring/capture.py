"""Data capture: what the endpoint was asked and answered, in SageMaker's capture format, off the request path.

SageMaker's format (one JSON object per line)::

    {"captureData": {"endpointInput": {"observedContentType": "application/json", "mode": "INPUT",
                                       "data": "<request body>", "encoding": "JSON"},
                     "endpointOutput": {"observedContentType": "application/json", "mode": "OUTPUT",
                                        "data": "<answer body>", "encoding": "JSON"}},
     "eventMetadata": {"eventId": "<uuid4>", "inferenceId": "<the request id>",
                       "inferenceTime": "2026-12-02T14:03:05Z"},
     "eventVersion": "0"}

``inferenceId`` is the request's id (``services/http/requestid.py``): the caller's ``X-Request-Id`` or
``X-Amzn-SageMaker-Inference-Id`` — SageMaker's field holds the latter — or the one the server generated, the
same id as the answer's ``X-Request-Id`` and the request's log lines.  ``encoding`` is ``JSON`` for JSON and JSON Lines bodies, ``CSV`` for CSV, and ``BASE64`` (``data`` base64) for
anything else or a body that is not UTF-8.  Files go to
``<destination>/<endpoint>/<variant>/yyyy/mm/dd/hh/<time>-<pid>-<n>.jsonl`` (UTC hour of the requests), a local
directory or ``s3://``, each written whole and atomically (``services/batch/storage.py``), so a reader never sees
half a file.

A request pays one random draw while it runs; once its answer is sent, :class:`CaptureMiddleware` encodes the
exchange as one line (about 14 µs) and hands it to :class:`CaptureWriter`'s bounded queue, and a thread of its
own writes the lines out.  Encoding on the event loop, after the answer, rather than on the writer thread is
deliberate: a thread encoding a thousand lines at a flush holds the GIL in turns of up to 5 ms, and requests
waited behind it (open-loop p50 4.6 → 16.5 ms in the first measurement); the writer now only joins bytes and
does I/O, which releases the GIL.  When the queue is full the exchange is dropped and counted
(``tripod_capture_dropped_total``); a request never waits for capture.  On shutdown the writer flushes
everything queued.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import queue
import random
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.batch.storage import write_bytes
from services.monitoring.requests import current_request_id
from services.monitoring.variants import REQUEST, current_variant

logger = logging.getLogger("tripod.capture")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CAPTURED_ROUTES = frozenset({"/predict", "/invocations", "/explain"})
"""Inference routes whose exchanges are captured (plus OIP ``infer`` and KServe's ``:explain``, by suffix)."""


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request and its answer, as the middleware saw them (bytes are referenced, not copied)."""

    started: float
    request_type: str
    request: bytes
    answer_type: str
    answer: bytes
    inference_id: str | None
    variant: str
    """The production variant that answered (a shadow's answer is captured under the shadow's name)."""


def _encoded(content_type: str, body: bytes) -> tuple[str, str]:
    """``(encoding, data)`` of a body in the capture format."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind in ("application/json", "application/jsonlines", "application/x-jsonlines", "text/csv"):
        try:
            return ("CSV" if kind == "text/csv" else "JSON"), body.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return "BASE64", base64.b64encode(body).decode("ascii")


def capture_record(exchange: Exchange) -> dict[str, Any]:
    """The capture-format object of one exchange."""
    request_encoding, request_data = _encoded(exchange.request_type, exchange.request)
    answer_encoding, answer_data = _encoded(exchange.answer_type, exchange.answer)
    metadata: dict[str, str] = {"eventId": str(uuid.uuid4())}
    if exchange.inference_id:
        metadata["inferenceId"] = exchange.inference_id
    metadata["inferenceTime"] = datetime.fromtimestamp(exchange.started, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "captureData": {
            "endpointInput": {
                "observedContentType": exchange.request_type,
                "mode": "INPUT",
                "data": request_data,
                "encoding": request_encoding,
            },
            "endpointOutput": {
                "observedContentType": exchange.answer_type,
                "mode": "OUTPUT",
                "data": answer_data,
                "encoding": answer_encoding,
            },
        },
        "eventMetadata": metadata,
        "eventVersion": "0",
    }


class CaptureWriter:
    """A bounded queue and the thread that writes it out, one per server process.

    Args:
        destination: a directory or ``s3://bucket/prefix``.
        endpoint: the path part SageMaker uses (the variant comes with each exchange).
        percent: share of exchanges captured (0–100), drawn per request.
        max_queue: exchanges held in memory at most; more are dropped and counted.
        flush_records, flush_seconds: the writer wakes when this many exchanges wait, or every this many
            seconds, and writes everything waiting.
        seed: the sampling's random seed (tests); None draws from the OS.
    """

    def __init__(
        self,
        destination: str,
        *,
        endpoint: str,
        percent: float = 100.0,
        max_queue: int = 10_000,
        flush_records: int = 1_000,
        flush_seconds: float = 5.0,
        seed: int | None = None,
        on_drop: Callable[[str], None] | None = None,
        on_write: Callable[[str, int], None] | None = None,
    ) -> None:
        self.destination = destination.rstrip("/")
        self.endpoint = endpoint
        self.share = percent / 100.0
        self.flush_records, self.flush_seconds = flush_records, flush_seconds
        self._queue: queue.Queue[tuple[str, str, bytes]] = queue.Queue(maxsize=max_queue)
        self._random = random.Random(seed)
        self._on_drop = on_drop or (lambda _variant: None)
        self._on_write = on_write or (lambda _variant, _n: None)
        self._files = 0
        self.dropped = 0
        self.written = 0
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="tripod-capture", daemon=True)
        self._thread.start()

    def sampled(self) -> bool:
        """Whether this request is captured (decided before anything is collected)."""
        return self.share >= 1.0 or (self.share > 0.0 and self._random.random() < self.share)

    def offer(self, exchange: Exchange) -> bool:
        """Encode an exchange and queue its line without waiting; False (and counted) when the queue is full."""
        hour = datetime.fromtimestamp(exchange.started, UTC).strftime("%Y/%m/%d/%H")
        line = json.dumps(capture_record(exchange), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        try:
            self._queue.put_nowait((exchange.variant, hour, line + b"\n"))
        except queue.Full:
            self.dropped += 1
            self._on_drop(exchange.variant)
            return False
        if self._queue.qsize() >= self.flush_records:
            self._wake.set()
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        """Write everything queued, then stop the thread; give up after ``timeout_s`` (an object store that
        hangs must not hold a pod past its grace period: 5 s preStop + 20 s drain + these 10 s < 35 s)."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout_s)

    # -- the writer thread ----------------------------------------------------------------------------------

    def _run(self) -> None:
        """Sleep until woken (enough waiting, or stopping) or the flush interval passes, then write everything
        waiting.  The thread never wakes per exchange: a wake-up per request made the event loop hand the GIL
        over once a request."""
        while True:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            stopping = self._stopping
            lines: list[tuple[str, str, bytes]] = []
            while True:
                try:
                    lines.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if lines:
                self._flush(lines)
            if stopping:
                return

    def _flush(self, lines: list[tuple[str, str, bytes]]) -> None:
        """Write encoded lines to one file per variant and UTC hour they fall in."""
        by_hour: dict[tuple[str, str], list[bytes]] = {}
        for variant, hour, line in lines:
            by_hour.setdefault((variant, hour), []).append(line)
        for (variant, hour), chunk in by_hour.items():
            self._files += 1
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
            name = f"{stamp}-{os.getpid()}-{self._files:06d}.jsonl"
            url = f"{self.destination}/{self.endpoint}/{variant}/{hour}/{name}"
            try:
                write_bytes(url, b"".join(chunk))
            except Exception:  # capture must never take the server down: log, count, go on
                logger.exception("data capture: could not write %d records to %s", len(chunk), url)
                self.dropped += len(chunk)
                for _ in chunk:
                    self._on_drop(variant)
                continue
            self.written += len(chunk)
            self._on_write(variant, len(chunk))


WRITER: CaptureWriter | None = None
"""This process's writer, set by the entry service when capture is configured."""


def _header(headers: Collection[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _captured(path: str) -> bool:
    return path in CAPTURED_ROUTES or path.endswith(("/infer", ":explain"))


class CaptureMiddleware:
    """Hands each sampled inference exchange to :data:`WRITER`; 4xx answers only when ``errors`` is true.

    It sits inside the body middleware, so it sees the body as the route did (decompressed, bounded)."""

    def __init__(self, app: ASGIApp, *, errors: bool = False) -> None:
        self.app = app
        self.errors = errors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        writer = WRITER
        if writer is None or scope["type"] != "http" or not _captured(scope["path"]) or not writer.sampled():
            await self.app(scope, receive, send)
            return
        started = time.time()
        request: list[bytes] = []
        answer: list[bytes] = []
        status = 500
        answer_type = ""

        async def receive_and_keep() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                request.append(message.get("body", b""))
            return message

        async def send_and_keep(message: Message) -> None:
            nonlocal status, answer_type
            if message["type"] == "http.response.start":
                status = message["status"]
                answer_type = _header(message.get("headers", []), b"content-type") or ""
            elif message["type"] == "http.response.body":
                answer.append(message.get("body", b""))
            await send(message)

        await self.app(scope, receive_and_keep, send_and_keep)
        if status < 400 or (self.errors and status < 500):
            headers = scope.get("headers", [])
            exchange = Exchange(
                started=started,
                request_type=_header(headers, b"content-type") or "",
                request=b"".join(request),
                answer_type=answer_type,
                answer=b"".join(answer),
                inference_id=current_request_id(),
                variant=current_variant(),
            )
            writer.offer(exchange)
            if (routed := REQUEST.get()) is not None:
                routed.exchange = exchange  # the request's shadows are captured with the same input

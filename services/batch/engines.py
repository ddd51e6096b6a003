"""Where a transform job's mini-batches are answered: in this machine's processes, or by an endpoint.

Both engines take a request body and give back the answer's bytes, the same bytes ``POST /invocations`` would
give, so a job's outputs are identical whichever runs it:

- :class:`InProcessEngine` — worker processes (one per core by default), each holding the model's pipeline and
  answering mini-batches with the shared codecs; no HTTP.  Processes are started with ``spawn``: onnxruntime's
  sessions must not be inherited through ``fork``.
- :class:`EndpointEngine` — ``POST /invocations`` to any SageMaker-compatible container, ``MaxConcurrentTransforms``
  requests in flight; 5xx answers, 408, 429 and connection errors are retried up to 3 times with exponential
  backoff, as SageMaker does; any other 4xx is the records' fault and is reported with the container's message.

A refusal of the records (a 4xx, or in process a Tripod input error) raises :class:`RecordsRefused`, so the job
can find the bad record; anything else that stops an answer raises :class:`EngineFailed`, which fails the file.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Protocol

from services.errors import ModelNotReady, StorageError, TripodError

RETRIES = 3
"""SageMaker retries a failed request up to three times."""
BACKOFF_S = 0.5
RETRIED_4XX = (408, 429)
"""A client error that is the container's state, not the records': a timeout, or throttling."""
RESPONSE_KEYS_HEADER = "X-Tripod-Response-Keys"


class RecordsRefused(Exception):
    """The model refused the records of a request: their fault, not the engine's (a 4xx)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message

    def __str__(self) -> str:
        return f"{self.status}: {self.message}"


class EngineFailed(Exception):
    """No answer could be had (after retries): the file fails, not a record."""


class Engine(Protocol):
    max_in_flight: int
    """How many requests may be outstanding at once."""

    def submit(self, payload: bytes) -> Future[bytes]: ...

    def close(self) -> None: ...


# -- in process -------------------------------------------------------------------------------------------


class _Worker:
    """What each worker process holds: the pipeline and how to encode its answers."""

    def __init__(self, model_dir: str, content_type: str, accept: str, keys: str | None) -> None:
        from services.codecs.answers import response_keys
        from services.runtime.limits import Limits
        from services.runtime.pipeline import Pipeline
        from services.settings import ServingSettings

        settings = ServingSettings.from_env()
        limits = Limits(max_text_chars=settings.max_text_chars, chunk_rows=settings.chunk_rows)
        self.pipeline = Pipeline.from_directory(Path(model_dir), threads=settings.onnx_threads, limits=limits)
        self.content_type, self.accept = content_type, accept
        self.keys = response_keys(keys, settings.response_keys, regression=self.pipeline.regression)

    def answer(self, payload: bytes) -> bytes:
        from services.codecs.answers import answer_rows, encode_answer
        from services.codecs.bodies import decode_body

        try:
            batch = self.pipeline.predict(decode_body(payload, self.content_type))
        except TripodError as exc:
            raise RecordsRefused(exc.status_code, str(exc)) from None
        return encode_answer(answer_rows(batch, self.keys), self.accept)


_THIS_PROCESS: dict[str, Any] = {}
"""The worker of a pool process, set by its initializer (a pool process serves one job), or why it could not
start."""


def _start_worker(model_dir: str, content_type: str, accept: str, keys: str | None) -> None:
    try:
        _THIS_PROCESS["worker"] = _Worker(model_dir, content_type, accept, keys)
    # Kept for the job's process to report in one line: an initializer that raises prints a traceback.
    except Exception as exc:  # noqa: BLE001 - whatever stops a model loading is reported, not lost
        _THIS_PROCESS["failure"] = (
            exc if isinstance(exc, TripodError) else ModelNotReady(f"a worker cannot load the model: {exc}")
        )


def _worker() -> _Worker:
    worker: _Worker | None = _THIS_PROCESS.get("worker")
    if worker is None:
        raise _THIS_PROCESS["failure"]
    return worker


def _answer(payload: bytes) -> bytes:
    return _worker().answer(payload)


def _probe() -> None:
    _worker()


class InProcessEngine:
    """Mini-batches answered by worker processes holding the model (see the module docstring)."""

    def __init__(
        self, model_dir: Path, *, content_type: str, accept: str, keys: str | None, workers: int
    ) -> None:
        self.max_in_flight = 2 * workers  # one running and one waiting per worker keeps every core busy
        self._workers = workers
        self._initargs = (str(model_dir), content_type, accept, keys)
        self._pool = self._start()
        try:
            self._pool.submit(_probe).result()
        except BaseException:
            self.close()
            raise

    def _start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self._workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=self._initargs,
        )

    def submit(self, payload: bytes) -> Future[bytes]:
        try:
            return self._pool.submit(_answer, payload)
        except BrokenProcessPool:
            # A worker died (killed for memory, or crashed on some input): the answers in flight fail their
            # file (EngineFailed); a fresh pool lets the other files go on.
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._start()
            return self._pool.submit(_answer, payload)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


# -- endpoint ---------------------------------------------------------------------------------------------


TOKEN_VARIABLE = "TRIPOD_TOKEN"
MAX_RETRY_AFTER_S = 30.0


def endpoint_token(token_file: Path | None) -> str | None:
    """The endpoint's bearer token: ``--token-file``'s first line, else ``$TRIPOD_TOKEN``, else None.

    Read when the engine starts and kept only in its request headers: never in the options, the job summary or a
    log line.

    Raises:
        StorageError: the token file cannot be read or is empty.
    """
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise StorageError(f"cannot read --token-file {token_file}: {exc}") from exc
        if not token or not token[0].strip():
            raise StorageError(f"--token-file {token_file} is empty")
        return token[0].strip()
    return os.environ.get(TOKEN_VARIABLE, "").strip() or None


def _authorization(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


def execution_parameters(
    endpoint: str, timeout_s: float = 10.0, *, token: str | None = None
) -> dict[str, Any]:
    """What the container advises (``GET /execution-parameters``); empty when it has no such route."""
    request = urllib.request.Request(
        f"{endpoint.rstrip('/')}/execution-parameters", headers=_authorization(token)
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:
            parsed = json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return {}
        raise EngineFailed(f"{endpoint}/execution-parameters answered {exc.code}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise EngineFailed(f"cannot reach {endpoint}: {exc}") from exc
    return parsed if isinstance(parsed, dict) else {}


class EndpointEngine:
    """Mini-batches posted to ``<endpoint>/invocations`` (see the module docstring)."""

    def __init__(
        self,
        endpoint: str,
        *,
        content_type: str,
        accept: str,
        keys: str | None,
        concurrency: int,
        timeout_s: float = 600.0,
        backoff_s: float | None = None,
        token: str | None = None,
    ) -> None:
        self.url = f"{endpoint.rstrip('/')}/invocations"
        self.headers = {"Content-Type": content_type, "Accept": accept, **_authorization(token)}
        if keys:
            self.headers[RESPONSE_KEYS_HEADER] = keys
        self.timeout_s = timeout_s
        self.backoff_s = BACKOFF_S if backoff_s is None else backoff_s
        self.max_in_flight = concurrency
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="transform-endpoint")

    def submit(self, payload: bytes) -> Future[bytes]:
        return self._pool.submit(self._post, payload)

    def _post(self, payload: bytes) -> bytes:
        problem = ""
        retry_after = 0.0
        for attempt in range(RETRIES + 1):
            if attempt:
                time.sleep(max(self.backoff_s * 2 ** (attempt - 1), retry_after))
            request = urllib.request.Request(self.url, data=payload, headers=self.headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                    return bytes(answer.read())
            except urllib.error.HTTPError as exc:
                body = exc.read()
                if exc.code in (401, 403):  # the key, not the records: no record would fare better
                    raise EngineFailed(f"{self.url} answered {exc.code}: {_error_message(body)}") from None
                if exc.code < 500 and exc.code not in RETRIED_4XX:
                    raise RecordsRefused(exc.code, _error_message(body)) from None
                retry_after = _retry_after(exc.headers.get("Retry-After"))
                problem = f"{exc.code}: {_error_message(body)}"
            except (urllib.error.URLError, OSError) as exc:
                problem = f"connection error: {getattr(exc, 'reason', exc)}"
        raise EngineFailed(f"{self.url} failed {RETRIES + 1} times; last: {problem}")

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _retry_after(value: str | None) -> float:
    """A 429's or 503's ``Retry-After`` in seconds (capped), 0 when absent or not a number of seconds."""
    try:
        return min(MAX_RETRY_AFTER_S, max(0.0, float(value))) if value else 0.0
    except ValueError:
        return 0.0


def _error_message(body: bytes) -> str:
    """A container's error answer as one line: Tripod's ``{"error": ...}``, or the start of the body."""
    text = body.decode("utf-8", "replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        return " ".join(text.split())[:300]
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
        return parsed["error"][:300]
    return " ".join(text.split())[:300]

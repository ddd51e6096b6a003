"""Start ``tripod serve`` as a child process on loopback, wait until it is ready, and always stop it.

The demo, the service tests and the benchmarks share this one way of running a real server, so each of them
measures and exercises exactly what a user starts.  Only the standard library is used.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class RunningServer:
    url: str
    pid: int
    cold_start_s: float
    """Seconds from spawning the process to the first 200 from ``/readyz``."""


def http_json(url: str, payload: object | None = None, *, timeout: float = 30.0) -> tuple[int, object]:
    """GET (no payload) or POST JSON; returns the status and the decoded JSON body (or text)."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    try:
        return status, json.loads(body) if body else None
    except json.JSONDecodeError:
        return status, body.decode(errors="replace")


def _ready(url: str, context: ssl.SSLContext | None = None, path: str = "/readyz") -> bool:
    try:
        with urllib.request.urlopen(f"{url}{path}", timeout=2, context=context) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def _stop(process: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    """SIGTERM the whole process group (the entry and every stage worker), then SIGKILL stragglers."""
    group = process.pid  # the child leads its own session, so its pid is the group id
    try:
        os.killpg(group, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        process.poll()
        try:
            os.killpg(group, 0)  # raises once no process of the group is left
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)
    process.wait(timeout=grace_s)


@contextmanager
def running_server(
    model_dir: Path,
    *,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    ready_timeout_s: float = 120.0,
    log_path: Path | None = None,
    args: Sequence[str] = (),
    ca_file: Path | None = None,
) -> Iterator[RunningServer]:
    """Run ``tripod serve`` for ``model_dir`` on a loopback port for the duration of the ``with`` block.

    Args:
        args: more ``tripod serve`` options.
        ca_file: with ``--ssl-certfile``/``--ssl-keyfile`` in ``args``: the certificate to trust.
    """
    port = port or free_port()
    command = [
        sys.executable,
        "-m",
        "tripod.cli",
        "serve",
        "--model",
        str(model_dir),
        "--port",
        str(port),
        *args,
    ]
    with running_command(
        command, port, env=env, ready_timeout_s=ready_timeout_s, log_path=log_path, ca_file=ca_file
    ) as server:
        yield server


@contextmanager
def running_command(
    command: Sequence[str],
    port: int,
    *,
    env: Mapping[str, str] | None = None,
    ready_timeout_s: float = 120.0,
    log_path: Path | None = None,
    ca_file: Path | None = None,
    ready_path: str = "/readyz",
) -> Iterator[RunningServer]:
    """Run a server command in its own process group until ``ready_path`` on ``port`` answers 200.

    Args:
        ca_file: the server speaks TLS with a certificate this file vouches for (the URL is ``https``).
        ready_path: the readiness route (other servers than Tripod's name theirs differently).

    Raises:
        RuntimeError: the server exited or was not ready in time; the message holds the end of its log.
    """
    url = f"{'https' if ca_file else 'http'}://{LOOPBACK}:{port}"
    context = None if ca_file is None else ssl.create_default_context(cafile=str(ca_file))
    child_env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True", **(env or {})}
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed below
    started = time.perf_counter()
    process = subprocess.Popen(
        list(command), env=child_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = started + ready_timeout_s
        while not _ready(url, context, ready_path):
            if process.poll() is not None or time.perf_counter() > deadline:
                tail = log_path.read_text(errors="replace")[-3000:] if log_path else "(no log kept)"
                raise RuntimeError(
                    f"server on {url} did not become ready (exit code {process.poll()}):\n{tail}"
                )
            time.sleep(0.1)
        yield RunningServer(url=url, pid=process.pid, cold_start_s=time.perf_counter() - started)
    finally:
        _stop(process)
        if log_path:
            log.close()  # type: ignore[union-attr]

"""What a real server does with hostile or broken HTTP: every answer is a JSON error, the next good request
succeeds, big requests leave room for health checks, and slow clients are cut off in bounded time.

The server here reads with a 1-second timeout and drains for 3 seconds at shutdown, so the slow-client tests
are quick; production defaults are 15 and 20 seconds (docs/api.md).
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from harness.server import RunningServer, running_server

READ_TIMEOUT_S = 1
SHUTDOWN_TIMEOUT_S = 3
ENV = {"TRIPOD_READ_TIMEOUT_S": str(READ_TIMEOUT_S), "TRIPOD_SHUTDOWN_TIMEOUT_S": str(SHUTDOWN_TIMEOUT_S)}


@pytest.fixture(scope="module")
def strict_server(
    trained_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    log = tmp_path_factory.mktemp("strict") / "server.log"
    with running_server(trained_model_dir, env=ENV, log_path=log) as running:
        yield running


def _good(server: RunningServer, column: str) -> None:
    response = httpx.post(f"{server.url}/predict", json={"records": [{column: "great"}]}, timeout=30)
    assert response.status_code == 200


DEEP = b"[" * 1000 + b"]" * 1000
HOSTILE = [
    pytest.param("application/json", DEEP, 400, "recursion limit", id="json-nested-1000-deep"),
    pytest.param(
        "application/jsonlines", DEEP + b"\n", 400, "recursion limit", id="jsonlines-nested-1000-deep"
    ),
    pytest.param(
        "application/json",
        b'[{"{col}": ' + b"1" * 4301 + b"}]",
        400,
        "number out of range",
        id="int-4301-digits",
    ),
    pytest.param(
        "application/jsonlines",
        b'{"{col}": ' + b"9" * 4301 + b"}\n",
        400,
        "number out of range",
        id="jsonl-int",
    ),
    pytest.param("application/json", b'[{"{col}": NaN}]', 400, "not valid JSON", id="nan-literal"),
]


@pytest.mark.parametrize(("content_type", "body", "status", "message"), HOSTILE)
def test_hostile_json_is_a_4xx_json_error_and_the_next_request_succeeds(
    strict_server: RunningServer, column: str, content_type: str, body: bytes, status: int, message: str
) -> None:
    response = httpx.post(
        f"{strict_server.url}/invocations",
        content=body.replace(b"{col}", column.encode()),
        headers={"content-type": content_type},
        timeout=30,
    )
    assert response.status_code == status
    assert message in response.json()["error"]
    _good(strict_server, column)


@pytest.mark.parametrize(
    "content_type", ["multipart/form-data; boundary=x", "text/plain", "application/x-www-form-urlencoded"]
)
def test_predict_with_another_content_type_is_a_json_415(
    strict_server: RunningServer, column: str, content_type: str
) -> None:
    body = json.dumps({"records": [{column: "great"}]}).encode()
    response = httpx.post(
        f"{strict_server.url}/predict", content=body, headers={"content-type": content_type}, timeout=30
    )
    assert response.status_code == 415
    assert "takes application/json" in response.json()["error"]
    _good(strict_server, column)


def test_unknown_routes_and_wrong_methods_answer_json_errors(
    strict_server: RunningServer, column: str
) -> None:
    missing = httpx.get(f"{strict_server.url}/no/such/route", timeout=10)
    assert missing.status_code == 404 and missing.json() == {"error": "Not Found"}
    wrong = httpx.delete(f"{strict_server.url}/predict", timeout=10)
    assert wrong.status_code == 405 and wrong.json() == {"error": "Method Not Allowed"}
    assert "POST" in wrong.headers["allow"]
    _good(strict_server, column)


def _raw(server: RunningServer, data: bytes) -> bytes:
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_malformed_http_framing_gets_a_json_400(strict_server: RunningServer, column: str) -> None:
    answer = _raw(strict_server, b"GET /predict HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"content-type: application/json" in head.lower()
    assert "error" in json.loads(body)
    _good(strict_server, column)


def test_health_checks_are_answered_while_a_10000_record_request_runs(
    strict_server: RunningServer, column: str, prepared_reviews_path: Path
) -> None:
    import pandas as pd

    texts = pd.read_parquet(prepared_reviews_path, columns=[column])[column].fillna("").tolist()[:10_000]
    finished = threading.Event()
    big: list[int] = []

    def send_big() -> None:
        response = httpx.post(
            f"{strict_server.url}/predict", json={"records": [{column: t} for t in texts]}, timeout=120
        )
        big.append(response.status_code)
        finished.set()

    sender = threading.Thread(target=send_big)
    sender.start()
    answered_during = 0
    with httpx.Client(base_url=strict_server.url, timeout=30) as client:
        while not finished.is_set():
            if client.get("/ping").status_code == 200 and not finished.is_set():
                answered_during += 1
    sender.join()
    assert big == [200]
    assert answered_during >= 3  # pings kept being answered between the request's chunks


def test_gzip_and_deflate_bodies_are_decompressed(strict_server: RunningServer, column: str) -> None:
    body = json.dumps({"instances": [{column: "Love it, fits perfectly"}]}).encode()
    answers = []
    for encoding, compressed in (
        ("identity", body),
        ("gzip", gzip.compress(body)),
        ("deflate", zlib.compress(body)),
    ):
        response = httpx.post(
            f"{strict_server.url}/invocations",
            content=compressed,
            headers={"content-type": "application/json", "content-encoding": encoding},
            timeout=30,
        )
        assert response.status_code == 200, (encoding, response.text)
        answers.append(response.json())
    assert answers[0] == answers[1] == answers[2]


@pytest.mark.parametrize(
    ("encoding", "body", "status", "message"),
    [
        pytest.param("gzip", b"not gzip at all", 400, "not valid gzip", id="corrupt"),
        pytest.param("gzip", gzip.compress(b"x")[:-6], 400, "truncated", id="truncated"),
        pytest.param(
            "gzip",
            gzip.compress(b"[" + b" " * (7 << 20) + b"]"),
            413,
            "decompressed request body is larger",
            id="bomb",
        ),
        pytest.param("br", b"whatever", 415, "Content-Encoding 'br' is not supported", id="brotli"),
    ],
)
def test_bad_compressed_bodies_are_refused_with_json(
    strict_server: RunningServer, column: str, encoding: str, body: bytes, status: int, message: str
) -> None:
    response = httpx.post(
        f"{strict_server.url}/invocations",
        content=body,
        headers={"content-type": "application/json", "content-encoding": encoding},
        timeout=30,
    )
    assert response.status_code == status
    assert message in response.json()["error"]
    _good(strict_server, column)


def _connect(server: RunningServer, sending: bytes = b"") -> socket.socket:
    """A raw connection to the server that has sent ``sending`` and then nothing more."""
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.sendall(sending)
    return sock


HALF_SENT_BODY = (
    b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: 100\r\n\r\ngreat"
)
HALF_SENT_HEADERS = b"POST /invocations HTTP/1.1\r\nHost: x\r\nX-Slow: "


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    sock.close()
    return b"".join(chunks)


def test_clients_that_never_finish_their_body_get_a_json_408_and_are_disconnected(
    strict_server: RunningServer, column: str
) -> None:
    clients = [_connect(strict_server, HALF_SENT_BODY) for _ in range(20)]
    answers = [_read_all(sock) for sock in clients]  # returns only once the server closes the connection
    for answer in answers:
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408")
        assert "did not arrive within" in json.loads(body)["error"]
    _good(strict_server, column)


def test_clients_that_never_finish_their_headers_are_cut_off(
    strict_server: RunningServer, column: str
) -> None:
    """Slowloris: 100 connections sending headers that never end, and 20 that send nothing at all."""
    slow = [_connect(strict_server, HALF_SENT_HEADERS) for _ in range(100)]
    silent = [_connect(strict_server) for _ in range(20)]
    for sock in slow + silent:
        answer = _read_all(sock)
        assert answer.startswith(b"HTTP/1.1 408") and b"headers did not arrive" in answer
    _good(strict_server, column)


def test_sigterm_finishes_within_the_shutdown_timeout_despite_half_sent_requests(
    trained_model_dir: Path, tmp_path: Path
) -> None:
    env = {
        **ENV,
        "TRIPOD_READ_TIMEOUT_S": "30",
    }  # slow clients would hold the server for 30 s without the drain limit
    with running_server(trained_model_dir, env=env, log_path=tmp_path / "server.log") as server:
        clients = [_connect(server, HALF_SENT_BODY) for _ in range(20)]
        time.sleep(0.5)
        process = psutil.Process(server.pid)
        started = time.monotonic()
        os.kill(server.pid, signal.SIGTERM)
        deadline = started + SHUTDOWN_TIMEOUT_S + 10
        while (
            process.is_running() and process.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline
        ):
            time.sleep(0.1)
        stopped_after = time.monotonic() - started
        for sock in clients:
            sock.close()
    print(f"stopped {stopped_after:.1f} s after SIGTERM")
    assert stopped_after < SHUTDOWN_TIMEOUT_S + 10, f"the server took {stopped_after:.1f} s to stop"

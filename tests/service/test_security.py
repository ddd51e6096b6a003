"""Who may call and what operators see (services/http/auth.py, requestid.py, logs.py): API keys with scopes
and rates, TLS, request ids, JSON logs — against a real ``tripod serve`` on loopback, plus the guard's unit
rules.  Every request here targets 127.0.0.1 and every loop is bounded."""

from __future__ import annotations

import hmac
import ipaddress
import json
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from harness.server import RunningServer, running_server
from services.http import auth
from services.http.auth import Guard, KeyEntry, TokenBucket, required_scope, token_digest, write_keys

SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY-tripod-test"
"""Placed in the server's environment as an AWS secret: it must never come back out."""


@dataclass(frozen=True)
class Secured:
    server: RunningServer
    keys: Path
    log: Path
    tokens: dict[str, str]
    """predict, metrics, admin, limited, plus revoked-later names → their tokens."""


def _key(name: str, scopes: tuple[str, ...], **limits: float) -> tuple[str, KeyEntry]:
    token = auth.new_token()
    return token, KeyEntry(name=name, sha256=token_digest(token), scopes=scopes, **limits)


@pytest.fixture(scope="module")
def secured(trained_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    folder = tmp_path_factory.mktemp("secured")
    specs = {
        "predict": ("predict",),
        "metrics": ("metrics",),
        "admin": ("admin", "predict"),
    }
    tokens, entries = {}, []
    for name, scopes in specs.items():
        tokens[name], entry = _key(name, scopes)
        entries.append(entry)
    tokens["limited"], limited = _key("limited", ("predict",), rate=20.0, burst=5.0)
    entries.append(limited)
    keys = folder / "keys.yaml"
    write_keys(keys, entries)
    log = folder / "server.log"
    env = {"TRIPOD_AUTH_KEYS": str(keys), "TRIPOD_LOG_FORMAT": "json", "AWS_SECRET_ACCESS_KEY": SECRET}
    with running_server(trained_model_dir, env=env, log_path=log) as server:
        yield Secured(server, keys, log, tokens)


def _bearer(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


def _call(secured: Secured, route: str, token: str | None, **headers: str) -> httpx.Response:
    """One request of each kind the server answers (the body is right, so only the key decides)."""
    url = secured.server.url
    sent = {**_bearer(token), **headers}
    record = {"review_body": "Lovely fabric, runs small"}
    if route == "/predict":
        return httpx.post(f"{url}/predict", json={"records": [record]}, headers=sent, timeout=30)
    if route == "/invocations":
        sent["content-type"] = "text/csv"
        return httpx.post(f"{url}/invocations", content="Lovely fabric\n", headers=sent, timeout=30)
    if route == "/explain":
        return httpx.post(f"{url}/explain", json={"records": [record]}, headers=sent, timeout=30)
    if route == "oip-infer":
        body = {
            "id": "oip-42",
            "inputs": [{"name": "review_body", "shape": [1, 1], "datatype": "BYTES", "data": ["Lovely"]}],
        }
        return httpx.post(f"{url}/v2/models/reviews/infer", json=body, headers=sent, timeout=30)
    return httpx.get(f"{url}{route}", headers=sent, timeout=30)


INFERENCE = [
    "/predict",
    "/invocations",
    "/explain",
    "oip-infer",
    "/v2/models/reviews",
    "/execution-parameters",
]


@pytest.mark.parametrize("route", [*INFERENCE, "/metrics"])
def test_each_route_is_401_without_a_key_403_without_its_scope_and_200_with_it(
    secured: Secured, route: str
) -> None:
    needed, other = ("metrics", "predict") if route == "/metrics" else ("predict", "metrics")
    missing = _call(secured, route, None)
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    assert "authentication required" in missing.json()["error"]
    wrong = _call(secured, route, "tpd_not-a-key")
    assert wrong.status_code == 401 and wrong.json() == {"error": "invalid token"}
    scoped = _call(secured, route, secured.tokens[other])
    assert scoped.status_code == 403 and f"'{needed}' scope" in scoped.json()["error"]
    allowed = _call(secured, route, secured.tokens[needed])
    assert allowed.status_code == 200, allowed.text
    assert _call(secured, route, None, **{"X-Api-Key": secured.tokens[needed]}).status_code == 200


@pytest.mark.parametrize(
    "route", ["/ping", "/livez", "/readyz", "/healthz", "/v2/health/live", "/v2/health/ready"]
)
def test_health_routes_stay_open_for_probes(secured: Secured, route: str) -> None:
    assert _call(secured, route, None).status_code == 200


def test_admin_routes_need_the_admin_scope(secured: Secured) -> None:
    url = f"{secured.server.url}/admin/variants"
    assert httpx.get(url, headers=_bearer(secured.tokens["predict"]), timeout=10).status_code == 403
    # past the guard, the route does not exist (yet): the scope is what was checked
    assert httpx.get(url, headers=_bearer(secured.tokens["admin"]), timeout=10).status_code == 404


def test_a_rotated_keys_file_is_used_without_a_restart(secured: Secured) -> None:
    command = [sys.executable, "-m", "tripod.cli", "keys"]
    created = subprocess.run(
        [*command, "create", "--file", str(secured.keys), "--name", "rotated", "--scope", "predict"],
        capture_output=True,
        text=True,
        check=True,
    )
    token = created.stdout.strip()
    assert token.startswith("tpd_") and token not in secured.keys.read_text()

    def status_within(expected: int, seconds: float = 10.0) -> int:
        deadline = time.monotonic() + seconds
        status = 0
        while time.monotonic() < deadline:
            status = _call(secured, "/predict", token).status_code
            if status == expected:
                break
            time.sleep(0.2)
        return status

    assert status_within(200) == 200
    subprocess.run([*command, "revoke", "--file", str(secured.keys), "--name", "rotated"], check=True)
    assert status_within(401) == 401
    assert _call(secured, "/predict", secured.tokens["predict"]).status_code == 200  # the others stay


def _log_lines(secured: Secured) -> list[dict[str, object]]:
    time.sleep(0.3)  # the worker writes its line as the answer goes out
    lines = secured.log.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_request_ids_are_echoed_on_2xx_and_4xx_and_logged_with_the_request(secured: Secured) -> None:
    token = secured.tokens["predict"]
    ok = _call(secured, "/predict", token, **{"X-Request-Id": "trace-ok-1"})
    refused = httpx.post(
        f"{secured.server.url}/predict",
        json={"records": [{"nope": 1}]},
        headers={**_bearer(token), "X-Amzn-SageMaker-Inference-Id": "trace-422"},
        timeout=30,
    )
    unauthorized = _call(secured, "/predict", None, **{"X-Request-Id": "trace-401"})
    generated = _call(secured, "/predict", token)
    oip = _call(secured, "oip-infer", token)
    assert (ok.status_code, refused.status_code, unauthorized.status_code) == (200, 422, 401)
    assert ok.headers["x-request-id"] == "trace-ok-1" and refused.headers["x-request-id"] == "trace-422"
    assert unauthorized.headers["x-request-id"] == "trace-401"
    assert len(generated.headers["x-request-id"]) == 32
    assert oip.headers["x-request-id"] == "oip-42" and oip.json()["id"] == "oip-42"  # OIP's body id
    lines = {
        line.get("request_id"): line for line in _log_lines(secured) if line["logger"] == "tripod.access"
    }
    assert lines["trace-ok-1"] | {"duration_ms": 0, "time": ""} == {
        "time": "",
        "level": "INFO",
        "logger": "tripod.access",
        "message": "POST /predict 200",
        "request_id": "trace-ok-1",
        "method": "POST",
        "route": "/predict",
        "status": 200,
        "records": 1,
        "duration_ms": 0,
        "variant": "AllTraffic",
        "model_version": "v1",
        "key": "predict",
    }
    assert lines["trace-422"]["status"] == 422 and "nope" in str(lines["trace-422"]["error"])
    assert lines["trace-401"]["status"] == 401 and "key" not in lines["trace-401"]
    assert lines[generated.headers["x-request-id"]]["status"] == 200
    assert lines["oip-42"]["route"] == "/v2/models/reviews/infer"


@pytest.mark.parametrize("value", ["has space", "x" * 129, "new\\nline", ""])
def test_an_unsafe_request_id_is_a_json_400(secured: Secured, value: str) -> None:
    response = _call(secured, "/predict", secured.tokens["predict"], **{"X-Request-Id": value})
    assert response.status_code == 400 and "x-request-id must be" in response.json()["error"]
    assert len(response.headers["x-request-id"]) == 32  # a fresh id, not the refused text


def test_every_log_line_is_one_json_object(secured: Secured) -> None:
    _call(secured, "/predict", secured.tokens["predict"])
    text = secured.log.read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines and all(isinstance(json.loads(line), dict) for line in lines)
    assert any(json.loads(line)["logger"].startswith("bentoml") for line in lines)  # BentoML's own lines too


def test_no_token_or_secret_appears_in_logs_metrics_or_error_bodies(secured: Secured) -> None:
    token = secured.tokens["predict"]
    bodies = [
        _call(secured, "/predict", token + "x").text,  # a near-miss token in a 401
        _call(secured, "/metrics", token).text,  # a right token, wrong scope
        _call(secured, "/predict", "tpd_" + SECRET).text,
        _call(secured, "/metrics", secured.tokens["metrics"]).text,
        httpx.post(
            f"{secured.server.url}/predict", content=b"{bad json", headers=_bearer(token), timeout=30
        ).text,
    ]
    seen = "\n".join([*bodies, secured.log.read_text(encoding="utf-8")])
    for value in [*secured.tokens.values(), SECRET, token + "x"]:
        assert value not in seen


def test_a_burst_is_limited_to_the_keys_rate_with_retry_after(secured: Secured) -> None:
    token = secured.tokens["limited"]  # 20 requests/s, burst 5
    started = time.monotonic()
    statuses: list[int] = []
    retry_after: list[int] = []
    with httpx.Client(headers=_bearer(token), timeout=10) as client:
        while time.monotonic() - started < 3.0 and len(statuses) < 2000:
            response = client.get(f"{secured.server.url}/v2/models/reviews")
            statuses.append(response.status_code)
            if response.status_code == 429:
                retry_after.append(int(response.headers["retry-after"]))
                assert "over its rate" in response.json()["error"]
    elapsed = time.monotonic() - started
    allowed = statuses.count(200)
    expected = 5 + 20 * elapsed  # the burst, then the rate
    assert set(statuses) == {200, 429} and retry_after and min(retry_after) >= 1
    assert abs(allowed - expected) <= 0.1 * expected, (allowed, expected)


def test_the_digest_is_compared_with_every_key_in_constant_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens, entries = zip(*(_key(f"k{i}", ("predict",)) for i in range(4)), strict=True)
    path = tmp_path / "keys.yaml"
    write_keys(path, list(entries))
    guard = Guard(path)
    calls: list[tuple[bytes, bytes]] = []
    compare = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    assert guard.match(tokens[0]) == entries[0]  # the first key matches, and every key is still compared
    assert len(calls) == 4
    assert guard.match("tpd_nobody") is None and len(calls) == 8


def test_a_broken_keys_file_keeps_the_keys_in_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token, entry = _key("a", ("predict",))
    path = tmp_path / "keys.yaml"
    write_keys(path, [entry])
    guard = Guard(path)
    path.write_text("keys: [{name: a, scopes: [root]}]\n")
    now = time.monotonic() + 5
    assert guard.check("POST", "/predict", token, now) == entry  # refused file: the old key still works
    with pytest.raises(auth.Denied) as denied:
        guard.check("GET", "/metrics", token, now)
    assert denied.value.status == 403


def test_the_routes_scopes() -> None:
    assert [required_scope(m, p) for m, p in [("GET", "/ping"), ("GET", "/v2/health/ready")]] == [None, None]
    assert required_scope("GET", "/metrics") == "metrics"
    assert required_scope("POST", "/invocations") == "predict"
    assert required_scope("DELETE", "/v2/models/reviews") == "admin"
    assert required_scope("GET", "/admin/keys") == "admin"


def test_a_token_bucket_allows_its_burst_then_its_rate() -> None:
    bucket = TokenBucket(rate=10.0, burst=3.0, stamp=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert math.isclose(bucket.take(0.0), 0.1)
    assert bucket.take(0.1) == 0.0 and bucket.take(0.1) > 0


def test_transform_sends_the_token_to_an_endpoint(secured: Secured, tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    (source / "reviews.csv").write_text("Lovely fabric\nRuns small\n")
    token_file = tmp_path / "token"
    token_file.write_text(secured.tokens["predict"] + "\n")
    base = [sys.executable, "-m", "tripod.cli", "transform", "--endpoint", secured.server.url]
    base += ["--input", str(source), "--split-type", "Line", "--max-concurrent-transforms", "1"]
    base += ["--batch-strategy", "MultiRecord", "--max-payload-mb", "1"]
    done = subprocess.run([*base, "--output", str(tmp_path / "out"), "--token-file", str(token_file)],
                          check=False, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len((tmp_path / "out" / "reviews.csv.out").read_text().splitlines()) == 2
    refused = subprocess.run(
        [*base, "--output", str(tmp_path / "out2")], check=False, capture_output=True, text=True, timeout=120
    )
    # a refused key fails the job with the endpoint's answer (it is not a bad record)
    assert refused.returncode != 0 and "answered 401: authentication required" in refused.stderr
    assert secured.tokens["predict"] not in done.stdout + done.stderr + refused.stdout + refused.stderr


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, valid for a day (cryptography's x509 builder)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    cert, private = folder / "cert.pem", folder / "key.pem"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert, private


def test_tls_round_trip_on_loopback_and_plain_http_is_refused(
    trained_model_dir: Path, tmp_path: Path
) -> None:
    cert, key = _self_signed(tmp_path)
    args = ["--ssl-certfile", str(cert), "--ssl-keyfile", str(key)]
    with running_server(trained_model_dir, args=args, ca_file=cert) as server:
        assert server.url.startswith("https://")
        response = httpx.post(
            f"{server.url}/predict",
            json={"records": [{"review_body": "Love it"}]},
            verify=str(cert),
            timeout=30,
        )
        assert response.status_code == 200 and response.json()[0]["predicted_label"]
        with pytest.raises(
            httpx.TransportError
        ):  # plain HTTP on the TLS port: no answer, the connection drops
            httpx.get(server.url.replace("https://", "http://") + "/ping", timeout=10)
        with pytest.raises(httpx.ConnectError):  # nor does a client that does not trust the certificate
            httpx.get(f"{server.url}/ping", timeout=10)


def test_a_server_refuses_a_key_without_its_certificate(trained_model_dir: Path, tmp_path: Path) -> None:
    cert, _ = _self_signed(tmp_path)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tripod.cli",
            "serve",
            "--model",
            str(trained_model_dir),
            "--ssl-certfile",
            str(cert),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and done.stderr.startswith(
        "tripod: error: TRIPOD_SSL_CERTFILE and TRIPOD_SSL_KEYFILE"
    )


def test_a_5xx_answer_carries_the_request_id_too() -> None:
    from starlette.testclient import TestClient

    from services.http.errors import JsonErrorsMiddleware
    from services.http.requestid import RequestContextMiddleware

    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom")

    app = RequestContextMiddleware(JsonErrorsMiddleware(broken))  # the service's order, outermost first
    client = TestClient(app, raise_server_exceptions=False)  # no lifespan: only the request matters
    response = client.post("/predict", headers={"X-Request-Id": "trace-500"})
    assert response.status_code == 500 and response.headers["x-request-id"] == "trace-500"
    assert response.json() == {"error": "internal error: RuntimeError"}

"""S3 for the batch tests: moto's S3-compatible server on a loopback port, reached only through the standard
AWS environment variables, as MinIO or AWS itself would be.

``s3_env`` points the variables at the server for one test, ``s3_bucket`` gives that test a fresh bucket
(``s3://<name>``), and ``s3_client`` is a boto3 client for arranging and inspecting objects independently of
the code under test.
"""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's server, started once for the session (about a second) and shared through fresh buckets."""
    from moto.server import ThreadedMotoServer  # imported here: only tests that use S3 pay for it

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_env(
    s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """The AWS variables that point at moto, set for one test; a developer's own AWS settings are hidden.

    The values are the same for every test, so code that keeps a client per set of settings keeps one.
    """
    nowhere = tmp_path_factory.getbasetemp()
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_MAX_ATTEMPTS"):
        monkeypatch.delenv(name, raising=False)
    env = {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(nowhere / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(nowhere / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def s3_client(s3_env: dict[str, str]) -> Any:
    """A boto3 S3 client on moto (boto3 comes with moto)."""
    import boto3

    return boto3.client("s3")


@pytest.fixture
def s3_bucket(s3_client: Any) -> str:
    """A new, empty bucket for this test, as ``s3://<name>``."""
    name = f"batch-{uuid.uuid4().hex[:20]}"
    s3_client.create_bucket(Bucket=name)
    return f"s3://{name}"

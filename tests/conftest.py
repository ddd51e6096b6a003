"""Shared fixtures: the bundled data, prepared once, one small model trained from it, and S3.

Test models are trained here on a stratified sample of the bundled reviews; nothing is downloaded.  The
session-scoped ``trained_model_dir`` is the model every service test serves.

S3 is moto's S3-compatible server on a loopback port, reached only through the standard AWS environment
variables, as MinIO or AWS itself would be: ``s3_env`` points the variables at the server for one test,
``s3_bucket`` gives that test a fresh bucket (``s3://<name>``), and ``s3_client`` is a boto3 client for
arranging and inspecting objects independently of the code under test.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from harness.server import free_port

ROOT = Path(__file__).resolve().parents[1]
BUNDLED_REVIEWS = ROOT / "data" / "womens_clothing_ecommerce_reviews.csv.gz"
TARGET = "sentiment"
TEXT_COLUMN = "review_body"
SAMPLE_ROWS = 2000

# A server started by a test runs one entry worker unless the test says otherwise: the default (one per core)
# would double every test server's start-up and memory on the 2-core machine the client shares, and tests
# written for one worker (rate limits, counters) would see two.  tests/service/test_two_workers.py proves the
# default follows the cores.
os.environ.setdefault("TRIPOD_WORKERS", "1")


@pytest.fixture(scope="session")
def prepared_reviews() -> pd.DataFrame:
    """The bundled reviews with sentiment labels (22,641 rows); treat as read-only."""
    from training.data import load_table, prepare_reviews

    return prepare_reviews(load_table(BUNDLED_REVIEWS))


@pytest.fixture(scope="session")
def prepared_reviews_path(prepared_reviews: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The prepared reviews as Parquet, what ``tripod prepare`` writes."""
    path = tmp_path_factory.mktemp("data") / "reviews.parquet"
    prepared_reviews.to_parquet(path, index=False)
    return path


@pytest.fixture(scope="session")
def trained_model_dir(prepared_reviews_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model version directory (``.../reviews/v1``) trained on 2,000 reviews and exported with parity."""
    from training.train import run_training

    root = tmp_path_factory.mktemp("models") / "reviews"
    return run_training(
        prepared_reviews_path, TARGET, [TEXT_COLUMN], root, seed=42, sample=SAMPLE_ROWS, progress=False
    )


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's server, started once for the session (about a second) and shared through fresh buckets."""
    from moto.server import ThreadedMotoServer  # imported here: only tests that use S3 pay for it

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
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
    name = f"tripod-{uuid.uuid4().hex[:20]}"
    s3_client.create_bucket(Bucket=name)
    return f"s3://{name}"

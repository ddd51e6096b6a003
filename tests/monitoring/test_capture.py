"""Data capture: SageMaker's format field by field, the sampling rate, a stalled writer that never slows a
request (it drops and counts instead), everything queued flushed on SIGTERM, and S3 through moto."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.server import running_server
from services.monitoring import capture
from services.monitoring.capture import CaptureWriter, Exchange, capture_record


def _exchange(**changes: Any) -> Exchange:
    fields: dict[str, Any] = {
        "started": 1_764_684_185.25,  # 2025-12-02T14:03:05.25Z
        "request_type": "application/json",
        "request": b'{"records": [{"review_body": "Lovely"}]}',
        "answer_type": "application/json",
        "answer": b'[{"predicted_label": "positive"}]',
        "inference_id": "req-7",
        "variant": "AllTraffic",
    }
    return Exchange(**{**fields, **changes})


def test_a_record_has_every_field_of_sagemakers_capture_format() -> None:
    record = capture_record(_exchange())
    assert set(record) == {"captureData", "eventMetadata", "eventVersion"}
    assert record["eventVersion"] == "0"
    assert record["captureData"]["endpointInput"] == {
        "observedContentType": "application/json",
        "mode": "INPUT",
        "data": '{"records": [{"review_body": "Lovely"}]}',
        "encoding": "JSON",
    }
    assert record["captureData"]["endpointOutput"] == {
        "observedContentType": "application/json",
        "mode": "OUTPUT",
        "data": '[{"predicted_label": "positive"}]',
        "encoding": "JSON",
    }
    metadata = record["eventMetadata"]
    assert set(metadata) == {"eventId", "inferenceId", "inferenceTime"}
    assert metadata["inferenceId"] == "req-7"
    assert metadata["inferenceTime"] == "2025-12-02T14:03:05Z"
    assert len(metadata["eventId"]) == 36


@pytest.mark.parametrize(
    ("content_type", "body", "encoding"),
    [
        ("text/csv; charset=utf-8", b"lovely,\xc3\xa9t\xc3\xa9\n", "CSV"),
        ("application/jsonlines", b'{"a": 1}\n', "JSON"),
        ("application/octet-stream", b"\x00\x01binary", "BASE64"),
        ("application/json", b'{"a": "\xff"}', "BASE64"),  # not UTF-8: kept exactly, as base64
    ],
)
def test_bodies_are_kept_as_text_or_base64_by_type(content_type: str, body: bytes, encoding: str) -> None:
    captured = capture_record(_exchange(request_type=content_type, request=body))["captureData"][
        "endpointInput"
    ]
    assert captured["encoding"] == encoding
    data = captured["data"]
    assert (base64.b64decode(data) if encoding == "BASE64" else data.encode()) == body


def test_an_exchange_without_an_inference_id_has_none_in_its_metadata() -> None:
    assert "inferenceId" not in capture_record(_exchange(inference_id=None))["eventMetadata"]


def test_the_sampling_share_is_honoured_within_binomial_tolerance(tmp_path: Path) -> None:
    writer = CaptureWriter(str(tmp_path), endpoint="e", percent=30, seed=1)
    try:
        n = 20_000
        hits = sum(writer.sampled() for _ in range(n))
        sd = (n * 0.3 * 0.7) ** 0.5
        assert abs(hits - 0.3 * n) < 4 * sd
    finally:
        writer.close()
    nothing = CaptureWriter(str(tmp_path), endpoint="e", percent=0)
    assert not any(nothing.sampled() for _ in range(1000))
    nothing.close()


def test_files_are_hour_partitioned_under_endpoint_and_each_exchanges_variant(tmp_path: Path) -> None:
    written: list[tuple[str, int]] = []
    writer = CaptureWriter(
        str(tmp_path), endpoint="reviews", flush_seconds=0.05, on_write=lambda v, n: written.append((v, n))
    )
    writer.offer(_exchange(started=1_764_684_185.0, variant="blue"))  # 14h
    writer.offer(_exchange(started=1_764_687_785.0, variant="blue"))  # 15h
    writer.offer(_exchange(started=1_764_687_785.0, variant="green"))  # 15h
    writer.close()
    files = sorted(p.relative_to(tmp_path).parent.as_posix() for p in tmp_path.rglob("*.jsonl"))
    assert files == [
        "reviews/blue/2025/12/02/14",
        "reviews/blue/2025/12/02/15",
        "reviews/green/2025/12/02/15",
    ]
    assert writer.written == 3 and writer.dropped == 0
    assert sorted(written) == [("blue", 1), ("blue", 1), ("green", 1)]


def test_a_stalled_writer_never_blocks_an_offer_and_drops_what_does_not_fit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stalled, released = threading.Event(), threading.Event()

    def blocked_write(url: str, data: bytes) -> None:
        stalled.set()
        released.wait(30)
        Path(url).parent.mkdir(parents=True, exist_ok=True)
        Path(url).write_bytes(data)

    monkeypatch.setattr(capture, "write_bytes", blocked_write)
    drops: list[int] = []
    writer = CaptureWriter(
        str(tmp_path), endpoint="e", max_queue=10, flush_records=1, on_drop=lambda _variant: drops.append(1)
    )
    writer.offer(_exchange())
    assert stalled.wait(10)  # the writer thread is now stuck in its first write
    accepted = [writer.offer(_exchange()) for _ in range(100)]  # returns at once: put_nowait, never a wait
    assert accepted.count(True) == 10 and accepted.count(False) == 90
    assert writer.dropped == 90 and len(drops) == 90
    released.set()
    writer.close()
    lines = [line for p in tmp_path.rglob("*.jsonl") for line in p.read_text().splitlines()]
    assert len(lines) == 11  # the first and the ten that fit; nothing accepted is lost


def test_a_failed_write_is_counted_as_dropped_and_the_writer_goes_on(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the capture directory should be")
    writer = CaptureWriter(str(blocker), endpoint="e", flush_records=1)
    writer.offer(_exchange())
    writer.close()
    assert writer.dropped == 1 and writer.written == 0


# -- a real server -------------------------------------------------------------------------------------------


def _captured(root: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for p in sorted(root.rglob("*.jsonl")) for line in p.read_text().splitlines()]


@pytest.fixture
def capturing_server(trained_model_dir: Path, tmp_path: Path) -> Iterator[tuple[str, Path, int]]:
    root = tmp_path / "capture"
    env = {"TRIPOD_CAPTURE_DESTINATION": str(root), "TRIPOD_CAPTURE_FLUSH_S": "60"}
    with running_server(trained_model_dir, env=env, log_path=tmp_path / "server.log") as server:
        yield server.url, root, server.pid


def test_every_answered_request_is_captured_and_sigterm_flushes_the_queue(
    capturing_server: tuple[str, Path, int],
) -> None:
    url, root, pid = capturing_server
    for i in range(20):
        body = {"records": [{"review_body": f"Lovely dress number {i}"}]}
        headers = {"X-Amzn-SageMaker-Inference-Id": f"req-{i}"}
        assert httpx.post(f"{url}/predict", json=body, headers=headers, timeout=30).status_code == 200
    csv = httpx.post(
        f"{url}/invocations", content="awful\nnice\n", headers={"content-type": "text/csv"}, timeout=30
    )
    assert csv.status_code == 200
    refused = httpx.post(f"{url}/predict", json={"records": [{"nope": "x"}]}, timeout=30)
    assert refused.status_code == 422
    assert _captured(root) == []  # a 60 s flush interval: everything is still queued
    os.killpg(pid, signal.SIGTERM)  # the harness's own stop would do the same; here it is what is tested
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(_captured(root)) < 21:
        time.sleep(0.2)
    records = _captured(root)
    assert len(records) == 21  # 20 + the CSV request; the 422 is not captured
    ids = [r["eventMetadata"].get("inferenceId") for r in records]
    # every record carries its request's id: the caller's, or the one the server made (32 hex digits)
    assert sorted(i for i in ids if i.startswith("req-")) == sorted(f"req-{i}" for i in range(20))
    assert len([i for i in ids if len(i) == 32 and int(i, 16) >= 0]) == 1
    (csv_record,) = [r for r in records if r["captureData"]["endpointInput"]["encoding"] == "CSV"]
    assert csv_record["captureData"]["endpointInput"]["data"] == "awful\nnice\n"
    assert json.loads(csv_record["captureData"]["endpointOutput"]["data"])["predictions"][0][
        "predicted_label"
    ]


def _blackhole() -> socket.socket:
    """A loopback port that accepts connections and never answers: an object store that hangs."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    return server


def test_a_hanging_object_store_slows_no_request_and_drops_are_counted(
    trained_model_dir: Path, tmp_path: Path
) -> None:
    hole = _blackhole()
    port = hole.getsockname()[1]
    env = {
        "TRIPOD_CAPTURE_DESTINATION": "s3://capture-bucket/prefix",
        "TRIPOD_CAPTURE_QUEUE": "5",
        "TRIPOD_CAPTURE_FLUSH_S": "0.01",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    try:
        with running_server(trained_model_dir, env=env, log_path=tmp_path / "server.log") as server:
            body = {"records": [{"review_body": "Lovely"}]}
            for _ in range(40):
                assert httpx.post(f"{server.url}/predict", json=body, timeout=10).status_code == 200
            metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
            dropped = next(
                float(line.split()[-1])
                for line in metrics.splitlines()
                if line.startswith("tripod_capture_dropped_total")
            )
            assert dropped >= 40 - 5 - 1  # the queue held 5, the writer took 1 and hangs on it
    finally:
        hole.close()


def test_capture_to_s3_writes_the_same_records(
    trained_model_dir: Path, tmp_path: Path, s3_env: dict[str, str], s3_bucket: str, s3_client: Any
) -> None:
    env = {
        **s3_env,
        "TRIPOD_CAPTURE_DESTINATION": f"{s3_bucket}/datacapture",
        "TRIPOD_CAPTURE_FLUSH_S": "0.2",
    }
    with running_server(trained_model_dir, env=env, log_path=tmp_path / "server.log") as server:
        for i in range(3):
            body = {"records": [{"review_body": f"Nice {i}"}]}
            assert httpx.post(f"{server.url}/predict", json=body, timeout=30).status_code == 200
    bucket = s3_bucket.removeprefix("s3://")
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys and all(
        k.startswith("datacapture/reviews/AllTraffic/") and k.endswith(".jsonl") for k in keys
    )
    lines = [
        json.loads(line)
        for key in keys
        for line in s3_client.get_object(Bucket=bucket, Key=key)["Body"].read().decode().splitlines()
    ]
    assert len(lines) == 3

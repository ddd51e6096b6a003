"""The endpoint engine: against a real ``tripod serve`` it writes the in-process engine's bytes and takes the
container's advice; against a faulty container on loopback it retries 5xx and lost connections (up to 3 times,
as SageMaker does), reports 4xx per record, and meets a smaller payload limit by halving its batches."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from harness.server import RunningServer, running_server
from services.batch import engines
from tests.batch.jobs import csv_lines, errors_of, jsonl_lines, outputs, summary_of, transform, write
from tests.cli import error_line, run_cli


@pytest.fixture(scope="module")
def serving(trained_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    log = tmp_path_factory.mktemp("transform-server") / "server.log"
    with running_server(trained_model_dir, log_path=log) as running:
        yield running


@pytest.fixture(scope="module")
def lines(prepared_reviews: pd.DataFrame) -> list[str]:
    return [" ".join(t.split()) for t in prepared_reviews["review_body"].dropna().astype(str).head(400)]


@pytest.mark.parametrize(
    "formats",
    [
        {"content_type": "text/csv"},
        {"content_type": "application/jsonlines", "accept": "text/csv"},
        {
            "content_type": "application/jsonlines",
            "assemble_with": "Line",
            "join_source": "Input",
            "output_filter": "$['id','SageMakerOutput']",
            "input_filter": "$.review_body",
        },
    ],
    ids=["csv", "jsonlines-to-csv", "jsonlines-join"],
)
def test_the_endpoint_engine_writes_the_in_process_engines_bytes(
    trained_model_dir: Path,
    serving: RunningServer,
    lines: list[str],
    tmp_path: Path,
    formats: dict[str, object],
) -> None:
    if formats["content_type"] == "text/csv":
        write(tmp_path / "in/a.csv", csv_lines([[t] for t in lines]))
    else:
        extra = {"id": 1} if "join_source" in formats else {}  # the input filter leaves the id out
        write(tmp_path / "in/a.jsonl", jsonl_lines([{**extra, "review_body": t} for t in lines]))
    common = {"split_type": "Line", "max_records_per_request": 50, **formats}

    local = transform(trained_model_dir, tmp_path / "in", tmp_path / "local", workers=2, **common)
    remote = transform(None, tmp_path / "in", tmp_path / "remote", endpoint=serving.url, **common)

    assert local.succeeded and remote.succeeded
    assert outputs(tmp_path / "remote") == outputs(tmp_path / "local")


def test_unset_settings_come_from_the_containers_execution_parameters(
    serving: RunningServer, lines: list[str], tmp_path: Path
) -> None:
    write(tmp_path / "in/a.csv", csv_lines([[t] for t in lines[:5]]))

    transform(None, tmp_path / "in", tmp_path / "out", endpoint=serving.url, split_type="Line")

    settings = summary_of(tmp_path / "out")["settings"]
    assert settings["BatchStrategy"] == "MultiRecord"
    assert settings["MaxConcurrentTransforms"] >= 1 and 1 <= settings["MaxPayloadInMB"] <= 100
    given = transform(
        None, tmp_path / "in", tmp_path / "given", endpoint=serving.url, split_type="Line", max_payload_mb=2,
        max_concurrent_transforms=3, batch_strategy="SingleRecord",
    )  # fmt: skip
    assert given.settings == {
        "BatchStrategy": "SingleRecord",
        "MaxPayloadInMB": 2,
        "MaxConcurrentTransforms": 3,
    }


def test_records_the_server_refuses_are_listed_with_its_reason(
    serving: RunningServer, lines: list[str], tmp_path: Path
) -> None:
    items: list[object] = [{"review_body": t} for t in lines[:40]]
    items[13] = {"review_body": "x", "colour": "red"}
    write(tmp_path / "in/a.jsonl", jsonl_lines(items))

    summary = transform(
        None, tmp_path / "in", tmp_path / "out", endpoint=serving.url, content_type="application/jsonlines",
        split_type="Line", max_record_errors="1",
    )  # fmt: skip

    assert summary.succeeded
    (error,) = errors_of(tmp_path / "out/a.jsonl.out.errors.jsonl")
    assert (error["record"], error["status"]) == (13, 422) and "colour" in error["reason"]


# --- a faulty container ------------------------------------------------------------------------------------

Answer = tuple[int, bytes]


@dataclass
class Container:
    """A stand-in container's address and what it saw."""

    url: str
    received: list[bytes] = field(default_factory=list)
    most_at_once: int = 0


StartContainer = Callable[..., Container]


@pytest.fixture
def container() -> Iterator[StartContainer]:
    """Start a stand-in container on loopback whose ``/invocations`` answers with the given function and whose
    ``/execution-parameters`` answers ``parameters`` (404 when None)."""
    servers: list[ThreadingHTTPServer] = []

    def start(
        answer: Callable[[bytes], Answer], parameters: object = None, delay_s: float = 0.0
    ) -> Container:
        seen = Container(url="")
        lock = threading.Lock()
        at_once = [0]

        class Handler(BaseHTTPRequestHandler):
            def reply(self, status: int, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if parameters is None:
                    self.reply(404, b"")
                else:
                    self.reply(200, json.dumps(parameters).encode())

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with lock:
                    seen.received.append(body)
                    at_once[0] += 1
                    seen.most_at_once = max(seen.most_at_once, at_once[0])
                time.sleep(delay_s)
                status, data = answer(body)
                with lock:
                    at_once[0] -= 1
                if status == 0:  # drop the connection without an answer
                    self.close_connection = True
                    return
                self.reply(status, data)

            def log_message(self, *_: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        seen.url = f"http://127.0.0.1:{server.server_address[1]}"
        return seen

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engines, "BACKOFF_S", 0.01)


def echo(body: bytes) -> Answer:
    return 200, body.upper()


def test_5xx_throttling_and_dropped_connections_are_retried_then_answered(
    container: StartContainer, tmp_path: Path
) -> None:
    failures = iter([(503, b"busy"), (0, b""), (429, b"slow down")])
    stand_in = container(lambda body: next(failures, None) or echo(body))
    write(tmp_path / "in/a.csv", b"one\ntwo\n")

    summary = transform(None, tmp_path / "in", tmp_path / "out", endpoint=stand_in.url, split_type="Line")

    assert summary.succeeded and len(stand_in.received) == 4
    assert (tmp_path / "out/a.csv.out").read_bytes() == b"ONE\nTWO\n"


def test_a_container_failing_four_times_fails_the_file_with_its_last_answer(
    container: StartContainer, tmp_path: Path
) -> None:
    stand_in = container(lambda body: (500, b'{"error": "model crashed"}'))
    write(tmp_path / "in/a.csv", b"one\n")

    summary = transform(None, tmp_path / "in", tmp_path / "out", endpoint=stand_in.url, split_type="Line")

    assert len(stand_in.received) == 4
    assert summary.failed[0].reason == f"{stand_in.url}/invocations failed 4 times; last: 500: model crashed"
    assert not (tmp_path / "out/a.csv.out").exists()


def test_a_smaller_payload_limit_in_the_container_is_met_by_halving_batches(
    container: StartContainer, tmp_path: Path
) -> None:
    stand_in = container(lambda body: (413, b'{"error": "too large"}') if len(body) > 40 else echo(body))
    records = [f"record-{i:03d}".encode() for i in range(64)]
    write(tmp_path / "in/a.csv", b"\n".join(records) + b"\n")

    summary = transform(None, tmp_path / "in", tmp_path / "out", endpoint=stand_in.url, split_type="Line")

    assert summary.succeeded and summary.files[0].errors == 0
    assert (tmp_path / "out/a.csv.out").read_bytes() == b"".join(r.upper() + b"\n" for r in records)
    assert (
        max(len(body) for body in stand_in.received if len(body) <= 40) > len(records[0]) + 1
    )  # not one by one


def test_halving_finds_a_few_bad_records_among_many_in_a_few_requests(
    container: StartContainer, tmp_path: Path
) -> None:
    stand_in = container(
        lambda body: (400, b'{"error": "record 0: bad value"}') if b"bad" in body else echo(body)
    )
    records = [b"bad" if i in (100, 900) else b"ok-%d" % i for i in range(1000)]
    write(tmp_path / "in/a.csv", b"\n".join(records) + b"\n")

    summary = transform(
        None,
        tmp_path / "in",
        tmp_path / "out",
        endpoint=stand_in.url,
        split_type="Line",
        max_record_errors="2",
    )

    assert summary.succeeded
    assert [(e["record"], e["reason"]) for e in errors_of(tmp_path / "out/a.csv.out.errors.jsonl")] == [
        (100, "bad value"),
        (900, "bad value"),
    ]
    assert len(stand_in.received) < 50
    out = (tmp_path / "out/a.csv.out").read_bytes().splitlines()
    assert out[100] == out[900] == b"ERROR" and out[101] == b"OK-101"


def test_an_endpoint_that_cannot_be_reached_is_one_error_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.server import free_port

    write(tmp_path / "in/a.csv", b"one\n")
    url = f"http://127.0.0.1:{free_port()}"

    code, _, err = run_cli(
        ["transform", "--endpoint", url, "--input", f"{tmp_path}/in", "--output", f"{tmp_path}/out"],
        monkeypatch,
        capsys,
    )

    assert code == 2 and error_line(err).startswith(f"tripod: error: cannot reach {url}")
    assert not (tmp_path / "out").exists()


def test_a_container_without_execution_parameters_gets_sagemakers_defaults(
    container: StartContainer, tmp_path: Path
) -> None:
    stand_in = container(echo)
    write(tmp_path / "in/a.csv", b"one\n")

    transform(None, tmp_path / "in", tmp_path / "out", endpoint=stand_in.url, split_type="Line")

    assert json.loads((tmp_path / "out/.tripod/summary.json").read_text())["settings"] == {
        "BatchStrategy": "MultiRecord",
        "MaxPayloadInMB": 6,
        "MaxConcurrentTransforms": 1,
    }


def test_advice_out_of_sagemakers_ranges_is_ignored(container: StartContainer, tmp_path: Path) -> None:
    stand_in = container(
        echo, parameters={"MaxConcurrentTransforms": 0, "MaxPayloadInMB": 500, "BatchStrategy": "X"}
    )
    write(tmp_path / "in/a.csv", b"one\n")

    summary = transform(None, tmp_path / "in", tmp_path / "out", endpoint=stand_in.url, split_type="Line")

    assert summary.succeeded
    assert summary.settings == {
        "BatchStrategy": "MultiRecord",
        "MaxPayloadInMB": 6,
        "MaxConcurrentTransforms": 1,
    }


def test_advice_in_range_is_taken(container: StartContainer, tmp_path: Path) -> None:
    advice = {"MaxConcurrentTransforms": 3, "MaxPayloadInMB": 2, "BatchStrategy": "SINGLE_RECORD"}
    stand_in = container(echo, parameters=advice)
    write(tmp_path / "in/a.csv", b"one\ntwo\n")

    summary = transform(None, tmp_path / "in", tmp_path / "out", endpoint=stand_in.url, split_type="Line")

    assert summary.settings == {
        "BatchStrategy": "SingleRecord",
        "MaxPayloadInMB": 2,
        "MaxConcurrentTransforms": 3,
    }
    assert stand_in.received == [b"one\n", b"two\n"] or sorted(stand_in.received) == [b"one\n", b"two\n"]


def test_many_small_files_keep_every_connection_busy(container: StartContainer, tmp_path: Path) -> None:
    stand_in = container(echo, delay_s=0.05)
    for number in range(12):
        write(tmp_path / f"in/f{number:02d}.csv", b"record %d\n" % number)

    summary = transform(
        None,
        tmp_path / "in",
        tmp_path / "out",
        endpoint=stand_in.url,
        split_type="Line",
        max_concurrent_transforms=4,
    )

    assert summary.succeeded and stand_in.most_at_once == 4
    assert [(tmp_path / f"out/f{n:02d}.csv.out").read_bytes() for n in range(12)] == [
        b"RECORD %d\n" % n for n in range(12)
    ]

"""The command line keeps its promise: a user's mistake is one line ``tripod: error: …`` with exit status 2,
never a traceback, never lost or half-written data; and a killed command leaves nothing behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from harness.server import free_port
from services.artifacts import MANIFEST_DIGEST_NAME, manifest_digest_line
from services.codecs.csv_records import MAX_CSV_FIELD_CHARS


def _tripod(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tripod.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _one_line_error(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tripod: error: ") and message in lines[0], lines[0]
    assert "Traceback" not in result.stderr


@pytest.fixture
def reviews_csv(tmp_path: Path, column: str) -> Path:
    path = tmp_path / "reviews.csv"
    path.write_text(f'id,{column}\n1,Love it\n2,"Awful, returned"\n', encoding="utf-8")
    return path


def _predict(model: Path, source: Path, destination: Path) -> subprocess.CompletedProcess[str]:
    return _tripod("predict", "--model", str(model), "--input", str(source), "--output", str(destination))


def test_output_into_a_missing_directory_is_one_line(
    trained_model_dir: Path, reviews_csv: Path, tmp_path: Path
) -> None:
    _one_line_error(
        _predict(trained_model_dir, reviews_csv, tmp_path / "nope" / "out.jsonl"), "does not exist"
    )


def test_output_to_an_unwritable_place_is_one_line(trained_model_dir: Path, reviews_csv: Path) -> None:
    _one_line_error(
        _predict(trained_model_dir, reviews_csv, Path("/proc/tripod-answers.jsonl")), "cannot write"
    )


def test_a_full_disk_is_one_line_and_leaves_no_partial_file(
    trained_model_dir: Path, reviews_csv: Path, tmp_path: Path
) -> None:
    destination = tmp_path / "out.jsonl"
    (tmp_path / "out.jsonl.part").symlink_to("/dev/full")  # every write there fails with ENOSPC
    _one_line_error(_predict(trained_model_dir, reviews_csv, destination), "No space left on device")
    assert not destination.exists() and not (tmp_path / "out.jsonl.part").exists()


def test_output_equal_to_input_is_refused_and_the_input_is_kept(
    trained_model_dir: Path, tmp_path: Path, column: str
) -> None:
    source = tmp_path / "reviews.jsonl"
    source.write_text(json.dumps({column: "Love it"}) + "\n")
    before = source.read_bytes()
    _one_line_error(_predict(trained_model_dir, source, source), "is the input file")
    alias = tmp_path / "alias.jsonl"
    alias.symlink_to(source)
    _one_line_error(_predict(trained_model_dir, source, alias), "is the input file")
    assert source.read_bytes() == before


def test_a_csv_field_over_the_limit_is_one_line_and_a_long_one_under_it_is_answered(
    trained_model_dir: Path, tmp_path: Path, column: str
) -> None:
    long = tmp_path / "long.csv"
    long.write_text(f'{column}\n"{"word " * 30_000}"\n')  # 150,000 characters: past Python's default limit
    done = _predict(trained_model_dir, long, tmp_path / "long.jsonl")
    assert done.returncode == 0, done.stderr
    huge = tmp_path / "huge.csv"
    huge.write_text(f'{column}\n"{"x" * (MAX_CSV_FIELD_CHARS + 1)}"\n')
    _one_line_error(
        _predict(trained_model_dir, huge, tmp_path / "huge.jsonl"), "longer than 1,048,576 characters"
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_sigterm_or_ctrl_c_during_predict_stops_cleanly_and_removes_the_partial_file(
    trained_model_dir: Path, tmp_path: Path, column: str, signum: signal.Signals
) -> None:
    source = tmp_path / "many.jsonl"
    line = json.dumps({column: "Lovely dress, but the fabric is thin and it runs small. " * 20}) + "\n"
    source.write_text(line * 300_000)
    destination = tmp_path / "out.jsonl"
    partial = tmp_path / "out.jsonl.part"
    process = subprocess.Popen(
        [sys.executable, "-m", "tripod.cli", "predict", "--model", str(trained_model_dir), "--input", str(source),
         "--output", str(destination), "--batch-size", "64"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not (partial.exists() and partial.stat().st_size > 0) and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "tripod: interrupted"
    assert not partial.exists() and not destination.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["predict", "--input", "x.csv", "--output", "y.jsonl"],
            "Missing option '--model'",
            id="missing-option",
        ),
        pytest.param(
            ["serve", "--port", "99999"],
            "Invalid value for '--port': Input should be less than or equal to 65535",
            id="port-out-of-range",
        ),
        pytest.param(
            ["serve", "--port", "http"],
            "Invalid value for '--port': Input should be a valid integer",
            id="port-not-a-number",
        ),
        pytest.param(["predcit"], "No such command 'predcit'", id="unknown-command"),
    ],
)
def test_usage_mistakes_are_one_line(args: list[str], message: str) -> None:
    _one_line_error(_tripod(*args), message)


def test_serve_on_a_port_in_use_is_one_line(trained_model_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        _one_line_error(
            _tripod("serve", "--model", str(trained_model_dir), "--port", str(port)), "Address already in use"
        )


def test_a_model_whose_manifest_does_not_fit_its_graphs_is_refused_by_serve_and_predict(
    trained_model_dir: Path, reviews_csv: Path, tmp_path: Path
) -> None:
    model = Path(shutil.copytree(trained_model_dir, tmp_path / "model"))
    manifest = json.loads((model / "manifest.json").read_text())
    manifest["labels"].reverse()
    encoded = json.dumps(manifest).encode()
    (model / "manifest.json").write_bytes(encoded)
    (model / MANIFEST_DIGEST_NAME).write_text(manifest_digest_line(encoded))
    for result in (
        _predict(model, reviews_csv, tmp_path / "out.jsonl"),
        _tripod("serve", "--model", str(model), "--port", str(free_port())),
    ):
        _one_line_error(result, "inverse_label.onnx maps class indices 0..2 to")


def test_a_model_link_that_loops_is_one_line(reviews_csv: Path, tmp_path: Path) -> None:
    (tmp_path / "latest").symlink_to("again")
    (tmp_path / "again").symlink_to("latest")
    _one_line_error(_predict(tmp_path / "latest", reviews_csv, tmp_path / "out.jsonl"), "symlink loop")


@pytest.mark.parametrize("verb", ["train", "automl"])
def test_a_model_root_under_a_file_fails_before_any_work(
    verb: str, tmp_path: Path, prepared_reviews_path: Path
) -> None:
    (tmp_path / "file").write_text("not a directory")
    out = tmp_path / "file" / "reviews"
    args = ["--data", str(prepared_reviews_path), "--target", "sentiment", "--out", str(out)]
    extra = ["--text-columns", "review_body"] if verb == "train" else ["--time-budget", "10s"]
    _one_line_error(_tripod(verb, *args, *extra), "is a file")


def test_killing_serve_with_sigkill_leaves_no_server_holding_the_port(
    trained_model_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    serve = subprocess.Popen(
        [sys.executable, "-m", "tripod.cli", "serve", "--model", str(trained_model_dir), "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # a running server: ready, not still starting
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as ready:
                    if ready.status == 200:
                        break
            except OSError:
                assert serve.poll() is None, (tmp_path / "serve.log").read_text()
                time.sleep(0.2)
        children = psutil.Process(serve.pid).children(recursive=True)
        assert children, "tripod serve started no server"
        serve.kill()
        serve.wait()
        _, alive = psutil.wait_procs(children, timeout=30)
        assert not alive, f"orphans still running: {[p.cmdline() for p in alive]}"
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", port))  # the port is free again
    finally:
        log.close()
        os.killpg(serve.pid, signal.SIGKILL) if psutil.pid_exists(serve.pid) else None

"""How servers are started: ``tripod serve [--sagemaker]`` and the container entry point's ``serve``."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from services.http import entrypoint
from tripod import cli

ROOT = Path(__file__).resolve().parents[2]


class _FakeServer:
    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.command, self.env = command, env

    def wait(self) -> int:
        return 0


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[_FakeServer]:
    servers: list[_FakeServer] = []

    def popen(command: list[str], env: dict[str, str], **_: Any) -> _FakeServer:
        servers.append(_FakeServer(command, env))
        return servers[-1]

    monkeypatch.setattr(subprocess, "Popen", popen)
    monkeypatch.setattr(signal, "signal", lambda *_: None)
    monkeypatch.setattr(cli, "_require_free_port", lambda host, port: None)  # no real port is bound here
    return servers


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


@pytest.mark.parametrize(
    ("args", "host", "port"),
    [
        ([], "127.0.0.1", "3000"),
        (["--sagemaker"], "0.0.0.0", "8080"),
        (["--sagemaker", "--host", "127.0.0.1", "--port", "9000"], "127.0.0.1", "9000"),
    ],
    ids=["default", "sagemaker", "sagemaker-explicit-address"],
)
def test_tripod_serve_binds_the_sagemaker_address_with_the_flag(
    started: list[_FakeServer], trained_model_dir: Path, args: list[str], host: str, port: str
) -> None:
    result = CliRunner().invoke(cli.app, ["serve", "--model", str(trained_model_dir), *args])
    assert result.exit_code == 0, result.output
    (server,) = started
    assert server.command[2:5] == ["bentoml", "serve", "services.http.service:Tripod"]
    assert (_option(server.command, "--host"), _option(server.command, "--port")) == (host, port)
    assert server.env["TRIPOD_MODEL_DIR"] == str(trained_model_dir)
    assert Path(server.env["BENTOML_HOME"]).name.startswith("tripod-bentoml-home-")  # a home per server


def test_tripod_serve_passes_workers_and_threads(started: list[_FakeServer], trained_model_dir: Path) -> None:
    result = CliRunner().invoke(
        cli.app, ["serve", "--model", str(trained_model_dir), "--workers", "2", "--threads", "3"]
    )
    assert result.exit_code == 0, result.output
    assert (started[0].env["TRIPOD_WORKERS"], started[0].env["TRIPOD_THREADS"]) == ("2", "3")


def test_the_entrypoint_serves_the_bento_on_8080_on_every_address() -> None:
    command = entrypoint.serve_command({"BENTO_PATH": "/home/bentoml/bento"})
    assert command[1:] == [
        "-m",
        "bentoml",
        "serve",
        "/home/bentoml/bento",
        "--host",
        "0.0.0.0",
        "--port",
        "8080",
    ]
    moved = entrypoint.serve_command({"SAGEMAKER_BIND_TO_PORT": "9090", "BENTOML_HOST": "127.0.0.1"})
    assert moved[3:5] == ["serve", "services.http.service:Tripod"]
    assert (_option(moved, "--host"), _option(moved, "--port")) == ("127.0.0.1", "9090")


def test_sagemaker_variables_become_tripod_settings(tmp_path: Path) -> None:
    environ = {
        "SAGEMAKER_MODEL_SERVER_WORKERS": "3",
        "SAGEMAKER_MODEL_SERVER_TIMEOUT": "30",
        "SAGEMAKER_INFERENCE_OUTPUT": "predicted_label,probabilities",
        "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv",
        "TRIPOD_MODEL_DIR": "/models/current",
    }
    env = entrypoint.sagemaker_environ(environ, model_root=tmp_path)
    assert (env["TRIPOD_WORKERS"], env["TRIPOD_TIMEOUT_S"]) == ("3", "30")
    assert env["TRIPOD_RESPONSE_KEYS"] == "predicted_label,probabilities"
    assert env["TRIPOD_DEFAULT_ACCEPT"] == "text/csv"
    assert env["TRIPOD_MODEL_DIR"] == "/models/current"  # /opt/ml/model holds no model here
    (tmp_path / "manifest.json").write_text("{}")
    assert entrypoint.sagemaker_environ(environ, model_root=tmp_path)["TRIPOD_MODEL_DIR"] == str(tmp_path)


def test_other_commands_go_to_bentomls_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, list[str]]] = []
    monkeypatch.setenv("BENTO_PATH", "/home/bentoml/bento")
    monkeypatch.setattr(entrypoint.os, "execv", lambda path, args: calls.append((path, args)))
    entrypoint.main(["bash", "-c", "echo hi"])
    entrypoint.main([])
    script = "/home/bentoml/bento/env/docker/entrypoint.sh"
    assert calls == [(script, [script, "bash", "-c", "echo hi"]), (script, [script])]


def test_the_dockerfile_template_puts_the_entrypoint_in_front_of_bentomls() -> None:
    template = (ROOT / "services" / "Dockerfile.template").read_text()
    assert "{% extends bento_base_template %}" in template
    assert "EXPOSE 8080" in template
    assert (
        '"{{ bento__path }}/env/docker/entrypoint.sh", "python", '
        '"{{ bento__path }}/src/services/http/entrypoint.py"' in template
    )


def test_batching_is_configurable_per_stage(tmp_path: Path, trained_model_dir: Path) -> None:
    code = (
        "import json\n"
        "from services.http.config import SETTINGS\n"
        "from services.http.stages import stage_services\n"
        "stages = stage_services(SETTINGS.model_dir)\n"
        "print(json.dumps({svc.name: [svc.apis[api].max_batch_size, svc.apis[api].max_latency_ms]\n"
        "  for svc, api in "
        "[(stages.transformer, 'transform'), (stages.classifier, 'classify'), (stages.inverse_label, 'inverse')]}))\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "TRIPOD_MODEL_DIR": str(trained_model_dir),
        "TRIPOD_MAX_BATCH_SIZE": "32",
        "TRIPOD_MAX_LATENCY_MS": "500",
        "TRIPOD_TRANSFORMER_MAX_BATCH_SIZE": "16",
        "TRIPOD_INVERSE_LABEL_MAX_LATENCY_MS": "50",
    }
    import json
    import sys

    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        cwd=ROOT,
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "tripod_transformer": [16, 500],
        "tripod_classifier": [32, 500],
        "tripod_inverse_label": [32, 50],
    }


def test_the_batching_benchmark_runs_in_a_short_form(trained_model_dir: Path) -> None:
    import sys

    script = ROOT / "benchmarks" / "serving_batching.py"
    result = subprocess.run(
        [
            sys.executable,
            str(script),
            "--model",
            str(trained_model_dir),
            "--batch-sizes",
            "8",
            "--latencies-ms",
            "2000",
            "--concurrency",
            "2",
            "--records",
            "3",
            "--seconds",
            "0.5",
        ],
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (row,) = [line for line in result.stdout.splitlines() if line.startswith("| 8 / 2000 ms |")]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1] == "2" and float(cells[2].replace(",", "")) > 0 and cells[5].startswith("0 / ")


def test_the_built_bentos_dockerfile_ends_with_the_sagemaker_entrypoint(tmp_path: Path) -> None:
    import os
    import sys

    root = ROOT
    env = {**os.environ, "BENTOML_HOME": str(tmp_path), "BENTOML_DO_NOT_TRACK": "True"}
    subprocess.run(
        [sys.executable, "-m", "bentoml", "build", str(root)], env=env, check=True, capture_output=True
    )
    (dockerfile,) = (tmp_path / "bentos" / "tripod").glob("*/env/docker/Dockerfile")
    entrypoints = [line for line in dockerfile.read_text().splitlines() if line.startswith("ENTRYPOINT")]
    assert entrypoints[-1] == (  # the last ENTRYPOINT of a Dockerfile is the one that counts
        'ENTRYPOINT [ "/home/bentoml/bento/env/docker/entrypoint.sh", "python", '
        '"/home/bentoml/bento/src/services/http/entrypoint.py" ]'
    )
    assert "EXPOSE 8080" in dockerfile.read_text()
    assert (dockerfile.parents[2] / "src" / "services" / "http" / "entrypoint.py").is_file()


def test_tripod_serve_passes_the_stage_topology_and_refuses_an_unknown_one(
    started: list[_FakeServer], trained_model_dir: Path
) -> None:
    runner = CliRunner()
    result = runner.invoke(cli.app, ["serve", "--model", str(trained_model_dir), "--stages", "services"])
    assert result.exit_code == 0, result.output
    assert started[0].env["TRIPOD_STAGES"] == "services"
    result = runner.invoke(cli.app, ["serve", "--model", str(trained_model_dir), "--stages", "remote"])
    assert result.exit_code != 0 and len(started) == 1  # refused before any server process starts
    assert "TRIPOD_STAGES" in str(result.exception) and "local" in str(result.exception)

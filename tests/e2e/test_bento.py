"""Build the Bento from bentofile.yaml, check it carries serving dependencies only, and serve the built Bento."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from harness.server import free_port, running_command

ROOT = Path(__file__).resolve().parents[2]
TRAINING_ONLY = {"torch", "scikit-learn", "transformers", "skl2onnx", "pandas", "shap"}


@pytest.fixture(scope="module")
def built_bento(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    home = tmp_path_factory.mktemp("bentoml_home")
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True"}
    subprocess.run(
        [sys.executable, "-m", "bentoml", "build", str(ROOT)], env=env, check=True, capture_output=True
    )
    (bento,) = [path for path in (home / "bentos" / "tripod").iterdir() if path.is_dir()]
    return bento, env


def test_bentoml_build_packs_serving_code_and_dependencies_only(
    built_bento: tuple[Path, dict[str, str]],
) -> None:
    bento, _ = built_bento
    requirements = (bento / "env" / "python" / "requirements.txt").read_text().split()
    names = {line.split("==")[0].lower() for line in requirements}
    assert {"bentoml", "onnxruntime", "numpy", "pydantic"} <= names
    assert names.isdisjoint(TRAINING_ONLY)
    sources = {path.relative_to(bento / "src").as_posix() for path in (bento / "src").rglob("*.py")}
    assert "services/http/service.py" in sources
    assert not any(path.startswith(("training/", "tests/", "harness/")) for path in sources)


def test_the_built_bento_serves_predictions(
    built_bento: tuple[Path, dict[str, str]], trained_model_dir: Path, tmp_path: Path
) -> None:
    bento, env = built_bento
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        str(bento),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    env = {**env, "TRIPOD_MODEL_DIR": str(trained_model_dir)}
    with running_command(command, port, env=env, log_path=tmp_path / "bento.log") as server:
        from services.artifacts import ModelArtifact

        column = ModelArtifact.from_directory(trained_model_dir).manifest.input_names[0]
        response = httpx.post(
            f"{server.url}/predict", json={"records": [{column: "Lovely, fits great"}]}, timeout=30
        )
    assert response.status_code == 200
    assert (
        response.json()[0]["predicted_label"]
        in ModelArtifact.from_directory(trained_model_dir).manifest.labels
    )


def test_the_bentos_dockerfile_runs_what_the_kubernetes_manifests_expect(
    built_bento: tuple[Path, dict[str, str]],
) -> None:
    """The image the manifests name is this Bento's: its user, its entry point and the CLI path they call."""
    from tests.k8s.test_batch_job import IMAGE_ENTRY, rendered

    bento, _ = built_bento
    dockerfile = (bento / "env" / "docker" / "Dockerfile").read_text()
    (deployment,) = [item for item in rendered("k8s/overlays/prod") if item["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (server,) = pod["containers"]
    (init,) = pod["initContainers"]

    assert f"ARG BENTO_USER_UID={pod['securityContext']['runAsUser']}" in dockerfile
    assert dockerfile.rstrip().splitlines()[-1] == (
        'ENTRYPOINT [ "/home/bentoml/bento/env/docker/entrypoint.sh", "python", '
        '"/home/bentoml/bento/src/services/http/entrypoint.py" ]'
    )
    assert server["args"] == ["serve"] and "EXPOSE 8080" in dockerfile
    assert init["command"] == IMAGE_ENTRY and init["workingDir"] == "/home/bentoml/bento/src"
    assert (bento / "env" / "docker" / "entrypoint.sh").is_file()
    assert {"tripod/cli.py", "tripod/cli_models.py", "services/delivery.py"} <= {
        path.relative_to(bento / "src").as_posix() for path in (bento / "src").rglob("*.py")
    }
    requirements = (bento / "env" / "python" / "requirements.txt").read_text()
    assert "typer==" in requirements and "s3fs==" in requirements  # the init container's CLI and S3 access

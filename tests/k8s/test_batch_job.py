"""The batch Job's own container command, run here once per ``JOB_COMPLETION_INDEX`` as Kubernetes would run
its pods (the init container's model pull first), writes exactly what one unsharded job writes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from tests.batch.jobs import csv_lines, outputs, write

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = Path(sys.executable).parent / "kubectl"
IMAGE_ENTRY = ["/home/bentoml/bento/env/docker/entrypoint.sh", "python", "-m", "tripod.cli"]
"""The image's way to run the CLI; here the same CLI runs from this checkout."""


def rendered(directory: str) -> list[dict[str, Any]]:
    finished = subprocess.run(
        [str(KUBECTL), "kustomize", str(ROOT / directory)], capture_output=True, text=True, check=True
    )
    return [item for item in yaml.safe_load_all(finished.stdout) if item]


def expand(value: str, variables: dict[str, str]) -> str:
    """Kubernetes' ``$(NAME)`` substitution in a container's command and args."""
    return re.sub(r"\$\((\w+)\)", lambda match: variables.get(match[1], match[0]), value)


def container_run(container: dict[str, Any], variables: dict[str, str], models: Path) -> list[str]:
    """The container's command and arguments, run from this checkout, with the pod's /models volume here."""
    command = [*container["command"], *container["args"]]
    assert command[: len(IMAGE_ENTRY)] == IMAGE_ENTRY
    local = [sys.executable, "-m", "tripod.cli", *command[len(IMAGE_ENTRY) :]]
    return [expand(part, variables).replace("/models/", f"{models}/") for part in local]


@pytest.fixture(scope="module")
def job() -> dict[str, Any]:
    (found,) = [item for item in rendered("k8s/batch") if item["kind"] == "Job"]
    return found


def test_every_shard_of_the_jobs_own_command_together_write_the_single_jobs_output(
    job: dict[str, Any], trained_model_dir: Path, prepared_reviews: pd.DataFrame, tmp_path: Path
) -> None:
    texts = [" ".join(t.split()) for t in prepared_reviews["review_body"].dropna().astype(str).head(900)]
    for number in range(5):
        write(
            tmp_path / f"in/day-{number}.csv",
            csv_lines([[t] for t in texts[number * 180 : (number + 1) * 180]]),
        )
    spec = job["spec"]
    pod = spec["template"]["spec"]
    (init,) = pod["initContainers"]
    (main,) = pod["containers"]
    shards = {item["name"]: item["value"] for item in main["env"]}["TRIPOD_SHARD_COUNT"]
    assert int(shards) == spec["completions"]
    variables = {
        "TRIPOD_MODEL_URI": str(trained_model_dir),
        "TRANSFORM_INPUT": str(tmp_path / "in"),
        "TRANSFORM_CONTENT_TYPE": "text/csv",
        "TRANSFORM_SPLIT_TYPE": "Line",
        "TRANSFORM_MAX_RECORD_ERRORS": "0",
    }
    env = {**os.environ, "TRIPOD_SHARD_COUNT": shards}

    for index in range(spec["completions"]):
        models = tmp_path / f"pod-{index}"  # each pod has its own emptyDir
        models.mkdir()
        pod_vars = {**variables, "TRANSFORM_OUTPUT": str(tmp_path / "sharded")}
        pulled = subprocess.run(
            container_run(init, pod_vars, models), env=env, capture_output=True, text=True, check=False
        )
        assert pulled.returncode == 0, pulled.stderr
        shard = subprocess.run(
            container_run(main, pod_vars, models),
            env={**env, "JOB_COMPLETION_INDEX": str(index)},
            capture_output=True,
            text=True,
            check=False,
        )
        assert shard.returncode == 0, shard.stderr
    single = subprocess.run(
        container_run(main, {**variables, "TRANSFORM_OUTPUT": str(tmp_path / "single")}, tmp_path / "pod-0"),
        env={name: value for name, value in os.environ.items() if name != "TRIPOD_SHARD_COUNT"},
        capture_output=True,
        text=True,
        check=False,
    )

    assert single.returncode == 0, single.stderr
    assert sorted(outputs(tmp_path / "sharded")) == [f"day-{n}.csv.out" for n in range(5)]
    assert outputs(tmp_path / "sharded") == outputs(tmp_path / "single")


def test_the_cronjob_runs_the_jobs_template(job: dict[str, Any]) -> None:
    (cronjob,) = [item for item in rendered("k8s/batch") if item["kind"] == "CronJob"]

    assert cronjob["spec"]["jobTemplate"]["spec"] == job["spec"]

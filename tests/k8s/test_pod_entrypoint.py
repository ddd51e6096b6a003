"""The serving pod without a cluster: the Deployment's own init and main containers run here as processes, with
the pod's arguments, environment and user, the source tree and the model mounted read-only (a mount namespace)
and the process running as the image's uid (a user namespace). Only the address changes: loopback and a free
port. It proves the entry point starts, answers its probes and requests, writes nothing outside its
``emptyDir`` stand-ins, and stops within the pod's grace period on SIGTERM."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.server import free_port
from services.http.auth import KeyEntry, new_token, token_digest, write_keys
from tests.k8s.test_batch_job import container_run, rendered

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "services/http/entrypoint.py"


@pytest.fixture(scope="module")
def pod() -> dict[str, Any]:
    (deployment,) = [item for item in rendered("k8s/overlays/prod") if item["kind"] == "Deployment"]
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def _on_volumes(value: str, mounts: dict[str, Path]) -> str:
    """A path in the pod (``/models/…``, ``/tmp/…``, ``/etc/tripod/auth/…``) on its volume's stand-in here."""
    for mount, folder in mounts.items():
        if value.startswith(f"{mount}/"):
            return f"{folder}/{value.removeprefix(f'{mount}/')}"
    return value


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return int(answer.status)
    except OSError:
        return 0


@pytest.fixture(scope="module")
def running(
    pod: dict[str, Any], trained_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """The pod's init container, then its server as the image's user over a read-only tree; stopped by PID."""
    base = tmp_path_factory.mktemp("pod")
    volumes = {"models": base / "models", "tmp": base / "tmp"}
    for folder in volumes.values():
        folder.mkdir()
    (init,) = pod["initContainers"]
    pulled = subprocess.run(
        container_run(init, {"TRIPOD_MODEL_URI": str(trained_model_dir)}, volumes["models"]),
        capture_output=True,
        text=True,
        check=False,
    )
    assert pulled.returncode == 0, pulled.stderr
    (main,) = pod["containers"]
    security = pod["securityContext"]
    # The Secret tripod-auth-keys (the prod overlay requires it): one predict key, as an operator would create it.
    auth = base / "auth"
    auth.mkdir()
    token = new_token()
    write_keys(auth / "keys.yaml", [KeyEntry(name="smoke", sha256=token_digest(token), scopes=("predict",))])
    mounts = {"/models": volumes["models"], "/tmp": volumes["tmp"], "/etc/tripod/auth": auth}
    env = {item["name"]: _on_volumes(item["value"], mounts) for item in main["env"]}
    port = free_port()
    pod_env = {
        **env,
        "PATH": "/usr/bin:/bin",
        "HOME": "/home/bentoml",
        "TMPDIR": str(volumes["tmp"]),
        "BENTOML_HOST": "127.0.0.1",  # the pod binds 0.0.0.0; tests only use loopback
        "SAGEMAKER_BIND_TO_PORT": str(port),
    }
    assignments = " ".join(f"{name}={shlex.quote(value)}" for name, value in pod_env.items())
    server = [sys.executable, str(ENTRYPOINT), *main["args"]]
    # Outer user namespace: root there, so it may bind-mount the tree and the model read-only; inner one: the
    # pod's uid and gid, as the kubelet would run the container.
    script = (
        f"mount --bind {ROOT} {ROOT} && mount -o remount,bind,ro {ROOT} && "
        f"mount --bind {volumes['models']} {volumes['models']} && mount -o remount,bind,ro {volumes['models']} && "
        f"exec unshare --user --map-user={security['runAsUser']} --map-group={security['runAsGroup']} "
        f"env -i {assignments} {shlex.join(server)}"
    )
    log = base / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    probe = main["startupProbe"]
    budget = probe["periodSeconds"] * probe["failureThreshold"]
    started = time.monotonic()
    try:
        while get(f"{url}/readyz") != 200:
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() - started < budget, f"not ready within the startup probe's {budget} s"
            time.sleep(0.2)
        yield {
            "url": url,
            "process": process,
            "volumes": volumes,
            "log": log,
            "token": token,
            "ready_s": time.monotonic() - started,
        }
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def test_the_pod_serves_as_the_images_user_over_a_read_only_tree(running: dict[str, Any]) -> None:
    request = urllib.request.Request(
        f"{running['url']}/invocations",
        data=b"lovely dress\n",
        headers={"Content-Type": "text/csv", "Authorization": f"Bearer {running['token']}"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert b"predicted_label" in answer.read()
    keyless = urllib.request.Request(
        f"{running['url']}/invocations", data=b"lovely dress\n", headers={"Content-Type": "text/csv"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:  # the prod pod requires a key
        urllib.request.urlopen(keyless, timeout=10)
    assert refused.value.code == 401
    assert get(f"{running['url']}/livez") == 200
    children = subprocess.run(
        ["pgrep", "-s", str(running["process"].pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    uid_maps = {
        Path(f"/proc/{pid}/uid_map").read_text().split()[0]
        for pid in children
        if Path(f"/proc/{pid}").exists()
    }
    assert "1034" in uid_maps  # the server's processes see themselves as uid 1034


def test_bentoml_keeps_its_files_in_the_tmp_empty_dir_and_meets_no_read_only_path(
    running: dict[str, Any],
) -> None:
    home = running["volumes"]["tmp"] / "bentoml"  # BENTOML_HOME, on the tmp emptyDir

    assert list(home.glob("prometheus_multiproc_dir/*.db"))  # the metrics' files of every worker
    log = running["log"].read_text()
    assert "Read-only file system" not in log and "Permission denied" not in log


def test_sigterm_stops_the_pod_within_its_grace_period(running: dict[str, Any], pod: dict[str, Any]) -> None:
    process = running["process"]
    started = time.monotonic()

    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=pod["terminationGracePeriodSeconds"])

    assert time.monotonic() - started < pod["terminationGracePeriodSeconds"]

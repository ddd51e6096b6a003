"""The container's entry point: ``docker run IMAGE serve`` starts the SageMaker contract on port 8080.

SageMaker runs an inference image as ``docker run IMAGE serve`` and expects ``GET /ping`` and
``POST /invocations`` on port 8080 (or ``$SAGEMAKER_BIND_TO_PORT``), with the model unpacked at
``/opt/ml/model``.  The Bento's Dockerfile (``services/Dockerfile.template``) puts this script in front of
BentoML's own entry point:

- ``serve [ARGS…]``: ``bentoml serve`` of the Bento (``$BENTO_PATH``, or ``services.http.service:Tripod`` outside a
  container) on ``0.0.0.0:8080``; SageMaker's variables are mapped onto Tripod's settings (below).
- anything else (no arguments, ``bash``, ``serve-http``, …) goes to BentoML's entry point unchanged.

Variables: ``SAGEMAKER_BIND_TO_PORT`` → the port; ``SAGEMAKER_MODEL_SERVER_WORKERS`` → ``TRIPOD_WORKERS``;
``SAGEMAKER_MODEL_SERVER_TIMEOUT`` → ``TRIPOD_TIMEOUT_S``; ``SAGEMAKER_INFERENCE_OUTPUT`` (Autopilot's) →
``TRIPOD_RESPONSE_KEYS``; ``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT`` → ``TRIPOD_DEFAULT_ACCEPT``.
``/opt/ml/model`` is served when it holds a ``manifest.json``; otherwise ``TRIPOD_MODEL_DIR`` is.
``BENTOML_HOST`` overrides the ``0.0.0.0`` address (tests bind loopback).

Standard library only: it runs before anything else in the image, as a plain script.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

SAGEMAKER_PORT = 8080
SAGEMAKER_HOST = "0.0.0.0"
SAGEMAKER_MODEL_DIR = Path("/opt/ml/model")
SERVICE = "services.http.service:Tripod"
SOURCE_ROOT = Path(__file__).resolve().parents[2]
BENTOML_ENTRYPOINT = "env/docker/entrypoint.sh"
"""BentoML's own entry point, relative to ``$BENTO_PATH``."""
VARIABLES = {
    "SAGEMAKER_MODEL_SERVER_WORKERS": "TRIPOD_WORKERS",
    "SAGEMAKER_MODEL_SERVER_TIMEOUT": "TRIPOD_TIMEOUT_S",
    "SAGEMAKER_INFERENCE_OUTPUT": "TRIPOD_RESPONSE_KEYS",
    "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "TRIPOD_DEFAULT_ACCEPT",
}


def bentoml_serve_command(
    host: str, port: int, *, bento: str | None = None, extra: Sequence[str] = ()
) -> list[str]:
    """``bentoml serve`` of a built Bento (``bento``) or of the service in this source tree."""
    target = [bento] if bento else [SERVICE, "--working-dir", str(SOURCE_ROOT)]
    return [sys.executable, "-m", "bentoml", "serve", *target, "--host", host, "--port", str(port), *extra]


def sagemaker_environ(environ: Mapping[str, str], model_root: Path = SAGEMAKER_MODEL_DIR) -> dict[str, str]:
    """The environment of a SageMaker server: SageMaker's variables mapped onto ``TRIPOD_*`` ones."""
    env = dict(environ)
    for sagemaker_name, tripod_name in VARIABLES.items():
        if environ.get(sagemaker_name):
            env[tripod_name] = environ[sagemaker_name]
    if (model_root / "manifest.json").is_file():
        env["TRIPOD_MODEL_DIR"] = str(model_root)
    return env


def sagemaker_port(environ: Mapping[str, str]) -> int:
    value = environ.get("SAGEMAKER_BIND_TO_PORT", "")
    return int(value) if value.isdigit() else SAGEMAKER_PORT


def serve_command(environ: Mapping[str, str], extra: Sequence[str] = ()) -> list[str]:
    """What ``serve`` runs: the Bento when inside its container, else this source tree's service."""
    host = environ.get("BENTOML_HOST") or SAGEMAKER_HOST
    return bentoml_serve_command(
        host, sagemaker_port(environ), bento=environ.get("BENTO_PATH") or None, extra=extra
    )


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["serve"]:
        command = serve_command(os.environ, args[1:])
        os.execvpe(command[0], command, sagemaker_environ(os.environ))
    bento = os.environ.get("BENTO_PATH")
    if not bento:
        sys.exit(
            f"usage: {Path(__file__).name} serve  (other commands need BentoML's entry point in $BENTO_PATH)"
        )
    entrypoint = str(Path(bento) / BENTOML_ENTRYPOINT)
    os.execv(entrypoint, [entrypoint, *args])


if __name__ == "__main__":
    main()

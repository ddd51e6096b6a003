"""Serve a Tripod model with MLServer (a peer of the serving benchmark): write a model repository, exec MLServer.

Run with the MLServer virtual environment's python (never Tripod's)::

    python benchmarks/peers/mlserver_app.py --model-dir DIR --port PORT --runtime {sklearn,onnx} --repo WORKDIR \\
        [--sklearn-pickle PATH] [--workers 2] [--max-batch-size 32] [--max-batch-time 0.01]

It writes ``WORKDIR/settings.json`` (server: 127.0.0.1 only, REST on PORT, gRPC and Prometheus metrics on free
loopback ports — MLServer 1.7 always starts its gRPC server — inference pool, ``debug`` off) and
``WORKDIR/<model>/model-settings.json`` (adaptive batching), then replaces itself with ``mlserver start
WORKDIR`` (same PID).  MLServer spawns its inference-pool workers (and a multiprocessing resource tracker) as
children: SIGTERM to that PID stops them all within about a second; SIGKILL the process group as a fallback.
The MLServer environment needs ``uvloop<0.22`` (pinned in ``requirements/mlserver.txt``): with a newer one
MLServer 1.7.1's pool workers die at start (SeldonIO/MLServer#2286).

Two variants:

- ``sklearn``: MLServer's scikit-learn runtime (``mlserver_sklearn.SKLearnModel``) on the fitted pipeline,
  saved with joblib as ``WORKDIR/<model>/model.joblib`` with its classifier's ``classes_`` set to the label
  strings, so that ``predict`` answers labels.  Request: MLServer's ``pd`` content type (wire ``v2_pandas``);
  answer: the ``predict`` output.
- ``onnx``: a custom runtime (``mlserver_onnx_runtime.OnnxPipelineRuntime``) over the three ONNX stages.
  Request: one ``BYTES`` tensor ``[n, 1]`` per column (wire ``v2``); answer: the ``predicted_label`` output.

Routes (model name = the manifest's, ``reviews`` for the benchmark model, or ``--model-name``):
``GET /v2/health/ready``, ``GET /v2/models/<model>/ready``, ``POST /v2/models/<model>/infer``.

:func:`write_sklearn_model` imports only scikit-learn and joblib, so Tripod's environment can call it too.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import pickle
import socket
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

# parallel_workers: "adjust parallel_workers in line with the number of CPU cores assigned to the Server pod"
# (https://docs.seldon.ai/seldon-core-2/user-guide/performance-tuning/models/inference); the benchmark machine
# has 2.  Adaptive batching has no default in MLServer ("usually found through experimentation",
# https://docs.seldon.ai/mlserver/user-guide/adaptive-batching): 32 requests or 10 ms, whichever comes first.
DEFAULT_WORKERS = 2
DEFAULT_MAX_BATCH_SIZE = 32
DEFAULT_MAX_BATCH_TIME = 0.01


def labelled_pipeline(saved: Any) -> Any:
    """A fitted pipeline whose ``predict`` answers label strings.

    ``saved`` is the benchmark's pickle content, ``{"pipeline": Pipeline, "labels": [...]}`` (whose classifier
    was fitted on class indices), or already a fitted estimator (returned as is).  The copy's final step gets
    ``classes_ = labels[classes_]``: ``predict`` then maps the argmax to label strings, and ``predict_proba``
    is unchanged.  Plain scikit-learn objects only, so any environment with scikit-learn can load it.
    """
    import numpy as np

    if not isinstance(saved, dict):
        return saved
    pipeline = copy.deepcopy(saved["pipeline"])
    labels = np.asarray([str(label) for label in saved["labels"]], dtype=object)
    final = pipeline.steps[-1][1] if hasattr(pipeline, "steps") else pipeline
    classes = np.asarray(final.classes_)
    final.classes_ = (
        labels[classes.astype(np.int64)] if classes.dtype.kind in "iu" else classes.astype(object)
    )
    return pipeline


def write_sklearn_model(pickle_path: str | Path, out_path: str | Path) -> Path:
    """Load the benchmark's pickle (``{"pipeline", "labels"}``) and joblib-dump a label-answering pipeline."""
    import joblib

    with open(pickle_path, "rb") as handle:
        saved = pickle.load(handle)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(labelled_pipeline(saved), out)
    return out


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_repository(
    *,
    model_dir: Path,
    port: int,
    runtime: str,
    repo: Path,
    sklearn_pickle: Path | None = None,
    model_name: str | None = None,
    workers: int = DEFAULT_WORKERS,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    max_batch_time: float = DEFAULT_MAX_BATCH_TIME,
    grpc_port: int = 0,
    metrics_port: int = 0,
) -> dict[str, Any]:
    """Write ``settings.json`` and the model's folder under ``repo``; return the server settings written."""
    manifest = json.loads((model_dir / "manifest.json").read_text())
    name = model_name or str(manifest["name"])
    repo.mkdir(parents=True, exist_ok=True)
    model_folder = repo / name
    model_folder.mkdir(parents=True, exist_ok=True)
    settings = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": grpc_port or _free_port(),
        "metrics_port": metrics_port or _free_port(),
        "metrics_dir": str(repo / ".metrics"),
        "environments_dir": str(repo / ".envs"),
        "parallel_workers": workers,
        "debug": False,
        "load_models_at_startup": True,
    }
    batching = {"max_batch_size": max_batch_size, "max_batch_time": max_batch_time}
    if runtime == "sklearn":
        if sklearn_pickle is None:
            raise SystemExit(
                "--runtime sklearn needs --sklearn-pickle (the benchmark's sklearn_pipeline.pkl)"
            )
        model_file = write_sklearn_model(sklearn_pickle, model_folder / "model.joblib")
        model_settings = {
            "name": name,
            "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": str(model_file), "version": str(manifest.get("version", "v1"))},
            **batching,
        }
    elif runtime == "onnx":
        model_settings = {
            "name": name,
            "implementation": "mlserver_onnx_runtime.OnnxPipelineRuntime",
            "parameters": {"uri": str(model_dir.resolve()), "version": str(manifest.get("version", "v1"))},
            **batching,
        }
    else:
        raise SystemExit(f"unknown runtime {runtime!r}")
    (repo / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    (model_folder / "model-settings.json").write_text(json.dumps(model_settings, indent=2) + "\n")
    return settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True, help="Tripod model version directory")
    parser.add_argument("--port", type=int, required=True, help="REST port (127.0.0.1)")
    parser.add_argument("--runtime", choices=("sklearn", "onnx"), required=True)
    parser.add_argument("--repo", type=Path, required=True, help="work directory for the model repository")
    parser.add_argument(
        "--sklearn-pickle",
        type=Path,
        help="the benchmark's sklearn_pipeline.pkl, or a pickled fitted estimator (sklearn)",
    )
    parser.add_argument("--model-name", help="served model name (default: the manifest's name)")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="MLServer parallel_workers")
    parser.add_argument(
        "--max-batch-size", type=int, default=DEFAULT_MAX_BATCH_SIZE, help="requests per batch"
    )
    parser.add_argument("--max-batch-time", type=float, default=DEFAULT_MAX_BATCH_TIME, help="seconds")
    parser.add_argument("--grpc-port", type=int, default=0, help="gRPC port (default: a free one)")
    parser.add_argument("--metrics-port", type=int, default=0, help="metrics port (default: a free one)")
    parser.add_argument("--dry-run", action="store_true", help="write the repository, do not start")
    args = parser.parse_args(argv)

    repo = args.repo.resolve()
    write_repository(
        model_dir=args.model_dir.resolve(),
        port=args.port,
        runtime=args.runtime,
        repo=repo,
        sklearn_pickle=args.sklearn_pickle.resolve() if args.sklearn_pickle else None,
        model_name=args.model_name,
        workers=args.workers,
        max_batch_size=args.max_batch_size,
        max_batch_time=args.max_batch_time,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
    )
    if args.dry_run:
        print(repo)
        return
    env = dict(os.environ)
    # The custom runtime (and onnx_pipeline) must import in MLServer's inference-pool worker processes too.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    # Settings not written above would be read from MLSERVER_* / MLSERVER_MODEL_* variables: drop them so the
    # repository files are the whole configuration.
    for key in [key for key in env if key.startswith("MLSERVER_")]:
        del env[key]
    executable = Path(sys.executable).parent / "mlserver"
    os.chdir(repo)  # MLServer reads a .env file from the working directory: ours has none
    os.execve(str(executable), [str(executable), "start", str(repo)], env)


if __name__ == "__main__":
    main()

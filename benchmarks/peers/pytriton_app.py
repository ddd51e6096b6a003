"""PyTriton peer of the serving benchmark: the model's three ONNX stages behind NVIDIA Triton (PyTriton).

Run with the PyTriton virtual environment's interpreter (``benchmarks/peers/requirements/pytriton.txt``)::

    python benchmarks/peers/pytriton_app.py --model-dir DIR --port PORT [--instances N]

PyTriton starts the ``tritonserver`` binary bundled in its wheel (HTTP on ``127.0.0.1:PORT``; gRPC and metrics
on free loopback ports) and binds one Python inference function over the pipeline.  The protocol is Triton's
Open Inference Protocol (KServe V2): ``POST /v2/models/<name>/infer`` with one ``BYTES`` input per model input
column, shape ``[n, 1]`` — the first dimension is the batch dimension, since the model has ``max_batch_size`` >
0 — answered by the ``BYTES`` output ``predicted_label``, shape ``[n, 1]``.  ``<name>`` is the manifest's model
name (``--model-name`` overrides it).  ``GET /v2/models/<name>/ready`` answers 200 once the model is loaded.

Triton's dynamic batcher merges concurrent requests (``@batch`` hands the concatenated columns to the pipeline,
which runs once).  Settings, as Triton's "Recommended Configuration Process" for the dynamic batcher goes
(https://docs.nvidia.com/deeplearning/triton-inference-server/user-guide/docs/batcher.html): decide a maximum
batch size (64 records, Tripod's default batch; a request of more than ``max_batch_size`` records is refused
by Triton, so raise ``--max-batch-size`` for bigger requests), then enable ``dynamic_batching`` with its default
settings (no queue delay: batches as large as are waiting, up to the maximum), and add a delay only if
measurements ask for it (``--max-queue-delay-us``).  One model instance by default (``--instances``: more
inference callables on the one core the client leaves free only contend; PyTriton's multi-instance binding is
https://triton-inference-server.github.io/pytriton/latest/binding_models/).

The process stays in the foreground until SIGTERM or SIGINT, then stops Triton (``Triton.stop()``), which ends
``tritonserver`` and its Python backend stub and removes PyTriton's temporary workspace.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import sysconfig
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from onnx_pipeline import OnnxPipeline

OUTPUT = "predicted_label"
_MISSING = {b"", b"None", b"none", b"null", b"nan", b"NaN"}


def _own_libpython_first() -> None:
    """Make Triton's Python backend stub load this interpreter's ``libpython``, not the system's.

    The stub binary in the wheel links ``libpython3.X.so.1.0`` by name and finds the system one first
    (``/lib/x86_64-linux-gnu``), yet runs the standard library of the interpreter that started it.  Where they
    differ (here: Debian's 3.11.2 library, pyenv's 3.11.7 standard library) the model fails to load with
    ``AttributeError: '_thread.RLock' object has no attribute '_recursion_count'``.  PyTriton appends its own
    libraries to ``LD_LIBRARY_PATH`` and hands the environment to ``tritonserver`` and the stub.
    """
    libdir, library = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
    if not libdir or not library or not (Path(libdir) / library).is_file():
        return  # a static interpreter: the stub can only use a system libpython
    paths = [path for path in os.environ.get("LD_LIBRARY_PATH", "").split(":") if path]
    if libdir not in paths:
        os.environ["LD_LIBRARY_PATH"] = ":".join([libdir, *paths])


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class InferFunction:
    """One model instance: a batch of ``[n, 1]`` BYTES columns → ``predicted_label`` ``[n, 1]`` BYTES."""

    def __init__(self, pipeline: OnnxPipeline) -> None:
        self.pipeline = pipeline

    @batch
    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        columns: dict[str, list[Any]] = {}
        for name in self.pipeline.inputs:
            values = inputs[name].reshape(-1).tolist()
            if name in self.pipeline.numeric:  # a tensor of text carries a missing number as "" (or "None")
                values = [None if v in _MISSING else v for v in values]
            columns[name] = values
        labels, _ = self.pipeline.run(self.pipeline.feeds(columns))
        return {OUTPUT: np.asarray([str(label).encode() for label in labels], dtype=object).reshape(-1, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model-dir", required=True, help="Tripod model directory (manifest.json + ONNX stages)"
    )
    parser.add_argument("--port", type=int, required=True, help="HTTP port on 127.0.0.1")
    parser.add_argument("--instances", type=int, default=1, help="model instances (default 1)")
    parser.add_argument("--model-name", help="name in /v2/models/<name> (default: the manifest's name)")
    parser.add_argument("--max-batch-size", type=int, default=64, help="records per batch and per request")
    parser.add_argument("--max-queue-delay-us", type=int, default=0, help="dynamic batcher delay (default 0)")
    args = parser.parse_args(argv)
    model_dir = Path(args.model_dir).resolve()
    manifest_path = model_dir / "manifest.json"
    if not manifest_path.is_file():
        parser.error(f"no manifest.json in {model_dir}")
    name = args.model_name or str(json.loads(manifest_path.read_text())["name"])
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    stop = threading.Event()

    def _stop(signum: int, _frame: Any) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop)

    started = time.monotonic()
    _own_libpython_first()
    pipelines = [OnnxPipeline(model_dir) for _ in range(args.instances)]
    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=args.port,
        grpc_address="127.0.0.1",
        grpc_port=_free_loopback_port(),
        metrics_address="127.0.0.1",
        metrics_port=_free_loopback_port(),
        allow_gpu_metrics=False,
        log_verbose=0,
    )
    triton = Triton(config=config)
    try:
        triton.bind(
            model_name=name,
            infer_func=[InferFunction(pipeline) for pipeline in pipelines],
            inputs=[Tensor(name=column, shape=(1,), dtype=bytes) for column in pipelines[0].inputs],
            outputs=[Tensor(name=OUTPUT, shape=(1,), dtype=bytes)],
            config=ModelConfig(
                max_batch_size=args.max_batch_size,
                batcher=DynamicBatcher(max_queue_delay_microseconds=args.max_queue_delay_us),
            ),
            strict=True,
        )
        triton.run()  # starts tritonserver, loads the model, returns once it is ready
        print(
            f"pytriton peer ready in {time.monotonic() - started:.1f}s: POST http://127.0.0.1:{args.port}"
            f"/v2/models/{name}/infer (GET /v2/models/{name}/ready), {args.instances} instance(s)",
            flush=True,
        )
        while not stop.wait(1.0):
            if not triton.is_alive():
                print("pytriton peer: tritonserver or the model stopped", file=sys.stderr, flush=True)
                return 1
    finally:
        triton.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

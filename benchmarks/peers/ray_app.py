"""Ray Serve peer of the serving benchmark: the model's three ONNX stages behind a Serve deployment.

Run with the Ray virtual environment's interpreter (``benchmarks/peers/requirements/ray.txt``), never Tripod's::

    python benchmarks/peers/ray_app.py --model-dir DIR --port PORT [--replicas N]

It starts a private local Ray instance (no dashboard, no usage stats, a 200 MB object store), deploys one
application whose HTTP ingress takes Tripod's own body, ``POST /predict`` ``{"records": [{column: value}]}``,
and answers Tripod's rows (``predicted_label``, ``probability``, ``probabilities``).  Concurrent requests are
batched with ``@serve.batch``: their records are concatenated, the pipeline runs once, the rows are split back.
The batch is sized in records (``batch_size_fn``), not in requests, as a request carries several records.

``GET /readyz`` answers 200 once a replica can answer (it goes through the proxy to the replica); before that
the proxy answers 404.  The HTTP proxy listens on ``127.0.0.1:PORT`` only.  The process stays in the foreground
until SIGTERM or SIGINT, then shuts Serve and Ray down (``serve.shutdown()``, ``ray.shutdown()``), which stops
every process Ray started.

Settings (Ray Serve 2.60 docs):

- ``num_replicas`` 1 by default: one replica with Ray's default ``num_cpus=1`` leaves the second core to
  the HTTP proxy actor, Ray's own processes and the benchmark client
  (https://docs.ray.io/en/latest/serve/resource-allocation.html: "By default, each replica reserves one CPU").
- ``max_batch_size`` 64 records, a power of two as the batching guide advises and Tripod's default batch;
  ``batch_wait_timeout_s`` 0.002: the guide asks for a wait "much lower" than latency SLO minus model time,
  and a 64-record batch runs in about 2.5 ms here; under load, requests queue while a batch runs and the next
  batch takes them all anyway (https://docs.ray.io/en/latest/serve/advanced-guides/dyn-req-batch.html).
- ``max_ongoing_requests`` 128: a replica must be allowed at least a full batch of (single-record) requests,
  or batches cannot fill; twice that lets the next batch gather while one runs.  The default of 5 throttles
  light requests ("should be tuned higher especially for lightweight requests",
  https://docs.ray.io/en/latest/serve/advanced-guides/advanced-autoscaling.html,
  https://docs.ray.io/en/latest/serve/advanced-guides/performance.html).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # before ray is imported: no usage report, no prompt
# Ray starts its workers (Serve's proxy, controller and replicas: the whole request path) 15 nicer than the raylet
# by default; at 0 they compete for the CPU on equal terms with the benchmark's other servers.
os.environ.setdefault("RAY_worker_niceness", "0")

import ray
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

PEERS_DIR = str(Path(__file__).resolve().parent)
OBJECT_STORE_BYTES = 200 * 1024 * 1024


def _records_in(groups: list[list[dict[str, Any]]]) -> int:
    """``@serve.batch``'s size of a batch: the records its requests carry."""
    return sum(len(group) for group in groups)


@serve.deployment
class OnnxModel:
    """One replica: the pipeline, ``POST /predict`` (batched across requests) and ``GET /readyz``."""

    def __init__(self, model_dir: str, max_batch_size: int, batch_wait_timeout_s: float) -> None:
        if PEERS_DIR not in sys.path:  # the replica is another process: find onnx_pipeline.py
            sys.path.insert(0, PEERS_DIR)
        from onnx_pipeline import OnnxPipeline

        self.pipeline = OnnxPipeline(model_dir)
        self.max_batch_size = max_batch_size
        self.predict_batch.set_max_batch_size(max_batch_size)
        self.predict_batch.set_batch_wait_timeout_s(batch_wait_timeout_s)

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.002, batch_size_fn=_records_in)
    async def predict_batch(self, groups: list[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
        """Several requests' records → one pipeline run → each request's rows."""
        rows = await asyncio.to_thread(
            self.pipeline.predict, [record for group in groups for record in group]
        )
        out, start = [], 0
        for group in groups:
            out.append(rows[start : start + len(group)])
            start += len(group)
        return out

    async def __call__(self, request: Request) -> JSONResponse:
        path = request.url.path.rstrip("/") or "/"
        if path == "/readyz" and request.method == "GET":
            return JSONResponse({"status": "ready"})
        if path != "/predict":
            return JSONResponse({"error": f"no route {path}"}, status_code=404)
        if request.method != "POST":
            return JSONResponse({"error": "use POST"}, status_code=405)
        try:
            body = await request.json()
            records = body["records"]
            if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
                raise TypeError("records must be a list of objects")
        except Exception as error:  # noqa: BLE001 - any malformed body is the client's error
            return JSONResponse({"error": f"bad request body: {error}"}, status_code=400)
        if not records:
            return JSONResponse([])
        if len(records) > self.max_batch_size:
            # more records than a batch holds: @serve.batch would refuse the request, so it runs alone
            return JSONResponse(await asyncio.to_thread(self.pipeline.predict, records))
        return JSONResponse(await self.predict_batch(records))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model-dir", required=True, help="Tripod model directory (manifest.json + ONNX stages)"
    )
    parser.add_argument("--port", type=int, required=True, help="HTTP proxy port on 127.0.0.1")
    parser.add_argument("--replicas", type=int, default=1, help="num_replicas (default 1)")
    parser.add_argument(
        "--cpus-per-replica", type=float, default=1.0, help="ray_actor_options num_cpus (default 1)"
    )
    parser.add_argument("--max-ongoing-requests", type=int, default=128, help="per replica (default 128)")
    parser.add_argument("--max-batch-size", type=int, default=64, help="records per batch (default 64)")
    parser.add_argument("--batch-wait-timeout-s", type=float, default=0.002, help="default 0.002")
    parser.add_argument("--access-log", action="store_true", help="log every request (off by default)")
    args = parser.parse_args(argv)
    model_dir = str(Path(args.model_dir).resolve())
    if not (Path(model_dir) / "manifest.json").is_file():
        parser.error(f"no manifest.json in {model_dir}")

    stop = threading.Event()

    def _stop(signum: int, _frame: Any) -> None:
        stop.set()

    started = time.monotonic()
    ray.init(
        address="local",  # always a private instance, never an existing cluster (RAY_ADDRESS is ignored)
        num_cpus=max(os.cpu_count() or 1, int(args.replicas * args.cpus_per_replica + 0.999)),
        include_dashboard=False,
        object_store_memory=OBJECT_STORE_BYTES,
        logging_level="warning",
    )
    for sig in (signal.SIGTERM, signal.SIGINT):  # after ray.init, which installs its own SIGTERM handler
        signal.signal(sig, _stop)
    logging_config = {"log_level": "WARNING", "enable_access_log": args.access_log}
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": args.port}, logging_config=logging_config)
        deployment: Any = OnnxModel  # a serve.Deployment (the decorator's type is unknown where ray is not)
        app = deployment.options(
            num_replicas=args.replicas,
            max_ongoing_requests=args.max_ongoing_requests,
            ray_actor_options={"num_cpus": args.cpus_per_replica},
        ).bind(model_dir, args.max_batch_size, args.batch_wait_timeout_s)
        # returns once the replicas run (and raises if they cannot start)
        serve.run(app, name="tripod-peer", route_prefix="/", logging_config=logging_config)
        print(
            f"ray serve peer ready in {time.monotonic() - started:.1f}s: POST http://127.0.0.1:{args.port}/predict"
            f" (GET /readyz), {args.replicas} replica(s)",
            flush=True,
        )
        while not stop.wait(1.0):
            pass
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

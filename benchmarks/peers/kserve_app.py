"""Serve a Tripod model with KServe's Python model server (a peer of the serving benchmark).

Run with the KServe virtual environment's python (never Tripod's)::

    python benchmarks/peers/kserve_app.py --model-dir DIR --port PORT [--workers 2] [--model-name NAME]

A ``kserve.Model`` over :class:`onnx_pipeline.OnnxPipeline` (the model's three ONNX stages), served by
``kserve.ModelServer`` on 127.0.0.1:PORT only, gRPC off.  ``predict`` takes both protocols:

- V1: ``POST /v1/models/<name>:predict`` with ``{"instances": [{column: value}]}`` → ``{"predictions": [label]}``
  (wire ``v1``); ready when ``GET /v1/models/<name>`` answers 200 (``{"name": …, "ready": true}``);
- V2 (Open Inference Protocol): ``POST /v2/models/<name>/infer`` with one ``BYTES`` tensor per input column →
  a ``BYTES`` output ``predicted_label`` (wire ``v2``; ``probabilities`` too when the request's ``outputs``
  names it); ready: ``GET /v2/models/<name>/ready`` or ``GET /v2/health/ready``.

``<name>`` is the manifest's model name (``reviews`` for the benchmark model) unless ``--model-name`` says
otherwise.  With ``--workers N > 1`` KServe binds the socket in the parent and spawns N uvicorn worker
processes (``multiprocessing`` "spawn"), each unpickling the model: :class:`OnnxModel` pickles as its model
directory and reopens the ONNX sessions in the worker.  KServe's Python server has no request batching (its
batcher is the Kubernetes agent sidecar), so every request runs as it comes.  Stop it with SIGTERM to the
process group (the parent forwards it to its workers and waits up to its grace period).

Other ``kserve.model_server`` flags (e.g. ``--enable_latency_logging false``) may follow on the command line.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import kserve  # noqa: E402
from kserve.errors import InvalidInput  # noqa: E402
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse  # noqa: E402
from kserve.protocol.rest import server as rest_server  # noqa: E402
from onnx_pipeline import OnnxPipeline  # noqa: E402

HOST = "127.0.0.1"
# --workers: KServe spawns that many uvicorn processes "to help increase the resource utilization of the
# container" (https://kserve.github.io/website/docs/model-serving/predictive-inference/frameworks/custom-predictor/custom-predictor);
# a synchronous predict runs on a worker's event loop, so one process uses one core: 2 for the 2-core machine.
DEFAULT_WORKERS = 2


def _loopback_only() -> None:
    """KServe 0.21 hard-codes ``host="0.0.0.0"`` in ``RESTServer``: bind 127.0.0.1 instead.

    ``RESTServerMultiProcess`` (``--workers`` > 1) builds its ``RESTServer`` the same way and binds the socket
    from that config in the parent, so this covers both paths.
    """
    original = rest_server.RESTServer.__init__
    if getattr(original, "_loopback", False):
        return

    def patched_init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.config.host = HOST

    patched_init._loopback = True  # type: ignore[attr-defined]
    rest_server.RESTServer.__init__ = patched_init


class OnnxModel(kserve.Model):
    """The three ONNX stages of one Tripod model version behind KServe's V1 and V2 endpoints."""

    def __init__(self, name: str, model_dir: str | Path) -> None:
        super().__init__(name)
        self.model_dir = str(Path(model_dir).resolve())
        self.pipeline: OnnxPipeline | None = None
        self.load()

    def load(self) -> bool:
        self.pipeline = OnnxPipeline(self.model_dir)
        self.ready = True
        return self.ready

    # onnxruntime sessions do not pickle: a spawned worker reopens them from the model directory.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["pipeline"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.load()

    def predict(
        self, payload: dict | InferRequest, headers: dict[str, str] | None = None
    ) -> dict | InferResponse:
        pipeline = self.pipeline
        assert pipeline is not None
        if isinstance(payload, InferRequest):
            return self._predict_v2(pipeline, payload)
        if not isinstance(payload, dict) or not isinstance(payload.get("instances"), list):
            raise InvalidInput('expected {"instances": [{column: value}, ...]}')
        instances = payload["instances"]
        if not all(isinstance(instance, dict) for instance in instances):
            raise InvalidInput("each instance must be an object {column: value}")
        labels, _ = pipeline.run(pipeline.columns(instances))
        return {"predictions": [str(label) for label in labels]}

    def _predict_v2(self, pipeline: OnnxPipeline, request: InferRequest) -> InferResponse:
        given = {infer_input.name: infer_input for infer_input in request.inputs}
        missing = [name for name in pipeline.inputs if name not in given]
        if missing:
            raise InvalidInput(f"missing input tensor(s) {missing}; expected {pipeline.inputs}")
        columns = {name: given[name].as_numpy().reshape(-1).tolist() for name in pipeline.inputs}
        labels, probabilities = pipeline.run(pipeline.feeds(columns))
        wanted = {output.name for output in request.request_outputs or []} or {"predicted_label"}
        outputs = []
        if "predicted_label" in wanted:
            data = [str(label) for label in labels]
            outputs.append(
                InferOutput(name="predicted_label", shape=[len(data)], datatype="BYTES", data=data)
            )
        if "probabilities" in wanted:
            outputs.append(
                InferOutput(
                    name="probabilities",
                    shape=list(probabilities.shape),
                    datatype="FP32",
                    data=probabilities.reshape(-1).tolist(),
                )
            )
        return InferResponse(
            response_id=request.id or str(uuid.uuid4()),
            model_name=self.name,
            infer_outputs=outputs,
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True, help="Tripod model version directory")
    parser.add_argument("--port", type=int, required=True, help="HTTP port (127.0.0.1)")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="uvicorn worker processes")
    parser.add_argument("--model-name", help="served model name (default: the manifest's name)")
    args, _ = parser.parse_known_args(argv)  # the rest is kserve.model_server's own flags

    model_dir = args.model_dir.resolve()
    name = args.model_name or str(json.loads((model_dir / "manifest.json").read_text())["name"])
    _loopback_only()
    model = OnnxModel(name, model_dir)
    server = kserve.ModelServer(http_port=args.port, workers=args.workers, enable_grpc=False)
    server.start([model])


if __name__ == "__main__":
    main()

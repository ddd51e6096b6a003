"""MLServer custom runtime over a Tripod model directory's three ONNX stages (the ``mlserver_onnx`` peer).

What an MLServer user writes to serve the exported graphs: an ``mlserver.MLModel`` whose ``load`` opens
:class:`onnx_pipeline.OnnxPipeline` on the model-settings' ``parameters.uri`` (the Tripod model directory) and
whose ``predict`` takes the Open Inference Protocol request — one ``BYTES`` tensor per input column, shape
``[n, 1]`` — and answers a ``BYTES`` output ``predicted_label`` (shape ``[n, 1]``); ``probabilities``
(``FP32``, ``[n, C]``) too when the request's ``outputs`` names it.  Adaptive batching and the parallel inference pool are MLServer's own, configured in
``settings.json`` / ``model-settings.json`` by ``mlserver_app.py``.

Runs in the MLServer virtual environment only; ``mlserver_app.py`` puts this folder on ``PYTHONPATH`` so the
inference-pool workers (separate processes) import it too.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from mlserver import MLModel  # noqa: E402
from mlserver.codecs import NumpyCodec, StringCodec  # noqa: E402
from mlserver.errors import InferenceError  # noqa: E402
from mlserver.types import InferenceRequest, InferenceResponse  # noqa: E402
from mlserver.utils import get_model_uri  # noqa: E402
from onnx_pipeline import OnnxPipeline  # noqa: E402


class OnnxPipelineRuntime(MLModel):
    """The three ONNX stages of one Tripod model version behind MLServer's V2 endpoints."""

    async def load(self) -> bool:
        self._pipeline = OnnxPipeline(await get_model_uri(self._settings))
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        given = {request_input.name: request_input for request_input in payload.inputs}
        missing = [name for name in self._pipeline.inputs if name not in given]
        if missing:
            raise InferenceError(f"missing input tensor(s) {missing}; expected {self._pipeline.inputs}")
        columns = {}
        for name in self._pipeline.inputs:
            request_input = given[name]
            if request_input.datatype == "BYTES":
                columns[name] = StringCodec.decode_input(request_input)
            else:  # numeric columns may come as FP32/FP64/INT tensors
                columns[name] = NumpyCodec.decode_input(request_input).reshape(-1).tolist()
        labels, probabilities = self._pipeline.run(self._pipeline.feeds(columns))
        wanted = {output.name for output in payload.outputs or []} or {"predicted_label"}
        outputs = []
        if "predicted_label" in wanted:
            outputs.append(StringCodec.encode_output("predicted_label", [str(label) for label in labels]))
        if "probabilities" in wanted:
            outputs.append(NumpyCodec.encode_output("probabilities", probabilities))
        return InferenceResponse(model_name=self.name, model_version=self.version, outputs=outputs)

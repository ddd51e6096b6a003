"""The inference runtime: where records become predictions, the same way for every caller.

- ``schema``: decoded records (whatever codec produced them) → validated, clipped columns;
- ``sessions`` and ``stages``: the ONNX graphs of a model directory, opened once and checked against the
  manifest;
- ``pipeline``: THE orchestrator — columns → transformer → classifier → inverse label → predictions, in
  chunks, with hooks (observers) where metrics, data capture and explanations attach;
- ``predictions``: the answer of a call, and its JSON rows.

HTTP (every protocol), ``tripod predict``, ``tripod bias --model``, export's parity check and the benchmarks
all call :class:`services.runtime.pipeline.Pipeline`, so they cannot disagree.
"""

"""onnxruntime sessions as every stage opens them: one intra-op thread, and no memory arena.

Measured on a 10,000-record request to a TF-IDF model (docs/benchmarks.md): with onnxruntime's default CPU
arena the entry worker grew from 151 MB to 1.4 GB and kept it (the arena grows to the largest batch it has seen
and never gives memory back); with the arena off and the pipeline running bounded chunks, the worker stays
near its idle size.  The arena saves an allocation per intermediate tensor, which for these graphs is below
what the benchmarks can see.
"""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

PROVIDERS = ["CPUExecutionProvider"]


def session_options(threads: int, *, custom_ops: bool = False) -> ort.SessionOptions:
    """One intra-op thread per stage by default: servers scale with workers, not with threads per call."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_cpu_mem_arena = False
    # Memory patterns plan buffers for one input shape; request sizes vary, so the plan is rebuilt anyway.
    options.enable_mem_pattern = False
    if custom_ops:  # tokenizer graphs (transformer candidates) use onnxruntime-extensions' operators
        from onnxruntime_extensions import get_library_path

        options.register_custom_ops_library(get_library_path())
    return options


def inference_session(path: Path, threads: int) -> ort.InferenceSession:
    """Open a graph, loading onnxruntime-extensions only for graphs that need its operators.

    Registering the extensions library costs about two seconds, so plain graphs are opened without it and
    only a graph that fails to load is retried with it; if that fails too, the first error is the one raised.
    """
    try:
        return ort.InferenceSession(str(path), session_options(threads), providers=PROVIDERS)
    except Exception as plain_error:  # noqa: BLE001 - onnxruntime raises its own types for unknown operators
        try:
            return ort.InferenceSession(
                str(path), session_options(threads, custom_ops=True), providers=PROVIDERS
            )
        except Exception:  # noqa: BLE001 - the first error says what is wrong with the graph
            raise plain_error from None

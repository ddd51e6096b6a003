"""onnxruntime sessions as every stage opens them: one intra-op thread, the CPU arena on, memory patterns off.

The arena keeps the buffers of the largest call a session has seen and reuses them.  Before the pipeline ran
big requests in chunks, that was the problem: one 10,000-record request grew the entry worker from 151 MB to
1.4 GB and kept it.  With calls bounded by ``chunk_rows`` the arena is bounded too, and it pays: measured on
the TF-IDF model (32-review requests, 4 clients, one run each, docs/benchmarks.md): arena off 9,700-11,300
records/s (every call allocates and page-faults its dense features afresh), arena and memory patterns on
14,800-17,000, arena on and patterns off 18,400-20,100, with the worker peaking at 167-173 MB during a
10,000-record request.  Memory patterns plan buffers for one input shape; request sizes vary, so planning
costs more than it saves.
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
    options.enable_cpu_mem_arena = True
    options.enable_mem_pattern = False  # request sizes vary: a plan per shape costs more than it saves
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

"""Giving memory back to the system after big calls: an observer on the pipeline."""

from __future__ import annotations

import ctypes

from services.runtime.pipeline import Call, Observer
from services.runtime.predictions import PredictionBatch


class ReleaseMemory(Observer):
    """After a call that ran in several chunks, give the C heap's free memory back to the system.

    onnxruntime's arena is bounded by one chunk (``services/runtime/sessions.py``), but glibc's allocator keeps
    what decoding and answering a big request freed: without this, two 10,000-record requests left the entry
    worker 170 MiB above idle.  ``malloc_trim`` after such a call (under 5 ms, once per big request; small calls
    never pay it) gives it back.  A no-op where the C library has no ``malloc_trim`` (not glibc).
    """

    def __init__(self, chunk_rows: int) -> None:
        self.chunk_rows = chunk_rows
        libc = ctypes.CDLL(None)
        self._trim = getattr(libc, "malloc_trim", None)

    def call_done(self, call: Call, batch: PredictionBatch) -> None:
        if self._trim is not None and len(batch) > self.chunk_rows:
            self._trim(0)

"""What one call of the pipeline may carry and how it is cut; standard library only, so settings and the CLI
can read it without loading numpy or onnxruntime."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_CHUNK_ROWS = 64
"""Rows per stage call.  Measured on 10,000 reviews through the TF-IDF model in one process (docs/benchmarks.md):
chunks of 32 / 64 / 128 / 256 rows took 0.29 / 0.28 / 0.33 / 0.36 s and kept 6 / 10 / 17 / 32 MiB above idle
(onnxruntime's arena sized for one chunk's dense features); in one piece the same call took 1.4 GB."""
DEFAULT_MAX_TEXT_CHARS = 20_000


@dataclass(frozen=True)
class Limits:
    """What one call may carry, and how it is cut.

    Attributes:
        max_records: most records in one call (None: no limit; files stream through in chunks anyway).
        max_text_chars: longer text fields are cut to this many characters.
        chunk_rows: rows per stage call.
    """

    max_records: int | None = None
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS
    chunk_rows: int = DEFAULT_CHUNK_ROWS


DEFAULT_LIMITS = Limits()
"""No record limit, the default text cut and chunk size: files and in-process callers."""

"""What the chosen model may cost when served: a single-review p99 latency and an ONNX size.

A user's latency budget is part of the choice: the best score on the leaderboard is no use if it cannot answer
within the SLO.  The search measures every candidate the way serving runs it (the exported stages through the
serving pipeline, one review at a time, on a fixed sample of validation rows), keeps every candidate on the
leaderboard, and only chooses among those within the limits; the leaderboard says why the others were not
chosen.  An ensemble is held to the same limits as a single candidate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from training.automl.search import TrialRecord

MIB = 2**20


@dataclass(frozen=True)
class ServingLimits:
    """``--max-latency-ms`` (single-review p99, ms) and ``--max-model-mb`` (ONNX stages, MiB); None: no limit."""

    max_latency_ms: float | None = None
    max_model_mb: float | None = None

    @property
    def active(self) -> bool:
        return self.max_latency_ms is not None or self.max_model_mb is not None

    def describe(self) -> str:
        parts = []
        if self.max_latency_ms is not None:
            parts.append(f"single-review p99 <= {self.max_latency_ms:g} ms")
        if self.max_model_mb is not None:
            parts.append(f"model <= {self.max_model_mb:g} MiB")
        return ", ".join(parts) or "none"

    def violation(self, record: TrialRecord) -> str | None:
        """Why a finished candidate may not be chosen, or None when it may."""
        if self.max_latency_ms is not None:
            if record.latency_ms is None:
                return "its latency was not measured"
            if record.latency_ms > self.max_latency_ms:
                return f"single-review p99 {record.latency_ms:.2f} ms is over --max-latency-ms {self.max_latency_ms:g}"
        if self.max_model_mb is not None:
            if record.model_bytes is None:
                return "its size was not measured"
            if record.model_bytes / MIB > self.max_model_mb:
                return (
                    f"model {record.model_bytes / MIB:.2f} MiB is over --max-model-mb {self.max_model_mb:g}"
                )
        return None


NO_LIMITS = ServingLimits()
"""The default: any finished candidate may be chosen."""

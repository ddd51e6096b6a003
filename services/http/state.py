"""What every route of the entry service reaches: the worker's pipeline, its settings, its readiness."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import bentoml

from services.http.variants import Variants
from services.monitoring.variants import REQUEST
from services.runtime.pipeline import Pipeline
from services.settings import ServingSettings


@dataclass(frozen=True)
class ServingState:
    """Built once per worker by the entry service."""

    variants: Variants
    """The variants served now (each one's model replaced whole by a model swap)."""
    settings: ServingSettings
    ready: Callable[[], Awaitable[bool]]
    """Whether the stages answer (always true for stages in this process)."""

    @property
    def pipeline(self) -> Pipeline:
        """The pipeline of the request's variant, read when the request arrived, so a request finishes on the
        model it began with; outside a request, the first variant's."""
        routed = REQUEST.get()
        return self.variants.default.slot.pipeline if routed is None else routed.pipeline


async def serving_state() -> ServingState:
    """The worker's state (a FastAPI dependency of every protocol route).

    Async on purpose: FastAPI runs a plain ``def`` dependency on its thread pool, and that hop (with the wait
    for the event loop to give up the GIL) cost every route a few milliseconds at p99 under load."""
    state: ServingState = bentoml.get_current_service().state
    return state

"""What every route of the entry service reaches: the worker's pipeline, its settings, its readiness."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import bentoml

from services.runtime.pipeline import Pipeline
from services.settings import ServingSettings


@dataclass(frozen=True)
class ServingState:
    """Built once per worker by the entry service."""

    pipeline: Pipeline
    settings: ServingSettings
    ready: Callable[[], Awaitable[bool]]
    """Whether the stages answer (always true for stages in this process)."""


def serving_state() -> ServingState:
    """The worker's state (a FastAPI dependency of every protocol route)."""
    state: ServingState = bentoml.get_current_service().state
    return state

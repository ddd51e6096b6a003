"""What a client may ask of an explanation, checked once with a clear 400; standard library only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from services.errors import InvalidInput

Method = Literal["auto", "linear", "sampling"]
METHODS: tuple[Method, ...] = ("auto", "linear", "sampling")
ALL_CLASSES = "all"
PREDICTED_CLASS = "predicted"
DEFAULT_TOP_K = 10
MAX_TOP_K = 1000
DEFAULT_BUDGET = 64
"""Model evaluations per record for the sampling method (docs/explain.md: time against agreement with shap)."""
MIN_BUDGET = 3
MAX_BUDGET = 2048


@dataclass(frozen=True)
class ExplainOptions:
    """Attributes:
    target: ``predicted`` (each record's predicted class), ``all``, or one label.
    top_k: contributions kept per class, largest magnitude first.
    method: ``auto`` takes ``linear`` when the model has an exact explainer, ``sampling`` otherwise.
    budget: model evaluations per record for ``sampling``.
    seed: the sampling's seed; the same record, seed and budget give the same answer.
    """

    target: str = PREDICTED_CLASS
    top_k: int = DEFAULT_TOP_K
    method: Method = "auto"
    budget: int = DEFAULT_BUDGET
    seed: int = 0


def _integer(name: str, raw: str | int | None, default: int, low: int, high: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise InvalidInput(f"{name} must be an integer, got {str(raw)[:40]!r}") from None
    if not low <= value <= high:
        raise InvalidInput(f"{name} must be between {low} and {high}, got {value}")
    return value


def explain_options(
    *,
    target: str | None = None,
    top_k: str | int | None = None,
    method: str | None = None,
    budget: str | int | None = None,
    seed: str | int | None = None,
    labels: tuple[str, ...] = (),
    max_budget: int = MAX_BUDGET,
) -> ExplainOptions:
    """Options from a request's query parameters (or headers), each refused with a 400 naming it.

    Args:
        labels: the model's labels (empty for regression): ``target`` must be one of them, ``predicted`` or
            ``all``.
        max_budget: the server's cap on ``budget``.
    """
    chosen = target or PREDICTED_CLASS
    if chosen not in (PREDICTED_CLASS, ALL_CLASSES) and chosen not in labels:
        known = ", ".join([PREDICTED_CLASS, ALL_CLASSES, *labels])
        raise InvalidInput(f"class must be one of {known}; got {chosen[:80]!r}")
    how = method or "auto"
    if how not in METHODS:
        raise InvalidInput(f"method must be one of {', '.join(METHODS)}; got {how[:40]!r}")
    return ExplainOptions(
        target=chosen,
        top_k=_integer("top_k", top_k, DEFAULT_TOP_K, 1, MAX_TOP_K),
        method=how,
        budget=_integer("budget", budget, min(DEFAULT_BUDGET, max_budget), MIN_BUDGET, max_budget),
        seed=_integer("seed", seed, 0, 0, 2**32 - 1),
    )

"""Production variants: the config file, and which variant answers a request.

SageMaker's semantics, one server instead of one endpoint: each variant is a model directory with a weight, and
a request goes to variant *i* with probability ``weight_i / sum(weights)`` (drawn per request, as SageMaker
does), unless it names one (``X-Amzn-SageMaker-Target-Variant``, or ``X-Tripod-Target-Variant``) or carries a
sticky key (``X-Tripod-Variant-Key``: the key's hash picks the variant, so one user keeps seeing one model while
the weights stay the same).  A variant with ``shadow: true`` is never chosen: it gets a copy of every request
after the answer is sent.  A weight of 0 takes a variant out of the random and sticky choice; it can still be
named.

The file (YAML or JSON)::

    variants:
      - {name: current, model: models/reviews/v3, weight: 0.9}
      - {name: candidate, model: models/reviews/v4, weight: 0.1}
      - {name: next, model: models/reviews/v5, shadow: true}

Weights are re-read while the server runs (see ``services/http/variants.py``); names, models and shadows are
fixed at start.  This module is pure: no HTTP, no models.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from services.errors import TripodError, UnknownVariant
from services.runtime.pipeline import Pipeline

if TYPE_CHECKING:
    from services.monitoring.capture import Exchange

DEFAULT_VARIANT = "AllTraffic"
"""SageMaker's name of an endpoint's only production variant (the name used without a variants file)."""
NAME_PATTERN = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$"
"""SageMaker's ``VariantName`` pattern: it appears in capture paths and metric labels as it is."""


class VariantSpec(BaseModel):
    """One entry of the variants file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    model: Path
    weight: float = Field(1.0, ge=0, allow_inf_nan=False)
    shadow: bool = False


class VariantsFile(BaseModel):
    """The whole file: at least one variant answers (not a shadow, weight above zero); names are unique."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    variants: list[VariantSpec] = Field(min_length=1, max_length=16)

    @model_validator(mode="after")
    def _consistent(self) -> VariantsFile:
        names = [spec.name for spec in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must be unique, got {names}")
        if not any(spec.weight > 0 and not spec.shadow for spec in self.variants):
            raise ValueError("at least one variant that is not a shadow needs a weight above 0")
        return self

    @property
    def weights(self) -> dict[str, float]:
        """Weight of each variant that answers (shadows left out)."""
        return {spec.name: spec.weight for spec in self.variants if not spec.shadow}

    @property
    def shadows(self) -> list[str]:
        return [spec.name for spec in self.variants if spec.shadow]


def read_variants(path: Path) -> VariantsFile:
    """Parse and check a variants file; model paths are relative to the file's folder.

    Raises:
        TripodError: unreadable, not YAML/JSON, or not a valid variants file (one line naming the problem).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TripodError(f"cannot read the variants file {path}: {exc}") from exc
    try:
        raw = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        reason = " ".join(str(exc).split())
        raise TripodError(
            f"the variants file {path} is not valid {path.suffix.lstrip('.').upper()}: {reason}"
        ) from exc
    try:
        parsed = VariantsFile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the file"
        raise TripodError(f"the variants file {path}: {where}: {first['msg']}") from exc
    folder = path.parent.absolute()
    return parsed.model_copy(
        update={
            "variants": [spec.model_copy(update={"model": folder / spec.model}) for spec in parsed.variants]
        }
    )


def served_variants(variants_file: Path | None, model_dir: Path) -> list[VariantSpec]:
    """What a server serves: the variants file's variants, or one variant (:data:`DEFAULT_VARIANT`) of
    ``model_dir`` when there is no file."""
    if variants_file is None:
        return [VariantSpec(name=DEFAULT_VARIANT, model=model_dir)]
    return read_variants(variants_file).variants


@dataclass(frozen=True)
class VariantTable:
    """Which variant answers: weights → cumulative shares, replaced whole when the weights change."""

    names: tuple[str, ...]
    """Every variant that may answer, in file order."""
    shadows: tuple[str, ...]
    _choosable: tuple[str, ...]
    _bounds: tuple[float, ...]

    @classmethod
    def build(cls, weights: Mapping[str, float], shadows: Sequence[str] = ()) -> VariantTable:
        choosable = tuple(name for name, weight in weights.items() if weight > 0)
        if not choosable:
            raise TripodError("at least one variant needs a weight above 0")
        total = sum(weights[name] for name in choosable)
        running, bounds = 0.0, []
        for name in choosable:
            running += weights[name] / total
            bounds.append(running)
        bounds[-1] = 1.0  # rounding never leaves a draw without a variant
        return cls(tuple(weights), tuple(shadows), choosable, tuple(bounds))

    def pick(self, draw: float) -> str:
        """The variant a uniform draw in [0, 1) lands on."""
        return self._choosable[min(bisect.bisect_right(self._bounds, draw), len(self._bounds) - 1)]

    def share(self, name: str) -> float:
        """The share of drawn (and sticky) requests a variant gets: 0 for a weight of 0 or a shadow."""
        if name not in self._choosable:
            return 0.0
        index = self._choosable.index(name)
        return self._bounds[index] - (self._bounds[index - 1] if index else 0.0)

    def choose(self, rng: random.Random) -> str:
        """SageMaker's per-request weighted random choice."""
        return self._choosable[0] if len(self._choosable) == 1 else self.pick(rng.random())

    def sticky(self, key: str) -> str:
        """The variant of a client key: the same key, the same variant, in every worker and server."""
        digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        return self.pick(int.from_bytes(digest, "big") / 2**64)

    def pinned(self, name: str) -> str:
        """A variant a request named.

        Raises:
            UnknownVariant: no such variant, or a shadow (a shadow only ever answers copies).
        """
        if name in self.names:
            return name
        if name in self.shadows:
            raise UnknownVariant(f"variant {name!r} is a shadow: it only answers copies of requests")
        raise UnknownVariant(f"no variant {name!r}; this server has {list(self.names)}")


@dataclass(eq=False, slots=True)
class Routed:
    """One request's variant, chosen when it arrived, and what the request leaves for its shadows."""

    name: str
    pipeline: Pipeline
    """The answering variant's pipeline, read once: a model swap meanwhile does not change this request's."""
    inputs: list[tuple[str, np.ndarray]] = field(default_factory=list)
    """``(route, validated columns)`` of each pipeline call the request made (kept only when shadows exist)."""
    exchange: Exchange | None = None
    """The captured exchange, when data capture sampled this request (its shadows are captured alike)."""


REQUEST: ContextVar[Routed | None] = ContextVar("tripod_variant", default=None)
"""The variant of the request being handled (set by the entry service's variant middleware)."""


def current_variant() -> str:
    """The name of the variant answering the current request, :data:`DEFAULT_VARIANT` outside one."""
    routed = REQUEST.get()
    return DEFAULT_VARIANT if routed is None else routed.name

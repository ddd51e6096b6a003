"""Serving settings: one pydantic object, read from ``TRIPOD_*`` environment variables once at start-up."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.errors import TripodError

ENV_PREFIX = "TRIPOD_"
DEFAULT_MODEL_DIR = Path("models/reviews/latest")


class ServingSettings(BaseModel):
    """What an operator can tune without rebuilding; each field is ``TRIPOD_<FIELD>`` in the environment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_dir: Path = Field(DEFAULT_MODEL_DIR, description="model directory (or its `latest` link) to serve")
    max_request_bytes: int = Field(6 * 1024 * 1024, gt=0, description="larger bodies get 413")
    max_records: int = Field(10_000, gt=0, description="more records in one request get 413")
    max_batch_size: int = Field(64, gt=1, description="adaptive batching: most rows a stage runs at once")
    max_latency_ms: int = Field(2_000, gt=0, description="adaptive batching: longest a row may wait")
    stage_workers: int = Field(1, gt=0, description="processes per stage service")
    workers: int = Field(1, gt=0, description="processes of the entry service")
    onnx_threads: int = Field(1, gt=0, description="onnxruntime intra-op threads per stage process")
    timeout_s: int = Field(60, gt=0, description="request timeout of every service")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServingSettings:
        """Build from ``TRIPOD_*`` variables; a bad value is a one-line error naming the variable."""
        environ = os.environ if environ is None else environ
        values = {
            name: environ[ENV_PREFIX + name.upper()]
            for name in cls.model_fields
            if ENV_PREFIX + name.upper() in environ
        }
        try:
            settings = cls.model_validate(values)
        except ValidationError as exc:
            first = exc.errors()[0]
            variable = ENV_PREFIX + str(first["loc"][0]).upper()
            raise TripodError(f"{variable}: {first['msg']}") from exc
        return settings.model_copy(update={"model_dir": settings.model_dir.expanduser().absolute()})

    def environ(self) -> dict[str, str]:
        """The variables that reproduce these settings in a child process (``tripod serve`` uses it)."""
        return {ENV_PREFIX + name.upper(): str(value) for name, value in self.model_dump().items()}

"""Serving settings: one pydantic object, read from ``TRIPOD_*`` environment variables once at start-up."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from services.codecs.keys import CLASSIFICATION_KEYS, REGRESSION_KEYS
from services.codecs.media import ACCEPT_TYPES
from services.errors import TripodError
from services.runtime.cores import cpu_budget
from services.runtime.limits import DEFAULT_CHUNK_ROWS, Limits

ENV_PREFIX = "TRIPOD_"
DEFAULT_MODEL_DIR = Path("models/reviews/latest")
RESPONSE_KEYS = (*CLASSIFICATION_KEYS, *REGRESSION_KEYS)


class ServingSettings(BaseModel):
    """What an operator can tune without rebuilding; each field is ``TRIPOD_<FIELD>`` in the environment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_dir: Path = Field(DEFAULT_MODEL_DIR, description="model directory (or its `latest` link) to serve")
    model_poll_s: float = Field(
        10.0,
        ge=0,
        description="seconds between looks at where model_dir leads; a moved `latest` link is verified and "
        "swapped in without a restart (0: never; stage services: never, a new model is a rollout)",
    )
    variants: Path | None = Field(
        None,
        description="production variants: a YAML/JSON file naming each variant's model directory, weight and "
        "shadow flag (unset: one variant, AllTraffic, serving model_dir); weights are re-read every model_poll_s",
    )
    variant_seed: int | None = Field(
        None, description="seed of the per-request weighted variant choice (tests)"
    )
    shadow_max_in_flight: int = Field(
        32, gt=0, description="shadow calls running at once in a worker; more copies are dropped and counted"
    )
    max_request_bytes: int = Field(6 * 1024 * 1024, gt=0, description="larger bodies get 413")
    max_records: int = Field(10_000, gt=0, description="more records in one request get 413")
    max_batch_size: int = Field(64, gt=1, description="adaptive batching: most rows a stage runs at once")
    max_latency_ms: int = Field(2_000, gt=0, description="adaptive batching: longest a row may wait")
    transformer_max_batch_size: int | None = Field(None, gt=1, description="overrides max_batch_size")
    transformer_max_latency_ms: int | None = Field(None, gt=0, description="overrides max_latency_ms")
    classifier_max_batch_size: int | None = Field(None, gt=1, description="overrides max_batch_size")
    classifier_max_latency_ms: int | None = Field(None, gt=0, description="overrides max_latency_ms")
    inverse_label_max_batch_size: int | None = Field(None, gt=1, description="overrides max_batch_size")
    inverse_label_max_latency_ms: int | None = Field(None, gt=0, description="overrides max_latency_ms")
    stages: Literal["local", "services"] = Field(
        "local",
        description="local: each entry worker runs the three ONNX stages itself; services: one BentoML service "
        "per stage, composed with bentoml.depends, each with adaptive batching and its own processes",
    )
    inline_below_ms: float = Field(
        2.0,
        ge=0,
        description="stages=local: a model whose three stages answer a long record faster than this (measured at "
        "start) runs on the event loop; slower ones run on a thread (0: always a thread)",
    )
    stage_workers: int = Field(1, gt=0, description="processes per stage service (stages=services)")
    workers: int = Field(
        default_factory=cpu_budget,
        gt=0,
        description="processes of the entry service (default: the cores this process may use — its CPU affinity, "
        "capped by a cgroup v2 CPU limit; each worker runs requests on one core)",
    )
    threads: int = Field(
        1, gt=0, description="threads per stage service process running ONNX batches (stages=services)"
    )
    onnx_threads: int = Field(1, gt=0, description="onnxruntime intra-op threads per stage session")
    timeout_s: int = Field(60, gt=0, description="request timeout of every service")
    read_timeout_s: float = Field(
        15.0,
        gt=0,
        description="a request's headers, and then its body, must each arrive within this many seconds (else 408)",
    )
    shutdown_timeout_s: int = Field(
        20,
        gt=0,
        description="after SIGTERM, in-flight requests get this long to finish before they are cancelled",
    )
    chunk_rows: int = Field(
        DEFAULT_CHUNK_ROWS,
        gt=0,
        description="records per stage call: big requests run in chunks of this size",
    )
    max_text_chars: int = Field(20_000, gt=0, description="longer text fields are cut to this length")
    explain_max_records: int = Field(
        100, gt=0, description="more records in one explanation request (/explain, :explain) get 413"
    )
    explain_max_budget: int = Field(
        1024,
        ge=3,
        le=2048,
        description="largest model-agnostic budget (model evaluations per record) a request may ask for",
    )
    capture_destination: str = Field(
        "", description="data capture: a directory or s3://bucket/prefix (empty: capture is off)"
    )
    capture_percent: float = Field(
        100.0, ge=0, le=100, description="data capture: share of requests captured"
    )
    capture_endpoint: str = Field(
        "", description="data capture: the endpoint part of the path (default: the model's name)"
    )
    capture_queue: int = Field(
        10_000,
        gt=0,
        description="data capture: exchanges held in memory at most; more are dropped and counted",
    )
    capture_flush_s: float = Field(
        5.0, gt=0, description="data capture: longest an exchange waits to be written"
    )
    capture_errors: bool = Field(False, description="data capture: also capture requests answered with a 4xx")
    response_keys: str = Field(
        "predicted_label,probability", description="default keys of /invocations answers (comma-separated)"
    )
    default_accept: str = Field("application/json", description="/invocations answer type without Accept")
    auth_keys: Path | None = Field(
        None,
        description="API keys file (YAML/JSON of names, token SHA-256s, scopes, rates; `tripod keys create`); "
        "unset: no authentication. Re-read when it changes",
    )
    log_format: Literal["json", "text"] = Field(
        "text", description="json: one JSON object per log line (Tripod's access line replaces BentoML's)"
    )
    access_log: bool = Field(
        True,
        description="one access line per answered request (BentoML's in text mode, Tripod's in JSON mode); false "
        "drops it — about 100 µs of the entry worker's CPU per request, a fifth of a single review's — for "
        "deployments that log requests at the ingress; metrics, capture and every other log line stay",
    )
    ssl_certfile: Path | None = Field(None, description="TLS certificate chain (PEM); with ssl_keyfile")
    ssl_keyfile: Path | None = Field(None, description="TLS private key (PEM); with ssl_certfile")

    @model_validator(mode="after")
    def _tls_pair(self) -> ServingSettings:
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError(
                "TRIPOD_SSL_CERTFILE and TRIPOD_SSL_KEYFILE go together (--ssl-certfile, --ssl-keyfile)"
            )
        return self

    @field_validator("response_keys")
    @classmethod
    def _known_keys(cls, value: str) -> str:
        keys = [key.strip() for key in value.split(",") if key.strip()]
        unknown = sorted(set(keys) - set(RESPONSE_KEYS))
        if not keys or unknown:
            raise ValueError(f"expected comma-separated keys from {list(RESPONSE_KEYS)}, got {value!r}")
        return ",".join(keys)

    @field_validator("default_accept")
    @classmethod
    def _known_accept(cls, value: str) -> str:
        if value not in ACCEPT_TYPES:
            raise ValueError(f"expected one of {list(ACCEPT_TYPES)}, got {value!r}")
        return value

    def limits(self) -> Limits:
        """What one HTTP request may carry, for the pipeline."""
        return Limits(
            max_records=self.max_records, max_text_chars=self.max_text_chars, chunk_rows=self.chunk_rows
        )

    def batching(self, stage: str) -> dict[str, int]:
        """Adaptive-batching options of one stage service: its own values, else the common ones."""
        size = getattr(self, f"{stage}_max_batch_size")
        latency = getattr(self, f"{stage}_max_latency_ms")
        return {
            "max_batch_size": self.max_batch_size if size is None else size,
            "max_latency_ms": self.max_latency_ms if latency is None else latency,
        }

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
            if not first["loc"]:  # a rule across fields
                raise TripodError(str(first["msg"]).removeprefix("Value error, ")) from exc
            variable = ENV_PREFIX + str(first["loc"][0]).upper()
            raise TripodError(f"{variable}: {first['msg']}") from exc
        update: dict[str, Path] = {"model_dir": settings.model_dir.expanduser().absolute()}
        for name in ("variants", "auth_keys", "ssl_certfile", "ssl_keyfile"):
            value = getattr(settings, name)
            if value is not None:
                update[name] = value.expanduser().absolute()
        return settings.model_copy(update=update)

    def environ(self) -> dict[str, str]:
        """The variables that reproduce these settings in a child process (``tripod serve`` uses it)."""
        values = self.model_dump().items()
        return {ENV_PREFIX + name.upper(): str(value) for name, value in values if value is not None}

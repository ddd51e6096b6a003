"""A job's options resolved into what it runs with: the model verified, the container's advice taken, SageMaker's
defaults filled in, the answer keys chosen — and the fingerprint that tells a resumed job whether earlier
outputs are still its own.

Everything here happens in the job's process before any input is read, so a tampered model, a bad ``TRIPOD_*``
variable or an unreachable endpoint is one line and exit 2, not a failure in every worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.artifacts import ModelArtifact
from services.batch import state
from services.batch.dataprocessing import DataProcessing
from services.batch.engines import (
    EndpointEngine,
    Engine,
    EngineFailed,
    InProcessEngine,
    endpoint_token,
)
from services.batch.engines import execution_parameters as ask_execution_parameters
from services.batch.options import MAX_PAYLOAD_MB_LIMIT, TransformOptions
from services.codecs.answers import response_keys
from services.errors import StorageError
from services.runtime.cores import cpu_budget
from services.settings import ServingSettings

DEFAULT_STRATEGY, DEFAULT_PAYLOAD_MB, DEFAULT_CONCURRENCY = "MULTI_RECORD", 6, 1
"""What SageMaker uses when neither the job nor the container says."""
UNDECISIVE = {
    "model", "endpoint", "input", "input_type", "output", "shard_index", "shard_count", "workers",
    "max_concurrent_transforms", "max_record_errors", "batch_strategy", "max_payload_mb", "response_keys",
}  # fmt: skip
"""Options that never change an output's bytes (where and how fast it is made, or the raw forms of settings
whose resolved values are fingerprinted; the error budget is checked against each done file instead)."""


@dataclass(frozen=True)
class Settings:
    """The job's options once the model, the engine's advice and SageMaker's defaults are applied."""

    options: TransformOptions
    multi: bool
    max_bytes: int
    concurrency: int
    """Worker processes (in process) or requests in flight (endpoint)."""
    dataprocessing: DataProcessing
    model: ModelArtifact | None
    keys: str | None
    """The answer keys: resolved for the in-process engine; for an endpoint, as given (its own default)."""
    serving: dict[str, Any]
    """The serving settings that change answers in process (text clipping, chunk size)."""

    @property
    def line_split(self) -> bool:
        return self.options.split_type == "Line"

    def applied(self) -> dict[str, Any]:
        """The settings SageMaker's DescribeTransformJob would show."""
        return {
            "BatchStrategy": "MultiRecord" if self.multi else "SingleRecord",
            "MaxPayloadInMB": self.max_bytes >> 20,
            ("Workers" if self.model is not None else "MaxConcurrentTransforms"): self.concurrency,
        }

    def fingerprint(self) -> str:
        """A digest of everything that decides the outputs' bytes: the model (its manifest digest) or the
        endpoint, the resolved settings and the options that shape records and answers."""
        identity = self.model.manifest_digest if self.model is not None else self.options.endpoint
        decisive = self.options.model_dump(exclude=UNDECISIVE)
        return state.fingerprint(
            {
                "model": identity,
                "multi": self.multi,
                "max_bytes": self.max_bytes,
                "keys": self.keys,
                **self.serving,
                **decisive,
            }
        )


def resolve_settings(options: TransformOptions) -> Settings:
    """The job setting, else the container's ``/execution-parameters`` (endpoint engine), else SageMaker's
    defaults — the order SageMaker applies.

    Raises:
        ModelIntegrityError: the model directory does not verify.
        TripodError: a bad ``TRIPOD_*`` variable or answer key.
        StorageError: the endpoint cannot be reached.
    """
    dataprocessing = DataProcessing.from_options(
        options.input_filter,
        options.output_filter,
        options.join_source,
        content_type=options.content_type,
        accept=options.answer_type,
    )
    if options.model is not None:
        model = ModelArtifact.from_directory(options.model)
        serving = ServingSettings.from_env()
        keys = response_keys(
            options.response_keys, serving.response_keys, regression=model.graphs.is_regression
        )
        multi = options.batch_strategy != "SingleRecord"
        return Settings(
            options,
            multi,
            (options.max_payload_mb or DEFAULT_PAYLOAD_MB) << 20,
            options.workers or cpu_budget(),
            dataprocessing,
            model,
            ",".join(keys),
            {"max_text_chars": serving.max_text_chars, "chunk_rows": serving.chunk_rows},
        )
    assert options.endpoint is not None
    advice = _advice(options)
    strategy = options.batch_strategy or (
        "MultiRecord" if advice.get("BatchStrategy", DEFAULT_STRATEGY) == "MULTI_RECORD" else "SingleRecord"
    )
    payload_mb = options.max_payload_mb or int(advice.get("MaxPayloadInMB", DEFAULT_PAYLOAD_MB))
    concurrency = options.max_concurrent_transforms or int(
        advice.get("MaxConcurrentTransforms", DEFAULT_CONCURRENCY)
    )
    return Settings(
        options,
        strategy == "MultiRecord",
        payload_mb << 20,
        concurrency,
        dataprocessing,
        None,
        options.response_keys,
        {},
    )


def _advice(options: TransformOptions) -> dict[str, Any]:
    """The container's answer to ``GET /execution-parameters``, keeping only values SageMaker would accept
    (a missing route, or a value out of range, leaves the default)."""
    if None not in (options.batch_strategy, options.max_payload_mb, options.max_concurrent_transforms):
        return {}
    assert options.endpoint is not None
    try:
        advice = ask_execution_parameters(options.endpoint, token=endpoint_token(options.token_file))
    except EngineFailed as exc:
        raise StorageError(str(exc)) from exc
    valid: dict[str, Any] = {}
    if advice.get("BatchStrategy") in ("MULTI_RECORD", "SINGLE_RECORD"):
        valid["BatchStrategy"] = advice["BatchStrategy"]
    payload = advice.get("MaxPayloadInMB")
    if isinstance(payload, int) and 1 <= payload <= MAX_PAYLOAD_MB_LIMIT:
        valid["MaxPayloadInMB"] = payload
    concurrency = advice.get("MaxConcurrentTransforms")
    if isinstance(concurrency, int) and 1 <= concurrency <= 256:
        valid["MaxConcurrentTransforms"] = concurrency
    return valid


def open_engine(settings: Settings) -> Engine:
    """The engine the options name, started (worker processes loaded, or a connection pool)."""
    options = settings.options
    if settings.model is not None:
        return InProcessEngine(
            settings.model.directory,
            content_type=options.content_type,
            accept=options.answer_type,
            keys=settings.keys,
            workers=settings.concurrency,
        )
    assert options.endpoint is not None
    return EndpointEngine(
        options.endpoint,
        content_type=options.content_type,
        accept=options.answer_type,
        keys=settings.keys,
        concurrency=settings.concurrency,
        token=endpoint_token(options.token_file),
    )

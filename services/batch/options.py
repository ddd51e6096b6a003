"""A batch-transform job's options: SageMaker's ``CreateTransformJob`` settings, and Tripod's additions.

Every option is validated once, here, before any file is read; a mistake is one line naming the option.  The
combinations SageMaker's developer guide forbids are refused with the reason (a join needs records split by
line and answers assembled by line, in one format family; line-split JSON documents cannot be sent several
to a request).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from services.codecs.media import CONTENT_TYPES, CSV, JSON
from services.errors import InvalidInput

MAX_PAYLOAD_MB_LIMIT = 100
"""SageMaker's ceiling for MaxPayloadInMB."""
DEFAULT_SPLIT_MB = 64
"""A Line-split, uncompressed input larger than this is cut into byte ranges (on record boundaries) so that
one big file spreads over workers and shards."""
SHARD_INDEX_VARIABLE = "JOB_COMPLETION_INDEX"
"""What a Kubernetes Indexed Job sets in each pod."""
SHARD_COUNT_VARIABLE = "TRIPOD_SHARD_COUNT"
"""Set it to the Job's ``completions`` (Kubernetes has no variable for the count)."""


class TransformOptions(BaseModel):
    """One transform job.  Field names follow ``tripod transform``'s options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Path | None = Field(None, description="model directory: the in-process engine")
    endpoint: str | None = Field(
        None, description="base URL of a SageMaker-compatible container: the endpoint engine"
    )
    token_file: Path | None = Field(
        None,
        description="the endpoint's bearer token, first line of this file (default: $TRIPOD_TOKEN); "
        "the token itself is never part of the options",
    )
    input: str = Field(description="local path, s3://bucket/prefix, or a manifest file")
    input_type: Literal["prefix", "manifest"] = "prefix"
    output: str = Field(description="local directory or s3://bucket/prefix for the .out files")
    content_type: str = CSV
    accept: str | None = Field(None, description="answer format; default: the content type")
    split_type: Literal["None", "Line"] = "None"
    batch_strategy: Literal["SingleRecord", "MultiRecord"] | None = None
    max_payload_mb: int | None = Field(None, ge=1, le=MAX_PAYLOAD_MB_LIMIT)
    max_concurrent_transforms: int | None = Field(None, ge=1, le=256)
    max_records_per_request: int = Field(
        10_000, ge=1, description="also a request's record limit (Tripod's 10,000)"
    )
    assemble_with: Literal["None", "Line"] = "None"
    input_filter: str = "$"
    output_filter: str = "$"
    join_source: Literal["None", "Input"] = "None"
    compression: Literal["None", "Gzip"] = "None"
    response_keys: str | None = Field(
        None, description="answer keys (X-Tripod-Response-Keys); default: the server's"
    )
    max_record_errors: str = Field("0", description="bad records a file may hold: N, or P% of its records")
    csv_header: bool = Field(False, description="the first line of every CSV input is a header, not a record")
    shard_index: int = Field(0, ge=0)
    shard_count: int = Field(1, ge=1)
    workers: int | None = Field(None, ge=1, le=256, description="in-process engine: worker processes")
    split_mb: int = Field(DEFAULT_SPLIT_MB, ge=1)

    @field_validator("content_type", "accept")
    @classmethod
    def _known_type(cls, value: str | None) -> str | None:
        if value is None:
            return None
        kind, *parameters = (part.strip().lower() for part in value.split(";"))
        if kind not in CONTENT_TYPES:
            raise ValueError(f"{value!r} is not one of {', '.join(sorted(CONTENT_TYPES))}")
        for parameter in parameters:
            name, _, charset = parameter.partition("=")
            if name.strip() == "charset" and charset.strip().strip('"') not in ("utf-8", "utf8"):
                raise ValueError(f"{value!r}: records are read and written as UTF-8 only")
        return CONTENT_TYPES[kind]

    @field_validator("input", "output")
    @classmethod
    def _location(cls, value: str) -> str:
        """Local paths become absolute (the summary names files as a user can find them)."""
        if value.startswith("s3://"):
            return value
        return os.path.abspath(os.path.expanduser(value.removeprefix("file://")))

    @field_validator("max_record_errors")
    @classmethod
    def _budget(cls, value: str) -> str:
        text = value.strip()
        number = text[:-1] if text.endswith("%") else text
        try:
            amount = float(number)
        except ValueError:
            raise ValueError(f"expected N or P%, got {value!r}") from None
        if (
            amount < 0
            or (text.endswith("%") and amount > 100)
            or (not text.endswith("%") and amount != int(amount))
        ):
            raise ValueError(f"expected a whole N >= 0 or 0-100%, got {value!r}")
        return text

    @model_validator(mode="after")
    def _consistent(self) -> TransformOptions:
        if (self.model is None) == (self.endpoint is None):
            raise ValueError("give exactly one of --model and --endpoint")
        if self.shard_index >= self.shard_count:
            raise ValueError(
                f"--shard-index {self.shard_index} is not below --shard-count {self.shard_count}"
            )
        if self.model is not None and self.max_concurrent_transforms is not None:
            raise ValueError(
                "--max-concurrent-transforms applies to --endpoint; the in-process engine's is --workers"
            )
        if self.endpoint is not None and self.workers is not None:
            raise ValueError("--workers applies to --model; an endpoint's is --max-concurrent-transforms")
        if self.endpoint is None and self.token_file is not None:
            raise ValueError("--token-file applies to --endpoint")
        if self.input_type == "prefix" and _inside(self.output, self.input):
            raise ValueError(
                f"--output {self.output} is inside --input {self.input}: a rerun would read the outputs as inputs"
            )
        answer = self.answer_type
        if self.needs_records and (self.split_type != "Line" or self.assemble_with != "Line"):
            raise ValueError(
                "--join-source Input and --output-filter work record by record: they need --split-type Line and "
                "--assemble-with Line (SageMaker's rule)"
            )
        if self.needs_records and answer == JSON and self.strategy == "MultiRecord":
            raise ValueError(
                "an application/json answer to several records is one document that cannot be split back into "
                "records: use --accept application/jsonlines or text/csv, or --batch-strategy SingleRecord"
            )
        if self.content_type == JSON and self.split_type == "Line" and self.strategy == "MultiRecord":
            raise ValueError(
                "line-split application/json records cannot be sent several to a request (the lines are not one "
                "JSON document): use --content-type application/jsonlines, or --batch-strategy SingleRecord"
            )
        if self.csv_header and self.content_type != CSV:
            raise ValueError("--csv-header applies to text/csv input")
        if self.csv_header and self.split_type != "Line":
            raise ValueError("--csv-header needs --split-type Line (the header is the first line)")
        return self

    @property
    def answer_type(self) -> str:
        return self.accept or self.content_type

    @property
    def strategy(self) -> str:
        """The batch strategy once defaults apply (MultiRecord, as Tripod's container advertises)."""
        return self.batch_strategy or "MultiRecord"

    @property
    def needs_records(self) -> bool:
        """Whether answers are handled record by record (a join or an output filter) rather than passed whole."""
        return self.join_source == "Input" or self.output_filter.strip() != "$"

    def error_budget(self, records: int) -> int:
        """How many bad records a file of ``records`` records may hold before it fails."""
        text = self.max_record_errors
        if text.endswith("%"):
            return int(records * float(text[:-1]) / 100)
        return int(text)

    @classmethod
    def build(cls, **values: object) -> TransformOptions:
        """Validate, with shard defaults from the environment (a Kubernetes Indexed Job), into one-line errors.

        Raises:
            InvalidInput: naming the option and the reason.
        """
        if values.get("shard_index") is None and SHARD_INDEX_VARIABLE in os.environ:
            values["shard_index"] = os.environ[SHARD_INDEX_VARIABLE]
        if values.get("shard_count") is None and SHARD_COUNT_VARIABLE in os.environ:
            values["shard_count"] = os.environ[SHARD_COUNT_VARIABLE]
        given = {name: value for name, value in values.items() if value is not None}
        try:
            return cls.model_validate(given)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = "--" + str(first["loc"][0]).replace("_", "-") if first["loc"] else "options"
            raise InvalidInput(f"{where}: {first['msg'].removeprefix('Value error, ')}") from exc


def _inside(output: str, source: str) -> bool:
    """Whether objects under ``output`` would be listed as inputs of ``source`` (an S3 prefix matches keys
    that merely start with it, as SageMaker's S3Prefix does; a local path is a file or a directory)."""
    if source.startswith("s3://"):
        return output.startswith(source)
    return output == source or output.startswith(source.rstrip("/") + "/")

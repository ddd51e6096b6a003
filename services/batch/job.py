"""``tripod transform``: a SageMaker batch-transform job, resumable and sharded, on either engine.

For each work unit of this shard (:mod:`services.batch.plan`) that a previous run has not finished
(:mod:`services.batch.state`): read its records (:mod:`services.batch.records`), apply the input filter, send
mini-batches to the engine (several in flight, answers written in input order), join and filter the answers,
and write ``<output>/<relative>.out`` atomically — it appears only when the whole object succeeded.

A record the model refuses (a 4xx) is found by resending its mini-batch one record at a time; it answers a
placeholder (``ERROR`` in CSV, ``{"error": …}`` in JSON) and is listed in ``<relative>.out.errors.jsonl`` with
its index, byte offset and reason.  A file holding more bad records than ``--max-record-errors`` (default 0,
SageMaker's behaviour) fails: no ``.out``, but the errors file says which records.  A failed file does not stop
the others; the job then ends failed, naming it.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from typing import Any

from tqdm import tqdm

from services.artifacts import MANIFEST_DIGEST_NAME, resolve_model_dir
from services.batch import state, storage
from services.batch.dataprocessing import DataProcessing
from services.batch.engines import EndpointEngine, Engine, EngineFailed, InProcessEngine, RecordsRefused
from services.batch.engines import execution_parameters as ask_execution_parameters
from services.batch.options import TransformOptions
from services.batch.plan import WorkUnit, plan_units, shard_units
from services.batch.records import MiniBatch, Record, line_records, mini_batches, whole_record
from services.codecs.json_records import encode_json
from services.codecs.media import CSV, JSON
from services.errors import StorageError, TripodError

RECORD_PREFIX = re.compile(r"^record \d+: ")
"""How Tripod's input errors name a record of a request; a batch names the record of the file instead."""
DEFAULTS = {"MaxConcurrentTransforms": 1, "MaxPayloadInMB": 6, "BatchStrategy": "MULTI_RECORD"}
"""What SageMaker uses when neither the job nor the container says."""


class FileFailed(Exception):
    """A unit could not be completed; its object gets no ``.out``."""


@dataclass
class FileResult:
    """One input object's outcome in this run."""

    input: str
    output: str
    records: int = 0
    errors: int = 0
    seconds: float = 0.0
    status: str = "skipped"
    """skipped (a previous run did it), done, failed, or waiting for other shards (a split file)."""
    reason: str = ""


@dataclass
class JobSummary:
    """What a run did; written as JSON to the output location."""

    shard: int
    shards: int
    engine: str
    settings: dict[str, Any]
    """What was applied: the job's settings, else the container's advice, else SageMaker's defaults."""
    files: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "failed"]

    @property
    def succeeded(self) -> bool:
        return not self.failed

    def as_dict(self) -> dict[str, Any]:
        totals = {
            "files": len(self.files),
            "failed": len(self.failed),
            "records": sum(f.records for f in self.files),
            "errors": sum(f.errors for f in self.files),
        }
        status = "succeeded" if self.succeeded else "failed"
        return {
            "status": status,
            "shard": self.shard,
            "shards": self.shards,
            "engine": self.engine,
            "settings": self.settings,
            "seconds": round(self.seconds, 3),
            "totals": totals,
            "files": [asdict(f) for f in self.files],
        }


@dataclass(frozen=True)
class Settings:
    """The job's options once the engine's advice and SageMaker's defaults are applied."""

    options: TransformOptions
    multi: bool
    max_bytes: int
    concurrency: int
    dataprocessing: DataProcessing

    @property
    def line_split(self) -> bool:
        return self.options.split_type == "Line"

    def applied(self) -> dict[str, Any]:
        """The settings SageMaker's DescribeTransformJob would show."""
        return {
            "BatchStrategy": "MultiRecord" if self.multi else "SingleRecord",
            "MaxPayloadInMB": self.max_bytes >> 20,
            ("Workers" if self.options.model is not None else "MaxConcurrentTransforms"): self.concurrency,
        }


def resolve_settings(options: TransformOptions) -> Settings:
    """The job setting, else the container's ``/execution-parameters`` (endpoint engine), else SageMaker's
    defaults — the order SageMaker applies."""
    advice: dict[str, Any] = {}
    needs_advice = None in (options.batch_strategy, options.max_payload_mb, options.max_concurrent_transforms)
    if options.endpoint is not None and needs_advice:
        try:
            advice = ask_execution_parameters(options.endpoint)
        except EngineFailed as exc:
            raise StorageError(str(exc)) from exc
    merged = {**DEFAULTS, **{k: v for k, v in advice.items() if k in DEFAULTS}}
    strategy = options.batch_strategy or (
        "MultiRecord" if merged["BatchStrategy"] == "MULTI_RECORD" else "SingleRecord"
    )
    payload_mb = options.max_payload_mb or int(merged["MaxPayloadInMB"])
    if options.model is not None:
        concurrency = options.workers or os.cpu_count() or 1  # worker processes: one per core
    else:
        concurrency = options.max_concurrent_transforms or int(merged["MaxConcurrentTransforms"])
    dataprocessing = DataProcessing.from_options(
        options.input_filter,
        options.output_filter,
        options.join_source,
        content_type=options.content_type,
        accept=options.answer_type,
    )
    return Settings(options, strategy == "MultiRecord", payload_mb << 20, concurrency, dataprocessing)


def job_fingerprint(settings: Settings) -> str:
    """Everything that decides the outputs' bytes: the model (its manifest digest) or endpoint, and the options."""
    options = settings.options
    if options.model is not None:
        model_dir = resolve_model_dir(options.model)
        identity = (model_dir / MANIFEST_DIGEST_NAME).read_text(encoding="utf-8").split()[0]
    else:
        identity = options.endpoint or ""
    decisive = options.model_dump(
        exclude={
            "model",
            "endpoint",
            "input",
            "output",
            "shard_index",
            "shard_count",
            "workers",
            "max_concurrent_transforms",
            "input_type",
        }
    )
    return state.fingerprint(
        {"model": identity, "multi": settings.multi, "max_bytes": settings.max_bytes, **decisive}
    )


def open_engine(settings: Settings) -> Engine:
    options = settings.options
    content_type, accept, keys = options.content_type, options.answer_type, options.response_keys
    if options.model is not None:
        model_dir = resolve_model_dir(options.model)
        return InProcessEngine(
            model_dir, content_type=content_type, accept=accept, keys=keys, workers=settings.concurrency
        )
    assert options.endpoint is not None
    return EndpointEngine(
        options.endpoint,
        content_type=content_type,
        accept=accept,
        keys=keys,
        concurrency=settings.concurrency,
    )


# -- one unit ---------------------------------------------------------------------------------------------


class UnitRun:
    """One work unit being transformed: its records in, its answers out, its bad records counted."""

    def __init__(self, unit: WorkUnit, settings: Settings, engine: Engine, bar: Any) -> None:
        self.unit, self.settings, self.engine, self.bar = unit, settings, engine, bar
        self.options = settings.options
        self.records = 0
        self.errors: dict[int, dict[str, Any]] = {}
        """Bad records by index (found out of order: the input filter runs ahead of the answers)."""
        self.originals: dict[int, Record] = {}
        """Records in flight, as read (the join uses the record before the input filter)."""
        budget = self.options.max_record_errors
        self.budget = None if budget.endswith("%") else int(budget)
        """Bad records allowed before the file stops early (a percentage is judged at the end)."""

    def records_in(self) -> Iterator[Record]:
        unit, options = self.unit, self.options
        gzip = options.compression == "Gzip"
        start = max(0, unit.start - 1)
        stream = storage.open_input(unit.input, gzip=gzip, start=0 if gzip else start)
        with stream:
            if not self.settings.line_split:
                yield from whole_record(stream, max_bytes=self.settings.max_bytes)
            else:
                yield from line_records(
                    stream,
                    unit.start,
                    unit.end,
                    skip_header=options.csv_header,
                    max_bytes=self.settings.max_bytes,
                )

    def run(self, writer: storage.AtomicWriter) -> None:
        """Send every mini-batch, keeping ``max_in_flight`` outstanding, and write answers in order."""
        settings = self.settings
        dp = settings.dataprocessing
        content = self.options.content_type

        def model_input(record: Record) -> Record:
            if dp.input_filter.is_identity or record.oversize:
                return record
            return Record(record.index, record.offset, dp.model_input(record.data, content))

        pending: deque[tuple[MiniBatch, Future[bytes] | None]] = deque()
        batches = mini_batches(
            self.filtered(model_input),
            multi=settings.multi,
            max_bytes=settings.max_bytes,
            max_records=self.options.max_records_per_request,
            line_split=settings.line_split,
        )
        for batch in batches:
            future = None if batch.too_large else self.engine.submit(batch.payload(settings.line_split))
            pending.append((batch, future))
            while len(pending) >= self.engine.max_in_flight:
                self.write(writer, *pending.popleft())
        while pending:
            self.write(writer, *pending.popleft())

    def filtered(self, model_input: Any) -> Iterator[Record]:
        for record in self.records_in():
            self.records += 1
            self.originals[record.index] = record
            try:
                yield model_input(record)
            except TripodError as exc:
                self.refuse(record, 400, str(exc))

    def write(self, writer: storage.AtomicWriter, batch: MiniBatch, future: Future[bytes] | None) -> None:
        answers = self.answers(batch, future)
        for record, answer in answers:
            original = self.originals.pop(record.index, record)
            self.bar.update(original.size + 1)
            if answer is None:
                writer.write(self.placeholder(record))
                continue
            writer.write(self.final(original, answer))

    def answers(self, batch: MiniBatch, future: Future[bytes] | None) -> list[tuple[Record, bytes | None]]:
        """Each record of the batch with its answer (None for a refused record)."""
        if batch.too_large:
            (record,) = batch.records
            limit = self.settings.max_bytes >> 20
            self.refuse(record, 413, f"the record is {record.size:,} bytes, over MaxPayloadInMB ({limit} MB)")
            return [(record, None)]
        assert future is not None
        try:
            answer = self.result(future)
        except RecordsRefused as exc:
            if len(batch.records) == 1:
                self.refuse(batch.records[0], exc.status, exc.message)
                return [(batch.records[0], None)]
            return self.bisect(batch)
        return self.split(batch, answer)

    def bisect(self, batch: MiniBatch) -> list[tuple[Record, bytes | None]]:
        """A refused mini-batch sent again as two halves, and so on down to the refused records: a few bad
        records among thousands cost a few dozen requests, not one per record.  A container's 413 (a smaller
        payload limit than the job's) ends here too, and is answered by smaller batches."""
        middle = len(batch.records) // 2
        halves = [MiniBatch(batch.records[:middle]), MiniBatch(batch.records[middle:])]
        futures = [self.engine.submit(half.payload(self.settings.line_split)) for half in halves]
        found: list[tuple[Record, bytes | None]] = []
        for half, future in zip(halves, futures, strict=True):
            found.extend(self.answers(half, future))
        return found

    @staticmethod
    def result(future: Future[bytes]) -> bytes:
        try:
            return future.result()
        except (RecordsRefused, EngineFailed):
            raise
        except Exception as exc:
            raise EngineFailed(f"{type(exc).__name__}: {exc}") from exc

    def split(self, batch: MiniBatch, answer: bytes) -> list[tuple[Record, bytes | None]]:
        """The batch's answer as one answer per record (record by record work), or whole to the first record."""
        if not self.options.needs_records:
            return [(batch.records[0], answer), *((record, b"") for record in batch.records[1:])]
        if (
            len(batch.records) == 1
            and self.options.answer_type != CSV
            and not answer.rstrip(b"\n").count(b"\n")
        ):
            return [(batch.records[0], answer.rstrip(b"\n"))]
        lines = answer.rstrip(b"\n").split(b"\n") if answer else []
        if len(lines) != len(batch.records):
            raise FileFailed(f"the answer holds {len(lines)} lines for {len(batch.records)} records")
        return list(zip(batch.records, lines, strict=True))

    def final(self, original: Record, answer: bytes) -> bytes:
        """What the output holds for a record (or a whole batch answer when records are not handled one by one)."""
        if not self.options.needs_records:
            if not answer:
                return b""  # the batch's answer was written with its first record
            tail = b"\n" if self.options.assemble_with == "Line" and not answer.endswith(b"\n") else b""
            return answer + tail
        dp = self.settings.dataprocessing
        return (
            dp.final_output(original.data, answer, self.options.content_type, self.options.answer_type)
            + b"\n"
        )

    def error_entries(self) -> list[dict[str, Any]]:
        return [self.errors[index] for index in sorted(self.errors)]

    def placeholder(self, record: Record) -> bytes:
        """What stands for a refused record: ``ERROR`` in CSV, ``{"error": …}`` in JSON, a line of its own
        wherever answers are lines."""
        reason = self.errors[record.index]["reason"]
        options = self.options
        body = b"ERROR" if options.answer_type == CSV else encode_json({"error": reason})
        in_lines = options.assemble_with == "Line" or options.needs_records or options.answer_type != JSON
        return body + (b"\n" if in_lines else b"")

    def refuse(self, record: Record, status: int, reason: str) -> None:
        reason = RECORD_PREFIX.sub("", reason)
        self.errors[record.index] = {
            "record": record.index,
            "offset": record.offset,
            "status": status,
            "reason": reason,
        }
        if self.budget is not None and len(self.errors) > self.budget:
            raise FileFailed(
                f"record {record.index} (byte {record.offset}): {reason} — more than {self.budget} bad record(s)"
            )


def run_unit(
    unit: WorkUnit, settings: Settings, engine: Engine, fingerprint: str, bar: Any
) -> state.UnitMarker:
    """Transform one unit and record it; a failure is recorded, not raised."""
    options = settings.options
    output = state.unit_output_url(options.output, unit)
    started = time.monotonic()
    run = UnitRun(unit, settings, engine, bar)
    ok, reason = True, ""
    try:
        with storage.AtomicWriter(output) as writer:
            run.run(writer)
            if len(run.errors) > options.error_budget(run.records):
                first = run.error_entries()[0]
                raise FileFailed(
                    f"{len(run.errors)} bad record(s) of {run.records}, over --max-record-errors "
                    f"{options.max_record_errors}; the first: record {first['record']}: {first['reason']}"
                )
    except (FileFailed, EngineFailed, TripodError) as exc:
        ok, reason = False, str(exc)
    marker = state.UnitMarker(
        fingerprint=fingerprint,
        version=unit.input.version,
        size=unit.input.size,
        records=run.records,
        errors=len(run.errors),
        seconds=round(time.monotonic() - started, 3),
        ok=ok,
        reason=reason,
        output_sha256=state.sha256_of(output) if ok else "",
        start=unit.start,
        end=unit.end,
        error_entries=run.error_entries(),
    )
    if unit.parts == 1:
        state.write_errors(
            storage.output_url(options.output, unit.input.relative, state.ERRORS_SUFFIX), marker.error_entries
        )
    storage.write_bytes(state.marker_url(options.output, unit), marker.dumps())
    return marker


# -- the job ----------------------------------------------------------------------------------------------


def run_transform(options: TransformOptions, *, progress: bool = True) -> JobSummary:
    """Run (or resume) this shard of a transform job; see the module docstring.

    Raises:
        InvalidInput: bad options or inputs (nothing was written).
        StorageError: the output location cannot be written, or the endpoint cannot be reached.
    """
    started = time.monotonic()
    settings = resolve_settings(options)
    fingerprint = job_fingerprint(settings)
    inputs = storage.list_inputs(options.input, options.input_type)
    splittable = settings.line_split and options.compression == "None"
    units = plan_units(inputs, splittable=splittable, split_mb=options.split_mb)
    mine = shard_units(units, options.shard_index, options.shard_count)
    summary = JobSummary(
        options.shard_index,
        options.shard_count,
        "in-process" if options.model else "endpoint",
        settings.applied(),
    )
    done = {unit: state.done_marker(options.output, unit, fingerprint) for unit in mine}
    todo = [unit for unit in mine if done[unit] is None]
    results: dict[str, FileResult] = {}
    total = sum(_unit_bytes(unit) for unit in todo)
    engine = open_engine(settings) if todo else None
    bar = tqdm(total=total, unit="B", unit_scale=True, desc="transform", disable=None if progress else True)
    try:
        processed = 0
        for unit in mine:
            result = results.setdefault(unit.input.relative, _file_result(options, unit))
            marker = done[unit]
            if marker is None:
                assert engine is not None
                storage.remove_leftovers(state.unit_output_url(options.output, unit))
                marker = run_unit(unit, settings, engine, fingerprint, bar)
                result.status = "done" if result.status == "skipped" else result.status
                processed += marker.records
                rate = processed / max(bar.format_dict["elapsed"], 1e-9)
                bar.set_postfix(files=len(results), records=processed, records_per_s=f"{rate:,.0f}")
            elif marker.start == 0 and marker.end is None:
                # A previous run did the whole file (a split file's own marker covers every range).
                result.records, result.errors, result.seconds = marker.records, marker.errors, marker.seconds
                continue
            result.records += marker.records
            result.errors += marker.errors
            result.seconds += marker.seconds
            if not marker.ok:
                result.status, result.reason = "failed", marker.reason
    finally:
        bar.close()
        if engine is not None:
            engine.close()
    for relative, result in results.items():
        if result.status == "failed":
            continue
        parts = [unit for unit in units if unit.input.relative == relative]
        if len(parts) > 1:
            outcome = state.try_assemble(options.output, parts, fingerprint)
            if outcome is None:
                result.status = "waiting for other shards"
            elif outcome:
                result.status, result.reason = "failed", outcome
    summary.files = list(results.values())
    summary.seconds = time.monotonic() - started
    name = (
        "summary.json"
        if options.shard_count == 1
        else f"summary-{options.shard_index}-of-{options.shard_count}.json"
    )
    storage.write_bytes(
        state.state_url(options.output, name), json.dumps(summary.as_dict(), indent=1).encode()
    )
    return summary


def _unit_bytes(unit: WorkUnit) -> int:
    return (unit.end if unit.end is not None else unit.input.size) - unit.start


def _file_result(options: TransformOptions, unit: WorkUnit) -> FileResult:
    return FileResult(
        input=unit.input.url, output=storage.output_url(options.output, unit.input.relative, state.OUT_SUFFIX)
    )


def transform(*, progress: bool = False, **options: Any) -> JobSummary:
    """``tripod transform`` from Python: its options as keyword arguments (``model=Path("models/x/latest")``,
    ``input="s3://bucket/in/"``, ``output=...``, ``split_type="Line"``, ...), validated as the command line's.

    Raises:
        InvalidInput: a bad option or input (nothing was written).
        StorageError: the output location cannot be written, or the endpoint cannot be reached.
    """
    return run_transform(TransformOptions.build(**options), progress=progress)

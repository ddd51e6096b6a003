"""``tripod transform``: a SageMaker batch-transform job, resumable and sharded, on either engine.

For each work unit of this shard (:mod:`services.batch.plan`) that a previous run has not finished
(:mod:`services.batch.state`): read its records, send its mini-batches to the engine and write the answers in
input order (:mod:`services.batch.unit`); ``<output>/<relative>.out`` appears atomically, only when the whole
object succeeded.  Mini-batches of several units are in flight together — the engine's window spans files —
so a folder of small files keeps every worker busy.  A failed file does not stop the others; the job then ends
failed, naming it.
"""

from __future__ import annotations

import json
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from typing import Any

from tqdm import tqdm

from services.batch import state, storage
from services.batch.engines import Engine
from services.batch.options import TransformOptions
from services.batch.plan import WorkUnit, plan_units, shard_units
from services.batch.records import MiniBatch
from services.batch.resolve import Settings, open_engine, resolve_settings
from services.batch.unit import UNIT_FAILURES, UnitRun


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


# -- the job ----------------------------------------------------------------------------------------------


def run_transform(options: TransformOptions, *, progress: bool = True) -> JobSummary:
    """Run (or resume) this shard of a transform job; see the module docstring.

    Raises:
        InvalidInput: bad options or inputs (nothing was written).
        ModelIntegrityError: the model directory does not verify.
        StorageError: the output location cannot be written, or the endpoint cannot be reached.
    """
    started = time.monotonic()
    settings = resolve_settings(options)
    fingerprint = settings.fingerprint()
    inputs = storage.list_inputs(options.input, options.input_type)
    splittable = settings.line_split and options.compression == "None"
    units = plan_units(inputs, splittable=splittable, split_mb=options.split_mb)
    mine = shard_units(units, options.shard_index, options.shard_count)
    summary = JobSummary(
        options.shard_index,
        options.shard_count,
        "in-process" if settings.model is not None else "endpoint",
        settings.applied(),
    )
    done = {unit: _done(options, unit, fingerprint) for unit in mine}
    todo = [unit for unit in mine if done[unit] is None]
    results = {unit.input.relative: _file_result(options, unit) for unit in mine}
    for unit, marker in done.items():
        if marker is not None:
            _count(results[unit.input.relative], marker)
    if todo:
        bar = tqdm(
            total=sum(_unit_bytes(unit) for unit in todo),
            unit="B",
            unit_scale=True,
            desc="transform",
            disable=None if progress else True,
        )
        engine = open_engine(settings)
        processed = 0

        def finished(unit: WorkUnit, marker: state.UnitMarker) -> None:
            nonlocal processed
            result = results[unit.input.relative]
            result.status = "done" if result.status == "skipped" else result.status
            _count(result, marker)
            processed += marker.records
            rate = processed / max(bar.format_dict["elapsed"], 1e-9)
            bar.set_postfix(files=len(results), records=processed, records_per_s=f"{rate:,.0f}")

        try:
            _run_units(todo, settings, engine, fingerprint, bar, finished)
        finally:
            bar.close()
            engine.close()
    for relative, result in results.items():
        parts = [unit for unit in units if unit.input.relative == relative]
        if result.status == "failed" or len(parts) == 1:
            continue
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


Pending = tuple[UnitRun, MiniBatch, "Future[bytes] | None"]


def _run_units(
    todo: list[WorkUnit],
    settings: Settings,
    engine: Engine,
    fingerprint: str,
    bar: Any,
    finished: Any,
) -> None:
    """Send every unit's mini-batches, at most ``engine.max_in_flight`` outstanding across units, and take
    the answers in order; a unit is finished once its last answer is written."""
    pending: deque[Pending] = deque()
    running: list[UnitRun] = []

    def finish(run: UnitRun) -> None:
        running.remove(run)
        finished(run.unit, run.finish(fingerprint))

    def settle() -> None:
        run, batch, future = pending.popleft()
        run.in_flight -= 1
        if not run.failure:
            try:
                run.take(batch, future)
            except UNIT_FAILURES as exc:
                run.fail(str(exc))
        elif future is not None:
            future.cancel()
        if run.all_sent and run.in_flight == 0:
            finish(run)

    try:
        for unit in todo:
            run = UnitRun(unit, settings, engine, bar)
            running.append(run)
            try:
                for batch in run.batches():
                    if run.failure:
                        break
                    payload = None if batch.unsent else batch.payload(settings.line_split)
                    pending.append((run, batch, None if payload is None else engine.submit(payload)))
                    run.in_flight += 1
                    while len(pending) >= engine.max_in_flight:
                        settle()
            except UNIT_FAILURES as exc:
                run.fail(str(exc))
            run.all_sent = True
            if run.in_flight == 0:
                finish(run)
        while pending:
            settle()
    finally:
        for run in running:  # a job stopping (an interrupt, the output failing): no half-written output stays
            run.abandon()


def _done(options: TransformOptions, unit: WorkUnit, fingerprint: str) -> state.UnitMarker | None:
    """The marker of a previous run that did this unit and whose bad records fit today's budget."""
    marker = state.done_marker(options.output, unit, fingerprint)
    if marker is not None and marker.errors > options.error_budget(marker.records):
        return None  # done again under the smaller budget, which it will fail
    return marker


def _count(result: FileResult, marker: state.UnitMarker) -> None:
    if (
        marker.start == 0 and marker.end is None
    ):  # a whole file's marker (a split file's own covers every range)
        result.records, result.errors, result.seconds = marker.records, marker.errors, marker.seconds
    else:
        result.records += marker.records
        result.errors += marker.errors
        result.seconds += marker.seconds
    if not marker.ok:
        result.status, result.reason = "failed", marker.reason


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
        ModelIntegrityError: the model directory does not verify.
        StorageError: the output location cannot be written, or the endpoint cannot be reached.
    """
    return run_transform(TransformOptions.build(**options), progress=progress)

"""One work unit being transformed: its records read and filtered, its mini-batches' answers joined, filtered
and written in order, its bad records found and counted, and its outcome recorded.

A record the model refuses (a 4xx) is found by halving its refused mini-batch until the refused records are
alone; a record the input filter, the join or the output filter cannot handle is refused in place.  Each
answers a placeholder (``ERROR`` in CSV, ``{"error": …}`` in JSON) on its own line and is listed in
``<relative>.out.errors.jsonl`` with its index, byte offset, status and reason, so output line *i* still
answers input record *i*.  A unit with more bad records than ``--max-record-errors`` fails: no output, but the
errors file says which records.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import ExitStack
from typing import Any

from services.batch import state, storage
from services.batch.engines import Engine, EngineFailed, RecordsRefused
from services.batch.plan import WorkUnit
from services.batch.records import MiniBatch, Record, line_records, mini_batches, whole_record
from services.batch.resolve import Settings
from services.codecs.json_records import encode_json
from services.codecs.media import CSV, JSON
from services.errors import TripodError

REQUEST_WORDING = ((re.compile(r"^record \d+: "), ""), (re.compile(r"^line \d+ is "), "the record is "))
"""How Tripod's input errors name a record of a request ("record 3: …", "line 1 is not valid JSON"); the
errors file names the record of the file instead, so the request's numbering is reworded."""


class FileFailed(Exception):
    """A unit could not be completed; its object gets no ``.out``."""


UNIT_FAILURES = (FileFailed, EngineFailed, TripodError)
"""What fails one unit (and so its file) without stopping the job."""
Answers = list[tuple[list[Record], bytes | None]]
"""A mini-batch's answers in order: records with their answer, or a refused record with None."""


class UnitRun:
    """A unit in progress: created when its first mini-batch is about to be sent, finished when its last
    answer is written.  Several may be in progress at once, so small files keep every worker busy."""

    def __init__(self, unit: WorkUnit, settings: Settings, engine: Engine, bar: Any) -> None:
        self.unit, self.settings, self.engine, self.bar = unit, settings, engine, bar
        self.options = settings.options
        self.records = 0
        self.errors: dict[int, dict[str, Any]] = {}
        """Bad records by index (found out of order: the input filter runs ahead of the answers)."""
        self.by_record = self.options.needs_records
        """Answers are joined or filtered record by record, rather than written whole."""
        self.originals: dict[int, Record] = {}
        """Records in flight as read, when answers are handled record by record (the join takes the record
        before the input filter)."""
        budget = self.options.max_record_errors
        self.budget = None if budget.endswith("%") else int(budget)
        """Bad records allowed before the unit stops early (a percentage is judged at the end)."""
        self.failure = ""
        self.in_flight = 0
        self.all_sent = False
        self.started = time.monotonic()
        self.output = state.unit_output_url(self.options.output, unit)
        storage.remove_leftovers(self.output)
        self._stack = ExitStack()
        self.writer = self._stack.enter_context(storage.AtomicWriter(self.output))

    # -- reading ------------------------------------------------------------------------------------------

    def batches(self) -> Iterator[MiniBatch]:
        """The unit's mini-batches, in order (a refused or oversized record alone, not to be sent)."""
        settings = self.settings
        plain = self.settings.dataprocessing.input_filter.is_identity and not self.by_record
        for batch in mini_batches(
            self._records() if plain else self._filtered(),
            multi=settings.multi,
            max_bytes=settings.max_bytes,
            max_records=self.options.max_records_per_request,
            line_split=settings.line_split,
        ):
            self.records += len(batch.records)
            yield batch

    def _records(self) -> Iterator[Record]:
        unit, options, max_bytes = self.unit, self.options, self.settings.max_bytes
        gzip = options.compression == "Gzip"
        with storage.open_input(unit.input, gzip=gzip, start=0 if gzip else max(0, unit.start - 1)) as stream:
            if not self.settings.line_split:
                yield from whole_record(stream, max_bytes=max_bytes)
            else:
                yield from line_records(
                    stream, unit.start, unit.end, skip_header=options.csv_header, max_bytes=max_bytes
                )

    def _filtered(self) -> Iterator[Record]:
        """Records as the model sees them (the input filter applied); a record it cannot apply to is refused
        and passed on unsent, so its placeholder keeps its line."""
        dp, content = self.settings.dataprocessing, self.options.content_type
        keep = self.by_record
        for record in self._records():
            if keep:
                self.originals[record.index] = record
            if dp.input_filter.is_identity or record.oversize:
                yield record
                continue
            try:
                yield Record(record.index, record.offset, dp.model_input(record.data, content))
            except TripodError as exc:
                self.refuse(record, exc.status_code, str(exc))
                yield Record(record.index, record.offset, b"", refused=True)

    # -- answers ------------------------------------------------------------------------------------------

    def take(self, batch: MiniBatch, future: Future[bytes] | None) -> None:
        """Write the answers to one mini-batch, in order, with placeholders for refused records."""
        for records, answer in self._answers(batch, future):
            if answer is None:
                self.originals.pop(records[0].index, None)
                self.writer.write(self._placeholder(records[0]))
            elif not self.by_record:
                tail = b"\n" if self.options.assemble_with == "Line" and not answer.endswith(b"\n") else b""
                self.writer.write(answer + tail)
            else:
                (record,) = records
                original = self.originals.pop(record.index, record)
                try:
                    self.writer.write(self._final(original, answer))
                except TripodError as exc:  # the join or the output filter cannot handle this record
                    self.refuse(record, exc.status_code, str(exc))
                    self.writer.write(self._placeholder(record))
        self.bar.update(batch.size)

    def _answers(self, batch: MiniBatch, future: Future[bytes] | None) -> Answers:
        """The batch's answers in order: ``(records, answer)`` pieces, one per record when answers are handled
        record by record, else whole (sub-)batches; a refused record alone with None."""
        if batch.unsent:
            (record,) = batch.records
            if record.index not in self.errors:
                limit = self.settings.max_bytes >> 20
                self.refuse(
                    record, 413, f"the record is {record.size:,} bytes, over MaxPayloadInMB ({limit} MB)"
                )
            return [([record], None)]
        assert future is not None
        try:
            answer = _result(future)
        except RecordsRefused as exc:
            if len(batch.records) == 1:
                self.refuse(batch.records[0], exc.status, exc.message)
                return [(batch.records, None)]
            return self._bisect(batch)
        return self._split(batch, answer)

    def _bisect(self, batch: MiniBatch) -> Answers:
        """A refused mini-batch sent again as two halves, and so on down to the refused records: a few bad
        records among thousands cost a few dozen requests, not one per record.  A container's 413 (a smaller
        payload limit than the job's) ends here too, and is answered by smaller batches."""
        middle = len(batch.records) // 2
        halves = [MiniBatch(batch.records[:middle]), MiniBatch(batch.records[middle:])]
        futures = [self.engine.submit(half.payload(self.settings.line_split)) for half in halves]
        found: Answers = []
        for half, future in zip(halves, futures, strict=True):
            found.extend(self._answers(half, future))
        return found

    def _split(self, batch: MiniBatch, answer: bytes) -> Answers:
        """The batch's answer whole, or one answer per record when answers are handled record by record."""
        if not self.by_record:
            return [(batch.records, answer)]
        if (
            len(batch.records) == 1
            and self.options.answer_type != CSV
            and not answer.rstrip(b"\n").count(b"\n")
        ):
            return [(batch.records, answer.rstrip(b"\n"))]
        lines = answer.rstrip(b"\n").split(b"\n") if answer else []
        if len(lines) != len(batch.records):
            raise FileFailed(f"the answer holds {len(lines)} lines for {len(batch.records)} records")
        return [([record], line) for record, line in zip(batch.records, lines, strict=True)]

    def _final(self, original: Record, answer: bytes) -> bytes:
        """What the output holds for one record: its answer joined to the record and filtered."""
        options = self.options
        dp = self.settings.dataprocessing
        return dp.final_output(original.data, answer, options.content_type, options.answer_type) + b"\n"

    def _placeholder(self, record: Record) -> bytes:
        """What stands for a refused record: ``ERROR`` in CSV, ``{"error": …}`` in JSON, a line of its own
        wherever answers are lines."""
        options = self.options
        if options.answer_type == CSV:
            body = b"ERROR"
        else:
            body = encode_json({"error": self.errors[record.index]["reason"]})
        in_lines = options.assemble_with == "Line" or options.needs_records or options.answer_type != JSON
        return body + (b"\n" if in_lines else b"")

    def refuse(self, record: Record, status: int, reason: str) -> None:
        """List a bad record; stop the unit early once the budget (a count) is spent."""
        for pattern, wording in REQUEST_WORDING:
            reason = pattern.sub(wording, reason)
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

    # -- outcome ------------------------------------------------------------------------------------------

    def fail(self, reason: str) -> None:
        """The unit cannot succeed; the first reason is the one reported."""
        self.failure = self.failure or reason

    def error_entries(self) -> list[dict[str, Any]]:
        return [self.errors[index] for index in sorted(self.errors)]

    def finish(self, fingerprint: str) -> state.UnitMarker:
        """Commit the output (or discard it), write the errors file and the unit's marker.

        Raises:
            StorageError: the marker cannot be written (the output location failed): the job stops.
        """
        options = self.options
        if not self.failure and len(self.errors) > options.error_budget(self.records):
            first = self.error_entries()[0]
            self.fail(
                f"{len(self.errors)} bad record(s) of {self.records}, over --max-record-errors "
                f"{options.max_record_errors}; the first: record {first['record']}: {first['reason']}"
            )
        if self.failure:
            self.abandon()
        else:
            try:
                self._stack.close()
            except TripodError as exc:
                self.fail(str(exc))
        marker = state.UnitMarker(
            fingerprint=fingerprint,
            version=self.unit.input.version,
            size=self.unit.input.size,
            records=self.records,
            errors=len(self.errors),
            seconds=round(time.monotonic() - self.started, 3),
            ok=not self.failure,
            reason=self.failure,
            output_sha256="" if self.failure else state.sha256_of(self.output),
            start=self.unit.start,
            end=self.unit.end,
            error_entries=self.error_entries(),
        )
        if self.unit.parts == 1:
            errors_url = storage.output_url(options.output, self.unit.input.relative, state.ERRORS_SUFFIX)
            state.write_errors(errors_url, marker.error_entries)
        storage.write_bytes(state.marker_url(options.output, self.unit), marker.dumps())
        return marker

    def abandon(self) -> None:
        """Discard the output being written (a failed unit, or a job stopping)."""
        self._stack.__exit__(FileFailed, FileFailed(self.failure), None)


def _result(future: Future[bytes]) -> bytes:
    try:
        return future.result()
    except (RecordsRefused, EngineFailed):
        raise
    except Exception as exc:
        raise EngineFailed(f"{type(exc).__name__}: {exc}") from exc

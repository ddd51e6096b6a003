"""Reading data capture: SageMaker's JSON Lines files, listed under a prefix and read one file at a time.

The layout is ``<prefix>/<endpoint>/<variant>/yyyy/mm/dd/hh/<file>.jsonl`` (local or ``s3://``), one object per
captured exchange (``services/monitoring/capture.py`` writes it)::

    {"captureData": {"endpointInput": {"observedContentType": …, "mode": "INPUT", "data": …, "encoding": …},
                     "endpointOutput": {"observedContentType": …, "mode": "OUTPUT", "data": …, "encoding": …}},
     "eventMetadata": {"eventId": …, "inferenceId": …, "inferenceTime": "2026-12-02T14:03:05Z"},
     "eventVersion": "0"}

``encoding`` is ``JSON`` or ``CSV`` (``data`` is the body as text) or ``BASE64``.  ``--since``/``--until``
first prune files by their hour folder, then records by ``inferenceTime`` (``since`` included, ``until``
excluded).  A line that is not such an object is counted and reported, never fatal: one bad writer must not
hide a day of traffic.  Listing and opening go through the batch jobs' storage layer
(``services/batch/storage.py``), so capture is read with the same S3 settings it was written with.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pydantic_core

from services.batch.storage import InputObject, is_s3, list_inputs, open_input
from services.errors import InvalidInput, StorageError
from training.monitor.errors import MonitorError

HOUR_FOLDERS = re.compile(r"(?:^|/)(\d{4})/(\d{2})/(\d{2})/(\d{2})/[^/]+$")
CAPTURE_SUFFIXES = (".jsonl", ".jsonl.gz")
MAX_EXAMPLES = 5
"""Malformed lines quoted in the report (the rest are only counted)."""


@dataclass(frozen=True, slots=True)
class CaptureFile:
    """One capture file and what its path says: the hour of its records, its endpoint and variant."""

    obj: InputObject
    hour: datetime | None
    endpoint: str | None
    variant: str | None


@dataclass(frozen=True, slots=True)
class Body:
    """One side of an exchange: its content type and its bytes, decoded from the capture's encoding."""

    content_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class CapturedExchange:
    """One captured request and its answer (``answer`` is None when only the input was captured)."""

    event_id: str | None
    inference_id: str | None
    time: datetime | None
    request: Body
    answer: Body | None


@dataclass
class ReadTally:
    """What reading the capture found, beyond the exchanges themselves."""

    files: int = 0
    lines: int = 0
    exchanges: int = 0
    malformed: int = 0
    outside_window: int = 0
    examples: list[str] = field(default_factory=list)
    by_variant: dict[str, int] = field(default_factory=dict)

    def bad_line(self, where: str, reason: str) -> None:
        self.malformed += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"{where}: {reason}")


def parse_time(value: str, what: str) -> datetime:
    """An ISO-8601 time as an aware UTC datetime (a time without a zone is UTC).

    Raises:
        MonitorError: not an ISO-8601 date or time.
    """
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise MonitorError(
            f"{what} must be an ISO-8601 time such as 2026-12-02T14:00:00Z, got {value!r}"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def list_capture_files(
    prefix: str, since: datetime | None = None, until: datetime | None = None
) -> tuple[list[CaptureFile], int]:
    """The capture files under ``prefix`` whose hour folder may hold records in ``[since, until)``.

    Args:
        prefix: a directory or ``s3://bucket/prefix``: the capture root, an endpoint's or a variant's folder.
        since, until: the time window (None: open).

    Returns:
        ``(files sorted by path, files left out by their hour)``.

    Raises:
        MonitorError: the prefix does not exist, holds no capture files, or cannot be listed.
    """
    root = prefix if not is_s3(prefix) or prefix.endswith("/") else prefix + "/"
    try:
        objects = list_inputs(root, "prefix")
    except (InvalidInput, StorageError) as exc:
        raise MonitorError(f"cannot read capture under {prefix}: {exc}") from exc
    files: list[CaptureFile] = []
    pruned = 0
    first_hour = since.replace(minute=0, second=0, microsecond=0) if since else None
    for obj in objects:
        if not obj.relative.endswith(CAPTURE_SUFFIXES):
            continue
        # The full path names the endpoint and variant even when the prefix is a variant's own folder.
        match = HOUR_FOLDERS.search(obj.url)
        hour = None
        endpoint = variant = None
        if match:
            try:
                year, month, day, hour_of_day = (int(part) for part in match.groups())
                hour = datetime(year, month, day, hour_of_day, tzinfo=UTC)
            except ValueError:  # 2026/13/45/99: not an hour folder after all
                hour = None
            head = [part for part in obj.url[: match.start()].split("/") if part]
            endpoint, variant = (head[-2], head[-1]) if len(head) >= 2 else (None, None)
        if hour is not None and (
            (first_hour is not None and hour < first_hour) or (until is not None and hour >= until)
        ):
            pruned += 1
            continue
        files.append(CaptureFile(obj, hour, endpoint, variant))
    if not files and not pruned:
        raise MonitorError(f"no capture files (*.jsonl) under {prefix}")
    return files, pruned


def read_exchanges(
    file: CaptureFile,
    tally: ReadTally,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Iterator[CapturedExchange]:
    """The exchanges of one capture file within ``[since, until)``, streamed line by line.

    Raises:
        MonitorError: the file cannot be opened or read (a malformed *line* is only counted).
    """
    tally.files += 1
    variant = "/".join(part for part in (file.endpoint, file.variant) if part) or "(unknown)"
    name = file.obj.relative
    try:
        handle = open_input(file.obj, gzip=file.obj.relative.endswith(".gz"))
    except StorageError as exc:
        raise MonitorError(f"cannot read capture file {file.obj.url}: {exc}") from exc
    with handle:
        try:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                tally.lines += 1
                try:
                    exchange = parse_line(line, file.hour)
                except ValueError as exc:
                    tally.bad_line(f"{name}:{number}", str(exc))
                    continue
                if exchange.time is not None and (
                    (since is not None and exchange.time < since)
                    or (until is not None and exchange.time >= until)
                ):
                    tally.outside_window += 1
                    continue
                tally.exchanges += 1
                tally.by_variant[variant] = tally.by_variant.get(variant, 0) + 1
                yield exchange
        except (OSError, EOFError) as exc:  # a truncated gzip file, a connection lost half-way
            raise MonitorError(f"cannot read capture file {file.obj.url}: {exc}") from exc


def parse_line(line: bytes, hour: datetime | None = None) -> CapturedExchange:
    """One capture line as an exchange; ``hour`` (the file's folder) stands in for a missing inferenceTime.

    Raises:
        ValueError: not JSON, not a capture object, an unknown encoding, bad base64 or a bad inferenceTime;
            the message says which.
    """
    try:
        record = pydantic_core.from_json(line)
    except ValueError as exc:
        raise ValueError(f"not JSON ({str(exc)[:80]})") from None
    if not isinstance(record, dict) or not isinstance(record.get("captureData"), dict):
        raise ValueError("not a capture record: no captureData object")
    data = record["captureData"]
    request = _body(data.get("endpointInput"), "endpointInput")
    if request is None:
        raise ValueError("captureData has no endpointInput")
    answer = _body(data.get("endpointOutput"), "endpointOutput")
    metadata = record.get("eventMetadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    when = hour
    stamp = metadata.get("inferenceTime")
    if stamp is not None:
        try:
            when = parse_time(str(stamp), "inferenceTime")
        except MonitorError:
            raise ValueError(f"inferenceTime {str(stamp)[:40]!r} is not an ISO-8601 time") from None
    return CapturedExchange(
        event_id=_text(metadata.get("eventId")),
        inference_id=_text(metadata.get("inferenceId")),
        time=when,
        request=request,
        answer=answer,
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _body(side: Any, name: str) -> Body | None:
    if side is None:
        return None
    if not isinstance(side, dict) or not isinstance(side.get("data"), str):
        raise ValueError(f"{name} has no data string")
    encoding = str(side.get("encoding", "")).upper()
    content_type = str(side.get("observedContentType") or "")
    if encoding in ("JSON", "CSV"):
        return Body(content_type, side["data"].encode("utf-8", "surrogatepass"))
    if encoding == "BASE64":
        try:
            return Body(content_type, base64.b64decode(side["data"], validate=True))
        except (binascii.Error, ValueError):
            raise ValueError(f"{name} data is not base64") from None
    raise ValueError(f"{name} encoding {encoding!r} is not JSON, CSV or BASE64")


def hour_floor(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def window_start(moment: datetime, width: timedelta) -> datetime:
    """The start of the ``width``-wide window holding ``moment`` (windows aligned to the Unix epoch)."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + ((moment - epoch) // width) * width

"""An input object as records, and records as the mini-batches sent to the model.

SageMaker's ``SplitType``: ``None`` sends a whole object as one record; ``Line`` splits it on newlines (CR LF or
LF; a blank line is no record, but its bytes still count for offsets).  A big object is cut into byte ranges
(:mod:`services.batch.plan`); a record belongs to the range that holds its first byte, so ranges read past
their end to finish their last record and skip the tail of the record before them — every record is read once,
whatever the cut.

``BatchStrategy``: ``SingleRecord`` sends one record per request; ``MultiRecord`` as many as fit in
``MaxPayloadInMB`` (and a record limit), newline-joined, never mixing objects.  A record that alone exceeds the
payload limit cannot be sent: it is yielded as too large, so the job can name it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO


@dataclass(frozen=True, slots=True)
class Record:
    """One record of an input object."""

    index: int
    """Position among the records of its work unit (0-based)."""
    offset: int
    """Byte offset of its first byte in the (decompressed) object."""
    data: bytes
    """Its bytes, without the line terminator."""


@dataclass(frozen=True, slots=True)
class MiniBatch:
    """Records sent together, or one record too large to send (``too_large``)."""

    records: list[Record]
    too_large: bool = False

    def payload(self, line_split: bool) -> bytes:
        """The request body: one record as it is, or records each ending in a newline."""
        if not line_split:
            return self.records[0].data
        return b"".join(record.data + b"\n" for record in self.records)


def line_records(stream: BinaryIO, start: int, end: int | None, *, skip_header: bool) -> Iterator[Record]:
    """The records of bytes ``[start, end)`` of a line-split object.

    Args:
        stream: the object opened at ``max(0, start - 1)`` (one byte early, to see whether ``start`` begins
            a record) and readable to its end.
        start: first byte of the range; ``end``: first byte past it (None: to the end).
        skip_header: the first line of the object is a header (only meaningful for the range at 0).
    """
    offset = max(0, start - 1)
    if start > 0:
        offset += len(stream.readline())  # the tail of the record that began before this range
    elif skip_header:
        offset += len(stream.readline())
    index = 0
    for line in stream:
        if end is not None and offset >= end:
            return
        data = line.rstrip(b"\r\n") if line.endswith(b"\n") else line
        if data.strip():
            yield Record(index, offset, data)
            index += 1
        offset += len(line)


def whole_record(stream: BinaryIO) -> Iterator[Record]:
    """``SplitType=None``: the whole object is one record (an empty object is none)."""
    data = stream.read()
    if data:
        yield Record(0, 0, data)


def mini_batches(
    records: Iterable[Record], *, multi: bool, max_bytes: int, max_records: int, line_split: bool
) -> Iterator[MiniBatch]:
    """Group records into requests within the payload and record limits (see the module docstring)."""
    batch: list[Record] = []
    size = 0
    for record in records:
        cost = len(record.data) + (1 if line_split else 0)
        if cost > max_bytes:
            if batch:
                yield MiniBatch(batch)
                batch, size = [], 0
            yield MiniBatch([record], too_large=True)
            continue
        if batch and (not multi or size + cost > max_bytes or len(batch) >= max_records):
            yield MiniBatch(batch)
            batch, size = [], 0
        batch.append(record)
        size += cost
    if batch:
        yield MiniBatch(batch)

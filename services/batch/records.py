"""An input object as records, and records as the mini-batches sent to the model.

SageMaker's ``SplitType``: ``None`` sends a whole object as one record; ``Line`` splits it on newlines (CR LF or
LF; a blank line is no record, but its bytes still count for offsets).  A big object is cut into byte ranges
(:mod:`services.batch.plan`); a record belongs to the range that holds its first byte, so ranges read past
their end to finish their last record and skip the tail of the record before them — every record is read once,
whatever the cut.

``BatchStrategy``: ``SingleRecord`` sends one record per request; ``MultiRecord`` as many as fit in
``MaxPayloadInMB`` (and a record limit), newline-joined, never mixing objects.  A record that alone exceeds the
payload limit cannot be sent: it is yielded alone as unsent, so the job can name it (as is a record the input
filter refused).
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
    """Its bytes, without the line terminator; empty for a record too large to hold (``oversize``)."""
    oversize: int = 0
    """The length of a record longer than the job could ever send, which was skipped rather than held."""
    refused: bool = False
    """Already refused (by the input filter): not to be sent, only to keep its place."""

    @property
    def size(self) -> int:
        return self.oversize or len(self.data)


@dataclass(frozen=True, slots=True)
class MiniBatch:
    """Records sent together, or one record not to send (``unsent``: too large, or already refused)."""

    records: list[Record]
    unsent: bool = False
    size: int = 0
    """The bytes its records took in the input (a newline each): what the progress bar counts."""

    def payload(self, line_split: bool) -> bytes:
        """The request body: one record as it is, or records each ending in a newline."""
        if not line_split:
            return self.records[0].data
        return b"\n".join([record.data for record in self.records]) + b"\n"


def line_records(
    stream: BinaryIO, start: int, end: int | None, *, skip_header: bool, max_bytes: int
) -> Iterator[Record]:
    """The records of bytes ``[start, end)`` of a line-split object.

    Args:
        stream: the object opened at ``max(0, start - 1)`` (one byte early, to see whether ``start`` begins
            a record) and readable to its end.
        start: first byte of the range; ``end``: first byte past it (None: to the end).
        skip_header: the first line of the object is a header (only meaningful for the range at 0).
        max_bytes: a longer record could never be sent; it is read through in pieces and yielded empty with
            its ``oversize``, so one huge line (a file without newlines) never sits in memory.
    """
    offset = max(0, start - 1)
    if start > 0 or skip_header:  # the tail of the record that began before this range, or the header
        offset += _rest_of_line(stream, b"", max_bytes)[0]
    index = 0
    while end is None or offset < end:
        line = stream.readline(max_bytes + 2)  # room for the longest sendable record and its CR LF
        if not line:
            return
        if not line.endswith(b"\n") and len(line) == max_bytes + 2:
            length, terminator = _rest_of_line(stream, line, max_bytes)
            yield Record(index, offset, b"", oversize=length - terminator)
            index += 1
            offset += length
            continue
        data = line.rstrip(b"\r\n") if line.endswith(b"\n") else line
        if data and not data.isspace():
            yield Record(index, offset, data)
            index += 1
        offset += len(line)


def _rest_of_line(stream: BinaryIO, start: bytes, piece: int) -> tuple[int, int]:
    """Read to the end of a line begun with ``start``, in pieces: (the line's length, its terminator's)."""
    length, tail = len(start), start[-2:]
    while chunk := stream.readline(piece):
        length += len(chunk)
        tail = (tail + chunk)[-2:]
        if chunk.endswith(b"\n"):
            break
    terminator = 2 if tail == b"\r\n" else 1 if tail.endswith(b"\n") else 0
    return length, terminator


def whole_record(stream: BinaryIO, *, max_bytes: int) -> Iterator[Record]:
    """``SplitType=None``: the whole object is one record (an empty object is none); one larger than
    ``max_bytes`` is read through and yielded empty with its ``oversize``."""
    data = stream.read(max_bytes + 1)
    if len(data) <= max_bytes:
        if data:
            yield Record(0, 0, data)
        return
    size = len(data)
    while chunk := stream.read(1 << 20):
        size += len(chunk)
    yield Record(0, 0, b"", oversize=size)


def mini_batches(
    records: Iterable[Record], *, multi: bool, max_bytes: int, max_records: int, line_split: bool
) -> Iterator[MiniBatch]:
    """Group records into requests within the payload and record limits (see the module docstring)."""
    batch: list[Record] = []
    size = 0
    newline = 1 if line_split else 0
    for record in records:
        cost = (record.oversize or len(record.data)) + newline
        if cost > max_bytes or record.refused:
            if batch:
                yield MiniBatch(batch, size=size)
                batch, size = [], 0
            yield MiniBatch([record], unsent=True, size=cost)
            continue
        if batch and (not multi or size + cost > max_bytes or len(batch) >= max_records):
            yield MiniBatch(batch, size=size)
            batch, size = [], 0
        batch.append(record)
        size += cost
    if batch:
        yield MiniBatch(batch, size=size)

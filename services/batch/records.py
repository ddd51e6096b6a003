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


@dataclass(slots=True)
class Record:
    """One record of an input object; read-only by convention (a job builds millions, and a frozen dataclass
    costs twice as much to build)."""

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


BLOCK = 1 << 20
"""Bytes read at a time: lines are split in C a block at a time, not read one call per line."""


def line_records(
    stream: BinaryIO, start: int, end: int | None, *, skip_header: bool, max_bytes: int
) -> Iterator[Record]:
    """The records of bytes ``[start, end)`` of a line-split object.

    Args:
        stream: the object opened at ``max(0, start - 1)`` (one byte early, to see whether ``start`` begins
            a record) and readable to its end.
        start: first byte of the range; ``end``: first byte past it (None: to the end).
        skip_header: the first line of the object is a header (only meaningful for the range at 0).
        max_bytes: a longer record could never be sent; it is counted through and yielded empty with its
            ``oversize``, so one huge line (a file without newlines) never sits in memory.
    """
    offset = max(0, start - 1)
    skip = start > 0 or skip_header  # the tail of the record that began before this range, or the header
    index = 0
    for data, length in _lines(stream, max_bytes + 2):  # room for the longest sendable record and its CR LF
        if skip:
            skip = False
        elif end is not None and offset >= end:
            return
        elif isinstance(data, int):
            yield Record(index, offset, b"", oversize=data)
            index += 1
        elif data and not data.isspace():
            yield Record(index, offset, data)
            index += 1
        offset += length


def _lines(stream: BinaryIO, limit: int) -> Iterator[tuple[bytes | int, int]]:
    """Each line as (its bytes without CR LF or LF — or, for a line longer than ``limit``, the count of those
    bytes — and its length with the terminator)."""
    unfinished: list[bytes] = []  # the line still open at the end of the last block, in pieces
    held = 0  # their bytes
    skipped = -1  # bytes of an over-long line counted so far (-1: none being skipped)
    tail = b""  # the last byte skipped, to tell CR LF from LF
    while block := stream.read(BLOCK):
        if skipped >= 0:
            cut = block.find(b"\n")
            if cut < 0:
                skipped, tail = skipped + len(block), block[-1:]
                continue
            before = block[cut - 1 : cut] if cut else tail
            yield skipped + cut - (before == b"\r"), skipped + cut + 1
            skipped, block = -1, block[cut + 1 :]
        if b"\n" not in block:
            unfinished.append(block)
            held += len(block)
        else:
            if unfinished:  # a line spanning blocks is joined once, however many blocks it took
                block, unfinished, held = b"".join([*unfinished, block]), [], 0
            pieces = block.split(b"\n")
            last = pieces.pop()
            for piece in pieces:
                size = len(piece)
                data = piece[:-1] if piece.endswith(b"\r") else piece
                yield (data if size <= limit else len(data)), size + 1
            if last:
                unfinished, held = [last], len(last)
        if held > limit:
            skipped, tail, unfinished, held = held, unfinished[-1][-1:], [], 0
    if skipped >= 0:
        yield skipped, skipped
    elif unfinished:
        line = b"".join(unfinished)
        yield (line if held <= limit else held), held


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

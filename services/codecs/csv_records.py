"""CSV records in (RFC 4180), CSV answers out.

A request body has no header: fields are in manifest input order (SageMaker's contract).  A file given to
``tripod predict`` has a header: the model's columns are picked by name and the others (ids, labels) ignored.
Quoted fields may hold commas, quotes, CR and LF; rows may end in CRLF or LF; blank lines are skipped, so an
empty text is written ``""``.  An unterminated quote is an error, not a silently swallowed rest of the input,
and so is a field over :data:`MAX_CSV_FIELD_CHARS` characters (texts are cut far shorter before the model
anyway; the limit bounds what one field may cost to read).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence

from services.errors import InvalidInput
from services.runtime.schema import Records

MAX_CSV_FIELD_CHARS = 1 << 20


def csv_chunks(
    lines: Iterable[str], *, header: bool, size: int | None = None, where: str = ""
) -> Iterator[Records]:
    """CSV records in chunks of ``size`` rows (all at once when ``None``).

    Args:
        lines: text read with ``newline=""`` (so quoted line breaks survive).
        header: the first row names the columns (files); else fields are in manifest order (bodies).
        where: prefix of error messages (a file name), empty for a request body.

    Raises:
        InvalidInput: malformed CSV (an unterminated quote, a stray quote, a field over the limit), naming
            the record; an empty file where a header is required.
    """
    csv.field_size_limit(MAX_CSV_FIELD_CHARS)  # process-wide; every CSV reader in Tripod uses this value
    reader = csv.reader(lines, strict=True)
    names: list[str] | None = None
    rows: list[list[str]] = []
    first = 0
    try:
        if header:
            names = next(reader, None)
            if names is None:
                raise InvalidInput(f"{where}the input is empty: expected a header row")
        for row in reader:
            if not row:
                continue
            rows.append(row)
            if size is not None and len(rows) == size:
                yield Records(rows, text=True, header=names, unknown="ignore", first=first)
                first += len(rows)
                rows = []
    except csv.Error as exc:
        raise InvalidInput(f"{where}not valid CSV (record {first + len(rows)}: {_reason(exc)})") from exc
    if rows or first == 0:
        yield Records(rows, text=True, header=names, unknown="ignore", first=first)


def _reason(exc: csv.Error) -> str:
    message = str(exc)
    if message.startswith("field larger than field limit"):
        return f"a field is longer than {MAX_CSV_FIELD_CHARS:,} characters"
    if message == "unexpected end of data":
        return "a quoted field is not closed"
    return message


def decode_csv(text: str) -> Records:
    """A whole CSV request body (no header)."""
    return next(csv_chunks(io.StringIO(text, newline=""), header=False))


def _field(value: object) -> object:
    return json.dumps(value) if isinstance(value, list) else value


def encode_csv(rows: Sequence[Mapping[str, object]]) -> bytes:
    """One line per row, no header, values in each row's key order; lists as JSON arrays."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerows([_field(value) for value in row.values()] for row in rows)
    return out.getvalue().encode()

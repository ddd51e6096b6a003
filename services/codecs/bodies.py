"""A request body as records, by its ``Content-Type``: what ``/invocations`` and a batch-transform job's
in-process engine both decode, so a mini-batch gets the same answer either way."""

from __future__ import annotations

from services.codecs.csv_records import decode_csv
from services.codecs.json_records import decode_json, decode_jsonlines
from services.codecs.media import CSV, JSON, request_format
from services.codecs.text import utf8_text
from services.runtime.schema import Records


def decode_body(body: bytes, content_type: str | None) -> Records:
    """An ``/invocations`` body as records, by its ``Content-Type``.

    Raises:
        UnsupportedMediaType: see :func:`~services.codecs.media.request_format`.
        InvalidInput: not UTF-8, or not parseable as its content type.
    """
    kind = request_format(content_type)
    text = utf8_text(body)
    if kind == CSV:
        return decode_csv(text)
    if kind == JSON:
        return decode_json(text)
    return decode_jsonlines(text)

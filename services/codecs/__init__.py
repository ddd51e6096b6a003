"""Request and answer formats: one decoder and one encoder per format, shared by HTTP and file prediction.

Decoders only parse: bytes or lines in, :class:`~services.runtime.schema.Records` (or
:class:`~services.runtime.schema.Tensors`) out; whether a record fits the model is the schema's business
(``services/runtime/schema.py``).  The same rules hold on every path — UTF-8 only (a BOM is dropped), CRLF or
LF, RFC 4180 quoting, JSON nested at most ``MAX_JSON_DEPTH`` levels with integers of at most 4,300 digits,
CSV fields of at most ``MAX_CSV_FIELD_CHARS`` characters — so the same input gets the same answer or the
same error whether it arrives over HTTP or in a file.
"""

"""Every error Tripod raises on purpose, one class per HTTP status.

The HTTP layer maps these to JSON responses in one place (``services/http_errors.py``); the CLI prints their
message on one line and exits non-zero.  Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class TripodError(Exception):
    """Base class: a mistake in the input or the environment, explained by its message."""

    status_code: int = 400


class InvalidInput(TripodError):
    """400: the request body cannot be decoded (bad JSON, invalid UTF-8, bad CSV)."""

    status_code = 400


class UnknownVariant(TripodError):
    """400: a request named a production variant the server does not have, or a shadow variant."""

    status_code = 400


class ModelNotFound(TripodError):
    """404: no model of that name is served."""

    status_code = 404


class NotAcceptable(TripodError):
    """406: the Accept header names no answer type the route can produce."""

    status_code = 406


class RequestTimeout(TripodError):
    """408: the client did not send the whole request within the read timeout."""

    status_code = 408


class PayloadTooLarge(TripodError):
    """413: the body or the number of records is over the configured limit."""

    status_code = 413


class UnsupportedMediaType(TripodError):
    """415: the Content-Type is not one the route accepts."""

    status_code = 415


class SchemaError(TripodError):
    """422: the body decodes, but a record does not match the model's input schema."""

    status_code = 422


class ModelNotReady(TripodError):
    """503: the model is still loading or failed to load."""

    status_code = 503


class ModelIntegrityError(TripodError):
    """A model directory that is missing files, whose files differ from their digests, or whose manifest does
    not describe its graphs.

    Raised while loading, before any server accepts traffic, so it has no HTTP status of its own.
    """


class StorageError(TripodError):
    """A path that cannot be read or written: a missing directory, a file where a directory must be, no
    permission, a full disk, or an output that would overwrite its input.

    Raised by file work (``tripod predict``, export), never by a request, so it has no HTTP status of its own.
    """

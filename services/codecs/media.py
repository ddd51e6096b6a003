"""Media types: which format a ``Content-Type`` names, and which answer an ``Accept`` asks for."""

from __future__ import annotations

from services.errors import NotAcceptable, UnsupportedMediaType

CSV = "text/csv"
JSON = "application/json"
JSONLINES = "application/jsonlines"
CONTENT_TYPES = {
    CSV: CSV,
    JSON: JSON,
    JSONLINES: JSONLINES,
    "application/jsonl": JSONLINES,
    "application/x-jsonlines": JSONLINES,
    "application/x-ndjson": JSONLINES,
}
"""Every accepted spelling → the format it names."""
ACCEPT_TYPES = (JSON, JSONLINES, CSV)
"""The answer formats, in order of preference for ``*/*`` ties."""


def parse_media_type(value: str) -> tuple[str, dict[str, str]]:
    """``'Text/CSV; charset=UTF-8'`` → ``('text/csv', {'charset': 'utf-8'})``."""
    kind, *params = value.split(";")
    parsed = {}
    for param in params:
        name, _, val = param.partition("=")
        parsed[name.strip().lower()] = val.strip().strip('"').lower()
    return kind.strip().lower(), parsed


def request_format(content_type: str | None) -> str:
    """The body format named by ``Content-Type``.

    Raises:
        UnsupportedMediaType: absent, not one of :data:`CONTENT_TYPES`, or a charset other than UTF-8.
    """
    supported = ", ".join(sorted(CONTENT_TYPES))
    if not content_type:
        raise UnsupportedMediaType(f"Content-Type is required; send one of {supported}")
    kind, params = parse_media_type(content_type)
    if kind not in CONTENT_TYPES:
        raise UnsupportedMediaType(f"Content-Type {kind!r} is not supported; send one of {supported}")
    charset = params.get("charset", "utf-8")
    if charset not in ("utf-8", "utf8"):
        raise UnsupportedMediaType(f"charset {charset!r} is not supported; bodies are UTF-8")
    return CONTENT_TYPES[kind]


def answer_format(accept: str | None, default: str) -> str:
    """The answer type for ``Accept``: the supported type of highest quality, ``default`` for ``*/*``.

    Raises:
        NotAcceptable: no listed type can be produced.
    """
    if not accept or not accept.strip():
        return default
    ranges: list[tuple[float, int, str]] = []
    for position, item in enumerate(accept.split(",")):
        kind, params = parse_media_type(item)
        try:
            quality = float(params.get("q", "1"))
        except ValueError:
            quality = 0.0
        if kind and quality > 0:
            ranges.append((-quality, position, kind))
    for _, _, kind in sorted(ranges):
        if kind in ("*/*", "*"):
            return default
        if kind in CONTENT_TYPES and CONTENT_TYPES[kind] in ACCEPT_TYPES:
            return CONTENT_TYPES[kind]
        if kind.endswith("/*"):
            family = kind.removesuffix("/*")
            matching = [t for t in (default, *ACCEPT_TYPES) if t.startswith(family + "/")]
            if matching:
                return matching[0]
    raise NotAcceptable(
        f"Accept {accept!r} names no type this route produces; use one of {', '.join(ACCEPT_TYPES)}"
    )

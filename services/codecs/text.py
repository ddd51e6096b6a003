"""Bytes → text: UTF-8 only, a leading byte-order mark dropped, errors that say where."""

from __future__ import annotations

from services.errors import InvalidInput

BOM = "\ufeff"


def utf8_text(data: bytes, what: str = "the body") -> str:
    """Decode UTF-8, dropping a leading byte-order mark (spreadsheet programs write one).

    Raises:
        InvalidInput: the bytes are not UTF-8, naming the offset of the first bad byte.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{what} is not UTF-8 text (byte {exc.start}: {exc.reason})") from exc
    return text.removeprefix(BOM)

"""Words of a request's text with their character offsets, so every explained token can be highlighted.

Offsets are indices of Unicode code points into the text the model read (the request's text after the
length cut, which only removes a tail), i.e. Python ``str`` indices — a JavaScript client must convert them
to UTF-16 units for characters outside the Basic Multilingual Plane (docs/explain.md).

Lower-casing is done one character at a time so that offsets never move: Python's ``str.lower`` turns some
characters into two (``"İ".lower()`` is ``"i̇"``), while the ONNX ``StringNormalizer`` the TF-IDF stage uses
maps each character to one; we keep the first code point of the lower-case form, as it does.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

WORD = re.compile(r"\w+")
"""What a word is for the model-agnostic method: a run of Unicode word characters (punctuation and spaces
stay, so removing a word never glues its neighbours together)."""

Span = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Token:
    text: str
    start: int
    end: int


def lower_in_place(text: str) -> str:
    """``text`` lower-cased character by character: same length, same offsets."""
    if text.isascii():
        return text.lower()
    return "".join(char.lower()[0] for char in text)


def words(text: str) -> list[Token]:
    """The words of ``text`` (:data:`WORD`) with their offsets."""
    return [Token(match.group(), match.start(), match.end()) for match in WORD.finditer(text)]


@lru_cache(maxsize=16)
def _pattern(token_pattern: str) -> re.Pattern[str]:
    return re.compile(token_pattern)


def ngram_spans(text: str, token_pattern: str, *, lowercase: bool, ngram_max: int) -> dict[str, list[Span]]:
    """Every n-gram (1..``ngram_max`` words) a vectorizer with this pattern finds in ``text``, as the
    vectorizer writes it (words joined by one space), with the span of each occurrence in ``text``."""
    source = lower_in_place(text) if lowercase else text
    found = [(m.group(), m.start(), m.end()) for m in _pattern(token_pattern).finditer(source)]
    spans: dict[str, list[Span]] = defaultdict(list)
    for n in range(1, ngram_max + 1):
        for first in range(len(found) - n + 1):
            window = found[first : first + n]
            spans[" ".join(word for word, _, _ in window)].append((window[0][1], window[-1][2]))
    return spans


def remove_spans(text: str, spans: Sequence[Span]) -> str:
    """``text`` without the characters of ``spans`` (sorted, not overlapping)."""
    if not spans:
        return text
    kept: list[str] = []
    position = 0
    for start, end in spans:
        kept.append(text[position:start])
        position = end
    kept.append(text[position:])
    return "".join(kept)

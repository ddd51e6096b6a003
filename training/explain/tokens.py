"""Words in a text and the share of an attribution each one gets: the highlighted examples of the report.

Two kinds of attributions arrive here.  A linear model's are per n-gram of its vectorizer (``love``,
``love it``), found where serving finds them (:func:`services.runtime.explain.tokens.ngram_spans`, the
vectorizer's own word pattern); the model-agnostic explainer's are per token of ``shap.maskers.Text`` (a word
with the separator after it).  Both end as :class:`Span` objects: characters ``[start, end)`` of the original
text and one value per model output.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.artifacts import TextTokenizer
from services.runtime.explain.tokens import ngram_spans as find_ngrams
from services.runtime.explain.tokens import words

_EDGE_PUNCTUATION = re.compile(r"^\W+|\W+$")


@dataclass(frozen=True)
class Span:
    """Characters ``[start, end)`` of a text and their attribution, one value per model output."""

    start: int
    end: int
    values: np.ndarray


def ngram_spans(
    text: str, tokenizer: TextTokenizer, contributions: Mapping[str, np.ndarray], n_outputs: int
) -> list[Span]:
    """Each word's share of the n-gram contributions of one text.

    An n-gram's contribution is split equally over its occurrences in the text, and each occurrence's share
    equally over its ``n`` words, so the words add up to the sum of the text's n-gram contributions.

    Args:
        text: The text the model read (offsets refer to it).
        tokenizer: How the vectorizer cut this column into words.
        contributions: n-gram as the vectorizer writes it (words joined by one space) → values per output.
        n_outputs: Values per span.

    Returns:
        One span per word of the text that has a share, in order (a word in no n-gram of the model has none).
    """
    found = find_ngrams(
        text, tokenizer.token_pattern, lowercase=tokenizer.lowercase, ngram_max=tokenizer.ngram_max
    )
    words = sorted({span for term, spans in found.items() if " " not in term for span in spans})
    first_word = {start: i for i, (start, _) in enumerate(words)}
    shares = np.zeros((len(words), n_outputs))
    for term, value in contributions.items():
        occurrences = found.get(term, [])
        n = term.count(" ") + 1
        for start, _ in occurrences:
            first = first_word[start]
            shares[first : first + n] += np.asarray(value, dtype=np.float64) / (len(occurrences) * n)
    return [Span(start, end, shares[i]) for i, (start, end) in enumerate(words) if shares[i].any()]


class WordTokenizer:
    """The tokenizer ``shap.maskers.Text`` masks with: the words of serving's model-agnostic method
    (:data:`services.runtime.explain.tokens.WORD`), each token owning the characters up to the next word.

    shap's own default tokenizer drops what precedes the first word and follows the last (a review's final
    "!"), so the text it explains is not quite the one the model reads: on a MiniLM model the row's output
    moved by 4e-4.  Here the first token starts at the text's start and the last ends at its end, so every
    character belongs to a token (the masker still turns runs of whitespace into one space).  A text without a
    word is one token; the empty string has none (shap probes it to find special tokens).
    """

    def __call__(self, text: str, return_offsets_mapping: bool = True) -> dict[str, list[Any]]:
        found = words(text)
        if not found:
            spans = [(0, len(text))] if text else []
        else:
            spans = [(token.start, token.end) for token in found]
            spans[0] = (0, spans[0][1])
            spans[-1] = (spans[-1][0], len(text))
        encoded: dict[str, list[Any]] = {"input_ids": [text[start:end] for start, end in spans]}
        if return_offsets_mapping:
            encoded["offset_mapping"] = spans
        return encoded


def has_words(text: str) -> bool:
    """Whether the masker finds anything to explain in ``text``."""
    return bool(words(text))


def token_spans(text: str, tokens: Sequence[str], values: np.ndarray) -> list[Span]:
    """``shap.maskers.Text`` tokens (each with its trailing separator) located in ``text``.

    Args:
        text: The explained text.
        tokens: The masker's tokens, in order (``Explanation.data`` of one row).
        values: ``(n_tokens, n_outputs)`` attributions.
    """
    spans = []
    position = 0
    for token, value in zip(tokens, values, strict=True):
        word = token.strip()
        start = text.find(word, position) if word else -1
        if start < 0:
            continue
        end = start + len(word)
        spans.append(Span(start, end, np.asarray(value, dtype=np.float64)))
        position = end
    return spans


def token_key(token: str) -> str:
    """A masker token as an entry of the report's vocabulary: lower-cased, without edge punctuation (a token
    of punctuation only keeps it)."""
    stripped = token.strip().lower()
    return _EDGE_PUNCTUATION.sub("", stripped) or stripped

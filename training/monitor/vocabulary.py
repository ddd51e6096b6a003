"""The model's vocabulary per text column, and the out-of-vocabulary rate of texts against it.

A word the model never saw in training contributes nothing to a TF-IDF model's answer, so a rising share of
unknown words is traffic the model cannot read (another language, new product names, a tokenization change).
The vocabulary comes, in order of preference, from:

1. ``explainer_features.json`` of a linear model: its ``text`` terms without a space (unigrams), cut by the
   tokenizer the manifest's ``explainer.tokenizers`` records (``token_pattern``, ``lowercase``);
2. ``transformer.onnx``: each ``TfIdfVectorizer``'s unigram pool (gradient-boosted trees, ensembles), or the
   ``LabelEncoder`` word ids after a ``Tokenizer`` (fastText), cut by that graph's ``Tokenizer``
   (``tokenexp``) after its ``StringNormalizer`` (``case_change_action``), read with ``onnx``;
3. nothing: a WordPiece graph (MiniLM) splits an unknown word into known pieces and almost never emits
   ``[UNK]``, so its unknown rate would not move with the traffic; the check is skipped and says so.

Only unigrams are compared: an unknown bigram of known words is not a new word.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.artifacts import EXPLAINER_FEATURES_FILE, Manifest
from training.monitor.errors import MonitorError

EXPLAINER_SOURCE = "explainer_features.json"
TFIDF_SOURCE = "transformer.onnx TfIdfVectorizer"
LABEL_ENCODER_SOURCE = "transformer.onnx LabelEncoder"
_RE2_ESCAPE = re.compile(r"\\x\{([0-9A-Fa-f]{1,8})\}")


@dataclass(frozen=True)
class Vocabulary:
    """The words a model knows for one text column and how it cuts a text into words.

    Attributes:
        column: the text column.
        source: where the words were read (:data:`EXPLAINER_SOURCE`, :data:`TFIDF_SOURCE`, …).
        token_pattern: one word, as a Python regular expression.
        lowercase: texts are lower-cased before they are cut.
        words: the known words.
    """

    column: str
    source: str
    token_pattern: str
    lowercase: bool
    words: frozenset[str]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_regex", re.compile(self.token_pattern))

    def tokens(self, text: str) -> list[str]:
        """The words of ``text`` as the model's tokenizer cuts them."""
        regex: re.Pattern[str] = self._regex  # type: ignore[attr-defined]
        return regex.findall(text.lower() if self.lowercase else text)

    def count(self, texts: Iterable[str]) -> tuple[int, int]:
        """``(tokens, unknown tokens)`` over ``texts``."""
        regex: re.Pattern[str] = self._regex  # type: ignore[attr-defined]
        words = self.words
        total = unknown = 0
        for text in texts:
            found = regex.findall(text.lower() if self.lowercase else text)
            total += len(found)
            unknown += sum(1 for token in found if token not in words)
        return total, unknown

    def json(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "source": self.source,
            "token_pattern": self.token_pattern,
            "lowercase": self.lowercase,
            "size": len(self.words),
            "words": sorted(self.words),
        }

    @classmethod
    def from_json(cls, payload: Mapping[str, Any]) -> Vocabulary:
        try:
            return cls(
                column=str(payload["column"]),
                source=str(payload["source"]),
                token_pattern=str(payload["token_pattern"]),
                lowercase=bool(payload["lowercase"]),
                words=frozenset(str(word) for word in payload["words"]),
            )
        except (KeyError, TypeError, re.error) as exc:
            raise MonitorError(f"the baseline's vocabulary is not valid ({exc})") from exc


def model_vocabularies(model_dir: Path, manifest: Manifest) -> tuple[dict[str, Vocabulary], dict[str, str]]:
    """Each text column's vocabulary, and why a text column has none.

    Args:
        model_dir: a verified model directory.
        manifest: its manifest.

    Returns:
        ``(vocabularies by column, reasons by column)``; every text column is in exactly one of them.
    """
    text_columns = [column.name for column in manifest.inputs if column.role == "text"]
    found: dict[str, Vocabulary] = {}
    if manifest.explainer is not None and manifest.explainer.tokenizers:
        found = _from_explainer(model_dir / manifest.explainer.features_file, manifest)
    if not all(column in found for column in text_columns):
        from_graph = _from_transformer(model_dir / manifest.stages["transformer"].file)
        found = {**from_graph, **found}
    vocabularies = {column: found[column] for column in text_columns if column in found}
    reasons = {
        column: _skip_reason(manifest.candidate.family) for column in text_columns if column not in found
    }
    return vocabularies, reasons


def _skip_reason(family: str) -> str:
    if family in ("minilm", "mpnet"):
        return (
            f"skipped: a WordPiece tokenizer ({family}) splits unknown words into known pieces and almost never "
            "emits [UNK], so an unknown-word rate would not show new vocabulary"
        )
    return f"skipped: the {family} model's transformer.onnx has no word vocabulary Tripod can read"


def _from_explainer(path: Path, manifest: Manifest) -> dict[str, Vocabulary]:
    assert manifest.explainer is not None
    try:
        features = json.loads(path.read_text(encoding="utf-8"))["features"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MonitorError(f"cannot read the model's {EXPLAINER_FEATURES_FILE} ({exc})") from exc
    words: dict[str, set[str]] = {}
    for feature in features:
        term = feature.get("term")
        if feature.get("kind") == "text" and isinstance(term, str) and " " not in term:
            words.setdefault(str(feature.get("column")), set()).add(term)
    return {
        tokenizer.column: Vocabulary(
            column=tokenizer.column,
            source=EXPLAINER_SOURCE,
            token_pattern=tokenizer.token_pattern,
            lowercase=tokenizer.lowercase,
            words=frozenset(words.get(tokenizer.column, ())),
        )
        for tokenizer in manifest.explainer.tokenizers
    }


def python_pattern(tokenexp: str) -> str:
    """An re2 ``tokenexp`` as a Python pattern: re2's ``\\x{E9}`` is Python's ``\\U000000E9``; the classes,
    alternations and repetitions Tripod's graphs use are written alike in both."""
    return _RE2_ESCAPE.sub(lambda match: f"\\U{int(match.group(1), 16):08X}", tokenexp)


def _from_transformer(path: Path) -> dict[str, Vocabulary]:
    """Vocabularies read from a transformer graph's ``TfIdfVectorizer`` or ``LabelEncoder`` nodes."""
    import onnx
    from onnx import helper

    try:
        graph = onnx.load(str(path)).graph
    except OSError as exc:  # the directory was verified by its digests: only reading can fail
        raise MonitorError(f"cannot read {path.name} ({exc})") from exc
    producers = {output: node for node in graph.node for output in node.output}
    graph_inputs = {value.name for value in graph.input}

    def attribute(node: Any, name: str) -> Any:
        for item in node.attribute:
            if item.name == name:
                value = helper.get_attribute_value(item)
                return value.decode("utf-8") if isinstance(value, bytes) else value
        return None

    def upstream(node: Any) -> tuple[set[str], Any, Any]:
        """The graph inputs feeding ``node``, and the nearest Tokenizer and StringNormalizer above it."""
        columns: set[str] = set()
        tokenizer = normalizer = None
        pending, seen = list(node.input), set()
        while pending:
            name = pending.pop()
            if name in seen or not name:
                continue
            seen.add(name)
            if name in graph_inputs:
                columns.add(name)
            producer = producers.get(name)
            if producer is None:
                continue
            if producer.op_type == "Tokenizer" and tokenizer is None:
                tokenizer = producer
            elif producer.op_type == "StringNormalizer" and normalizer is None:
                normalizer = producer
            pending.extend(producer.input)
        return columns, tokenizer, normalizer

    words: dict[str, set[str]] = {}
    tokenizers: dict[str, tuple[str, bool, str]] = {}
    for node in graph.node:
        if node.op_type == "TfIdfVectorizer":
            pool = [
                p.decode("utf-8") if isinstance(p, bytes) else p
                for p in attribute(node, "pool_strings") or []
            ]
            counts = list(attribute(node, "ngram_counts") or [0])
            if (attribute(node, "min_gram_length") or 1) > 1 or not pool:
                continue
            unigrams, source = pool[: counts[1] if len(counts) > 1 else len(pool)], TFIDF_SOURCE
        elif node.op_type == "LabelEncoder" and attribute(node, "keys_strings"):
            unigrams = [
                k.decode("utf-8") if isinstance(k, bytes) else k for k in attribute(node, "keys_strings")
            ]
            source = LABEL_ENCODER_SOURCE
        else:
            continue
        columns, tokenizer, normalizer = upstream(node)
        pattern = attribute(tokenizer, "tokenexp") if tokenizer is not None else None
        if not pattern:
            continue  # a separator tokenizer or no tokenizer: no word pattern to apply
        lowercase = normalizer is not None and attribute(normalizer, "case_change_action") == "LOWER"
        for column in columns:
            words.setdefault(column, set()).update(unigrams)
            tokenizers.setdefault(column, (python_pattern(pattern), lowercase, source))
    return {
        column: Vocabulary(column, source, pattern, lowercase, frozenset(words[column]))
        for column, (pattern, lowercase, source) in tokenizers.items()
    }

"""The exact explainer of a linear model: ``explainer.onnx`` on the features the transformer computed.

The graph gives every feature's contribution to every class's margin against the all-absent baseline
(``services/artifacts.py``, :class:`~services.artifacts.ExplainerSpec`); here each non-zero feature becomes a
:class:`~.explanation.Part` — an n-gram with the spans of its occurrences in the text, a categorical value, or
a numeric field — so the answer can say which words of the request moved it.  A feature that is zero (a word
the text does not contain) contributes exactly zero and is never listed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import overload

import numpy as np

from services.artifacts import (
    BASE_VALUES,
    CONTRIBUTIONS,
    FEATURES,
    ExplainerFeatures,
    ExplainerSpec,
    InputColumn,
)
from services.errors import ModelIntegrityError
from services.runtime.explain.explanation import Explanation, Part
from services.runtime.explain.tokens import Span, ngram_spans
from services.runtime.sessions import inference_session
from services.runtime.stages import OnnxStage

CHUNK_ROWS = 16
"""Rows per explainer call: its output is ``rows × classes × features`` floats (16 × 3 × 15,000 = 2.9 MB)."""


class LinearExplainer:
    """``explainer.onnx`` of one model, opened and checked against the manifest and the features it reads."""

    method = "linear"

    def __init__(
        self,
        directory: Path,
        spec: ExplainerSpec,
        inputs: list[InputColumn],
        n_outputs: int,
        *,
        threads: int = 1,
    ) -> None:
        path = directory / spec.stage.file
        stage = OnnxStage(inference_session(path, threads), "explainer")
        stage.require([FEATURES], [CONTRIBUTIONS, BASE_VALUES])
        stage.matches(spec.stage)
        try:
            listed = ExplainerFeatures.model_validate_json((directory / spec.features_file).read_bytes())
        except ValueError as exc:
            raise ModelIntegrityError(f"{spec.features_file} is not a valid feature list: {exc}") from exc
        self.stage = stage
        self.features = listed.features
        width = stage.width(FEATURES, output=False)
        if width is not None and width != len(self.features):
            raise ModelIntegrityError(
                f"{spec.stage.file} takes {width} features but {spec.features_file} names {len(self.features)}"
            )
        self.base_values = np.asarray(
            stage.run({FEATURES: np.zeros((1, len(self.features)), np.float32)})[BASE_VALUES],
            dtype=np.float64,
        ).reshape(-1)
        if len(self.base_values) != n_outputs:
            raise ModelIntegrityError(
                f"{spec.stage.file} explains {len(self.base_values)} outputs; the model has {n_outputs}"
            )
        names = [column.name for column in inputs]
        unknown = {feature.column for feature in self.features} - set(names)
        if unknown:
            raise ModelIntegrityError(
                f"{spec.features_file} names columns the model does not take: {sorted(unknown)}"
            )
        self.column_index = {name: i for i, name in enumerate(names)}
        self.tokenizers = {tokenizer.column: tokenizer for tokenizer in spec.tokenizers}

    def explain(self, columns: np.ndarray, features: np.ndarray) -> list[Explanation]:
        """Explanations of ``columns`` (validated rows) from their ``features`` (the transformer's output)."""
        features = np.asarray(features, dtype=np.float32)
        explained: list[Explanation] = []
        for start in range(0, len(features), CHUNK_ROWS):
            block = features[start : start + CHUNK_ROWS]
            contributions = self.stage.run({FEATURES: block})[CONTRIBUTIONS]
            for offset, row in enumerate(block):
                explained.append(self._record(columns[start + offset], row, contributions[offset]))
        return explained

    def _record(self, values: np.ndarray, row: np.ndarray, contributions: np.ndarray) -> Explanation:
        present = np.flatnonzero(row)
        return Explanation(
            method=self.method,
            output="margin",
            parts=_Parts(self, values, present),
            contributions=np.asarray(contributions[:, present], dtype=np.float64),
            base_values=self.base_values,
            values=self.base_values + np.asarray(contributions, dtype=np.float64).sum(axis=1),
        )

    def part(self, values: np.ndarray, index: int, spans: dict[str, dict[str, list[Span]]]) -> Part:
        """Feature ``index`` of a record as a :class:`Part` (``spans`` caches each text column's n-grams)."""
        feature = self.features[index]
        value = values[self.column_index[feature.column]]
        if feature.kind == "text":
            found = spans.get(feature.column)
            if found is None:
                tokenizer = self.tokenizers.get(feature.column)
                found = spans[feature.column] = (
                    ngram_spans(
                        str(value),
                        tokenizer.token_pattern,
                        lowercase=tokenizer.lowercase,
                        ngram_max=tokenizer.ngram_max,
                    )
                    if tokenizer is not None
                    else {}
                )
            term = feature.term or ""
            return Part(feature.column, term, tuple(found.get(term, ())))
        if feature.kind == "categorical":
            return Part(feature.column, feature.term or "")
        number = float(value)
        return Part(feature.column, "" if math.isnan(number) else repr(number))


class _Parts(Sequence[Part]):
    """A record's present features as parts, each built when first read: an answer shows its ``top_k``, so
    the n-gram offsets of the other features are never worked out."""

    def __init__(self, explainer: LinearExplainer, values: np.ndarray, present: np.ndarray) -> None:
        self._explainer, self._values = explainer, values
        self._present = present.tolist()
        self._built: dict[int, Part] = {}
        self._spans: dict[str, dict[str, list[Span]]] = {}

    def __len__(self) -> int:
        return len(self._present)

    @overload
    def __getitem__(self, position: int) -> Part: ...
    @overload
    def __getitem__(self, position: slice) -> list[Part]: ...
    def __getitem__(self, position: int | slice) -> Part | list[Part]:
        if isinstance(position, slice):
            return [self[i] for i in range(*position.indices(len(self)))]
        part = self._built.get(position)
        if part is None:
            index = self._present[position]  # IndexError past the end, as a list
            part = self._built[position] = self._explainer.part(self._values, index, self._spans)
        return part

"""The exact explainer of a linear model: ``explainer.onnx`` on the features the transformer computed.

The graph gives every feature's contribution to every class's margin against the all-absent baseline
(``services/artifacts.py``, :class:`~services.artifacts.ExplainerSpec`); here each non-zero feature becomes a
:class:`~.explanation.Part` — an n-gram with the spans of its occurrences in the text, a categorical value, or
a numeric field — so the answer can say which words of the request moved it.  A feature that is zero (a word
the text does not contain) contributes exactly zero and is never listed.
"""

from __future__ import annotations

import math
from pathlib import Path

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
        spans_by_column: dict[str, dict[str, list[Span]]] = {}
        parts: list[Part] = []
        for index in present.tolist():
            feature = self.features[index]
            value = values[self.column_index[feature.column]]
            if feature.kind == "text":
                spans = spans_by_column.get(feature.column)
                if spans is None:
                    tokenizer = self.tokenizers.get(feature.column)
                    spans = spans_by_column[feature.column] = (
                        ngram_spans(
                            str(value),
                            tokenizer.token_pattern,
                            lowercase=tokenizer.lowercase,
                            ngram_max=tokenizer.ngram_max,
                        )
                        if tokenizer is not None
                        else {}
                    )
                parts.append(
                    Part(feature.column, feature.term or "", tuple(spans.get(feature.term or "", ())))
                )
            elif feature.kind == "categorical":
                parts.append(Part(feature.column, feature.term or ""))
            else:
                number = float(value)
                parts.append(Part(feature.column, "" if math.isnan(number) else repr(number)))
        chosen = np.asarray(contributions[:, present], dtype=np.float64)
        return Explanation(
            method=self.method,
            output="margin",
            parts=parts,
            contributions=chosen,
            base_values=self.base_values,
            values=self.base_values + np.asarray(contributions, dtype=np.float64).sum(axis=1),
        )

"""Decoded records → validated, clipped columns: the one place where a record meets the model's inputs.

Codecs (``services/codecs``) only parse formats; what they found travels here as one of two shapes:

- :class:`Records`: one item per record — an object keyed by column, or a sequence of values in manifest
  order (CSV rows, JSON lists, SageMaker's ``{"features": [...]}``); CSV text parses numbers here; a named
  header (a CSV file's first row) picks the model's columns by name;
- :class:`Tensors`: one flat list of values per input name (the Open Inference Protocol).

:class:`InputSchema` turns either into an object array ``(n_samples, n_inputs)`` in manifest order — strings
for string columns, floats (NaN = missing) for numeric ones — and names the record and field of the first
value that does not fit.  Then every text is checked (no lone surrogates, no NUL) and cut to the configured
length, whichever path the record came by, so a long review gets the same answer everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from services.artifacts import InputColumn
from services.errors import InvalidInput, SchemaError

Unknown = Literal["refuse", "ignore"]
FEATURES = "features"
"""SageMaker's key for a record given as a list of values (``{"features": [...]}``)."""


@dataclass(frozen=True, slots=True)
class Records:
    """Records as a codec decoded them, not yet checked against the model's inputs.

    Attributes:
        items: one per record: a mapping from column name to value, or a sequence of values in manifest order
            (in ``header`` order when a header is given).
        text: the values are CSV text: numeric columns parse them (an empty field is a missing number).
        header: the names of positional values (a CSV header): the model's columns are picked by name and
            the rest ignored.
        unknown: what to do with fields the model does not take: ``refuse`` (HTTP: a misspelt field is
            reported instead of silently predicting on an empty value) or ``ignore`` (files carry ids and
            labels beside the inputs).
        first: index of the first item in the whole input, so errors name records of a streamed file.
    """

    items: Sequence[object]
    text: bool = False
    header: Sequence[str] | None = None
    unknown: Unknown = "refuse"
    first: int = 0

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True, slots=True)
class Tensors:
    """One flat list of values per input name, all of one length (the Open Inference Protocol's shape)."""

    columns: Mapping[str, Sequence[object]]

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()), ()))


Decoded = Records | Tensors


class InputSchema:
    """The model's input columns, and the rules every record must follow to reach the stages."""

    def __init__(self, inputs: Sequence[InputColumn], *, max_text_chars: int) -> None:
        self.inputs = list(inputs)
        self.names = [column.name for column in self.inputs]
        self.expected = frozenset(self.names)
        self.max_text_chars = max_text_chars

    def columns(self, decoded: Decoded) -> np.ndarray:
        """Validate and stack decoded records into an object array ``(n_samples, n_inputs)``, then check and
        clip their text.

        Raises:
            SchemaError: no records, or a record that does not fit (named by index and field).
            InvalidInput: a text with a lone surrogate or a NUL character.
        """
        if isinstance(decoded, Tensors):
            return self.clip(self._from_tensors(decoded))
        return self.clip(self._from_records(decoded), first=decoded.first)

    # -- shapes -------------------------------------------------------------------------------------------

    def _from_records(self, records: Records) -> np.ndarray:
        if not records.items:
            raise SchemaError("the input holds no records")
        n_inputs = len(self.inputs)
        positions = self._header_positions(records.header) if records.header is not None else None
        columns = np.empty((len(records.items), n_inputs), dtype=object)
        for row, given in enumerate(records.items):
            index = records.first + row
            # SageMaker's {"features": [...]} is a list of values in manifest order; a model of one input also
            # takes the bare value ("a review" as a JSON Lines record, or what an InputFilter selected).
            item = given[FEATURES] if isinstance(given, Mapping) and self._is_feature_list(given) else given
            if n_inputs == 1 and not isinstance(item, Mapping | list | tuple) and positions is None:
                item = [item]
            if isinstance(item, Mapping):
                if records.unknown == "refuse" and not item.keys() <= self.expected:
                    unknown = sorted(map(str, item.keys() - self.expected))
                    raise SchemaError(
                        f"record {index}: unknown field(s) {unknown}; the model takes {self.names}"
                    )
                for position, column in enumerate(self.inputs):
                    if column.name not in item:
                        raise SchemaError(f"record {index}: field {column.name!r} is required")
                    columns[row, position] = self._value(item[column.name], column, index, records.text)
            elif isinstance(item, Sequence) and not isinstance(item, str | bytes):
                if positions is None:
                    if len(item) != n_inputs:
                        raise SchemaError(
                            f"record {index}: expected {n_inputs} value(s) in the order {self.names}, got {len(item)}"
                        )
                    values: Sequence[object] = item
                else:
                    if len(item) != len(records.header or ()):
                        raise SchemaError(
                            f"record {index}: {len(item)} field(s) where the header has {len(records.header or ())}"
                        )
                    values = [item[p] for p in positions]
                for position, (column, value) in enumerate(zip(self.inputs, values, strict=True)):
                    columns[row, position] = self._value(value, column, index, records.text)
            else:
                raise SchemaError(f"record {index}: expected an object with fields {self.names}")
        return columns

    def _is_feature_list(self, item: Mapping[object, object]) -> bool:
        return (
            len(item) == 1
            and FEATURES in item
            and FEATURES not in self.expected
            and isinstance(item[FEATURES], list)
        )

    def _header_positions(self, header: Sequence[str]) -> list[int]:
        missing = [name for name in self.names if name not in header]
        if missing:
            raise SchemaError(f"no column(s) {missing}; the columns are {list(header)}")
        return [list(header).index(name) for name in self.names]

    def _from_tensors(self, tensors: Tensors) -> np.ndarray:
        unknown = sorted(set(tensors.columns) - self.expected)
        if unknown:
            raise SchemaError(f"unknown input(s) {unknown}; the model takes {self.names}")
        for name in self.names:
            if name not in tensors.columns:
                raise SchemaError(f"input {name!r} is required; the model takes {self.names}")
        lengths = {len(values) for values in tensors.columns.values()}
        if len(lengths) > 1:
            raise SchemaError(
                f"inputs have different lengths {sorted(lengths)}; each must hold one element per record"
            )
        n = lengths.pop()
        if n == 0:
            raise SchemaError("the input holds no records")
        columns = np.empty((n, len(self.inputs)), dtype=object)
        for position, column in enumerate(self.inputs):
            for index, value in enumerate(tensors.columns[column.name]):
                columns[index, position] = self._value(value, column, index, False, what="input")
        return columns

    # -- values -------------------------------------------------------------------------------------------

    @staticmethod
    def _value(value: object, column: InputColumn, index: int, text: bool, what: str = "field") -> object:
        """One value for its column: a string for string columns; a finite number, or a missing value (None,
        NaN, an empty CSV field) for numeric ones."""
        if column.dtype == "string":
            if isinstance(value, str):
                return value
            raise SchemaError(
                f"record {index}: {what} {column.name!r} must be a string, got {type(value).__name__}"
            )
        if text and isinstance(value, str):
            if not value.strip():
                return math.nan
            try:
                number = float(value)
            except ValueError:
                raise SchemaError(
                    f"record {index}: {what} {column.name!r} must be a number, got {value[:40]!r}"
                ) from None
        elif value is None:
            return math.nan
        elif isinstance(value, int | float | np.integer | np.floating) and not isinstance(
            value, bool | np.bool_
        ):
            try:
                number = float(value)
            except OverflowError:
                raise SchemaError(
                    f"record {index}: {what} {column.name!r} is too large for a number"
                ) from None
        else:
            raise SchemaError(
                f"record {index}: {what} {column.name!r} must be a number or null, got {type(value).__name__}"
            )
        if math.isinf(number):
            raise SchemaError(f"record {index}: {what} {column.name!r} must be a finite number, got {number}")
        return number

    def clip(self, columns: np.ndarray, *, first: int = 0) -> np.ndarray:
        """Cut every string field to ``max_text_chars`` and refuse text the stages cannot take.

        The cut bounds the transformer's work per record whatever a client sends (a TF-IDF answer depends on
        the words, and the first ``max_text_chars`` characters carry them).  A lone surrogate (JSON's
        ``"\\ud800"``) cannot become UTF-8 for onnxruntime, and a NUL character would end the text early in
        graphs that read C strings, so both are the client's mistake, named by record and field.

        Args:
            columns: object array ``(n_samples, n_inputs)`` in manifest input order; string fields are
                replaced in place when cut.
            first: index of the first row in the whole input, for error messages.

        Raises:
            InvalidInput: a string field holds a lone surrogate or a NUL character.
        """
        limit = self.max_text_chars
        for position, column in enumerate(self.inputs):
            if column.dtype != "string":
                continue
            for row, given in enumerate(columns[:, position]):
                index = first + row
                value = given
                if len(value) > limit:
                    value = columns[row, position] = value[:limit]
                if not value.isascii():
                    try:
                        value.encode("utf-8")
                    except UnicodeEncodeError as exc:
                        raise InvalidInput(
                            f"record {index}: field {column.name!r} is not valid Unicode text "
                            f"(character {exc.start}: {exc.reason})"
                        ) from exc
                if "\x00" in value:
                    raise InvalidInput(
                        f"record {index}: field {column.name!r} holds a NUL character "
                        f"(character {value.index(chr(0))}); text must not contain U+0000"
                    )
        return columns

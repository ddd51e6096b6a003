"""Predictions over files: CSV (with a header) or JSON Lines in, JSON Lines or CSV out.

``tripod predict`` runs this with the same :class:`InferencePipeline` the HTTP stages use.  Rows are read in
mini-batches, so a file far larger than memory streams through; output row ``i`` answers input row ``i``.
Columns the model does not take are ignored here (a file usually carries ids and labels beside the text);
a missing input column is an error naming the columns the file has.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from itertools import islice
from pathlib import Path
from typing import IO

import numpy as np
from tqdm import tqdm

from services.errors import InvalidInput, SchemaError
from services.artifacts import InputColumn
from services.runtime import InferencePipeline, PredictionBatch, coerce_value, csv_value

INPUT_FORMATS = (".csv", ".jsonl")
OUTPUT_FORMATS = (".csv", ".jsonl")


def _suffix(path: Path, allowed: Sequence[str], what: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in allowed:
        raise InvalidInput(
            f"{path}: {what} must end in one of {', '.join(allowed)}, not {suffix or '(none)'}"
        )
    return suffix


def _csv_rows(handle: IO[str], path: Path, inputs: Sequence[InputColumn]) -> Iterator[list[object]]:
    names = [column.name for column in inputs]
    reader = csv.reader(handle)
    header = next(reader, None)
    if header is None:
        raise InvalidInput(f"{path} is empty: expected a header row with {names}")
    missing = [name for name in names if name not in header]
    if missing:
        raise SchemaError(f"{path} has no column(s) {missing}; its columns are {header}")
    positions = [header.index(name) for name in names]
    for line, row in enumerate(reader, start=2):
        if len(row) != len(header):
            raise InvalidInput(f"{path} row {line}: {len(row)} fields where the header has {len(header)}")
        yield [
            csv_value(row[position], column, f"{path} row {line}: field {column.name!r}")
            for position, column in zip(positions, inputs, strict=True)
        ]


def _jsonl_rows(handle: IO[str], path: Path, inputs: Sequence[InputColumn]) -> Iterator[list[object]]:
    for line_number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{path} line {line_number}: not valid JSON ({exc.msg})") from exc
        if not isinstance(record, dict):
            raise SchemaError(f"{path} line {line_number}: expected a JSON object")
        yield [
            coerce_value(record.get(column.name), column, f"{path} line {line_number}: field {column.name!r}")
            for column in inputs
        ]


def read_rows(handle: IO[str], path: Path, inputs: Sequence[InputColumn]) -> Iterator[list[object]]:
    """Yield each input row as the model's input columns, in manifest order, of their column types."""
    if _suffix(path, INPUT_FORMATS, "the input file") == ".csv":
        return _csv_rows(handle, path, inputs)
    return _jsonl_rows(handle, path, inputs)


class PredictionWriter:
    """Writes prediction batches as JSON Lines, or as CSV: ``predicted_label``, ``probability`` and one
    ``probability_<label>`` column per label for classification; ``predicted_value`` for regression."""

    def __init__(self, handle: IO[str], path: Path, class_names: Sequence[str]) -> None:
        self.handle = handle
        self.format = _suffix(path, OUTPUT_FORMATS, "the output file")
        self._csv = csv.writer(handle) if self.format == ".csv" else None
        if self._csv is not None:
            header = (
                ["predicted_label", "probability", *(f"probability_{c}" for c in class_names)]
                if class_names
                else ["predicted_value"]
            )
            self._csv.writerow(header)

    def write(self, batch: PredictionBatch) -> None:
        if self._csv is None:
            for record in batch.records():
                self.handle.write(json.dumps(record) + "\n")
        elif batch.values is not None:
            self._csv.writerows([f"{value:.9g}"] for value in batch.values)
        else:
            assert batch.labels is not None and batch.probabilities is not None
            for label, row in zip(batch.labels, batch.probabilities, strict=True):
                self._csv.writerow([label, f"{row.max():.6g}", *(f"{p:.6g}" for p in row)])


def count_rows(path: Path, inputs: Sequence[InputColumn]) -> int:
    """A first pass for the progress bar's total (CSV rows may span lines, so lines are not rows)."""
    with _open_text(path) as handle:
        return sum(1 for _ in read_rows(handle, path, inputs))


def _open_text(path: Path) -> IO[str]:
    if not path.is_file():
        raise InvalidInput(f"{path} does not exist")
    return path.open("r", encoding="utf-8", newline="")


def predict_file(
    pipeline: InferencePipeline,
    source: Path,
    destination: Path,
    *,
    batch_size: int = 256,
    progress: bool = True,
) -> int:
    """Predict every row of ``source`` into ``destination``; returns the number of rows written.

    Raises:
        InvalidInput: unreadable or non-UTF-8 input, or an unsupported file type.
        SchemaError: a missing input column or a value of the wrong type.
    """
    _suffix(destination, OUTPUT_FORMATS, "the output file")
    partial = destination.with_name(destination.name + ".part")
    written, total = 0, -1
    try:
        total = count_rows(source, pipeline.inputs)
        with ExitStack() as stack:
            handle = stack.enter_context(_open_text(source))
            out = stack.enter_context(partial.open("w", encoding="utf-8", newline=""))
            writer = PredictionWriter(out, destination, pipeline.class_names)
            bar = stack.enter_context(tqdm(total=total, unit="rows", disable=not progress, desc="predict"))
            rows = read_rows(handle, source, pipeline.inputs)
            while chunk := list(islice(rows, batch_size)):
                writer.write(pipeline.predict_array(np.array(chunk, dtype=object)))
                written += len(chunk)
                bar.update(len(chunk))
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{source} is not UTF-8 text (byte {exc.start}: {exc.reason})") from exc
    finally:
        if partial.exists() and written != total:
            partial.unlink()
    partial.replace(destination)  # the destination appears only when every row is answered
    return written

"""``tripod predict``: a CSV (with a header) or JSON Lines file in, JSON Lines or CSV predictions out.

Rows stream through the pipeline in chunks, so a file far larger than memory is fine; output row ``i``
answers input row ``i``.  Columns the model does not take are ignored (a file usually carries ids and labels
beside the text); a missing input column is an error naming the columns the file has.  The codecs are the
ones HTTP uses, so a record gets the same answer or the same error either way.

Nothing is lost or half-written: predictions go to ``<output>.part`` and are renamed to ``<output>`` only when
every row is answered; on any error, Ctrl-C or SIGTERM the partial file is removed.  A signal does not raise
in the middle of an ONNX call: the CLI sets ``stop``, and the loop checks it between chunks (an exception
thrown into native code at an arbitrary instant once crashed the process before it could clean up).  The output may not be
the input (that would destroy it), and a full disk or an unwritable place is a one-line error.
"""

from __future__ import annotations

import csv
import io
import json
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import IO

from tqdm import tqdm

from services.codecs.csv_records import csv_chunks
from services.codecs.json_records import jsonlines_chunks
from services.codecs.text import BOM
from services.errors import InvalidInput, SchemaError, StorageError
from services.runtime.pipeline import Call, Pipeline
from services.runtime.predictions import PredictionBatch
from services.runtime.schema import Records

INPUT_FORMATS = (".csv", ".jsonl")
OUTPUT_FORMATS = (".csv", ".jsonl")


def _suffix(path: Path, allowed: Sequence[str], what: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in allowed:
        raise InvalidInput(
            f"{path}: {what} must end in one of {', '.join(allowed)}, not {suffix or '(none)'}"
        )
    return suffix


def _open_text(path: Path) -> IO[str]:
    """A UTF-8 text file, a leading byte-order mark dropped, line ends kept for the CSV reader."""
    if not path.is_file():
        raise InvalidInput(f"{path} does not exist")
    handle = path.open("r", encoding="utf-8", newline="")
    if handle.read(1) not in (BOM, ""):
        handle.seek(0)
    return handle


def read_chunks(handle: IO[str], path: Path, size: int) -> Iterator[Records]:
    """The file's records in chunks, by its suffix."""
    where = f"{path}: "
    if _suffix(path, INPUT_FORMATS, "the input file") == ".csv":
        return csv_chunks(handle, header=True, size=size, where=where)
    return jsonlines_chunks(handle, size=size, unknown="ignore", where=where)


def count_records(path: Path) -> int:
    """A first pass for the progress bar's total (CSV records may span lines, so lines are not records); it
    also finds malformed CSV before anything is written."""
    with _open_text(path) as handle:
        if path.suffix.lower() == ".csv":
            return sum(
                len(records) for records in csv_chunks(handle, header=True, size=4096, where=f"{path}: ")
            )
        return sum(1 for line in handle if line.strip())


class PredictionWriter:
    """Writes prediction batches as JSON Lines (the ``/predict`` rows), or as CSV: ``predicted_label``,
    ``probability`` and one ``probability_<label>`` column per label; ``predicted_value`` for regression."""

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
            self.handle.writelines(json.dumps(record) + "\n" for record in batch.records())
        elif batch.values is not None:
            self._csv.writerows([f"{value:.9g}"] for value in batch.values)
        else:
            assert batch.labels is not None and batch.probabilities is not None
            for label, row in zip(batch.labels, batch.probabilities, strict=True):
                self._csv.writerow([label, f"{row.max():.6g}", *(f"{p:.6g}" for p in row)])


def _check_destination(source: Path, destination: Path) -> None:
    _suffix(destination, OUTPUT_FORMATS, "the output file")
    parent = destination.parent
    if not parent.is_dir():
        raise StorageError(f"cannot write {destination}: the directory {parent} does not exist")
    if destination.resolve() == source.resolve() or (destination.exists() and destination.samefile(source)):
        raise StorageError(f"--output {destination} is the input file; predictions would overwrite it")
    if destination.is_dir():
        raise StorageError(f"cannot write {destination}: it is a directory")
    if not os.access(parent, os.W_OK):
        raise StorageError(f"cannot write {destination}: no permission to write in {parent}")


def predict_file(
    pipeline: Pipeline,
    source: Path,
    destination: Path,
    *,
    batch_size: int = 256,
    progress: bool = True,
    stop: threading.Event | None = None,
) -> int:
    """Predict every record of ``source`` into ``destination``; returns the number of records written.

    ``stop``, once set, ends the run at the next chunk with ``KeyboardInterrupt`` (partial file removed).

    Raises:
        InvalidInput: unreadable or non-UTF-8 input, malformed CSV/JSON, or an unsupported file type.
        SchemaError: a missing input column or a value of the wrong type, naming the record.
        StorageError: see :func:`_check_destination`, or the disk filled up.
    """
    _suffix(source, INPUT_FORMATS, "the input file")
    _check_destination(source, destination)
    partial = destination.with_name(destination.name + ".part")
    written = 0
    try:
        total = count_records(source)
        with ExitStack() as stack:
            handle = stack.enter_context(_open_text(source))
            out = stack.enter_context(partial.open("w", encoding="utf-8", newline=""))
            writer = PredictionWriter(out, destination, pipeline.class_names)
            # A bar on a terminal only: in a log or a pipe, a user's mistake stays one line.
            bar = stack.enter_context(
                tqdm(total=total, unit="rows", disable=None if progress else True, desc="predict")
            )
            for records in read_chunks(handle, source, batch_size):
                if stop is not None and stop.is_set():
                    raise KeyboardInterrupt
                if not records.items:  # an input with no records: an output with none
                    continue
                try:
                    batch = pipeline.predict(records, Call("cli"))
                except (InvalidInput, SchemaError) as exc:
                    raise type(exc)(f"{source}: {exc}") from exc
                writer.write(batch)
                written += len(records)
                bar.update(len(records))
        partial.replace(destination)  # the destination appears only when every record is answered
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{source} is not UTF-8 text ({exc.reason})") from exc
    except OSError as exc:
        if exc.filename == str(source):
            raise InvalidInput(f"cannot read {source}: {exc.strerror or exc}") from exc
        raise StorageError(f"cannot write {destination}: {exc.strerror or exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
    return written


def predict_text(pipeline: Pipeline, text: str, *, suffix: str) -> PredictionBatch:
    """Predict a whole file's text at once (tests and small inputs): the same codecs as :func:`predict_file`."""
    chunks = list(
        read_chunks(io.StringIO(text.removeprefix(BOM), newline=""), Path(f"input{suffix}"), 1 << 30)
    )
    return pipeline.predict(chunks[0], Call("cli"))

"""Helpers for the transform-job tests: real review texts written as real files, and a job run in process."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from services.batch import job
from services.batch.job import JobSummary


def csv_lines(rows: Sequence[Sequence[object]]) -> bytes:
    """Rows as CSV, quoted as Python's csv module quotes them, LF-terminated."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue().encode()


def jsonl_lines(items: list[Any]) -> bytes:
    return b"".join(json.dumps(item).encode() + b"\n" for item in items)


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def transform(model: Path | None, source: Path | str, output: Path | str, **options: object) -> JobSummary:
    """One job in this process (one worker unless said), through the Python API."""
    if model is not None:
        options.setdefault("workers", 1)
    return job.transform(progress=False, model=model, input=str(source), output=str(output), **options)


def outputs(folder: Path) -> dict[str, bytes]:
    """Every file a job wrote under ``folder`` except its own state and summaries, by relative path."""
    found = {}
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d != ".tripod"]
        for name in files:
            path = Path(root, name)
            found[str(path.relative_to(folder))] = path.read_bytes()
    return found


def errors_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def summary_of(output: Path, name: str = "summary.json") -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads((output / ".tripod" / name).read_text())
    return parsed

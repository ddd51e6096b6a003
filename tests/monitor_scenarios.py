"""Traffic for the monitoring tests: the model's training rows, held-out rows, shifted rows, foreign reviews, and
capture files of them with the labels the model really predicts (through the serving pipeline)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from services.runtime.pipeline import Pipeline
from services.runtime.schema import Records
from tests.capture_files import Exchange, invocations_csv_exchange, predict_exchange, write_capture
from tests.conftest import SAMPLE_ROWS, TARGET, TEXT_COLUMN

FOREIGN_REVIEWS = Path(__file__).parent / "data" / "foreign_reviews.jsonl"
START = datetime(2026, 12, 2, 10, tzinfo=UTC)


def training_rows(prepared: pd.DataFrame) -> pd.DataFrame:
    """The rows ``trained_model_dir`` was trained on (its stratified sample)."""
    from training.data import stratified_sample

    return stratified_sample(prepared, TARGET, SAMPLE_ROWS, seed=42)


def held_out_rows(prepared: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` rows the model never saw."""
    rest = prepared.drop(index=training_rows(prepared).index)
    return rest.sample(n, random_state=seed)


def foreign_reviews() -> list[str]:
    """Forty French and forty German clothing reviews (written for these tests)."""
    with FOREIGN_REVIEWS.open(encoding="utf-8") as handle:
        return [json.loads(line)["review_body"] for line in handle if line.strip()]


def predicted(model_dir: Path, texts: Sequence[str]) -> list[str]:
    answers = Pipeline.from_directory(model_dir).predict(Records([[text] for text in texts]))
    assert answers.labels is not None
    return [str(label) for label in answers.labels]


def capture_texts(
    root: Path,
    model_dir: Path,
    texts: Sequence[str],
    *,
    start: datetime = START,
    step: timedelta = timedelta(seconds=30),
    ids: Sequence[str] | None = None,
    extra_lines: Sequence[str] = (),
) -> list[Exchange]:
    """Capture files of one request per text (alternately ``/predict`` JSON and ``/invocations`` CSV), answered
    with the model's predictions; returns the exchanges."""
    labels = predicted(model_dir, texts)
    exchanges = []
    for i, (text, label) in enumerate(zip(texts, labels, strict=True)):
        when = start + i * step
        inference_id = ids[i] if ids is not None else None
        if i % 2:
            exchanges.append(predict_exchange([{TEXT_COLUMN: text}], [label], when, inference_id))
        else:
            exchanges.append(invocations_csv_exchange([[text]], [label], when, inference_id))
    write_capture(root, exchanges, extra_lines=extra_lines)
    return exchanges

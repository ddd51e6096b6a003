"""Ground truth joined to captured predictions by ``inferenceId``: accuracy and macro-F1 per time window.

Labels arrive later than predictions (a review's star rating, a support ticket's resolution), keyed by the id
the client sent as ``X-Amzn-SageMaker-Inference-Id``, which capture records as ``eventMetadata.inferenceId``.
The file is CSV with a header or JSON Lines, with the columns ``inferenceId`` and ``label``.  Only requests of
one record can be joined (one id, one label); a labelled request of several records is counted, not guessed.

Memory: the labels are held (the file's size), and per window only the labelled pairs it received, so a million
captured records without labels cost nothing here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from training.monitor.capture import window_start
from training.monitor.errors import MonitorError

ID, LABEL = "inferenceId", "label"


def read_ground_truth(path: str | Path) -> dict[str, str]:
    """``inferenceId → label`` from a CSV (with a header) or JSON Lines file, local or ``s3://``.

    Raises:
        MonitorError: the file cannot be read or lacks the two columns.
    """
    import pandas as pd

    name = str(path)
    lines = name.endswith((".jsonl", ".jsonl.gz", ".ndjson", ".json"))
    try:
        frame = (
            pd.read_json(name, lines=True, dtype=False)
            if lines
            else pd.read_csv(name, dtype=str, keep_default_na=False)
        )
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise MonitorError(f"cannot read ground truth {name}: {' '.join(str(exc).split())[:200]}") from exc
    missing = [column for column in (ID, LABEL) if column not in frame.columns]
    if missing:
        raise MonitorError(
            f"ground truth {name} needs the columns {ID} and {LABEL}; it has {', '.join(map(str, frame.columns))}"
        )
    frame = frame[[ID, LABEL]].dropna()
    return dict(zip(frame[ID].astype(str), frame[LABEL].astype(str), strict=True))


@dataclass
class QualityWindows:
    """Labelled predictions collected per window, then scored."""

    labels: dict[str, str]
    width: timedelta
    pairs: dict[datetime, tuple[list[str], list[str]]] = field(default_factory=dict)
    matched: int = 0
    multi_record: int = 0
    untimed: int = 0

    def add(self, inference_id: str | None, when: datetime | None, predicted: Sequence[str | None]) -> None:
        """One captured request: joined when it has an id with a label, one record and a time."""
        if inference_id is None or inference_id not in self.labels:
            return
        if len(predicted) != 1 or predicted[0] is None:
            self.multi_record += 1
            return
        if when is None:
            self.untimed += 1
            return
        truth, guess = self.pairs.setdefault(window_start(when, self.width), ([], []))
        truth.append(self.labels[inference_id])
        guess.append(predicted[0])
        self.matched += 1

    def scores(self, model_labels: Sequence[str]) -> list[dict[str, Any]]:
        """Per window, in time order: ``start``, ``end``, ``records``, ``accuracy``, ``macro_f1``."""
        from sklearn.metrics import accuracy_score, f1_score

        rows = []
        for start in sorted(self.pairs):
            truth, guess = self.pairs[start]
            labels = list(model_labels) or sorted(set(truth) | set(guess))
            rows.append(
                {
                    "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "end": (start + self.width).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "records": len(truth),
                    "accuracy": float(accuracy_score(truth, guess)),
                    "macro_f1": float(
                        f1_score(truth, guess, labels=labels, average="macro", zero_division=0)
                    ),
                }
            )
        return rows

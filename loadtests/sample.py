"""Held-out reviews for the load: the test split of the prepared table, never rows a model was trained on.

The sample is written at run time (``loadtests/results/`` is git-ignored), one JSON record per line keyed by
the model's input columns, which is all the locustfile reads: it needs neither pandas nor ``training``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path


def held_out_records(
    data: Path | str,
    target: str,
    columns: Sequence[str],
    *,
    sample: int | None = None,
    limit: int | None = 2000,
    seed: int = 42,
) -> list[dict[str, str]]:
    """The test split of ``data`` as records of ``columns``, as ``tripod train`` splits it, shuffled.

    Args:
        data: The prepared table (``tripod prepare``), CSV or Parquet.
        target: The label column the split is stratified on.
        columns: The model's input columns.
        sample: The ``--sample`` the model was trained with, so the split is the same one.
        limit: Keep at most this many records.
        seed: Seed of the split (``tripod train --seed``) and of the shuffle.
    """
    from training.data import load_table, split_frame, stratified_sample
    from training.problem import label_strings

    frame = load_table(data)
    frame = frame.loc[frame[target].notna()]
    frame = frame.assign(**{target: label_strings(frame[target])})
    if sample is not None:
        frame = stratified_sample(frame, target, sample, seed=seed)
    test = split_frame(frame, target, seed=seed).test
    records = [
        {column: "" if value is None else str(value) for column, value in zip(columns, row, strict=True)}
        for row in test[list(columns)].itertuples(index=False, name=None)
    ]
    random.Random(seed).shuffle(records)
    return records[:limit] if limit is not None else records


def write_records(path: Path | str, records: Sequence[dict[str, str]]) -> Path:
    """One JSON object per line (what ``TRIPOD_LOAD_SAMPLE`` points the locustfile at)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def read_records(path: Path | str) -> list[dict[str, str]]:
    records = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    if not records:
        raise ValueError(f"{path} holds no records")
    return records

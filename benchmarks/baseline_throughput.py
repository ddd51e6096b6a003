"""Rows per second of the ONNX serving path against scikit-learn's ``predict_proba``, per batch size.

The transformer stage's dense ``(n_samples, n_features)`` output makes ONNX cost grow with the vocabulary, so
``max_features`` of the ``tfidf_linear`` family is chosen with this measurement.  Both sides run single-threaded, as the
serving runtime does (one intra-op thread per stage).

Usage:
    python benchmarks/baseline_throughput.py --data data/reviews.parquet [--max-features 5000 15000]
        [--batches 1 64 2000] [--rows 2000] [--repeats 3]

Every batch size runs over the same first ``--rows`` rows of the test split (seed 42 split by default).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd

from services.runtime.pipeline import Pipeline
from services.runtime.schema import Records
from training.automl.families.tfidf import TfidfLinear
from training.data import load_table, split_frame
from training.evaluate import evaluate
from training.train import text_problem

Batch = TypeVar("Batch")


def _rows_per_second(
    run: Callable[[Batch], object], batches: Sequence[Batch], rows: int, repeats: int
) -> float:
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        for batch in batches:
            run(batch)
        timings.append(time.perf_counter() - start)
    return rows / statistics.median(timings)


def measure_throughput(
    model: TfidfLinear,
    texts: pd.DataFrame,
    batch_sizes: Sequence[int] = (1, 64, 2000),
    *,
    max_rows: int = 2000,
    repeats: int = 3,
) -> list[dict[str, float]]:
    """Time scikit-learn and the ONNX runtime on the same batches of ``texts``.

    Args:
        model: A fitted baseline.
        texts: Rows holding the model's text columns; batches are cut from the top.
        batch_sizes: Rows per call.
        max_rows: Rows per measurement; every batch size runs over the same first ``max_rows`` rows.
        repeats: Measurements per size; the median is reported.

    Returns:
        One dict per batch size: ``batch``, ``rows``, ``sklearn_rows_per_s``, ``onnx_rows_per_s``, ``speedup``.
    """
    problem = model.problem
    frame = problem.input_frame(texts)
    with tempfile.TemporaryDirectory() as tmp:
        paths = model.to_onnx().save(Path(tmp))
        pipeline = Pipeline.from_stage_files(paths, problem.roles.inputs, problem.labels)
        results = []
        for size in batch_sizes:
            limit = max(size, max_rows)
            starts = range(0, min(len(frame), limit) - size + 1, size)
            frames = [frame.iloc[i : i + size] for i in starts]
            records = [Records(part.to_numpy(dtype=object).tolist()) for part in frames]
            rows = size * len(frames)
            pipeline.predict(records[0])  # first call allocates; keep it out of the timing
            sklearn_rate = _rows_per_second(model.predict_scores, frames, rows, repeats)
            onnx_rate = _rows_per_second(pipeline.predict, records, rows, repeats)
            results.append(
                {
                    "batch": size,
                    "rows": rows,
                    "sklearn_rows_per_s": sklearn_rate,
                    "onnx_rows_per_s": onnx_rate,
                    "speedup": onnx_rate / sklearn_rate,
                }
            )
    return results


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="prepared table (tripod prepare)")
    parser.add_argument("--target", default="sentiment")
    parser.add_argument("--text-columns", nargs="+", default=["review_body"])
    parser.add_argument("--max-features", type=int, nargs="+", default=[15000])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64, 2000])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--rows", type=int, default=2000, help="test rows timed at every batch size")
    parser.add_argument("--repeats", type=int, default=3, help="timings per size; the median is printed")
    args = parser.parse_args(argv)

    frame = load_table(args.data)
    split = split_frame(frame, args.target, seed=args.seed)
    for max_features in args.max_features:
        problem = text_problem(split.train, args.target, args.text_columns)
        params = {**TfidfLinear.default_params("balanced", problem), "max_features": max_features}
        model = TfidfLinear(problem, params, seed=args.seed).fit(split.train, split.validation)
        proba = model.predict_scores(split.test)
        scores = evaluate(
            split.test[args.target], np.asarray(problem.labels)[proba.argmax(axis=1)], problem.labels
        )
        print(
            f"max_features={max_features} F={model.n_features_} test macro-F1 {scores['macro_f1']:.4f} "
            f"accuracy {scores['accuracy']:.4f}"
        )
        for row in measure_throughput(
            model, split.test, args.batches, max_rows=args.rows, repeats=args.repeats
        ):
            print(
                f"  batch {row['batch']:>5}: scikit-learn {row['sklearn_rows_per_s']:>9,.0f} rows/s   "
                f"ONNX {row['onnx_rows_per_s']:>9,.0f} rows/s   ×{row['speedup']:.2f}"
            )


if __name__ == "__main__":
    main()

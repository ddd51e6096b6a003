"""Seconds for every pre-training bias metric at lake scale, and the speed ratio against ``smclarify``.

A synthetic table (seeded): a facet with ``--facet-values`` values of skewed frequency, a three-class label whose
positive rate depends on the facet, and a group variable for CDDL.  Tripod computes all eight pre-training
metrics for every facet value against the rest (one-vs-rest) on ``--rows`` rows; then both Tripod and
smclarify 0.5 do the same on the first ``--smclarify-rows`` rows, and their values are compared.

Usage:
    python benchmarks/bias_scale.py [--rows 1000000] [--facet-values 20] [--groups 30]
        [--smclarify-rows 100000] [--repeats 3] [--json results.json]

``--smclarify-rows 0`` skips the comparison.  Results: docs/bias.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.bias import FacetSpec, LabelSpec, bias_analysis

LABEL = LabelSpec("sentiment", ("positive",))
FACET = FacetSpec("category")


def synthetic(rows: int, facet_values: int, groups: int, seed: int = 42) -> pd.DataFrame:
    """Rows with a facet whose values differ in size and in positive rate, like product categories."""
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(facet_values, 0.8))
    facet = rng.choice(facet_values, size=rows, p=weights)
    positive_rate = np.linspace(0.55, 0.9, facet_values)[facet]
    draw = rng.random(rows)
    label = np.where(
        draw < positive_rate, "positive", np.where(draw < positive_rate + 0.08, "neutral", "negative")
    )
    names = np.array([f"category_{i:02d}" for i in range(facet_values)], dtype=object)
    return pd.DataFrame(
        {
            "category": pd.array(names[facet], dtype="str"),
            "sentiment": pd.array(label.astype(object), dtype="str"),
            "department": pd.array(
                np.array([f"dept_{i}" for i in range(groups)], dtype=object)[rng.integers(0, groups, rows)],
                dtype="str",
            ),
            "age": rng.integers(18, 90, rows),
        }
    )


def best_of(repeats: int, run: Callable[[], Any]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def tripod_values(analysis: dict[str, Any]) -> dict[tuple[str, str], float]:
    return {
        (entry["value_or_threshold"], metric["name"]): metric["value"]
        for entry in analysis["pre_training_bias_metrics"]["facets"][FACET.name]
        for metric in entry["metrics"]
    }


def run_tripod(frame: pd.DataFrame) -> dict[str, Any]:
    return bias_analysis(frame, LABEL, [FACET], group_variable="department")


def run_smclarify(frame: pd.DataFrame) -> dict[tuple[str, str], float]:
    from smclarify.bias import report

    objects = frame.astype({c: object for c in frame.columns if frame[c].dtype == "str"})
    logging.disable(logging.CRITICAL)
    try:
        result = report.bias_report(
            objects[["category", "sentiment", "age"]],
            report.FacetColumn(FACET.name),
            report.LabelColumn("sentiment", objects["sentiment"], ["positive"]),
            report.StageType.PRE_TRAINING,
            group_variable=objects["department"],
        )
    finally:
        logging.disable(logging.NOTSET)
    return {(e["value_or_threshold"], m["name"]): m["value"] for e in result for m in e["metrics"]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--facet-values", type=int, default=20)
    parser.add_argument("--groups", type=int, default=30)
    parser.add_argument("--smclarify-rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)

    frame = synthetic(args.rows, args.facet_values, args.groups)
    seconds, analysis = best_of(args.repeats, lambda: run_tripod(frame))
    groups = len(analysis["pre_training_bias_metrics"]["facets"][FACET.name])
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
        "rows": args.rows,
        "facet_values": groups,
        "metrics": 8,
        "tripod_seconds": round(seconds, 4),
        "tripod_rows_per_second": round(args.rows / seconds),
    }
    print(
        f"tripod: all 8 pre-training metrics × {groups} facet values on {args.rows:,} rows in {seconds:.3f} s "
        f"(best of {args.repeats})"
    )

    if args.smclarify_rows > 0:
        small = frame.head(args.smclarify_rows)
        ours_seconds, ours = best_of(args.repeats, lambda: run_tripod(small))
        theirs_seconds, theirs = best_of(1, lambda: run_smclarify(small))
        mine = tripod_values(ours)
        differences = [abs(mine[key] - value) for key, value in theirs.items() if value is not None]
        results.update(
            smclarify_rows=args.smclarify_rows,
            smclarify_seconds=round(theirs_seconds, 3),
            tripod_seconds_same_rows=round(ours_seconds, 4),
            speed_ratio=round(theirs_seconds / ours_seconds, 1),
            values_compared=len(differences),
            max_abs_difference=max(differences) if differences else None,
        )
        print(
            f"smclarify 0.5 on {args.smclarify_rows:,} rows: {theirs_seconds:.2f} s; tripod {ours_seconds:.4f} s "
            f"→ {theirs_seconds / ours_seconds:.0f}× faster; {len(differences)} values agree within "
            f"{results['max_abs_difference']:.1e}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()

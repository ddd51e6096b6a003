"""How often each ``tripod monitor run`` check fires on traffic from the training distribution (false alarms),
and on shifted traffic (detections): the measurement behind the default thresholds in docs/monitoring.md.

The bundled reviews are split (stratified, seeded) into a training part and a held-out part.  A model is
trained on the training part (``tripod train``'s path) and baselined on it, as a user would.  Then, per window
size, ``--windows`` windows of held-out rows (the same distribution, never seen by the model) are profiled and
checked exactly as captured traffic is, and the statistic of every check is recorded: its 95th and 99th
percentiles and maximum under "no drift", and the share of windows the default threshold flags.  Shifted
traffic is drawn the same way: one department only, short reviews, French and German reviews
(``tests/data/foreign_reviews.jsonl``), and a flipped label mix (only reviews whose label is negative).

Usage:
    python benchmarks/monitor_thresholds.py [--data data/reviews.parquet] [--work DIR] [--sizes 200,500,1000]
        [--windows 200] [--domain-windows 40] [--json results.json]

Results: docs/monitoring.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.runtime.pipeline import Pipeline  # noqa: E402
from services.runtime.schema import Records  # noqa: E402
from training.data import split_frame  # noqa: E402
from training.monitor.baseline import Baseline, build_baseline, frame_rows  # noqa: E402
from training.monitor.checks import completeness_floor, evaluate  # noqa: E402
from training.monitor.config import Thresholds  # noqa: E402
from training.monitor.profile import Profile  # noqa: E402

TARGET, TEXT = "sentiment", "review_body"
FOREIGN = ROOT / "tests" / "data" / "foreign_reviews.jsonl"
STATISTICS = {
    # check → (value key, what the default threshold is compared with)
    "text_length_drift_check": "psi",
    "oov_rate_check": "increase",
    "domain_classifier_check": "auc",
    "prediction_drift_check": "psi",
    "accuracy_check": "drop",
    "macro_f1_check": "drop",
}


def window_statistics(
    baseline: Baseline,
    rows: pd.DataFrame,
    predicted: Sequence[str],
    truth: Sequence[str],
    thresholds: Thresholds,
    *,
    domain: bool,
    seed: int,
    title_completeness: float | None = None,
) -> dict[str, Any]:
    """Profile one window like captured traffic and return each check's statistic and verdict."""
    inputs = baseline.inputs
    profile = Profile(
        inputs,
        labels=baseline.labels,
        layout=baseline.layout(),
        vocabularies=baseline.vocabularies,
        skipped=baseline.skipped,
        sample_size=thresholds.domain_sample,
        seed=seed,
    )
    profile.add(frame_rows(rows, inputs, baseline.max_text_chars), predicted=list(predicted))
    statistics = profile.statistics()
    texts = {TEXT: [items[0] for items in profile.sample.items]} if domain else {TEXT: []}
    metrics = baseline.model["metrics"]
    from sklearn.metrics import accuracy_score, f1_score

    window: dict[str, Any] = {
        "start": "",
        "end": "",
        "records": len(rows),
        "accuracy": float(accuracy_score(truth, predicted)),
        "macro_f1": float(
            f1_score(truth, predicted, labels=baseline.labels, average="macro", zero_division=0)
        ),
    }
    checks, _ = evaluate(baseline, statistics, thresholds, current_texts=texts, quality=[window], seed=seed)
    out: dict[str, Any] = {}
    for check in checks:
        if check.status == "skipped" or check.check not in STATISTICS:
            continue
        key = STATISTICS[check.check]
        if key == "drop":
            metric = "accuracy" if check.check == "accuracy_check" else "macro_f1"
            value = float(metrics[metric]) - window[metric]
        else:
            value = float(check.values[key])
        out[check.check] = {"value": value, "fired": check.status == "violation"}
        if check.check == "domain_classifier_check":
            out[check.check]["p_value"] = check.values["p_value"]
        if check.check == "prediction_drift_check":
            distance = check.values["js_distance"]
            out["prediction_js"] = {"value": distance, "fired": distance > thresholds.prediction_js}
    if title_completeness is not None and "title" in rows:
        # completeness of a sometimes-empty column (13 % of titles are missing), judged by the check's rule
        observed = float(rows["title"].notna().mean())
        floor = completeness_floor(title_completeness, len(rows), thresholds.completeness_tolerance)
        out["completeness_check (title)"] = {
            "value": title_completeness - observed,
            "fired": observed < floor,
        }
    return out


def scenario_windows(
    name: str,
    pool: pd.DataFrame,
    predicted: np.ndarray,
    baseline: Baseline,
    thresholds: Thresholds,
    size: int,
    windows: int,
    domain_windows: int,
    seed: int,
    title_completeness: float | None = None,
) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    results = []
    for index in range(windows):
        replace = size > len(pool)
        chosen = rng.choice(len(pool), size, replace=replace)
        rows = pool.iloc[chosen]
        results.append(
            window_statistics(
                baseline,
                rows,
                predicted[chosen].tolist(),
                rows[TARGET].astype(str).tolist(),
                thresholds,
                domain=index < domain_windows,
                seed=seed + index,
                title_completeness=title_completeness,
            )
        )
    print(f"  {name}, {size} records: {windows} windows", file=sys.stderr, flush=True)
    return results


def summarize(results: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    summary: dict[str, dict[str, float]] = {}
    for check in [*STATISTICS, "prediction_js", "completeness_check (title)"]:
        values = [r[check]["value"] for r in results if check in r]
        fired = [r[check]["fired"] for r in results if check in r]
        if not values:
            continue
        summary[check] = {
            "windows": len(values),
            "mean": float(np.mean(values)),
            "p95": float(np.quantile(values, 0.95)),
            "p99": float(np.quantile(values, 0.99)),
            "max": float(np.max(values)),
            "fired": int(np.sum(fired)),
        }
    return summary


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "reviews.parquet")
    parser.add_argument(
        "--work", type=Path, default=None, help="folder for the model (default: a temporary one)"
    )
    parser.add_argument("--sizes", default="200,500,1000", help="window sizes (records)")
    parser.add_argument("--windows", type=int, default=200, help="windows per size (no drift)")
    parser.add_argument(
        "--domain-windows", type=int, default=40, help="windows that also run the domain test"
    )
    parser.add_argument(
        "--train-sample",
        type=int,
        default=None,
        help="train on a stratified sample of this many rows (short runs)",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    frame = pd.read_parquet(args.data)
    split = split_frame(frame, TARGET, seed=args.seed, validation=0.0, test=0.2)
    train, held_out = split.train, split.test
    with tempfile.TemporaryDirectory(prefix="tripod-monitor-") as folder:
        work = args.work or Path(folder)
        work.mkdir(parents=True, exist_ok=True)
        from training.train import run_training

        train.to_parquet(work / "train.parquet", index=False)
        model_dir = run_training(
            work / "train.parquet",
            TARGET,
            [TEXT],
            work / "model",
            seed=args.seed,
            sample=args.train_sample,
            progress=False,
        )
        baseline = build_baseline(model_dir, train, source="train split", seed=args.seed, progress=False)
        pipeline = Pipeline.from_directory(model_dir)
        foreign = pd.read_json(FOREIGN, lines=True)
        foreign[TARGET] = "positive"  # unknown; only the input checks matter for these windows
        sizes = [int(size) for size in args.sizes.split(",")]
        pools = {
            "held-out (no drift)": held_out,
            "one department (Dresses)": held_out[held_out["department_name"] == "Dresses"],
            "short reviews (< 100 characters)": held_out[held_out[TEXT].str.len() < 100],
            "French and German reviews": foreign,
            "flipped label mix (negative only)": held_out[held_out[TARGET] == "negative"],
        }
        # The defaults, except that every window is judged: the statistics of small windows show why the
        # checks wait for min_records records (min_labels labels).
        thresholds = Thresholds(min_records=min(sizes), min_labels=min(sizes))
        title = float(train["title"].notna().mean())
        report: dict[str, Any] = {
            "rows": {"train": len(train), "held_out": len(held_out)},
            "model_metrics": baseline.model["metrics"],
            "baseline": {
                "oov_rate": baseline.feature(TEXT)["text_statistics"]["oov"]["rate"],  # type: ignore[index]
                "predicted": baseline.statistics["predictions"]["distribution"]["categorical"]["buckets"],
            },
            "thresholds": thresholds.model_dump(),
            "title_completeness": title,
            "scenarios": {},
        }
        predict: Callable[[pd.DataFrame], np.ndarray] = lambda part: np.asarray(  # noqa: E731
            pipeline.predict(Records([[text] for text in part[TEXT].astype(str)])).labels, dtype=object
        )
        for name, pool in pools.items():
            predicted = predict(pool)
            report["scenarios"][name] = {}
            scenario_sizes = sizes if name == "held-out (no drift)" else sorted({min(sizes), max(sizes)})
            for size in scenario_sizes:
                windows = args.windows if name == "held-out (no drift)" else max(1, args.windows // 5)
                domain = args.domain_windows if name == "held-out (no drift)" else min(windows, 10)
                results = scenario_windows(
                    name, pool, predicted, baseline, thresholds, size, windows, domain, args.seed, title
                )
                report["scenarios"][name][str(size)] = summarize(results)
    report["seconds"] = time.perf_counter() - started
    print_tables(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def print_tables(report: dict[str, Any]) -> None:
    print(
        f"train rows {report['rows']['train']}, held-out rows {report['rows']['held_out']}; "
        f"model test metrics {report['model_metrics']}; baseline OOV rate {report['baseline']['oov_rate']:.4f}"
    )
    print("| scenario | records | check | windows | mean | p95 | p99 | max | fired at the default |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, by_size in report["scenarios"].items():
        for size, checks in by_size.items():
            for check, row in checks.items():
                print(
                    f"| {name} | {size} | {check} | {row['windows']} | {row['mean']:.4f} | {row['p95']:.4f} | "
                    f"{row['p99']:.4f} | {row['max']:.4f} | {row['fired']}/{row['windows']} |"
                )
    print(f"({report['seconds']:.0f} s)")


if __name__ == "__main__":
    main()

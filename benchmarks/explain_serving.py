"""``make bench-explain``: what an explanation costs to serve, and how the sampling budget trades time for
agreement with ``shap``.

Measured in one run, on one machine:

1. The linear model (``tripod train``'s), one ``tripod serve``, single-review bodies of held-out reviews,
   driven by ``serving_client.py`` in a process of its own:
   - closed loop at each ``--concurrency`` level of ``/predict``, ``/explain`` (``method=auto``: the exact
     ``explainer.onnx`` when the model has one, else sampling — the answer says which) and
     ``/explain?method=sampling`` (what the exact explainer saves); the best of each;
   - an open loop (Poisson arrivals) of ``/predict`` and of ``/explain`` at the same rate, half of the
     smaller of their two maxima: p50 and p99 of each, the **p99 ratio explain / predict (goal ≤ 2×)** and
     the ratio of their best throughputs.
2. Agreement with ``shap`` in process (``explain_agreement.py``), on a seeded sample of held-out reviews:
   - the linear model's sampling method at budgets 8 … 256: time per review, Spearman's rank correlation
     over the words and top-5 overlap against shap's permutation estimate of the same game;
   - the linear model's exact method against ``shap.LinearExplainer`` (when the model has ``explainer.onnx``);
   - with ``--minilm-model DIR`` (or ``--minilm-build``): ``/explain`` at the default budget against
     ``/predict``, one review at a time over a few dozen reviews, and the same budget table.
3. A table on stdout; ``explain_results.json``, ``explain_serving.csv``, ``explain_agreement.csv``,
   ``explain_summary.md`` and ``explain_budget.png`` (budget against time and rank correlation) in ``--out``.

The machine's 1-minute load average is printed before and after every measurement: with 2 cores shared, a
ratio measured while others took a core is noise.

Usage:
    python benchmarks/explain_serving.py --model models/reviews/latest --data data/reviews.parquet
        [--minilm-model DIR | --minilm-build] [--seconds 5] [--quick] [--out docs/benchmarks/explain]
        [--work /tmp/tripod-explain-bench] [--reviews 20] [--shap-evals 10000] [--seed 42]

``--quick`` is a smoke run of every measurement in about 30 s (tiny windows and samples); its numbers mean
nothing, so its results go to ``WORK/quick`` unless ``--out`` says otherwise.  An explicit option still wins.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
if str(ROOT) not in sys.path:  # run as a script: make harness/ and services/ importable
    sys.path.insert(0, str(ROOT))
if str(BENCH) not in sys.path:  # and the sibling benchmark modules
    sys.path.insert(0, str(BENCH))

import explain_agreement as agreement  # noqa: E402
from serving_artifacts import build_minilm, write_bodies  # noqa: E402
from serving_client import percentile  # noqa: E402
from serving_measure import drive  # noqa: E402
from serving_report import machine  # noqa: E402

from harness.server import RunningServer, http_json, running_server  # noqa: E402
from loadtests.sample import held_out_records  # noqa: E402
from services.artifacts import ModelArtifact  # noqa: E402
from services.runtime.explain.options import DEFAULT_BUDGET  # noqa: E402
from services.runtime.pipeline import Pipeline  # noqa: E402

GOAL_P99_RATIO = 2.0
"""``/explain`` p99 over ``/predict`` p99 at the same open-loop rate, for the exact linear explainer."""
SEED = 42


@dataclass(frozen=True)
class Sizes:
    """How long and how much each measurement runs."""

    levels: tuple[int, ...]
    """Closed-loop concurrency levels."""
    seconds: float
    """Measured seconds per closed-loop level; the open loop runs twice as long (p99 needs the samples)."""
    warmup_s: float
    reviews: int
    """Reviews in the agreement sample."""
    shap_evals: int
    """The shap reference's evaluations per review (two runs of half each), linear model."""
    minilm_requests: int
    """MiniLM reviews sent one at a time to ``/predict`` and to ``/explain``."""
    minilm_reviews: int
    minilm_shap_evals: int
    budgets: tuple[int, ...] = agreement.BUDGETS


FULL = Sizes(
    levels=(1, 2, 4, 8),
    seconds=5.0,
    warmup_s=1.0,
    reviews=20,
    shap_evals=10_000,
    minilm_requests=36,
    minilm_reviews=20,
    minilm_shap_evals=2_000,
)
"""The linear reference costs about a second per review; MiniLM's about 30 s (60-80 masked reviews a second
on one core), so its reference stays at 2,000 evaluations and the MiniLM part takes 10-15 minutes."""
QUICK = Sizes(
    levels=(1, 2),
    seconds=0.6,
    warmup_s=0.2,
    reviews=3,
    shap_evals=300,
    minilm_requests=3,
    minilm_reviews=2,
    minilm_shap_evals=300,
)


def load1() -> float:
    return round(os.getloadavg()[0], 2)


def say_point(name: str, point: dict[str, Any]) -> None:
    mode = f"c={point['concurrency']}" if point["concurrency"] else f"{point['rate']:,.0f}/s open"
    latency = point["latency_ms"]
    errors = f"  {point['errors']} ERRORS {point['error_samples'][:2]}" if point["errors"] else ""
    print(
        f"  {name:<28} {mode:<14} {point['requests_per_s']:>8,.0f} req/s  p50 {latency['p50']:>7.2f} ms  "
        f"p99 {latency['p99']:>7.2f} ms  load {point['load'][0]:.2f}→{point['load'][1]:.2f}{errors}",
        flush=True,
    )


def measured(url: str, bodies: Path, **mode: Any) -> dict[str, Any]:
    """One load-client run with the load average around it."""
    before = load1()
    point = drive(url, bodies, 1, **mode)
    point["load"] = [before, load1()]
    return point


def best(points: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The closed-loop point of most requests per second among those without errors."""
    clean = [p for p in points if not p["errors"] and p["ok"]]
    if not clean:
        raise RuntimeError(f"every level failed: {points[0]['error_samples']}")
    return max(clean, key=lambda p: p["requests_per_s"])


def probe(server: RunningServer, route: str, record: dict[str, str]) -> dict[str, Any]:
    """One answer of ``route`` (checks it works before loading it); ``explanation`` facts when it has one."""
    status, body = http_json(f"{server.url}{route}", {"records": [record]}, timeout=120)
    if status != 200 or not isinstance(body, list):
        raise RuntimeError(f"{route} answered {status}: {str(body)[:300]}")
    explanation = body[0].get("explanation")
    if explanation is None:
        return {}
    return {key: explanation.get(key) for key in ("method", "output", "budget", "evaluations", "exact")}


def serve_linear(model: Path, records: list[dict[str, str]], sizes: Sizes, work: Path) -> dict[str, Any]:
    """Section 1: /predict against /explain (auto and sampling) on one ``tripod serve``."""
    bodies = write_bodies(work / "bodies_1.jsonl", records, 1)
    routes = {
        "predict": "/predict",
        "explain": "/explain",
        "explain_sampling": f"/explain?method=sampling&budget={DEFAULT_BUDGET}",
    }
    result: dict[str, Any] = {"routes": routes, "closed": {}, "answers": {}}
    with running_server(model, log_path=work / "serve-linear.log") as server:
        result["cold_start_s"] = server.cold_start_s
        for name, route in routes.items():
            result["answers"][name] = probe(server, route, records[0])
        print(f"/explain (method=auto) answered with method {result['answers']['explain']['method']!r}")
        # Routes take turns at each level, so a change in the machine's load falls on all of them alike.
        for level in sizes.levels:
            for name, route in routes.items():
                point = measured(
                    f"{server.url}{route}",
                    bodies,
                    concurrency=level,
                    seconds=sizes.seconds,
                    warmup_s=sizes.warmup_s,
                )
                say_point(name, point)
                result["closed"].setdefault(name, []).append(point)
        top = {name: best(points) for name, points in result["closed"].items()}
        rate = min(top["predict"]["requests_per_s"], top["explain"]["requests_per_s"]) / 2
        result["open_rate"] = rate
        result["open"] = {}
        for name in ("predict", "explain"):
            point = measured(
                f"{server.url}{routes[name]}",
                bodies,
                rate=rate,
                seconds=2 * sizes.seconds,
                warmup_s=sizes.warmup_s,
            )
            say_point(name, point)
            result["open"][name] = point
    result["best"] = top
    p99 = {name: point["latency_ms"]["p99"] for name, point in result["open"].items()}
    result["ratios"] = {
        "p99_explain_over_predict": p99["explain"] / p99["predict"],
        "throughput_explain_over_predict": top["explain"]["requests_per_s"]
        / top["predict"]["requests_per_s"],
        "throughput_sampling_over_explain": (
            top["explain_sampling"]["requests_per_s"] / top["explain"]["requests_per_s"]
        ),
    }
    return result


def sequential(url: str, records: Sequence[dict[str, str]]) -> dict[str, Any]:
    """Each record alone, one after the other (closed loop, concurrency 1): latency in ms."""
    before = load1()
    ms = []
    errors = 0
    for record in records:
        began = time.perf_counter()
        status, _ = http_json(url, {"records": [record]}, timeout=120)
        if status == 200:
            ms.append(1000 * (time.perf_counter() - began))
        else:
            errors += 1
    ordered = sorted(ms)
    return {
        "requests": len(records),
        "errors": errors,
        "latency_ms": {
            "mean": sum(ordered) / len(ordered) if ordered else math.nan,
            "p50": percentile(ordered, 50),
            "p99": percentile(ordered, 99),
            "max": ordered[-1] if ordered else math.nan,
        },
        "load": [before, load1()],
    }


def serve_minilm(model: Path, records: list[dict[str, str]], sizes: Sizes, work: Path) -> dict[str, Any]:
    """MiniLM's /explain at the default budget against /predict, one review at a time."""
    chosen = records[: sizes.minilm_requests]
    result: dict[str, Any] = {}
    with running_server(model, log_path=work / "serve-minilm.log") as server:
        result["answers"] = {"explain": probe(server, "/explain", chosen[0])}
        probe(server, "/predict", chosen[0])
        for name, route in (("predict", "/predict"), ("explain", "/explain")):
            point = sequential(f"{server.url}{route}", chosen)
            latency = point["latency_ms"]
            print(
                f"  MiniLM {name:<21} {len(chosen)} reviews, one at a time: mean {latency['mean']:,.1f} ms, "
                f"p50 {latency['p50']:,.1f} ms, max {latency['max']:,.1f} ms, {point['errors']} errors, "
                f"load {point['load'][0]:.2f}→{point['load'][1]:.2f}",
                flush=True,
            )
            result[name] = point
    result["ratio_mean_explain_over_predict"] = (
        result["explain"]["latency_ms"]["mean"] / result["predict"]["latency_ms"]["mean"]
    )
    return result


def agree(
    model: Path, texts: Sequence[str], count: int, budgets: Sequence[int], shap_evals: int, seed: int
) -> tuple[dict[str, Any], Pipeline, str]:
    pipeline = Pipeline.from_directory(model)
    column = text_column(pipeline)
    reviews = agreement.sample_reviews(pipeline, column, texts, count, seed)
    before = load1()
    found = agreement.sampling_agreement(pipeline, column, reviews, budgets, shap_evals, seed)
    found["load"] = [before, load1()]
    return found, pipeline, column


def text_column(pipeline: Pipeline) -> str:
    inputs = pipeline.graphs.inputs
    if len(inputs) != 1 or inputs[0].role != "text":
        raise SystemExit("explain_serving: the models must take exactly one text column")
    return inputs[0].name


def say_agreement(model: str, found: dict[str, Any]) -> None:
    floor = found["shap_vs_shap"]
    print(
        f"  {model}: {found['reviews']} reviews ({found['words_mean']:.0f} words on average), shap reference "
        f"{found['shap_evals']:,} evaluations per review in {found['reference_s_per_review']:.1f} s; shap vs "
        f"shap at {floor['evals_each']:,}: Spearman {floor['spearman_mean']:.3f}, top-5 "
        f"{floor['top5_mean']:.2f}; load {found['load'][0]:.2f}→{found['load'][1]:.2f}",
        flush=True,
    )
    for row in found["budgets"]:
        print(
            f"    budget {row['budget']:>4}: {row['evaluations_mean']:>6.1f} evaluations, "
            f"{row['ms_median']:>8.2f} ms/review, Spearman {row['spearman_mean']:.3f} "
            f"(median {row['spearman_median']:.3f}), top-5 {row['top5_mean']:.2f}",
            flush=True,
        )


# -- report -----------------------------------------------------------------------------------------------


def _ms(point: dict[str, Any], key: str) -> str:
    return f"{point['latency_ms'][key]:,.2f}"


def summary_markdown(results: dict[str, Any]) -> str:
    linear = results["linear"]
    http = linear["http"]
    lines = [
        (
            f"Load average (1 min) before / after: {results['load_before']} / {results['load_after']}; "
            f"{results['machine']['cores']} cores shared by the load client and the server; "
            f"{results['sizes']['seconds']:g} s per closed-loop level."
        ),
        "",
        (
            f"Linear model ({linear['family']}, explainer.onnx: {'yes' if linear['has_explainer'] else 'no'}), "
            "one `tripod serve`, one review per request:"
        ),
        "",
        (
            "| route | method | best req/s (closed loop) | at concurrency | p50 ms | p99 ms | "
            f"open loop {http['open_rate']:,.0f}/s p50 ms | p99 ms |"
        ),
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, route in http["routes"].items():
        top = http["best"][name]
        method = http["answers"][name].get("method", "-")
        opened = http["open"].get(name)
        lines.append(
            f"| `{route}` | {method} | {top['requests_per_s']:,.0f} | {top['concurrency']} | {_ms(top, 'p50')} | "
            f"{_ms(top, 'p99')} | {_ms(opened, 'p50') if opened else '-'} | {_ms(opened, 'p99') if opened else '-'} |"
        )
    ratios = http["ratios"]
    met = "met" if ratios["p99_explain_over_predict"] <= GOAL_P99_RATIO else "NOT met"
    lines += [
        "",
        (
            f"- p99 explain / predict at {http['open_rate']:,.0f} req/s: "
            f"**{ratios['p99_explain_over_predict']:.2f}×** (goal ≤ {GOAL_P99_RATIO:g}×: {met})"
        ),
        f"- best throughput explain / predict: **{ratios['throughput_explain_over_predict']:.2f}×**",
        f"- best throughput sampling / auto explain: {ratios['throughput_sampling_over_explain']:.2f}×",
    ]
    exact = linear.get("exact")
    if exact and "skipped" not in exact:
        lines.append(
            f"- exact (`explainer.onnx`) vs `shap.LinearExplainer` on {exact['reviews']} reviews: max |Δ| "
            f"{exact['max_abs_diff']:.1e} (contributions), {exact['max_abs_diff_base']:.1e} (base values); in "
            f"process per review: predict {exact['ms_median_predict']:.2f} ms, explain linear "
            f"{exact['ms_median_linear']:.2f} ms, sampling at {DEFAULT_BUDGET} "
            f"{exact['ms_median_sampling_64']:.2f} ms (medians)"
        )
    else:
        lines.append(
            f"- exact vs shap.LinearExplainer: skipped ({(exact or {}).get('skipped', 'no explainer.onnx')})"
        )
    minilm = results.get("minilm")
    if minilm and "skipped" not in minilm:
        http_m = minilm["http"]
        lines += [
            "",
            (
                f"MiniLM, one review at a time ({http_m['predict']['requests']} reviews, /explain at the "
                f"default budget of {DEFAULT_BUDGET}, method {http_m['answers']['explain'].get('method')}):"
            ),
            "",
            "| route | mean ms | p50 ms | max ms | errors |",
            "|---|---:|---:|---:|---:|",
        ]
        for name in ("predict", "explain"):
            point = http_m[name]
            lines.append(
                f"| `/{name}` | {_ms(point, 'mean')} | {_ms(point, 'p50')} | {_ms(point, 'max')} | "
                f"{point['errors']} |"
            )
        lines.append(f"\n- mean explain / predict: {http_m['ratio_mean_explain_over_predict']:.1f}×")
    else:
        lines += ["", f"MiniLM: skipped ({(minilm or {}).get('skipped', 'no --minilm-model')})"]
    lines += [
        "",
        (
            "Sampling against shap's permutation estimate of the same game (predicted class's probability, "
            "words as players), in process, one review per call:"
        ),
        "",
        (
            "| model | budget | evaluations | exact share | ms / review (median) | Spearman mean | median | "
            "min | top-5 overlap |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for model, found in agreement_sections(results):
        for row in found["budgets"]:
            lines.append(
                f"| {model} | {row['budget']} | {row['evaluations_mean']:.1f} | {row['exact_share']:.0%} | "
                f"{row['ms_median']:,.2f} | {row['spearman_mean']:.3f} | {row['spearman_median']:.3f} | "
                f"{row['spearman_min']:.3f} | {row['top5_mean']:.2f} |"
            )
        floor = found["shap_vs_shap"]
        lines.append(
            f"| {model}: shap vs shap ({floor['evals_each']:,} evaluations each, seeds {results['seed']}, "
            f"{results['seed'] + 1}) | | | | | {floor['spearman_mean']:.3f} | {floor['spearman_median']:.3f} | | "
            f"{floor['top5_mean']:.2f} |"
        )
    lines.append("")
    for model, found in agreement_sections(results):
        lines.append(
            f"- {model}: {found['reviews']} reviews, {found['words_mean']:.0f} words on average (at most "
            f"{found['words_max']}); reference: the mean of two shap runs, {found['shap_evals']:,} evaluations "
            f"per review, {found['reference_s_per_review']:.1f} s per review"
        )
    return "\n".join(lines) + "\n"


def agreement_sections(results: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    sections = [("linear", results["linear"]["agreement"])]
    minilm = results.get("minilm")
    if minilm and "agreement" in minilm:
        sections.append(("MiniLM", minilm["agreement"]))
    return sections


def write_csvs(out: Path, results: dict[str, Any]) -> list[Path]:
    serving = out / "explain_serving.csv"
    with serving.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["model", "route", "mode", "concurrency", "rate", "requests_per_s", "p50_ms", "p99_ms"]
        )
        http = results["linear"]["http"]
        for name, points in http["closed"].items():
            for p in points:
                writer.writerow(
                    ["linear", http["routes"][name], "closed", p["concurrency"], "", f"{p['requests_per_s']:.1f}",
                     f"{p['latency_ms']['p50']:.3f}", f"{p['latency_ms']['p99']:.3f}"]
                )  # fmt: skip
        for name, p in http["open"].items():
            writer.writerow(
                ["linear", http["routes"][name], "open", "", f"{p['rate']:.1f}", f"{p['requests_per_s']:.1f}",
                 f"{p['latency_ms']['p50']:.3f}", f"{p['latency_ms']['p99']:.3f}"]
            )  # fmt: skip
        minilm = results.get("minilm") or {}
        for name in ("predict", "explain") if "http" in minilm else ():
            p = minilm["http"][name]
            writer.writerow(
                ["minilm", f"/{name}", "sequential", 1, "", "", f"{p['latency_ms']['p50']:.3f}",
                 f"{p['latency_ms']['p99']:.3f}"]
            )  # fmt: skip
    table = out / "explain_agreement.csv"
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle)
        keys = ["budget", "evaluations_mean", "exact_share", "ms_median", "ms_mean", "spearman_mean",
                "spearman_median", "spearman_min", "top5_mean"]  # fmt: skip
        writer.writerow(["model", *keys])
        for model, found in agreement_sections(results):
            for row in found["budgets"]:
                writer.writerow([model, *(row[key] for key in keys)])
            floor = found["shap_vs_shap"]
            writer.writerow(
                [f"{model} shap vs shap", "", floor["evals_each"], "", "", "", floor["spearman_mean"],
                 floor["spearman_median"], "", floor["top5_mean"]]
            )  # fmt: skip
    return [serving, table]


def plot(out: Path, results: dict[str, Any]) -> Path:
    """Budget against time per review and against agreement with shap, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"linear": "#1f77b4", "MiniLM": "#d62728"}
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4))
    for model, found in agreement_sections(results):
        rows = found["budgets"]
        budgets = [row["budget"] for row in rows]
        color = colors.get(model)
        left.plot(budgets, [row["ms_median"] for row in rows], marker="o", color=color, label=model)
        right.plot(
            budgets,
            [row["spearman_mean"] for row in rows],
            marker="o",
            color=color,
            label=f"{model} Spearman",
        )
        right.plot(
            budgets,
            [row["top5_mean"] for row in rows],
            marker="x",
            linestyle="--",
            color=color,
            label=f"{model} top-5 overlap",
        )
        right.axhline(found["shap_vs_shap"]["spearman_mean"], color=color, linestyle=":", linewidth=1)
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("budget (model evaluations per review)")
        ax.grid(True, which="both", alpha=0.3)
    left.set_yscale("log")
    left.set_ylabel("ms per review, in process (median)")
    left.set_title("time", fontsize=10)
    right.set_ylim(0, 1.02)
    right.set_ylabel("agreement with shap (mean over reviews)")
    right.set_title("agreement with shap (dotted: shap vs shap)", fontsize=10)
    left.legend(fontsize=8)
    right.legend(fontsize=7, loc="lower right")
    fig.suptitle(
        f"/explain method=sampling: {results['machine']['cores']} cores; 1-min load average "
        f"{results['load_before']} at start, {results['load_after']} at end",
        fontsize=9,
    )
    fig.tight_layout()
    path = out / "explain_budget.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


# -- main -------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True, help="a linear Tripod model directory")
    parser.add_argument("--data", type=Path, required=True, help="prepared reviews (Parquet or CSV)")
    minilm = parser.add_mutually_exclusive_group()
    minilm.add_argument("--minilm-model", type=Path, help="a MiniLM model directory: measure it too")
    minilm.add_argument(
        "--minilm-build", action="store_true", help="fit (or reuse) a few-step MiniLM in --work"
    )
    parser.add_argument(
        "--out", type=Path, help="results (default docs/benchmarks/explain; with --quick, WORK/quick)"
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/tripod-explain-bench"), help="bodies, logs")
    parser.add_argument("--quick", action="store_true", help="every measurement, tiny: a smoke run of ~30 s")
    parser.add_argument("--seconds", type=float, help=f"per closed-loop level (default {FULL.seconds:g})")
    parser.add_argument("--concurrency", type=int, nargs="+", help="closed-loop levels (default 1 2 4 8)")
    parser.add_argument("--reviews", type=int, help=f"agreement sample (default {FULL.reviews})")
    parser.add_argument("--shap-evals", type=int, help=f"linear reference (default {FULL.shap_evals:,})")
    parser.add_argument("--minilm-reviews", type=int, help=f"default {FULL.minilm_reviews}")
    parser.add_argument("--minilm-shap-evals", type=int, help=f"default {FULL.minilm_shap_evals:,}")
    parser.add_argument("--seed", type=int, default=SEED, help="the review sample's and shap's seed")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    preset = QUICK if args.quick else FULL
    args.sizes = replace(
        preset,
        levels=tuple(args.concurrency or preset.levels),
        seconds=args.seconds or preset.seconds,
        reviews=args.reviews or preset.reviews,
        shap_evals=args.shap_evals or preset.shap_evals,
        minilm_reviews=args.minilm_reviews or preset.minilm_reviews,
        minilm_shap_evals=args.minilm_shap_evals or preset.minilm_shap_evals,
    )
    if not 0 < args.sizes.seconds <= 120:
        parser.error("--seconds must be in (0, 120]")
    if not all(1 <= c <= 256 for c in args.sizes.levels):
        parser.error("concurrency levels must be in 1..256")
    if min(args.sizes.shap_evals, args.sizes.minilm_shap_evals) < 20:
        parser.error("the shap reference needs at least 20 evaluations")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    sizes: Sizes = args.sizes
    work, model = args.work.resolve(), args.model.resolve()
    # A smoke run's numbers mean nothing: they never land in docs/ unless asked to.
    out = (args.out or (work / "quick" if args.quick else ROOT / "docs" / "benchmarks" / "explain")).resolve()
    for directory in (work, out):
        directory.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    load_before = [round(x, 2) for x in os.getloadavg()]
    print(f"machine: {os.cpu_count()} cores, load average {load_before} before", flush=True)
    manifest = ModelArtifact.from_directory(model).manifest
    columns = [column.name for column in manifest.inputs]
    records = held_out_records(args.data, manifest.target, columns, limit=2000, seed=SEED)
    texts = [record[columns[0]] for record in records]

    print("linear model over HTTP:", flush=True)
    http = serve_linear(model, records, sizes, work)
    print("linear model in process, sampling against shap:", flush=True)
    found, pipeline, column = agree(model, texts, sizes.reviews, sizes.budgets, sizes.shap_evals, args.seed)
    say_agreement("linear", found)
    linear: dict[str, Any] = {
        "model_dir": str(model),
        "family": manifest.candidate.family,
        "has_explainer": pipeline.has_exact_explainer,
        "http": http,
        "agreement": found,
    }
    if pipeline.has_exact_explainer:
        before = load1()
        chosen = [
            review.text
            for review in agreement.sample_reviews(pipeline, column, texts, sizes.reviews, args.seed)
        ]
        exact = agreement.exact_agreement(pipeline, model, column, chosen)
        exact["load"] = [before, load1()]
        if "skipped" not in exact:
            print(
                f"  exact vs shap.LinearExplainer: max |Δ| {exact['max_abs_diff']:.1e}, base "
                f"{exact['max_abs_diff_base']:.1e}; per review: predict {exact['ms_median_predict']:.2f} ms, "
                f"linear {exact['ms_median_linear']:.2f} ms, sampling {exact['ms_median_sampling_64']:.2f} ms; "
                f"load {exact['load'][0]:.2f}→{exact['load'][1]:.2f}",
                flush=True,
            )
        linear["exact"] = exact
    else:
        linear["exact"] = {"skipped": "the model has no explainer.onnx"}
        print("  exact vs shap.LinearExplainer: skipped (the model has no explainer.onnx)", flush=True)

    minilm_dir = args.minilm_model.resolve() if args.minilm_model else None
    if args.minilm_build:
        minilm_dir = build_minilm(args.data, work).model_dir
    minilm: dict[str, Any]
    if minilm_dir is None:
        minilm = {"skipped": "no --minilm-model"}
        print("MiniLM: skipped (no --minilm-model)", flush=True)
    else:
        print("MiniLM over HTTP:", flush=True)
        minilm = {"model_dir": str(minilm_dir), "http": serve_minilm(minilm_dir, records, sizes, work)}
        print("MiniLM in process, sampling against shap:", flush=True)
        minilm["agreement"], _, _ = agree(
            minilm_dir, texts, sizes.minilm_reviews, sizes.budgets, sizes.minilm_shap_evals, args.seed
        )
        say_agreement("MiniLM", minilm["agreement"])

    load_after = [round(x, 2) for x in os.getloadavg()]
    print(f"machine: load average {load_after} after", flush=True)
    results: dict[str, Any] = {
        "machine": machine() | {"shap": _version("shap")},
        "load_before": load_before,
        "load_after": load_after,
        "wall_s": round(time.monotonic() - started, 1),
        "quick": args.quick,
        "seed": args.seed,
        "sizes": {key: getattr(sizes, key) for key in Sizes.__dataclass_fields__},
        "goal_p99_ratio": GOAL_P99_RATIO,
        "linear": linear,
        "minilm": minilm,
    }
    summary = summary_markdown(results)
    (out / "explain_results.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
    (out / "explain_summary.md").write_text(summary)
    written = write_csvs(out, results)
    if not args.no_plot:
        written.append(plot(out, results))
    print("\n" + summary, flush=True)
    print(f"results in {out} ({results['wall_s']:.0f} s)", flush=True)
    return results


def _version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "-"


if __name__ == "__main__":
    main()

"""The serving benchmark's results (``serving_compare.py``): the variants measured, ratios, goals, the CSV and
Markdown summaries, and the plots."""

from __future__ import annotations

import csv
import json
import os
import platform
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import psutil

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
if str(ROOT) not in sys.path:  # run as a script: make harness/ and services/ importable
    sys.path.insert(0, str(ROOT))


GOALS = {
    "batched_vs_inprocess": 0.5,
    "batched_vs_sklearn": 2.0,
    "single_requests_per_s": 1500.0,
    "single_vs_best_peer": 1.5,
    "batched_vs_best_peer": 1.5,
    "single_p99_ms_at_half_max": 10.0,
    "cold_start_s": 5.0,
}


@dataclass
class Variant:
    name: str
    label: str
    start: Callable[[Path], Any] | None  # a context manager factory taking a log path; None: in-process
    points: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def best(variant: Variant, per_request: int) -> dict[str, Any] | None:
    points = [p for p in variant.points if p["records_per_request"] == per_request and not p["errors"]]
    return max(points, key=lambda p: p["records_per_s"]) if points else None


def ratios(variants: dict[str, Variant], batch: int, prefix: str = "") -> dict[str, float]:
    """Best records/s of each pair at saturation, per request shape."""
    out = {}
    pairs = [
        ("tripod", "inprocess"),
        ("tripod", "sklearn"),
        ("tripod", "fused"),
        ("tripod_services", "inprocess"),
        ("tripod_services", "sklearn"),
        ("tripod", "tripod_services"),
        ("tripod", "floor"),
        ("floor", "inprocess"),
        ("fused", "inprocess"),
        ("fused", "sklearn"),
        ("sklearn", "inprocess"),
        ("tripod", "torch"),
        ("tripod", "torch1"),
    ]
    peers = [
        name[len(prefix) :] for name, v in variants.items() if v.extra.get("peer") and name.startswith(prefix)
    ]
    if prefix == "":
        peers = [name for name in peers if not name.startswith("minilm_")]
    pairs += [(tripod, peer) for tripod in ("tripod", "tripod_no_access_log") for peer in peers]
    for shape, per_request in (("single", 1), ("batched", batch)):
        for a, b in pairs:
            va, vb = variants.get(prefix + a), variants.get(prefix + b)
            if va and vb and (pa := best(va, per_request)) and (pb := best(vb, per_request)):
                out[f"{prefix}{a}/{prefix}{b} {shape}"] = pa["records_per_s"] / pb["records_per_s"]
        tops = [top for peer in peers if (top := best(variants[prefix + peer], per_request))]
        for name in ("tripod", "tripod_no_access_log"):
            tripod = variants.get(prefix + name)
            if tripod and tops and (mine := best(tripod, per_request)):
                most = max(t["records_per_s"] for t in tops)
                out[f"{prefix}{name}/best peer {shape}"] = mine["records_per_s"] / most
    return out


def label_agreement(variants: dict[str, Variant]) -> dict[str, float | None]:
    """Share of the check records on which each variant's label equals its in-process runtime's."""
    out: dict[str, float | None] = {}
    for name, variant in variants.items():
        reference = variants.get("minilm_inprocess" if name.startswith("minilm_") else "inprocess")
        if reference is None or variant is reference or name == "floor":  # the floor has no model to agree
            continue
        mine, theirs = variant.extra.get("labels"), reference.extra.get("labels")
        out[name] = (
            sum(a == b for a, b in zip(mine, theirs, strict=True)) / len(theirs)
            if mine and theirs and len(mine) == len(theirs)
            else None
        )
    return out


def machine() -> dict[str, Any]:
    model = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").exists()
        else ""
    )

    def v(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "-"

    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {
            name: v(name)
            for name in (
                "bentoml",
                "onnxruntime",
                "scikit-learn",
                "torch",
                "transformers",
                "aiohttp",
                "locust",
            )
        },
    }


def write_csv(path: Path, variants: dict[str, Variant]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "variant",
                "records_per_request",
                "concurrency",
                "rate",
                "records_per_s",
                "requests_per_s",
                "p50_ms",
                "p90_ms",
                "p99_ms",
                "max_ms",
                "requests",
                "errors",
            ]
        )
        for variant in variants.values():
            points = list(variant.points)
            if "half_max_single" in variant.extra:
                points.append(variant.extra["half_max_single"])
            for p in points:
                lat = p["latency_ms"]
                writer.writerow(
                    [
                        variant.name,
                        p["records_per_request"],
                        p["concurrency"] or "",
                        f"{p['rate']:.1f}" if p["rate"] else "",
                        f"{p['records_per_s']:.1f}",
                        f"{p['requests_per_s']:.1f}",
                        *(f"{lat[k]:.2f}" for k in ("p50", "p90", "p99", "max")),
                        p["requests"],
                        p["errors"],
                    ]
                )


def summary_markdown(results: dict[str, Any], variants: dict[str, Variant], batch: int) -> str:
    lines = [
        (
            f"Load average before / after: {results['load_before']} / {results['load_after']}; "
            f"{results['seconds']:g} s per level; {results['machine']['cores']} cores shared by client and "
            "server."
        ),
        "",
        "| variant | records/request | best records/s | at concurrency | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for variant in variants.values():
        for per_request in sorted({p["records_per_request"] for p in variant.points}):
            top = best(variant, per_request)
            if top:
                lines.append(
                    f"| {variant.label} | {per_request} | {top['records_per_s']:,.0f} | "
                    f"{top['concurrency']} | {top['latency_ms']['p50']:.1f} | "
                    f"{top['latency_ms']['p99']:.1f} |"
                )
    lines += [
        "",
        "| variant | cold start to ready s | single-review p99 ms at half max | all processes RSS MiB | install MiB |",
        "|---|---|---|---|---|",
    ]
    for variant in variants.values():
        if variant.start is None and "cold_start_s" not in variant.extra:
            continue
        slo = variant.extra.get("half_max_single")
        total = variant.extra.get("memory_total")
        lines.append(
            f"| {variant.label} | {variant.extra.get('cold_start_s', float('nan')):.1f} | "
            f"{slo['latency_ms']['p99'] if slo else float('nan'):.1f} | "
            f"{total['rss_mib'] if total else float('nan'):.0f} | {variant.extra.get('install_mib', '-')} |"
        )
    lines += ["", "| variant | labels equal to the in-process runtime's |", "|---|---|"]
    lines += [
        f"| {variants[n].label} | {'-' if v is None else f'{v:.1%}'} |"
        for n, v in results["label_agreement"].items()
    ]
    lines += ["", "| ratio at saturation | value |", "|---|---|"]
    lines += [f"| {name} | {value:.2f}× |" for name, value in results["ratios"].items()]
    lines += ["", "| goal | target | measured | met |", "|---|---|---|---|"]
    for goal in results["goals"]:
        measured = goal["measured"]
        lines.append(
            f"| {goal['goal']} | {goal['target']} | "
            f"{'-' if measured is None else f'{measured:.2f}'} | {goal['met']} |"
        )
    lines += ["", "| variant | process | RSS MiB | USS MiB |", "|---|---|---|---|"]
    for variant in variants.values():
        if total := variant.extra.get("memory_total"):
            lines.append(
                f"| {variant.label} | all {total['processes']} processes | {total['rss_mib']:.0f} | "
                f"{total['uss_mib']:.0f} |"
            )
        for row in variant.extra.get("memory", []):
            lines.append(f"| {variant.label} | {row['role']} | {row['rss_mib']:.0f} | {row['uss_mib']:.0f} |")
    return "\n".join(lines) + "\n"


def goals(variants: dict[str, Variant], ratio: dict[str, float], cold: list[float]) -> list[dict[str, Any]]:
    tripod = variants.get("tripod")
    slo = tripod.extra.get("half_max_single") if tripod else None
    single = best(tripod, 1) if tripod else None
    measured = {
        "batched_vs_inprocess": ratio.get("tripod/inprocess batched"),
        "batched_vs_sklearn": ratio.get("tripod/sklearn batched"),
        "single_requests_per_s": single["requests_per_s"] if single else None,
        "single_vs_best_peer": ratio.get("tripod/best peer single"),
        "batched_vs_best_peer": ratio.get("tripod/best peer batched"),
        "single_p99_ms_at_half_max": slo["latency_ms"]["p99"] if slo else None,
        "cold_start_s": statistics.median(cold) if cold else None,
    }
    text = {
        "batched_vs_inprocess": ("Tripod HTTP / in-process, batched, at saturation", "≥ 0.5×", True),
        "batched_vs_sklearn": ("Tripod HTTP / hand-written scikit-learn, batched", "≥ 2×", True),
        "single_requests_per_s": ("Tripod single-review requests/s, best over the sweep", "≥ 1,500", True),
        "single_vs_best_peer": ("Tripod / the best peer, single reviews, records/s", "≥ 1.5×", True),
        "batched_vs_best_peer": ("Tripod / the best peer, batched, records/s", "≥ 1.5×", True),
        "single_p99_ms_at_half_max": ("single-review p99 at half of max throughput (ms)", "≤ 10", False),
        "cold_start_s": ("cold start to /readyz (s, median)", "≤ 5", False),
    }
    out = []
    for key, (goal, target, higher) in text.items():
        value = measured[key]
        met = None if value is None else (value >= GOALS[key] if higher else value <= GOALS[key])
        out.append(
            {
                "key": key,
                "goal": goal,
                "target": target,
                "measured": value,
                "met": {None: "not measured", True: "yes", False: "no"}[met],
            }
        )
    return out


COLORS = {
    "inprocess": "#555555",
    "tripod": "#1f77b4",
    "tripod_no_access_log": "#aec7e8",
    "tripod_services": "#17becf",
    "fused": "#2ca02c",
    "sklearn": "#d62728",
    "floor": "#bcbd22",
    "minilm_inprocess": "#555555",
    "minilm_tripod": "#1f77b4",
    "minilm_torch": "#9467bd",
    "minilm_torch1": "#e377c2",
    "mlserver_sklearn": "#ff7f0e",
    "mlserver_onnx": "#ffbb78",
    "kserve_v1": "#8c564b",
    "kserve_v2": "#c49c94",
    "ray": "#7f7f7f",
    "pytriton": "#76b900",
    "minilm_mlserver_onnx": "#ffbb78",
    "minilm_kserve_v1": "#8c564b",
    "minilm_kserve_v2": "#c49c94",
    "minilm_ray": "#7f7f7f",
    "minilm_pytriton": "#76b900",
}


def _by_shape(ax, chosen: dict[str, Variant], per_request: int, draw) -> None:  # type: ignore[no-untyped-def]
    from matplotlib.ticker import FuncFormatter

    for variant in chosen.values():
        points = sorted(
            (p for p in variant.points if p["records_per_request"] == per_request),
            key=lambda p: p["concurrency"],
        )
        if points:
            draw(ax, variant, [p["concurrency"] for p in points], points)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.10g}"))
    ax.yaxis.set_minor_formatter(  # label 2× and 5× of each decade, the others stay plain ticks
        FuncFormatter(lambda value, _: f"{value:,.10g}" if f"{value:.0e}"[0] in "25" else "")
    )
    ax.tick_params(axis="y", which="minor", labelsize=7)
    ax.set_xlabel("concurrent clients (closed loop)")
    ax.set_title(f"{per_request} record{'s' if per_request > 1 else ''} per request", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)


def plot(
    out: Path, variants: dict[str, Variant], ratio: dict[str, float], subtitle: str, prefix: str = ""
) -> list[Path]:
    """Throughput and latency against concurrency (one panel per request shape) and the ratio bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = {k: v for k, v in variants.items() if k.startswith("minilm_") == bool(prefix)}
    shapes = sorted({p["records_per_request"] for v in chosen.values() for p in v.points})
    title = "MiniLM: " if prefix else ""
    written = []

    def throughput(ax, variant, xs, points):  # type: ignore[no-untyped-def]
        ys = [p["records_per_s"] for p in points]
        ax.plot(xs, ys, marker="o", label=variant.label, color=COLORS.get(variant.name))

    def latency(ax, variant, xs, points):  # type: ignore[no-untyped-def]
        color = COLORS.get(variant.name)
        ax.plot(
            xs,
            [p["latency_ms"]["p50"] for p in points],
            marker="o",
            color=color,
            label=f"{variant.label} p50",
        )
        ax.plot(
            xs,
            [p["latency_ms"]["p99"] for p in points],
            marker="x",
            linestyle="--",
            color=color,
            label=f"{variant.label} p99",
        )

    for name, draw, ylabel, what in (
        ("throughput_vs_concurrency", throughput, "records / s", "throughput"),
        ("latency_percentiles", latency, "latency ms (p50 solid, p99 dashed)", "latency percentiles"),
    ):
        fig, axes = plt.subplots(1, len(shapes), figsize=(5 * len(shapes), 4.6), squeeze=False)
        for ax, per_request in zip(axes[0], shapes, strict=True):
            _by_shape(ax, chosen, per_request, draw)
            ax.set_ylabel(ylabel)
        handles, labels = axes[0][0].get_legend_handles_labels()
        columns = 4 if draw is latency else 3
        rows = -(-len(labels) // columns)
        fig.set_figheight(4.6 + 0.18 * rows)
        fig.legend(handles, labels, loc="lower center", ncol=columns, fontsize=7)
        fig.suptitle(f"{title}{what} vs concurrency\n{subtitle}", fontsize=9)
        fig.tight_layout(rect=(0, 0.045 * rows, 1, 1))
        written.append(out / f"{prefix}{name}.png")
        fig.savefig(written[-1], dpi=80)
        plt.close(fig)

    chosen_ratios = {k: v for k, v in ratio.items() if k.startswith("minilm_") == bool(prefix)}
    if chosen_ratios:
        names = list(chosen_ratios)
        fig, ax = plt.subplots(figsize=(7, 0.32 * len(names) + 1.4))
        colors = ["#1f77b4" if "tripod" in n.split("/")[0] else "#999999" for n in names]
        ax.barh([n.replace("minilm_", "") for n in names], [chosen_ratios[n] for n in names], color=colors)
        ax.axvline(1.0, color="black", linewidth=0.8)
        if not prefix:
            for goal in (
                GOALS["batched_vs_inprocess"],
                GOALS["single_vs_best_peer"],
                GOALS["batched_vs_sklearn"],
            ):
                ax.axvline(goal, color="#d62728", linestyle=":", linewidth=1.2)
        for i, n in enumerate(names):
            ax.text(chosen_ratios[n], i, f" {chosen_ratios[n]:.2f}×", va="center", fontsize=7)
        ax.set_xscale("log")
        ax.tick_params(axis="y", labelsize=8)
        ax.set_xlabel(
            "ratio of best records/s" + ("" if prefix else "; red dotted: the 0.5×, 1.5× and 2× goals"),
            fontsize=8,
        )
        ax.invert_yaxis()
        ax.set_title(f"{title}throughput ratios at saturation (blue: Tripod's)\n{subtitle}", fontsize=9)
        fig.tight_layout()
        written.append(out / f"{prefix}ratios.png")
        fig.savefig(written[-1], dpi=80)
        plt.close(fig)
    return written


def replot(results_path: Path, out: Path) -> dict[str, Any]:
    """Redraw the PNGs of an earlier run from its JSON (no measurement)."""
    results = json.loads(results_path.read_text())
    variants = {name: Variant(name, v["label"], None, v["points"]) for name, v in results["variants"].items()}
    subtitle = (
        f"{results['machine']['cores']} cores shared by client and server; 1-min load average "
        f"{results['load_before'][0]} at start, {results['load_after'][0]} at end"
    )
    out.mkdir(parents=True, exist_ok=True)
    written = plot(out, variants, results["ratios"], subtitle)
    if any(name.startswith("minilm_") for name in variants):
        written += plot(out, variants, results["ratios"], subtitle, prefix="minilm_")
    print("\n".join(str(path) for path in written))
    return results

"""``make bench``: Tripod's HTTP pipeline against the in-process runtime, a fused graph, services by hand.

One run measures, on the same held-out reviews and the same request bodies, throughput and latency against
concurrency of:

- ``inprocess``: the pipeline called in-process (``Pipeline.predict`` on decoded records, from threads): the
  ceiling, no HTTP, no JSON;
- ``tripod``: ``tripod serve`` with its defaults (the three ONNX stages run in the entry worker), ``POST /predict``;
- ``tripod_services``: ``tripod serve`` with ``TRIPOD_STAGES=services`` (three BentoML stage services composed with
  ``bentoml.depends``, adaptive batching);
- ``fused``: the three graphs merged into one, one BentoML service (``serving_fused_service.py``);
- ``floor``: the same route, requests and answer shape with no model (``serving_floor_service.py``): what
  BentoML, HTTP and JSON allow before any inference;
- ``sklearn``: the fitted scikit-learn pipeline pickled in one BentoML service, written as a user would
  (``serving_sklearn_service.py``, BentoML's defaults);
- with ``--minilm-model DIR`` or ``--minilm-build``: ``minilm_inprocess``, ``minilm_tripod`` and
  ``minilm_torch`` (plain ``transformers`` + PyTorch in one BentoML service, ``serving_torch_service.py``).

Each HTTP variant runs as its own server on loopback, driven by ``serving_client.py`` in a separate process
(closed loop at each concurrency level, then an open loop of single reviews at half the variant's best
throughput for the latency SLO).  The 2 cores are shared by client and server, identically for every variant.
Cold start and memory per process come from the same servers (and ``serving_footprint.py``'s helper).

Results: ``OUT/serving_results.json`` and ``.csv``, ``OUT/serving_summary.md``, and PNG plots; logs and the
generated model, sample and bodies under ``--work`` (git-ignored).

Usage:
    python benchmarks/serving_compare.py --data data/reviews.parquet [--out docs/benchmarks]
        [--work loadtests/results/bench] [--concurrency 1 2 4 8 16 32] [--seconds 4] [--batch 32]
        [--variants inprocess tripod fused sklearn] [--minilm-build | --minilm-model DIR [--minilm-hf DIR]]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import psutil

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
if str(ROOT) not in sys.path:  # run as a script: make loadtests/ importable
    sys.path.insert(0, str(ROOT))

import serving_artifacts as artifacts  # noqa: E402
from serving_client import percentile  # noqa: E402
from serving_footprint import server_tree_memory_mb  # noqa: E402

from harness.server import (  # noqa: E402
    RunningServer,
    free_port,
    http_json,
    running_command,
    running_server,
)
from services.runtime.pipeline import Pipeline  # noqa: E402
from services.runtime.schema import Records  # noqa: E402

CLIENT = BENCH / "serving_client.py"
CHECK_RECORDS = 200
"""Held-out records every variant answers once after its load, to compare its labels with the runtime's."""
GOALS = {
    "batched_vs_inprocess": 0.7,
    "batched_vs_sklearn": 2.0,
    "single_p99_ms_at_half_max": 20.0,
    "cold_start_s": 5.0,
}


@dataclass
class Variant:
    name: str
    label: str
    start: Callable[[Path], Any] | None  # a context manager factory taking a log path; None: in-process
    points: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


# -- servers -------------------------------------------------------------------------------------------------


@contextmanager
def bentoml_service(target: str, env: dict[str, str], log: Path) -> Iterator[RunningServer]:
    """``bentoml serve`` of a service module in ``benchmarks/`` on a loopback port, with a BENTOML_HOME of its
    own (BentoML empties its Prometheus folder at start, which would wipe another server's)."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        target,
        "--working-dir",
        str(BENCH),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with (
        tempfile.TemporaryDirectory(prefix="bentoml-home-") as home,
        running_command(command, port, env={**env, "BENTOML_HOME": home}, log_path=log) as server,
    ):
        yield server


def process_memory(pid: int) -> list[dict[str, Any]]:
    """RSS and USS (MiB) of every process of a server tree, with a short name from its command line."""
    root = psutil.Process(pid)
    rows = []
    for process in [root, *root.children(recursive=True)]:
        try:
            info = process.memory_full_info()
            cmd = " ".join(process.cmdline())
        except psutil.Error:
            continue
        rows.append(
            {"pid": process.pid, "rss_mib": info.rss / 2**20, "uss_mib": info.uss / 2**20, "role": _role(cmd)}
        )
    return rows


def _role(cmd: str) -> str:
    for marker, role in (("tripod.cli", "tripod CLI"), ("--service-name", "worker"), ("worker_id", "worker")):
        if marker in cmd:
            if role == "worker" and "--service-name" in cmd:
                return "worker " + cmd.split("--service-name", 1)[1].split()[0]
            return role
    if "bentoml" in cmd and " serve " in f" {cmd} ":
        return "bentoml supervisor"
    return cmd.split(" ")[-1][:60] if cmd else "?"


# -- measurement ---------------------------------------------------------------------------------------------


def drive(
    url: str,
    bodies: Path,
    per_request: int,
    *,
    concurrency: int | None = None,
    rate: float | None = None,
    seconds: float,
    warmup_s: float,
) -> dict[str, Any]:
    """One measurement by the client process; the result dict of ``serving_client.py``."""
    mode = ["--concurrency", str(concurrency)] if concurrency else ["--rate", f"{rate:.3f}"]
    command = [
        sys.executable,
        str(CLIENT),
        "--url",
        url,
        "--bodies",
        str(bodies),
        "--records-per-request",
        str(per_request),
        "--seconds",
        str(seconds),
        "--warmup-s",
        str(warmup_s),
        *mode,
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + warmup_s + 120, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"load client failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout)


def drive_inprocess(
    pipeline: Pipeline,
    batches: list[Records],
    per_request: int,
    concurrency: int,
    seconds: float,
    warmup_s: float,
) -> dict[str, Any]:
    """Closed loop of ``concurrency`` threads calling the runtime directly (onnxruntime releases the GIL)."""
    latencies: list[float] = []
    lock = threading.Lock()
    start = time.perf_counter() + warmup_s
    deadline = start + seconds

    def client(offset: int) -> None:
        mine, i = [], offset
        while (now := time.perf_counter()) < deadline:
            pipeline.predict(batches[i % len(batches)])
            i += concurrency
            finished = time.perf_counter()
            if start <= finished <= deadline:
                mine.append(finished - now)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ms = sorted(x * 1000 for x in latencies)
    return {
        "requests": len(ms),
        "ok": len(ms),
        "errors": 0,
        "error_samples": [],
        "elapsed_s": seconds,
        "requests_per_s": len(ms) / seconds,
        "records_per_s": len(ms) * per_request / seconds,
        "latency_ms": {
            "mean": statistics.fmean(ms) if ms else float("nan"),
            "p50": percentile(ms, 50),
            "p90": percentile(ms, 90),
            "p99": percentile(ms, 99),
            "max": ms[-1] if ms else float("nan"),
        },
        "concurrency": concurrency,
        "rate": None,
        "records_per_request": per_request,
    }


def measure_inprocess(
    variant: Variant,
    model_dir: Path,
    records: list[dict[str, str]],
    shapes: Sequence[int],
    levels: Sequence[int],
    seconds: float,
) -> None:
    pipeline = Pipeline.from_directory(model_dir)
    check = pipeline.predict(Records(records[:CHECK_RECORDS]))
    assert check.labels is not None
    variant.extra["labels"] = [str(label) for label in check.labels]
    for per_request in shapes:
        batches = [
            Records([records[(i * per_request + j) % len(records)] for j in range(per_request)])
            for i in range(200)
        ]
        pipeline.predict(batches[0])
        for level in levels:
            point = drive_inprocess(pipeline, batches, per_request, level, seconds, warmup_s=0.5)
            variant.points.append(point)
            _say(variant, point)


def _labels(answer: tuple[int, object]) -> list[str] | None:
    status, body = answer
    return [row["predicted_label"] for row in body] if status == 200 and isinstance(body, list) else None


def measure_server(
    variant: Variant,
    bodies: dict[int, Path],
    levels: Sequence[int],
    seconds: float,
    logs: Path,
    slo_seconds: float,
    check_records: list[dict[str, str]],
) -> None:
    assert variant.start is not None
    with variant.start(logs / f"{variant.name}.log") as server:
        variant.extra["cold_start_s"] = server.cold_start_s
        url = f"{server.url}/predict"
        smallest = min(bodies)
        drive(url, bodies[smallest], smallest, concurrency=4, seconds=2, warmup_s=0)  # warm-up, not recorded
        staged = "tripod" in variant.name
        for per_request, path in sorted(bodies.items()):
            for level in levels:
                before = stage_seconds(server.url) if staged else {}
                point = drive(url, path, per_request, concurrency=level, seconds=seconds, warmup_s=0.5)
                if staged:  # where a request's time goes, seen from the entry service (means over the point)
                    after = stage_seconds(server.url)
                    point["stage_ms"] = {
                        stage: 1000
                        * (total - before.get(stage, (0, 0))[0])
                        / (n - before.get(stage, (0, 0))[1])
                        for stage, (total, n) in after.items()
                        if n > before.get(stage, (0, 0))[1]
                    }
                variant.points.append(point)
                _say(variant, point)
        single = [p for p in variant.points if p["records_per_request"] == 1 and p["concurrency"]]
        if single and slo_seconds > 0:
            best = max(p["requests_per_s"] for p in single)
            point = drive(url, bodies[1], 1, rate=best / 2, seconds=slo_seconds, warmup_s=1)
            variant.extra["half_max_single"] = point
            print(
                f"  {variant.name}: single reviews at {best / 2:,.0f}/s (half of max): "
                f"p50 {point['latency_ms']['p50']:.1f} ms, p99 {point['latency_ms']['p99']:.1f} ms, "
                f"{point['errors']} errors",
                flush=True,
            )
        variant.extra["memory"] = process_memory(server.pid)
        processes, rss, uss = server_tree_memory_mb(server.pid)
        variant.extra["memory_total"] = {"processes": processes, "rss_mib": rss, "uss_mib": uss}
        chunk = max(
            bodies
        )  # requests of the batched shape: a MiniLM stage refuses (503) what it cannot batch
        parts = [
            _labels(http_json(url, {"records": check_records[i : i + chunk]}, timeout=120))
            for i in range(0, len(check_records), chunk)
        ]
        variant.extra["labels"] = None if None in parts else [label for part in parts for label in part or []]


def stage_seconds(url: str) -> dict[str, tuple[float, float]]:
    """``{stage: (seconds, count)}`` of ``tripod_stage_duration_seconds`` in a Tripod server's metrics."""
    import urllib.request

    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
        text = response.read().decode()
    out: dict[str, list[float]] = {}
    for line in text.splitlines():
        for suffix, index in (("_sum", 0), ("_count", 1)):
            prefix = f"tripod_stage_duration_seconds{suffix}{{"
            if line.startswith(prefix):
                labels, value = line[len(prefix) :].rsplit("}", 1)
                stage = next(
                    (
                        part.split("=", 1)[1].strip('"')
                        for part in labels.split(",")
                        if part.startswith("stage=")
                    ),
                    "?",
                )
                out.setdefault(stage, [0.0, 0.0])[index] += float(value)
    return {stage: (total, count) for stage, (total, count) in out.items()}


def _say(variant: Variant, point: dict[str, Any]) -> None:
    print(
        f"  {variant.name:>16} {point['records_per_request']:>3} rec/req  c={point['concurrency']:<3} "
        f"{point['records_per_s']:>9,.0f} rec/s  {point['requests_per_s']:>7,.0f} req/s  "
        f"p50 {point['latency_ms']['p50']:>7.1f} ms  p99 {point['latency_ms']['p99']:>7.1f} ms"
        + (f"  {point['errors']} ERRORS {point['error_samples'][:2]}" if point["errors"] else "")
        + (
            "  stages ms " + " ".join(f"{k} {v:.1f}" for k, v in point["stage_ms"].items())
            if point.get("stage_ms")
            else ""
        ),
        flush=True,
    )


def cold_starts(model_dir: Path, runs: int, logs: Path) -> list[float]:
    """``tripod serve`` spawn → first 200 from ``/readyz``, as ``serving_footprint.py`` measures it."""
    values = []
    for i in range(runs):
        with running_server(model_dir, log_path=logs / f"cold_start_{i}.log") as server:
            values.append(server.cold_start_s)
    return values


# -- results -------------------------------------------------------------------------------------------------


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
    for shape, per_request in (("single", 1), ("batched", batch)):
        for a, b in pairs:
            va, vb = variants.get(prefix + a), variants.get(prefix + b)
            if va and vb and (pa := best(va, per_request)) and (pb := best(vb, per_request)):
                out[f"{prefix}{a}/{prefix}{b} {shape}"] = pa["records_per_s"] / pb["records_per_s"]
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
    measured = {
        "batched_vs_inprocess": ratio.get("tripod/inprocess batched"),
        "batched_vs_sklearn": ratio.get("tripod/sklearn batched"),
        "single_p99_ms_at_half_max": slo["latency_ms"]["p99"] if slo else None,
        "cold_start_s": statistics.median(cold) if cold else None,
    }
    text = {
        "batched_vs_inprocess": ("Tripod HTTP / in-process, batched, at saturation", "≥ 0.7×", True),
        "batched_vs_sklearn": ("Tripod HTTP / hand-written scikit-learn, batched", "≥ 2×", True),
        "single_p99_ms_at_half_max": ("single-review p99 at half of max throughput (ms)", "≤ 20", False),
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


# -- plots ---------------------------------------------------------------------------------------------------


COLORS = {
    "inprocess": "#555555",
    "tripod": "#1f77b4",
    "tripod_services": "#17becf",
    "fused": "#2ca02c",
    "sklearn": "#d62728",
    "floor": "#bcbd22",
    "minilm_inprocess": "#555555",
    "minilm_tripod": "#1f77b4",
    "minilm_torch": "#9467bd",
    "minilm_torch1": "#e377c2",
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
        fig.legend(
            handles, labels, loc="lower center", ncol=4 if draw is latency else len(chosen), fontsize=7
        )
        fig.suptitle(f"{title}{what} vs concurrency\n{subtitle}", fontsize=9)
        fig.tight_layout(rect=(0, 0.1 if draw is latency else 0.06, 1, 1))
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
            for goal in (GOALS["batched_vs_inprocess"], GOALS["batched_vs_sklearn"]):
                ax.axvline(goal, color="#d62728", linestyle=":", linewidth=1.2)
        for i, n in enumerate(names):
            ax.text(chosen_ratios[n], i, f" {chosen_ratios[n]:.2f}×", va="center", fontsize=7)
        ax.set_xscale("log")
        ax.tick_params(axis="y", labelsize=8)
        ax.set_xlabel(
            "ratio of best records/s" + ("" if prefix else "; red dotted: the 0.7× and 2× goals"), fontsize=8
        )
        ax.invert_yaxis()
        ax.set_title(f"{title}throughput ratios at saturation (blue: Tripod's)\n{subtitle}", fontsize=9)
        fig.tight_layout()
        written.append(out / f"{prefix}ratios.png")
        fig.savefig(written[-1], dpi=80)
        plt.close(fig)
    return written


# -- main ----------------------------------------------------------------------------------------------------


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


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "reviews.parquet", help="prepared table")
    parser.add_argument("--sample", type=int, default=None, help="train the TF-IDF model on this many rows")
    parser.add_argument("--work", type=Path, default=ROOT / "loadtests" / "results" / "bench")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["inprocess", "tripod", "tripod_services", "fused", "sklearn", "floor"],
        choices=["inprocess", "tripod", "tripod_services", "fused", "sklearn", "floor"],
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--batch", type=int, default=32, help="records per batched request")
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per level")
    parser.add_argument("--slo-seconds", type=float, default=10.0, help="open-loop run at half max (0: skip)")
    parser.add_argument("--cold-start-runs", type=int, default=3, help="extra tripod serve starts (0: skip)")
    minilm = parser.add_mutually_exclusive_group()
    minilm.add_argument("--minilm-model", type=Path, help="a MiniLM Tripod model directory to compare")
    minilm.add_argument("--minilm-build", action="store_true", help="fit a few-step MiniLM and compare it")
    parser.add_argument("--minilm-hf", type=Path, help="save_pretrained weights matching --minilm-model")
    parser.add_argument("--minilm-concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--minilm-batch", type=int, default=8, help="records per batched MiniLM request")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument(
        "--replot", type=Path, help="only redraw the PNGs of this serving_results.json into --out"
    )
    args = parser.parse_args(argv)
    if args.minilm_hf and not args.minilm_model:
        parser.error("--minilm-hf needs --minilm-model")
    if not all(1 <= c <= 256 for c in [*args.concurrency, *args.minilm_concurrency]):
        parser.error("concurrency levels must be in 1..256")
    if not 0 < args.seconds <= 120:
        parser.error("--seconds must be in (0, 120]")
    return args


def minilm_variants(args: argparse.Namespace, work: Path) -> tuple[dict[str, Variant], Path]:
    from services.artifacts import ModelArtifact

    if args.minilm_build:
        built = artifacts.build_minilm(args.data, work)
    else:
        built = artifacts.MiniLMArtifacts(
            args.minilm_model.resolve(), args.minilm_hf, args.minilm_hf is not None
        )
    manifest = ModelArtifact.from_directory(built.model_dir).manifest
    text = manifest.inputs[0].name
    max_length = manifest.stages["transformer"].outputs[0].shape[-1]
    if built.hf_dir is not None:
        hf_env = {"HF_MODEL_DIR": str(built.hf_dir)}
    else:  # the bundled base weights with a fresh head: the same computation, not the same answers
        from training.automl.families.minilm import model_path

        hf_env = {"HF_MODEL_DIR": str(model_path()), "HF_LABELS": ",".join(manifest.labels)}
    hf_env |= {"HF_MAX_LENGTH": str(max_length), "HF_INPUT": text, "HF_HUB_OFFLINE": "1"}
    candidate = manifest.candidate
    variants = {
        "minilm_inprocess": Variant("minilm_inprocess", "MiniLM in-process ONNX", None),
        "minilm_tripod": Variant(
            "minilm_tripod",
            "MiniLM Tripod HTTP (stages in the entry worker)",
            lambda log: running_server(built.model_dir, log_path=log),
        ),
        "minilm_torch": Variant(
            "minilm_torch",
            "MiniLM hand-written transformers",
            lambda log: bentoml_service("serving_torch_service:HandWrittenTransformers", hf_env, log),
        ),
        # PyTorch's default (one intra-op thread per core) oversubscribes 2 cores shared with the client; one
        # thread, like each of Tripod's onnxruntime stages, shows the same service without that penalty.
        "minilm_torch1": Variant(
            "minilm_torch1",
            "MiniLM hand-written transformers, 1 thread",
            lambda log: bentoml_service(
                "serving_torch_service:HandWrittenTransformers", {**hf_env, "HF_TORCH_THREADS": "1"}, log
            ),
        ),
    }
    variants["minilm_tripod"].extra["model"] = {
        "family": candidate.family,
        "max_length": max_length,
        "same_weights": built.same_weights,
        "quantized": artifacts.is_quantized(built.model_dir / manifest.stages["classifier"].file),
    }
    return variants, built.model_dir


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.replot:
        return replot(args.replot, args.out)
    work, out = args.work.resolve(), args.out.resolve()
    logs = work / "logs"
    for directory in (work, out, logs):
        directory.mkdir(parents=True, exist_ok=True)
    load_before = [round(x, 2) for x in os.getloadavg()]
    started = time.monotonic()
    print(f"load average {load_before}; preparing artifacts under {work}", flush=True)
    tfidf = artifacts.prepare_tfidf(args.data, work, sample=args.sample)
    shapes = sorted({1, args.batch})
    bodies = {n: artifacts.write_bodies(work / f"bodies_{n}.jsonl", tfidf.records, n) for n in shapes}

    all_variants = {
        "inprocess": Variant("inprocess", "in-process ONNX runtime (ceiling)", None),
        "tripod": Variant(
            "tripod",
            "Tripod HTTP (3 stages in the entry worker, default)",
            lambda log: running_server(tfidf.model_dir, log_path=log),
        ),
        "tripod_services": Variant(
            "tripod_services",
            "Tripod HTTP (3 stage services)",
            lambda log: running_server(tfidf.model_dir, env={"TRIPOD_STAGES": "services"}, log_path=log),
        ),
        "fused": Variant(
            "fused",
            "fused graph, one service",
            lambda log: bentoml_service(
                "serving_fused_service:FusedPipeline",
                {"FUSED_ONNX": str(tfidf.fused_onnx), "FUSED_MODEL_DIR": str(tfidf.model_dir)},
                log,
            ),
        ),
        "floor": Variant(
            "floor",
            "BentoML floor: same requests, no model",
            lambda log: bentoml_service("serving_floor_service:Floor", {}, log),
        ),
        "sklearn": Variant(
            "sklearn",
            "hand-written scikit-learn service",
            lambda log: bentoml_service(
                "serving_sklearn_service:HandWrittenSklearn",
                {"SKLEARN_PIPELINE": str(tfidf.sklearn_pickle)},
                log,
            ),
        ),
    }
    variants = {name: all_variants[name] for name in all_variants if name in args.variants}
    for variant in variants.values():
        print(f"{variant.label}:", flush=True)
        if variant.start is None:
            measure_inprocess(variant, tfidf.model_dir, tfidf.records, shapes, args.concurrency, args.seconds)
        else:
            measure_server(
                variant,
                bodies,
                args.concurrency,
                args.seconds,
                logs,
                args.slo_seconds,
                tfidf.records[:CHECK_RECORDS],
            )
    cold = cold_starts(tfidf.model_dir, args.cold_start_runs, logs) if "tripod" in variants else []
    if cold:
        print(f"tripod serve cold start to /readyz: {[round(c, 2) for c in cold]} s", flush=True)

    minilm_model = None
    if args.minilm_model or args.minilm_build:
        extra, minilm_model = minilm_variants(args, work)
        mshapes = sorted({1, args.minilm_batch})
        mbodies = {
            n: artifacts.write_bodies(work / f"minilm_bodies_{n}.jsonl", tfidf.records, n) for n in mshapes
        }
        for variant in extra.values():
            print(f"{variant.label}:", flush=True)
            if variant.start is None:
                measure_inprocess(
                    variant, minilm_model, tfidf.records, mshapes, args.minilm_concurrency, args.seconds
                )
            else:
                measure_server(
                    variant,
                    mbodies,
                    args.minilm_concurrency,
                    args.seconds,
                    logs,
                    slo_seconds=0,
                    check_records=tfidf.records[:CHECK_RECORDS],
                )
        variants |= extra

    ratio = ratios(variants, args.batch) | ratios(variants, args.minilm_batch, prefix="minilm_")
    agreement = label_agreement(variants)
    results = {
        "machine": machine(),
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "wall_s": round(time.monotonic() - started, 1),
        "seconds": args.seconds,
        "batch": args.batch,
        "minilm_batch": args.minilm_batch,
        "model_dir": str(tfidf.model_dir),
        "minilm_model_dir": str(minilm_model) if minilm_model else None,
        "cold_start_s": cold,
        "ratios": ratio,
        "label_agreement": agreement,
        "goals": goals(variants, ratio, cold),
        "variants": {name: {"label": v.label, "points": v.points, **v.extra} for name, v in variants.items()},
    }
    (out / "serving_results.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
    write_csv(out / "serving_results.csv", variants)
    summary = summary_markdown(results, variants, args.batch)
    (out / "serving_summary.md").write_text(summary)
    if not args.no_plots:
        subtitle = (
            f"{results['machine']['cores']} cores shared by client and server; 1-min load average "
            f"{load_before[0]} at start, {results['load_after'][0]} at end"
        )
        written = plot(out, variants, ratio, subtitle)
        if minilm_model:
            written += plot(out, variants, ratio, subtitle, prefix="minilm_")
        results["plots"] = [str(p) for p in written]
    print("\n" + summary, flush=True)
    print(f"results in {out} ({results['wall_s']:.0f} s)", flush=True)
    return results


if __name__ == "__main__":
    main()

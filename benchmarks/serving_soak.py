"""``make bench-soak``: a long, bounded run of ``tripod serve`` at half its top rate — does memory plateau, does p99
drift?

One server (its defaults: one entry worker per core) on loopback serves the benchmark's TF-IDF model.  First a
short closed loop finds its top single-review rate; then, for ``--minutes``, open-loop clients (Poisson
arrivals, one process per route, each run in windows of ``--window-s``) send half of that rate, split over the
routes and request sizes a deployment sees:

- ``POST /predict``, one review (60 % of requests) and 32 reviews (5 %);
- ``POST /invocations``, SageMaker's CSV, one review (15 %);
- ``POST /v2/models/<name>/infer``, the Open Inference Protocol, one review (20 %).

Every ``--sample-s`` seconds the RSS and USS of every process of the server are recorded.  The report gives
each worker's memory over time (first minute, last minute, slope over the second half, in KiB per 1,000
requests), the p99 of each route in each window and its drift (last window / first), and the errors — which
must be none.

Results: ``OUT/soak_results.json``, ``OUT/soak_memory.csv``, ``OUT/soak_latency.csv``, ``OUT/soak_summary.md``
and ``OUT/soak.png``.

Usage:
    python benchmarks/serving_soak.py [--minutes 30] [--rate R] [--out docs/benchmarks/soak]
        [--work loadtests/results/bench] [--window-s 60] [--sample-s 10]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
if str(ROOT) not in sys.path:  # run as a script: make harness/ and services/ importable
    sys.path.insert(0, str(ROOT))

import serving_artifacts as artifacts  # noqa: E402
from serving_measure import CLIENT, drive, process_memory  # noqa: E402
from serving_peers import WIRES  # noqa: E402

from harness.server import running_server  # noqa: E402
from services.artifacts import ModelArtifact  # noqa: E402


@dataclass(frozen=True)
class Route:
    name: str
    path: str
    share: float
    """Of all requests."""
    records: int
    content_type: str = "application/json"


def routes(model_name: str) -> list[Route]:
    return [
        Route("predict_1", "/predict", 0.60, 1),
        Route("predict_32", "/predict", 0.05, 32),
        Route("invocations_csv", "/invocations", 0.15, 1, "text/csv"),
        Route("oip_infer", f"/v2/models/{model_name}/infer", 0.20, 1),
    ]


def write_route_bodies(route: Route, records: list[dict[str, str]], column: str, work: Path) -> Path:
    """The route's request bodies: the same held-out reviews in each protocol's envelope."""

    def envelope(chunk: Sequence[dict[str, str]]) -> dict[str, Any] | str:
        if route.name == "invocations_csv":
            return "".join('"' + record[column].replace('"', '""') + '"\n' for record in chunk)
        if route.name == "oip_infer":
            return WIRES["v2"].encode(chunk, [column])
        return WIRES["records"].encode(chunk, [column])

    return artifacts.write_bodies(
        work / f"soak_bodies_{route.name}.jsonl", records, route.records, envelope=envelope
    )


def sample_memory(pid: int, every_s: float, stop: threading.Event, rows: list[dict[str, Any]]) -> None:
    started = time.monotonic()
    while not stop.is_set():
        at = time.monotonic() - started
        for row in process_memory(pid):
            rows.append({"t_s": round(at, 1), **row})
        stop.wait(every_s)


def client_windows(
    url: str,
    route: Route,
    bodies: Path,
    rate: float,
    minutes: float,
    window_s: float,
    out: list[dict[str, Any]],
) -> None:
    """Open-loop windows back to back until ``minutes`` have passed (each window its own client process)."""
    deadline = time.monotonic() + minutes * 60
    started = time.monotonic()
    while (left := deadline - time.monotonic()) > 1:
        seconds = min(window_s, left)
        command = [
            sys.executable,
            str(CLIENT),
            "--url",
            url + route.path,
            "--bodies",
            str(bodies),
            "--records-per-request",
            str(route.records),
            "--rate",
            f"{rate:.3f}",
            "--seconds",
            f"{seconds:.1f}",
            "--warmup-s",
            "0",
            "--content-type",
            route.content_type,
            "--max-requests",
            str(int(rate * seconds * 2) + 100),
            "--seed",
            str(len(out)),
        ]
        at = time.monotonic() - started
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120, check=False)
        if done.returncode != 0:
            out.append({"route": route.name, "t_s": round(at, 1), "failed": done.stderr[-500:]})
            continue
        point = json.loads(done.stdout)
        out.append({"route": route.name, "t_s": round(at, 1), **point})


def summarize(memory: list[dict[str, Any]], windows: list[dict[str, Any]], minutes: float) -> dict[str, Any]:
    workers: dict[int, list[dict[str, Any]]] = {}
    for row in memory:
        if row["role"].startswith("worker"):
            workers.setdefault(row["pid"], []).append(row)
    total_requests = sum(w.get("requests", 0) for w in windows)
    per_second = total_requests / (minutes * 60) if minutes else 0
    memory_summary = {}
    for pid, rows in workers.items():
        first = [r["rss_mib"] for r in rows if r["t_s"] <= 60]
        last = [r["rss_mib"] for r in rows if r["t_s"] >= rows[-1]["t_s"] - 60]
        half = [r for r in rows if r["t_s"] >= rows[-1]["t_s"] / 2]
        slope = _slope([r["t_s"] for r in half], [r["rss_mib"] for r in half]) if len(half) > 2 else 0.0
        # MiB per second → KiB per 1,000 requests of the whole server, shared by its workers
        per_thousand = slope * 1024 / (per_second / len(workers)) * 1000 if per_second else None
        memory_summary[str(pid)] = {
            "rss_first_minute_mib": round(statistics.fmean(first), 1) if first else None,
            "rss_last_minute_mib": round(statistics.fmean(last), 1) if last else None,
            "rss_max_mib": round(max(r["rss_mib"] for r in rows), 1),
            "second_half_slope_kib_per_1000_requests": None
            if per_thousand is None
            else round(per_thousand, 2),
        }
    by_route: dict[str, list[dict[str, Any]]] = {}
    for window in windows:
        by_route.setdefault(window["route"], []).append(window)
    latency = {}
    for name, points in by_route.items():
        good = [p for p in points if "latency_ms" in p]
        p99s = [p["latency_ms"]["p99"] for p in good]
        latency[name] = {
            "windows": len(points),
            "requests": sum(p.get("requests", 0) for p in good),
            "errors": sum(p.get("errors", 0) for p in good) + sum(1 for p in points if "failed" in p),
            "p99_first_ms": p99s[0] if p99s else None,
            "p99_last_ms": p99s[-1] if p99s else None,
            "p99_median_ms": statistics.median(p99s) if p99s else None,
            "p99_max_ms": max(p99s) if p99s else None,
            "p99_drift": p99s[-1] / p99s[0] if len(p99s) > 1 and p99s[0] else None,
        }
    return {
        "requests": total_requests,
        "requests_per_s": per_second,
        "workers": memory_summary,
        "routes": latency,
    }


def _slope(xs: list[float], ys: list[float]) -> float:
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def plot(out: Path, memory: list[dict[str, Any]], windows: list[dict[str, Any]], subtitle: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (mem, lat) = plt.subplots(1, 2, figsize=(11, 4.2))
    for pid in sorted({r["pid"] for r in memory}):
        rows = [r for r in memory if r["pid"] == pid]
        mem.plot(
            [r["t_s"] / 60 for r in rows], [r["rss_mib"] for r in rows], label=f"{rows[0]['role']} {pid}"
        )
    mem.set_xlabel("minutes")
    mem.set_ylabel("RSS MiB")
    mem.set_title("memory of every server process", fontsize=9)
    mem.legend(fontsize=7)
    mem.grid(True, alpha=0.3)
    for name in sorted({w["route"] for w in windows}):
        points = [w for w in windows if w["route"] == name and "latency_ms" in w]
        lat.plot(
            [p["t_s"] / 60 for p in points], [p["latency_ms"]["p99"] for p in points], marker="o", label=name
        )
    lat.set_xlabel("minutes (window start)")
    lat.set_ylabel("p99 ms per window")
    lat.set_title("p99 latency per route", fontsize=9)
    lat.legend(fontsize=7)
    lat.grid(True, alpha=0.3)
    fig.suptitle(f"soak at half of the top rate\n{subtitle}", fontsize=9)
    fig.tight_layout()
    path = out / "soak.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "reviews.parquet", help="prepared table")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, help="requests/s in all (default: half the measured top rate)")
    parser.add_argument("--window-s", type=float, default=60.0, help="seconds per client window (p99 each)")
    parser.add_argument("--sample-s", type=float, default=10.0, help="seconds between memory samples")
    parser.add_argument("--work", type=Path, default=ROOT / "loadtests" / "results" / "bench")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "soak")
    args = parser.parse_args(argv)
    if not 0 < args.minutes <= 240:
        parser.error("--minutes must be in (0, 240]")
    if not 5 <= args.window_s <= 600 or not 1 <= args.sample_s <= 600:
        parser.error("--window-s must be in [5, 600] and --sample-s in [1, 600]")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    work, out = args.work.resolve(), args.out.resolve()
    for directory in (work, out, work / "logs"):
        directory.mkdir(parents=True, exist_ok=True)
    tfidf = artifacts.prepare_tfidf(args.data, work)
    manifest = ModelArtifact.from_directory(tfidf.model_dir).manifest
    column = manifest.inputs[0].name
    chosen = routes(manifest.name)
    bodies = {route.name: write_route_bodies(route, tfidf.records, column, work) for route in chosen}
    load_before = [round(x, 2) for x in os.getloadavg()]
    memory: list[dict[str, Any]] = []
    windows: list[dict[str, Any]] = []
    with running_server(tfidf.model_dir, log_path=work / "logs" / "soak.log") as server:
        top = None
        if args.rate is None:
            top = drive(
                f"{server.url}/predict", bodies["predict_1"], 1, concurrency=16, seconds=5, warmup_s=1
            )
        rate = args.rate or top["requests_per_s"] / 2  # type: ignore[index]
        print(f"soak: {rate:,.0f} requests/s for {args.minutes:g} min (load {load_before})", flush=True)
        stop = threading.Event()
        sampler = threading.Thread(target=sample_memory, args=(server.pid, args.sample_s, stop, memory))
        sampler.start()
        clients = [
            threading.Thread(
                target=client_windows,
                args=(
                    server.url,
                    route,
                    bodies[route.name],
                    rate * route.share,
                    args.minutes,
                    args.window_s,
                    windows,
                ),
            )
            for route in chosen
        ]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join()
        stop.set()
        sampler.join()
    summary = summarize(memory, windows, args.minutes)
    results = {
        "minutes": args.minutes,
        "rate": rate,
        "top_single_requests_per_s": top["requests_per_s"] if top else None,
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "routes": [route.__dict__ for route in chosen],
        "summary": summary,
    }
    (out / "soak_results.json").write_text(json.dumps(results, indent=1) + "\n")
    with (out / "soak_memory.csv").open("w", newline="") as handle:
        rows = csv.DictWriter(handle, fieldnames=["t_s", "pid", "role", "rss_mib", "uss_mib"])
        rows.writeheader()
        rows.writerows(memory)
    with (out / "soak_latency.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["route", "t_s", "requests", "errors", "p50_ms", "p99_ms"])
        for w in windows:
            lat = w.get("latency_ms", {})
            writer.writerow(
                [w["route"], w["t_s"], w.get("requests"), w.get("errors"), lat.get("p50"), lat.get("p99")]
            )
    subtitle = f"{rate:,.0f} requests/s for {args.minutes:g} min; load {load_before[0]} at start"
    plot(out, memory, windows, subtitle)
    text = _markdown(results)
    (out / "soak_summary.md").write_text(text)
    print(text, flush=True)
    return results


def _markdown(results: dict[str, Any]) -> str:
    summary = results["summary"]
    lines = [
        (
            f"{results['rate']:,.0f} requests/s for {results['minutes']:g} min ({summary['requests']:,} "
            f"requests); load average {results['load_before']} → {results['load_after']}."
        ),
        "",
        "| worker | RSS first minute MiB | last minute MiB | max MiB | second-half slope KiB / 1,000 requests |",
        "|---|---|---|---|---|",
    ]
    for pid, row in summary["workers"].items():
        lines.append(
            f"| {pid} | {row['rss_first_minute_mib']} | {row['rss_last_minute_mib']} | {row['rss_max_mib']} | "
            f"{row['second_half_slope_kib_per_1000_requests']} |"
        )
    lines += [
        "",
        "| route | requests | errors | p99 first ms | p99 last ms | p99 median ms | p99 max ms | drift |",
    ]
    lines.append("|---|---|---|---|---|---|---|---|")
    for name, row in summary["routes"].items():
        drift = row["p99_drift"]
        lines.append(
            f"| {name} | {row['requests']:,} | {row['errors']} | {row['p99_first_ms']:.1f} | {row['p99_last_ms']:.1f} | "
            f"{row['p99_median_ms']:.1f} | {row['p99_max_ms']:.1f} | {'-' if drift is None else f'{drift:.2f}×'} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

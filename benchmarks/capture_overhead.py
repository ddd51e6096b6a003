"""What data capture costs: single-review ``/predict`` throughput and latency with capture off and at 100 %.

One run, one machine: two ``tripod serve`` processes of the same model — one without capture, one with
``TRIPOD_CAPTURE_DESTINATION`` (a local directory, every request captured) — driven in turn by
``serving_client.py`` (closed loop at each ``--concurrency`` level, best kept; then an open loop at half the
capture-off maximum for p50/p99).  The goal (issue 15): capture at 100 % costs at most 10 % of single-review
throughput.  It also checks that every request answered was captured (no drops at this rate) and prints the
machine's load before and after each measurement.

Usage:
    python benchmarks/capture_overhead.py --model models/reviews/latest --data data/reviews.parquet
        [--seconds 5] [--concurrency 1 2 4 8] [--rounds 2] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
if str(ROOT) not in sys.path:  # run as a script: make harness/ and services/ importable
    sys.path.insert(0, str(ROOT))
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from serving_artifacts import write_bodies  # noqa: E402
from serving_measure import drive  # noqa: E402

from harness.server import running_server  # noqa: E402
from loadtests.sample import held_out_records  # noqa: E402
from services.artifacts import read_manifest, resolve_model_dir  # noqa: E402

SEED = 42


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _captured(root: Path) -> int:
    return sum(len(p.read_text().splitlines()) for p in root.rglob("*.jsonl"))


def _counter(url: str, series: str) -> int:
    import urllib.request

    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    return int(sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(series)))


def measure(
    model: Path, data: Path, work: Path, seconds: float, levels: list[int], rounds: int
) -> dict[str, Any]:
    manifest = read_manifest(resolve_model_dir(model))
    columns = [column.name for column in manifest.inputs]
    records = held_out_records(data, manifest.target, columns, limit=2000, seed=SEED)
    bodies = write_bodies(work / "bodies_1.jsonl", records, 1)
    capture_root = work / "capture"
    variants = {"off": {}, "capture 100%": {"TRIPOD_CAPTURE_DESTINATION": str(capture_root)}}
    best: dict[str, dict[str, Any]] = {}
    with (
        running_server(model, env=variants["off"], log_path=work / "off.log") as off,
        running_server(model, env=variants["capture 100%"], log_path=work / "on.log") as on,
    ):
        servers = {"off": off, "capture 100%": on}
        for _ in range(rounds):  # the variants take turns, so a change in the machine's load hits both alike
            for level in levels:
                for name, server in servers.items():
                    before = _load()
                    result = drive(
                        f"{server.url}/predict", bodies, 1, concurrency=level, seconds=seconds, warmup_s=1
                    )
                    rate, p99 = float(result["requests_per_s"]), float(result["latency_ms"]["p99"])
                    print(
                        f"  {name:14s} c={level}: {rate:8.0f} req/s  p99 {p99:.2f} ms  load {before}→{_load()}"
                    )
                    if rate > best.get(name, {}).get("requests_per_s", 0.0):
                        best[name] = {"requests_per_s": rate, "concurrency": level, "p99_ms": p99}
        rate = best["off"]["requests_per_s"] / 2
        open_loop = {}
        for name, server in servers.items():
            before = _load()
            result = drive(f"{server.url}/predict", bodies, 1, rate=rate, seconds=seconds, warmup_s=1)
            latency = result["latency_ms"]
            open_loop[name] = {"p50_ms": latency["p50"], "p99_ms": latency["p99"], "load": [before, _load()]}
            print(f"  {name:14s} open {rate:.0f}/s: p50 {latency['p50']:.2f} ms  p99 {latency['p99']:.2f} ms")
        answered = _counter(on.url, 'tripod_http_requests_total{method="POST",route="/predict",status="200"}')
        dropped = _counter(on.url, "tripod_capture_dropped_total")
    ratio = best["capture 100%"]["requests_per_s"] / best["off"]["requests_per_s"]
    return {
        "best": best,
        "open_loop_rate": rate,
        "open_loop": open_loop,
        "throughput_ratio": ratio,
        "cost_percent": round(100 * (1 - ratio), 1),
        "goal_met": ratio >= 0.9,
        "answered": answered,
        "dropped": dropped,
        "captured": _captured(capture_root),  # after the server's shutdown flushed its queue
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="1-second windows at concurrency 2: a smoke run")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.concurrency, args.rounds = 1.0, [2], 1
    print(f"machine: {os.cpu_count()} cores, load average {[round(x, 2) for x in os.getloadavg()]} before")
    with tempfile.TemporaryDirectory(prefix="tripod-capture-bench-") as scratch:
        results = measure(args.model, args.data, Path(scratch), args.seconds, args.concurrency, args.rounds)
    print(
        f"capture at 100 %: best {results['best']['capture 100%']['requests_per_s']:.0f} vs "
        f"{results['best']['off']['requests_per_s']:.0f} single reviews/s = {results['throughput_ratio']:.3f}x "
        f"({results['cost_percent']}% cost; goal <= 10%: {'met' if results['goal_met'] else 'NOT met'}); "
        f"{results['captured']} of {results['answered']} answered requests captured, {results['dropped']} dropped"
    )
    print(f"machine: load average {[round(x, 2) for x in os.getloadavg()]} after")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What a serving feature costs: single-review ``/predict`` throughput and latency with it off and on.

One run, one machine: two ``tripod serve`` processes of the same model — a plain one, and one with the
feature — driven in turn by ``serving_client.py`` (closed loop at each ``--concurrency`` level, best kept; then
an open loop at half the plain server's maximum for p50/p99).  Features and their goals (issue 15):

- ``capture``: data capture at 100 % to a local directory costs at most 10 % of single-review throughput; it
  also checks that every answered request was captured (no drops at this rate);
- ``variants``: two production variants (two versions of the model, weights 1:1, the random per-request
  choice) cost at most 5 % against one; it also prints how the requests were shared;
- ``security`` (issue 18): API keys (a keys file of 20 keys, the client's one of them, a rate limit on none)
  and JSON logs with Tripod's access line, against no keys and text logs, cost at most 5 %.  Both servers get
  the same ``Authorization`` header, and both give request ids (always on: the plain server pays for them too).

The machine's load is printed before and after each measurement, and both servers' resident memory (all
their processes) after the load.

Usage:
    python benchmarks/feature_overhead.py --feature capture|variants|security --model models/reviews/latest
        --data data/reviews.parquet [--seconds 5] [--concurrency 1 2 4 8] [--rounds 2] [--quick]
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

import psutil  # noqa: E402
from serving_artifacts import write_bodies  # noqa: E402
from serving_measure import drive  # noqa: E402

from harness.models import model_version_copy  # noqa: E402
from harness.processes import tree_rss  # noqa: E402
from harness.server import running_server  # noqa: E402
from loadtests.sample import held_out_records  # noqa: E402
from services.artifacts import read_manifest, resolve_model_dir  # noqa: E402

SEED = 42
GOALS = {"capture": 0.90, "variants": 0.95, "security": 0.95}
"""Least throughput ratio (feature on / off) each feature's goal allows."""


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _captured(root: Path) -> int:
    return sum(len(p.read_text().splitlines()) for p in root.rglob("*.jsonl"))


def _counter(url: str, series: str) -> int:
    import urllib.request

    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    return int(sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(series)))


def feature_env(feature: str, model: Path, work: Path) -> dict[str, str]:
    """The environment that turns the feature on."""
    if feature == "capture":
        return {"TRIPOD_CAPTURE_DESTINATION": str(work / "capture")}
    if feature == "security":
        from services.http.auth import KeyEntry, new_token, token_digest, write_keys

        tokens = [new_token() for _ in range(20)]
        keys = [
            KeyEntry(name=f"client-{i}", sha256=token_digest(t), scopes=("predict",))
            for i, t in enumerate(tokens)
        ]
        write_keys(work / "keys.yaml", keys)
        (work / "token").write_text(tokens[-1] + "\n")  # the last key: every key is compared anyway
        return {"TRIPOD_AUTH_KEYS": str(work / "keys.yaml"), "TRIPOD_LOG_FORMAT": "json"}
    versions = work / "versions"
    for version in ("v1", "v2"):
        model_version_copy(resolve_model_dir(model), versions, version)
    config = versions / "variants.json"
    config.write_text(
        json.dumps({"variants": [{"name": "blue", "model": "v1"}, {"name": "green", "model": "v2"}]})
    )
    return {"TRIPOD_VARIANTS": str(config)}


def feature_counts(feature: str, url: str, work: Path) -> dict[str, int]:
    """What the feature's server did: exchanges captured and dropped, or requests per variant."""
    answered = 'tripod_http_requests_total{method="POST",route="/predict",status="200",variant='
    if feature == "security":  # /metrics needs the metrics scope there: the log's access lines count instead
        lines = (work / "on.log").read_text(encoding="utf-8").splitlines()
        return {
            "access_lines_200": sum(
                '"status": 200' in line and '"route": "/predict"' in line for line in lines
            )
        }
    if feature == "capture":
        return {
            "answered": _counter(url, answered + '"AllTraffic"}'),
            "dropped": _counter(url, "tripod_capture_dropped_total"),
        }
    return {name: _counter(url, f'{answered}"{name}"}}') for name in ("blue", "green")}


def measure(
    feature: str, model: Path, data: Path, work: Path, seconds: float, levels: list[int], rounds: int
) -> dict[str, Any]:
    manifest = read_manifest(resolve_model_dir(model))
    columns = [column.name for column in manifest.inputs]
    records = held_out_records(data, manifest.target, columns, limit=2000, seed=SEED)
    bodies = write_bodies(work / "bodies_1.jsonl", records, 1)
    best: dict[str, dict[str, Any]] = {}
    env = feature_env(feature, model, work)
    token = work / "token" if feature == "security" else None
    with (
        running_server(model, log_path=work / "off.log") as off,
        running_server(model, env=env, log_path=work / "on.log") as on,
    ):
        servers = {"off": off, feature: on}
        for _ in range(rounds):  # the variants take turns, so a change in the machine's load hits both alike
            for level in levels:
                for name, server in servers.items():
                    before = _load()
                    result = drive(
                        f"{server.url}/predict",
                        bodies,
                        1,
                        concurrency=level,
                        seconds=seconds,
                        warmup_s=1,
                        token_file=token,
                    )
                    rate, p99 = float(result["requests_per_s"]), float(result["latency_ms"]["p99"])
                    print(
                        f"  {name:9s} c={level}: {rate:8.0f} req/s  p99 {p99:.2f} ms  load {before}→{_load()}"
                    )
                    if rate > best.get(name, {}).get("requests_per_s", 0.0):
                        best[name] = {"requests_per_s": rate, "concurrency": level, "p99_ms": p99}
        rate = best["off"]["requests_per_s"] / 2
        open_loop = {}
        for name, server in servers.items():
            before = _load()
            result = drive(
                f"{server.url}/predict", bodies, 1, rate=rate, seconds=seconds, warmup_s=1, token_file=token
            )
            latency = result["latency_ms"]
            open_loop[name] = {"p50_ms": latency["p50"], "p99_ms": latency["p99"], "load": [before, _load()]}
            print(f"  {name:9s} open {rate:.0f}/s: p50 {latency['p50']:.2f} ms  p99 {latency['p99']:.2f} ms")
        counts = {} if feature == "security" else feature_counts(feature, on.url, work)
        memory_mib = {
            name: round(tree_rss(psutil.Process(server.pid)) / 2**20) for name, server in servers.items()
        }
        print(f"  resident memory after the load, all processes: {memory_mib} MiB")
    if feature == "capture":  # after the server's shutdown flushed its queue
        counts["captured"] = _captured(work / "capture")
    if feature == "security":  # after the server stopped, its log is complete
        counts = feature_counts(feature, "", work)
    ratio = best[feature]["requests_per_s"] / best["off"]["requests_per_s"]
    return {
        "feature": feature,
        "best": best,
        "open_loop_rate": rate,
        "open_loop": open_loop,
        "throughput_ratio": ratio,
        "cost_percent": round(100 * (1 - ratio), 1),
        "goal_met": ratio >= GOALS[feature],
        "counts": counts,
        "memory_mib": memory_mib,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feature", choices=sorted(GOALS), required=True)
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
    feature = args.feature
    with tempfile.TemporaryDirectory(prefix=f"tripod-{feature}-bench-") as scratch:
        results = measure(
            feature, args.model, args.data, Path(scratch), args.seconds, args.concurrency, args.rounds
        )
    goal = round(100 * (1 - GOALS[feature]))
    print(
        f"{feature}: best {results['best'][feature]['requests_per_s']:.0f} vs "
        f"{results['best']['off']['requests_per_s']:.0f} single reviews/s = {results['throughput_ratio']:.3f}x "
        f"({results['cost_percent']}% cost; goal <= {goal}%: {'met' if results['goal_met'] else 'NOT met'}); "
        f"counts {results['counts']}"
    )
    print(f"machine: load average {[round(x, 2) for x in os.getloadavg()]} after")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

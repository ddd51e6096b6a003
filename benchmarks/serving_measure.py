"""How the serving benchmark (``serving_compare.py``) drives each variant: servers on loopback, the load client
in a process of its own, the in-process ceiling, per-stage times, memory per process and cold starts."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
if str(ROOT) not in sys.path:  # run as a script: make harness/ and services/ importable
    sys.path.insert(0, str(ROOT))

from serving_client import percentile  # noqa: E402
from serving_footprint import server_tree_memory_mb  # noqa: E402
from serving_peers import wire_of  # noqa: E402
from serving_report import Variant  # noqa: E402

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


def drive(
    url: str,
    bodies: Path,
    per_request: int,
    *,
    concurrency: int | None = None,
    rate: float | None = None,
    seconds: float,
    warmup_s: float,
    token_file: Path | None = None,
) -> dict[str, Any]:
    """One measurement by the client process; the result dict of ``serving_client.py``."""
    mode = ["--concurrency", str(concurrency)] if concurrency else ["--rate", f"{rate:.3f}"]
    if token_file is not None:
        mode += ["--token-file", str(token_file)]
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


def _labels(variant: Variant, answer: tuple[int, object]) -> list[str] | None:
    """The labels of a 200 answer in the variant's protocol; None for any other answer."""
    status, body = answer
    if status != 200:
        return None
    try:
        return wire_of(variant).labels(body)
    except (KeyError, TypeError, ValueError):
        return None


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
        url = f"{server.url}{variant.extra.get('route', '/predict')}"
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
        wire, columns = wire_of(variant), variant.extra.get("columns", [])
        parts = [
            _labels(variant, http_json(url, wire.encode(check_records[i : i + chunk], columns), timeout=120))
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

"""Adaptive batching under load: records/s and latency of a real server per (max_batch_size, max_latency_ms).

For each setting a server is started on loopback (``tripod serve``), warmed up, then driven by
``concurrency`` asyncio clients posting ``--records`` records per ``/invocations`` request for ``--seconds``
each; every count, duration and address is bounded.  Refused requests (BentoML answers 503 when a batch
cannot meet ``max_latency_ms``) are counted, not retried.

Usage:
    python benchmarks/serving_batching.py --model models/reviews/latest [--batch-sizes 8 32 64 256]
        [--latencies-ms 20 200 2000] [--concurrency 1 8 32] [--records 1] [--seconds 4]
        [--stage-override transformer:16:200]

Numbers are printed as a Markdown table, not asserted; docs/api.md records what was seen on the reference
machine and the defaults chosen from them.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: harness/ is not installed

from harness.server import running_server

ROOT = Path(__file__).resolve().parents[1]
TEXTS = [
    "I love this dress, it fits perfectly and the fabric is gorgeous.",
    "Cheap material, the zipper broke on the first day. Returned.",
    "It's fine. Nothing special, runs a little large.",
    "Beautiful color but the sizing is way off, had to exchange for a smaller one.",
]


@dataclass(frozen=True)
class Result:
    concurrency: int
    records_per_s: float
    p50_ms: float
    p99_ms: float
    refused: int
    requests: int


def _body(records: int, offset: int) -> bytes:
    lines = (f'"{TEXTS[(offset + i) % len(TEXTS)]} #{offset}"' for i in range(records))
    return ("\n".join(lines) + "\n").encode()


async def _drive(url: str, concurrency: int, records: int, seconds: float) -> Result:
    latencies: list[float] = []
    failures: list[str] = []
    refused = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

        async def worker(index: int) -> None:
            nonlocal refused
            sent = 0
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    response = await client.post(
                        "/invocations",
                        content=_body(records, index * 100_000 + sent),
                        headers={"content-type": "text/csv", "accept": "text/csv"},
                    )
                except httpx.TransportError as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")
                    refused += 1
                    continue
                finally:
                    sent += 1
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    failures.append(f"{response.status_code}: {response.text[:200]}")
                    refused += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - started
    for failure in sorted(set(failures))[:3]:
        print(f"  (concurrency {concurrency}: {failure})", file=sys.stderr)
    ordered = sorted(latencies) or [float("nan")]
    return Result(
        concurrency=concurrency,
        records_per_s=len(latencies) * records / elapsed,
        p50_ms=statistics.median(ordered) * 1000,
        p99_ms=ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000,
        refused=refused,
        requests=len(latencies) + refused,
    )


def measure(
    model: Path,
    env: dict[str, str],
    concurrency: list[int],
    records: int,
    seconds: float,
    log_path: Path | None = None,
) -> list[Result]:
    """Start one server with ``env`` and drive it at each concurrency level."""
    with running_server(model, env=env, log_path=log_path) as server:
        asyncio.run(
            _drive(server.url, 4, records, min(1.0, seconds))
        )  # warm-up: BentoML trains its batch model
        return [asyncio.run(_drive(server.url, level, records, seconds)) for level in concurrency]


def _stage_env(spec: str) -> dict[str, str]:
    stage, size, latency = spec.split(":")
    return {f"TRIPOD_{stage.upper()}_MAX_BATCH_SIZE": size, f"TRIPOD_{stage.upper()}_MAX_LATENCY_MS": latency}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "reviews" / "latest")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32, 64, 256])
    parser.add_argument("--latencies-ms", type=int, nargs="+", default=[20, 200, 2000])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--records", type=int, default=1, help="records per request")
    parser.add_argument("--seconds", type=float, default=4.0, help="load per concurrency level")
    parser.add_argument(
        "--stage-override",
        nargs="*",
        default=[],
        metavar="STAGE:SIZE:LATENCY_MS",
        help="extra runs with one stage's batching changed, on top of the first grid point",
    )
    parser.add_argument("--log", type=Path, default=None, help="keep the last server's log here")
    args = parser.parse_args(argv)

    runs = [
        (
            f"{size} / {latency} ms",
            {
                "TRIPOD_STAGES": "services",
                "TRIPOD_MAX_BATCH_SIZE": str(size),
                "TRIPOD_MAX_LATENCY_MS": str(latency),
            },
        )
        for size in args.batch_sizes
        for latency in args.latencies_ms
    ]
    base = runs[0][1]
    runs += [(f"{runs[0][0]}, {spec}", {**base, **_stage_env(spec)}) for spec in args.stage_override]
    print(f"{args.records} record(s) per request, {args.seconds:g} s per level, loopback\n")
    print(
        "| max_batch_size / max_latency_ms | concurrency | records/s | p50 ms | p99 ms | refused / requests |"
    )
    print("|---|---|---|---|---|---|")
    for name, env in runs:
        for result in measure(args.model, env, args.concurrency, args.records, args.seconds, args.log):
            print(
                f"| {name} | {result.concurrency} | {result.records_per_s:,.0f} | {result.p50_ms:.1f} | "
                f"{result.p99_ms:.1f} | {result.refused} / {result.requests} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

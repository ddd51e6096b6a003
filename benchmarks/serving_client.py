"""The load generator of the serving benchmarks: one process, asyncio + aiohttp, bounded in time and count.

It runs in a process of its own so that the server under test never shares an interpreter (or a GIL) with the
client; ``benchmarks/serving_compare.py`` starts it once per measurement with ``subprocess``.  Two modes:

- closed loop (``--concurrency C``): C clients each send the next request as soon as the last one answered;
  this finds the throughput at saturation.
- open loop (``--rate R``): requests start at Poisson arrival times of R per second (seeded), whatever the
  server does, at most ``--max-in-flight`` at once; latency counts from the scheduled start, so a server that
  falls behind is charged for the queue (no coordinated omission).

Bodies are pre-encoded request bodies, one JSON string per line of ``--bodies``, sent in turn.  Only loopback
URLs are accepted.  The result is one JSON object on stdout.

Usage:
    python benchmarks/serving_client.py --url http://127.0.0.1:3000/predict --bodies B.jsonl
        --records-per-request 32 (--concurrency 8 | --rate 100) [--seconds 5] [--warmup-s 1]
        [--max-requests 100000] [--content-type application/json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def require_loopback(url: str) -> str:
    """Refuse any target that is not this machine: load is only ever sent to loopback."""
    host = urlsplit(url).hostname or ""
    if host not in LOOPBACK_HOSTS and not host.startswith("127."):
        raise SystemExit(f"serving_client: refusing to send load to {host!r}: loopback addresses only")
    return url


def percentile(ordered: list[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0–100) of an ascending list; NaN when empty."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summarize(
    latencies_s: list[float], errors: list[str], elapsed_s: float, records_per_request: int
) -> dict[str, object]:
    ordered = sorted(latencies_s)
    ok = len(ordered)
    ms = [x * 1000 for x in ordered]
    return {
        "requests": ok + len(errors),
        "ok": ok,
        "errors": len(errors),
        "error_samples": sorted(set(errors))[:5],
        "elapsed_s": elapsed_s,
        "requests_per_s": ok / elapsed_s if elapsed_s else 0.0,
        "records_per_s": ok * records_per_request / elapsed_s if elapsed_s else 0.0,
        "latency_ms": {
            "mean": sum(ms) / ok if ok else math.nan,
            "p50": percentile(ms, 50),
            "p90": percentile(ms, 90),
            "p99": percentile(ms, 99),
            "max": ms[-1] if ms else math.nan,
        },
    }


class Load:
    """Sends the bodies in turn; keeps the latency of each answered request that counts (see ``send``)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        bodies: list[bytes],
        headers: dict[str, str],
        max_requests: int,
    ) -> None:
        self.session, self.url, self.bodies, self.headers = session, url, bodies, headers
        self.max_requests = max_requests
        self.sent = 0
        self.latencies: list[float] = []
        self.errors: list[str] = []

    def next_body(self) -> bytes | None:
        if self.sent >= self.max_requests:
            return None
        body = self.bodies[self.sent % len(self.bodies)]
        self.sent += 1
        return body

    async def send(self, body: bytes, started: float, window: tuple[float, float]) -> None:
        """Send one body; a request counts when it *finishes* inside ``window`` (closed loop), or when it was
        *scheduled* inside it (open loop: ``window`` is then checked against ``started`` by the caller)."""
        try:
            async with self.session.post(self.url, data=body, headers=self.headers) as response:
                await response.read()
                status = response.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            status, error = 0, f"{type(exc).__name__}: {exc}"[:200]
        else:
            error = f"HTTP {status}"
        finished = time.perf_counter()
        if not window[0] <= finished <= window[1]:
            return
        if status == 200:
            self.latencies.append(finished - started)
        else:
            self.errors.append(error)


async def closed_loop(load: Load, concurrency: int, warmup_s: float, seconds: float) -> float:
    measure_from = time.perf_counter() + warmup_s
    deadline = measure_from + seconds

    async def client() -> None:
        while (now := time.perf_counter()) < deadline and (body := load.next_body()) is not None:
            await load.send(body, now, (measure_from, deadline))

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return seconds


async def open_loop(
    load: Load, rate: float, warmup_s: float, seconds: float, max_in_flight: int, seed: int
) -> float:
    rng = random.Random(seed)
    begin = time.perf_counter()
    measure_from = begin + warmup_s
    deadline = measure_from + seconds
    in_flight: set[asyncio.Task[None]] = set()
    slots = asyncio.Semaphore(max_in_flight)
    scheduled = begin

    async def one(body: bytes, at: float) -> None:
        counted = (0.0, math.inf) if at >= measure_from else (math.inf, math.inf)
        try:
            await load.send(body, at, counted)
        finally:
            slots.release()

    while True:
        scheduled += rng.expovariate(rate)
        if scheduled >= deadline or (body := load.next_body()) is None:
            break
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await slots.acquire()  # a full window waits here, and that wait is counted in the latency
        task = asyncio.create_task(one(body, scheduled))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    if in_flight:
        await asyncio.gather(*in_flight)
    return seconds


async def run(args: argparse.Namespace) -> dict[str, object]:
    bodies = [
        json.loads(line).encode() for line in Path(args.bodies).read_text().splitlines() if line.strip()
    ]
    if not bodies:
        raise SystemExit(f"serving_client: no bodies in {args.bodies}")
    headers = {"content-type": args.content_type, "accept": args.accept}
    if args.token_file:
        headers["authorization"] = "Bearer " + Path(args.token_file).read_text().splitlines()[0].strip()
    width = args.concurrency or args.max_in_flight
    connector = aiohttp.TCPConnector(limit=width, force_close=False)
    timeout = aiohttp.ClientTimeout(total=args.timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        load = Load(session, args.url, bodies, headers, args.max_requests)
        if args.rate:
            elapsed = await open_loop(
                load, args.rate, args.warmup_s, args.seconds, args.max_in_flight, args.seed
            )
        else:
            elapsed = await closed_loop(load, args.concurrency, args.warmup_s, args.seconds)
    result = summarize(load.latencies, load.errors, elapsed, args.records_per_request)
    result |= {
        "concurrency": args.concurrency,
        "rate": args.rate,
        "records_per_request": args.records_per_request,
    }
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", required=True, help="loopback URL to POST to")
    parser.add_argument(
        "--bodies", type=Path, required=True, help="one JSON string (a request body) per line"
    )
    parser.add_argument("--records-per-request", type=int, default=1)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--concurrency", type=int, help="closed loop: clients sending back to back")
    mode.add_argument("--rate", type=float, help="open loop: Poisson arrivals per second")
    parser.add_argument("--max-in-flight", type=int, default=64, help="open loop: most requests at once")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured window")
    parser.add_argument(
        "--warmup-s", type=float, default=1.0, help="load sent before the window, not counted"
    )
    parser.add_argument("--max-requests", type=int, default=200_000, help="bound on requests sent in all")
    parser.add_argument("--timeout-s", type=float, default=60.0, help="per request")
    parser.add_argument("--content-type", default="application/json")
    parser.add_argument("--accept", default="application/json")
    parser.add_argument("--token-file", help="send its first line as Authorization: Bearer (API keys on)")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    require_loopback(args.url)
    if args.seconds <= 0 or args.seconds > 600:
        parser.error("--seconds must be in (0, 600]")
    return args


def main(argv: list[str] | None = None) -> int:
    result = asyncio.run(run(parse_args(argv)))
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())

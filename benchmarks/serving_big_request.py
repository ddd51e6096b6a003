"""Peak worker memory and health-check latency while the server answers its largest allowed request.

Starts ``tripod serve`` on loopback (or uses ``--url``), sends ``--requests`` requests of ``--records``
reviews each to ``/predict`` one after another, and meanwhile polls ``/ping`` every 10 ms and samples the
resident memory of every server process every 20 ms.  Prints the idle, peak and after-request memory of the
largest process (the entry worker) and the /ping latency percentiles during the requests.

    python benchmarks/serving_big_request.py --model models/reviews/latest --data data/reviews.parquet
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.server import running_server

PING_EVERY_S = 0.01
SAMPLE_EVERY_S = 0.02


def _tree_rss(pid: int) -> dict[int, int]:
    """Resident bytes of a process and all its descendants."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return {}
    sizes = {}
    for process in processes:
        try:
            sizes[process.pid] = process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return sizes


def _post(url: str, payload: bytes, timeout: float = 600) -> tuple[int, float]:
    request = urllib.request.Request(url, data=payload, headers={"content-type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=timeout) as response:
        response.read()
        return response.status, time.perf_counter() - started


def measure(url: str, pid: int, texts: list[str], column: str, requests: int) -> dict[str, object]:
    payload = json.dumps({"records": [{column: text} for text in texts]}).encode()
    idle = max(_tree_rss(pid).values())
    peaks: list[int] = []
    afters: list[int] = []
    pings: list[float] = []
    stop = threading.Event()
    peak = [0]

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], max(_tree_rss(pid).values(), default=0))
            time.sleep(SAMPLE_EVERY_S)

    def ping() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            with urllib.request.urlopen(f"{url}/ping", timeout=30) as response:
                response.read()
            pings.append(1000 * (time.perf_counter() - started))
            time.sleep(PING_EVERY_S)

    durations = []
    for _ in range(requests):
        peak[0] = 0
        stop.clear()
        threads = [threading.Thread(target=sample), threading.Thread(target=ping)]
        for thread in threads:
            thread.start()
        status, seconds = _post(f"{url}/predict", payload)
        stop.set()
        for thread in threads:
            thread.join()
        assert status == 200, status
        durations.append(seconds)
        peaks.append(peak[0])
        time.sleep(0.5)
        afters.append(max(_tree_rss(pid).values()))
    mib = 1024 * 1024
    return {
        "records": len(texts),
        "body_mib": round(len(payload) / mib, 2),
        "idle_mib": round(idle / mib, 1),
        "peak_mib": [round(p / mib, 1) for p in peaks],
        "after_mib": [round(a / mib, 1) for a in afters],
        "request_s": [round(d, 2) for d in durations],
        "ping_ms_p50": round(statistics.median(pings), 1) if pings else None,
        "ping_ms_p99": round(sorted(pings)[int(0.99 * (len(pings) - 1))], 1) if pings else None,
        "ping_ms_max": round(max(pings), 1) if pings else None,
        "pings": len(pings),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="prepared reviews (Parquet or CSV)")
    parser.add_argument("--column", default="review_body")
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=2)
    parser.add_argument("--url", help="measure a server already running (its pid via --pid)")
    parser.add_argument("--pid", type=int)
    args = parser.parse_args(argv)

    import pandas as pd

    frame = pd.read_parquet(args.data) if args.data.suffix == ".parquet" else pd.read_csv(args.data)
    texts = frame[args.column].fillna("").astype(str).tolist()
    texts = (texts * (args.records // max(1, len(texts)) + 1))[: args.records]
    if args.url:
        result = measure(args.url, args.pid, texts, args.column, args.requests)
    else:
        with running_server(args.model) as server:
            result = measure(server.url, server.pid, texts, args.column, args.requests)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

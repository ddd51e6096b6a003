"""Service-level objectives over a Locust run: zero errors, and each request's p99 under its limit.

Reads the ``<prefix>_stats.csv`` Locust writes with ``--csv <prefix>`` (one row per request name, plus
``Aggregated``) and, for messages, ``<prefix>_failures.csv``.  A run that sent no request fails too: no
traffic proves nothing.

Usage:
    python -m loadtests.slo loadtests/results/locust_stats.csv [--p99-ms 1000]
        [--p99-ms-for "/predict [1]=300"]
        [--max-failures 0] [--min-requests 1]

Exits 1 when an objective is missed, printing each miss.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

AGGREGATED = "Aggregated"


@dataclass(frozen=True)
class Objectives:
    p99_ms: float = 1000.0
    """Limit of every request name's 99th-percentile response time."""
    p99_ms_for: Mapping[str, float] = field(default_factory=dict)
    """Limits of particular request names (Locust's ``Name`` column), overriding ``p99_ms``."""
    max_failures: int = 0
    min_requests: int = 1


@dataclass(frozen=True)
class RequestStats:
    name: str
    requests: int
    failures: int
    p50_ms: float
    p99_ms: float
    requests_per_s: float


@dataclass(frozen=True)
class Verdict:
    passed: bool
    misses: list[str]
    stats: list[RequestStats]
    failures: list[str]
    """Locust's failure messages with their counts (``_failures.csv``), for the report."""

    def report(self) -> str:
        lines = [f"{'request':<28} {'requests':>9} {'failures':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}"]
        lines += [
            f"{s.name:<28} {s.requests:>9} {s.failures:>9} {s.requests_per_s:>8.1f} {s.p50_ms:>8.0f} "
            f"{s.p99_ms:>8.0f}"
            for s in self.stats
        ]
        lines += [f"failure: {message}" for message in self.failures]
        lines.append("SLO met" if self.passed else "SLO MISSED:\n  " + "\n  ".join(self.misses))
        return "\n".join(lines)


def _number(value: str) -> float:
    try:
        return float(value)
    except ValueError:  # Locust writes "N/A" for a percentile of no requests
        return float("nan")


def read_stats(path: Path | str) -> list[RequestStats]:
    with open(path, newline="") as handle:
        return [
            RequestStats(
                name=row["Name"],
                requests=int(row["Request Count"]),
                failures=int(row["Failure Count"]),
                p50_ms=_number(row["50%"]),
                p99_ms=_number(row["99%"]),
                requests_per_s=_number(row["Requests/s"]),
            )
            for row in csv.DictReader(handle)
        ]


def read_failures(stats_path: Path | str) -> list[str]:
    path = Path(str(stats_path).replace("_stats.csv", "_failures.csv"))
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return [f"{row['Name']}: {row['Error']} ({row['Occurrences']}×)" for row in csv.DictReader(handle)]


def check(stats_path: Path | str, objectives: Objectives = Objectives()) -> Verdict:
    """Judge one run; ``misses`` names every objective missed."""
    stats = read_stats(stats_path)
    misses = []
    requests = [s for s in stats if s.name != AGGREGATED]
    unknown = sorted(set(objectives.p99_ms_for) - {s.name for s in requests})
    total = sum(s.requests for s in requests)
    failures = sum(s.failures for s in requests)
    if total < objectives.min_requests:
        misses.append(f"only {total} requests were sent (at least {objectives.min_requests} needed)")
    if failures > objectives.max_failures:
        misses.append(f"{failures} of {total} requests failed (at most {objectives.max_failures} allowed)")
    for s in requests:
        limit = objectives.p99_ms_for.get(s.name, objectives.p99_ms)
        if s.requests and not s.p99_ms <= limit:
            misses.append(f"{s.name}: p99 {s.p99_ms:.0f} ms over the {limit:.0f} ms limit")
    misses += [f"{name}: has a p99 limit but sent no request" for name in unknown]
    return Verdict(passed=not misses, misses=misses, stats=stats, failures=read_failures(stats_path))


def parse_limits(items: Sequence[str]) -> dict[str, float]:
    """``["NAME=MS", ...]`` (or one string with ``;`` between items) → ``{NAME: MS}``."""
    limits = {}
    for item in (part for entry in items for part in entry.split(";")):
        if not item.strip():
            continue
        name, sep, value = item.rpartition("=")
        if not sep or not name.strip():
            raise ValueError(f"expected NAME=MS, got {item!r}")
        limits[name.strip()] = float(value)
    return limits


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("stats", type=Path, help="<prefix>_stats.csv written by locust --csv <prefix>")
    parser.add_argument("--p99-ms", type=float, default=Objectives.p99_ms)
    parser.add_argument("--p99-ms-for", action="append", default=[], metavar="NAME=MS")
    parser.add_argument("--max-failures", type=int, default=0)
    parser.add_argument("--min-requests", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the verdict here")
    args = parser.parse_args(argv)
    try:
        limits = parse_limits(args.p99_ms_for)
    except ValueError as exc:
        parser.error(str(exc))
    if not args.stats.exists():
        print(f"slo: error: {args.stats} does not exist (did Locust run?)", file=sys.stderr)
        return 2
    verdict = check(args.stats, Objectives(args.p99_ms, limits, args.max_failures, args.min_requests))
    print(verdict.report())
    if args.json:
        args.json.write_text(json.dumps(asdict(verdict), indent=1, default=str) + "\n")
    return 0 if verdict.passed else 1


if __name__ == "__main__":
    sys.exit(main())

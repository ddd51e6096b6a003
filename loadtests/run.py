"""``make loadtest``: start the service on loopback, run the Locust scenarios headless, check the SLOs.

Steps: write held-out reviews (the test split of ``--data``, as ``tripod train`` splits it) to
``OUT/sample.jsonl``; start ``tripod serve`` for ``--model`` on a free loopback port (or use ``--url``, a
service already running on loopback); run ``locust`` headless for ``--duration`` seconds, bounded also by
``TRIPOD_LOAD_MAX_REQUESTS``; keep its CSV stats (``OUT/locust_stats.csv``, ``_stats_history.csv``,
``_failures.csv``, ``_exceptions.csv``) and HTML report (``OUT/locust_report.html``); judge the run with
``loadtests/slo.py`` (zero errors, every request's p99 under its limit) and write ``OUT/slo.json``.

Exit status: 0 when the SLOs are met, 1 when one is missed, 2 for a usage error.

Usage:
    python -m loadtests.run [--model models/reviews/latest] [--data data/reviews.parquet]
        [--duration 60] [--users 4] [--spawn-rate 4] [--out loadtests/results]
        [--p99-ms 1000] [--p99-ms-for "/predict [1]=500"] [--url http://127.0.0.1:3000]

Task weights, batch sizes and think time are the locustfile's ``TRIPOD_LOAD_*`` variables, passed through.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from urllib.parse import urlsplit

from loadtests import slo
from loadtests.sample import held_out_records, write_records

ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
DEFAULT_P99_MS = 1000.0
DEFAULT_P99_MS_FOR = "/predict [1]=500"
"""Single reviews must stay well under a batched request's latency; measured on the 2-core machine in
docs/benchmarks.md (load test section), with headroom for a shared machine."""


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in {"localhost", "::1"} or host.startswith("127.")


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "reviews" / "latest")
    parser.add_argument(
        "--data",
        type=Path,
        default=ROOT / "data" / "reviews.parquet",
        help="prepared table whose test split is the load",
    )
    parser.add_argument("--sample-file", type=Path, help="use these JSON Lines records instead of --data")
    parser.add_argument("--url", help="a service already running on loopback (no server is started)")
    parser.add_argument("--duration", type=float, default=_env_float("TRIPOD_LOAD_DURATION_S", 60))
    parser.add_argument("--users", type=int, default=int(os.environ.get("TRIPOD_LOAD_USERS", "4")))
    parser.add_argument("--spawn-rate", type=float, default=_env_float("TRIPOD_LOAD_SPAWN_RATE", 4))
    parser.add_argument("--out", type=Path, default=ROOT / "loadtests" / "results")
    parser.add_argument(
        "--p99-ms",
        type=float,
        default=_env_float("TRIPOD_SLO_P99_MS", DEFAULT_P99_MS),
        help="p99 limit of every request name (TRIPOD_SLO_P99_MS)",
    )
    parser.add_argument(
        "--p99-ms-for",
        action="append",
        metavar="NAME=MS",
        help="p99 limit of one request name, repeatable (TRIPOD_SLO_P99_MS_FOR, ';'-separated)",
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment of the started server (e.g. TRIPOD_MAX_BATCH_SIZE=32)",
    )
    args = parser.parse_args(argv)
    if args.p99_ms_for is None:
        args.p99_ms_for = [os.environ.get("TRIPOD_SLO_P99_MS_FOR", DEFAULT_P99_MS_FOR)]
    if not 1 <= args.duration <= 3600:
        parser.error("--duration must be between 1 and 3600 seconds")
    if not 1 <= args.users <= 1000:
        parser.error("--users must be between 1 and 1000")
    try:
        args.limits = slo.parse_limits(args.p99_ms_for)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def _manifest(model: Path):  # type: ignore[no-untyped-def]
    from services.artifacts import ModelArtifact

    return ModelArtifact.from_directory(model).manifest


@contextmanager
def _service(args: argparse.Namespace, log: Path) -> Iterator[str]:
    if args.url:
        yield args.url
        return
    from harness.server import running_server

    env = dict(item.split("=", 1) for item in args.server_env)
    with running_server(args.model, env=env, log_path=log) as server:
        print(f"server ready at {server.url} after {server.cold_start_s:.1f} s", flush=True)
        yield server.url


def run_locust(
    url: str,
    sample: Path,
    prefix: Path,
    *,
    duration: float,
    users: int,
    spawn_rate: float,
    model_name: str,
    env: dict[str, str] | None = None,
    quiet: bool = False,
) -> int:
    """Locust headless against ``url``; returns its exit status (1 also means "some requests failed")."""
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        url,
        "--users",
        str(users),
        "--spawn-rate",
        str(spawn_rate),
        "--run-time",
        f"{duration:g}s",
        "--stop-timeout",
        "10",
        "--csv",
        str(prefix),
        "--html",
        f"{prefix}_report.html",
        "--only-summary",
        "--loglevel",
        "WARNING",
    ]
    child_env = {
        **os.environ,
        "TRIPOD_LOAD_SAMPLE": str(sample),
        "TRIPOD_LOAD_MODEL": model_name,
        **(env or {}),
    }
    output = subprocess.DEVNULL if quiet else None
    process = subprocess.Popen(command, env=child_env, stdout=output, stderr=output, start_new_session=True)
    try:
        return process.wait(timeout=duration + 120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return 124


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.url and not is_loopback(args.url):
        print(
            f"loadtest: error: {args.url} is not a loopback address; load goes to this machine only",
            file=sys.stderr,
        )
        return 2
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    manifest = _manifest(args.model)
    sample = out / "sample.jsonl"
    if args.sample_file:
        sample.write_bytes(args.sample_file.read_bytes())
    elif not args.data.exists():
        print(
            f"loadtest: error: {args.data} does not exist; run `make data` or pass --sample-file",
            file=sys.stderr,
        )
        return 2
    else:
        columns = [column.name for column in manifest.inputs]
        write_records(sample, held_out_records(args.data, manifest.target, columns))
    prefix = out / "locust"
    for stale in out.glob("locust_*"):
        stale.unlink()
    with _service(args, out / "server.log") as url:
        print(f"locust: {args.users} users for {args.duration:g} s against {url}", flush=True)
        status = run_locust(
            url,
            sample,
            prefix,
            duration=args.duration,
            users=args.users,
            spawn_rate=args.spawn_rate,
            model_name=manifest.name,
        )
    stats = Path(f"{prefix}_stats.csv")
    if status not in (0, 1) or not stats.exists():
        print(f"loadtest: error: locust exited with {status} and wrote no stats", file=sys.stderr)
        return 1
    verdict = slo.check(stats, slo.Objectives(args.p99_ms, args.limits))
    (out / "slo.json").write_text(json.dumps(asdict(verdict), indent=1, default=str) + "\n")
    print(verdict.report())
    print(f"results in {out} (locust_stats.csv, locust_report.html, slo.json)")
    return 0 if verdict.passed else 1


if __name__ == "__main__":
    sys.exit(main())

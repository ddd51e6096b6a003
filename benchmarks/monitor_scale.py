"""Time and peak memory of ``tripod monitor run`` over N captured records (default 1,000,000).

Generates N captured exchanges in SageMaker's capture format, one record per request, a third each as
``/predict`` JSON, ``/invocations`` CSV and ``/invocations`` JSON Lines, spread over hour folders in files of
``--per-file`` lines; texts are drawn (seeded, with replacement) from the bundled reviews and answered with
the labels the model predicts for them.  Then runs ``tripod monitor run`` on them in a child process and
reports its wall time, records per second and peak resident memory (the child's ``VmHWM``), which must
not grow with N: the run reads one file at a time and keeps counts, sketches and a bounded sample.

Usage:
    python benchmarks/monitor_scale.py [--records 1000000 | --quick] [--per-file 10000] [--model DIR]
        [--data data/reviews.parquet] [--work DIR] [--json results.json]

``--quick`` generates 20,000 records.  Without ``--model`` a model is trained on 2,000 reviews first.
Results: docs/monitoring.md.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.runtime.pipeline import Pipeline  # noqa: E402
from services.runtime.schema import Records  # noqa: E402

TARGET, TEXT = "sentiment", "review_body"
START = datetime(2026, 12, 1, tzinfo=UTC)
QUICK_RECORDS = 20_000
PEAK_WRAPPER = """
import sys
from tripod import cli
try:
    cli.main(sys.argv[1:])
finally:
    with open("/proc/self/status") as status:
        sys.stderr.write("".join(line for line in status if line.startswith("VmHWM")))
"""
"""Runs ``tripod`` and prints its own peak resident memory.  The child's ``ru_maxrss`` would not do: Linux
carries the high-water mark across ``exec``, and a child forked (vforked) from this process starts out sharing
its pages, so it would report this process's size."""


def _peak_mib(stderr: str) -> float:
    """The child's ``VmHWM`` (kB) in MiB; its ``ru_maxrss`` where /proc is missing (not Linux)."""
    for line in stderr.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def _side(content_type: str, body: str, mode: str) -> dict[str, str]:
    encoding = "CSV" if content_type == "text/csv" else "JSON"
    return {"observedContentType": content_type, "mode": mode, "data": body, "encoding": encoding}


def capture_line(index: int, text: str, label: str, when: datetime) -> str:
    """One captured exchange, in one of three request formats by ``index``."""
    kind = index % 3
    if kind == 0:
        request = ("application/json", json.dumps({"records": [{TEXT: text}]}))
        answer = ("application/json", json.dumps([{"predicted_label": label, "probability": 0.8}]))
    elif kind == 1:
        body = io.StringIO()
        csv.writer(body, lineterminator="\n").writerow([text])
        request = ("text/csv", body.getvalue())
        answer = ("text/csv", f"{label},0.8\n")
    else:
        request = ("application/jsonlines", json.dumps({TEXT: text}) + "\n")
        answer = ("application/jsonlines", json.dumps({"predicted_label": label, "probability": 0.8}) + "\n")
    record = {
        "captureData": {
            "endpointInput": _side(*request, "INPUT"),
            "endpointOutput": _side(*answer, "OUTPUT"),
        },
        "eventMetadata": {
            "eventId": str(uuid.UUID(int=index)),
            "inferenceId": f"req-{index}",
            "inferenceTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        "eventVersion": "0",
    }
    return json.dumps(record, ensure_ascii=False)


def generate(
    capture: Path, texts: Sequence[str], labels: Sequence[str], records: int, per_file: int, seed: int
) -> int:
    """Write ``records`` exchanges under ``capture``; returns the bytes written."""
    rng = np.random.default_rng(seed)
    chosen = rng.integers(0, len(texts), records)
    step = timedelta(seconds=max(1, 36_000 // max(1, records // 100)))  # about ten hours of traffic
    written = 0
    for start in range(0, records, per_file):
        by_hour: dict[str, list[str]] = {}
        for i in range(start, min(records, start + per_file)):
            when = START + (i // 100) * step
            line = capture_line(i, texts[chosen[i]], labels[chosen[i]], when)
            by_hour.setdefault(f"{when:%Y/%m/%d/%H}", []).append(line)
        for hour, lines in by_hour.items():  # a file holds one hour's records, as the serving writer's do
            folder = capture / "reviews" / "AllTraffic" / hour
            folder.mkdir(parents=True, exist_ok=True)
            data = ("\n".join(lines) + "\n").encode("utf-8")
            (folder / f"capture-{start // per_file:06d}.jsonl").write_bytes(data)
            written += len(data)
    return written


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_RECORDS:,} records")
    parser.add_argument("--per-file", type=int, default=10_000, help="captured exchanges per file")
    parser.add_argument(
        "--model", type=Path, default=None, help="model directory (default: train a small one)"
    )
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "reviews.parquet")
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args(argv)
    records = QUICK_RECORDS if args.quick else args.records
    with tempfile.TemporaryDirectory(prefix="tripod-monitor-scale-") as folder:
        work = args.work or Path(folder)
        work.mkdir(parents=True, exist_ok=True)
        frame = pd.read_parquet(args.data)
        model = args.model
        if model is None:
            from training.train import run_training

            model = run_training(
                args.data, TARGET, [TEXT], work / "model", seed=args.seed, sample=2000, progress=False
            )
        from training.monitor.baseline import build_baseline, write_baseline

        baseline_dir = work / "baseline"
        write_baseline(build_baseline(model, frame, seed=args.seed, progress=False), baseline_dir)
        texts = frame[TEXT].astype(str).tolist()
        answers = Pipeline.from_directory(model).predict(Records([[t] for t in texts]))
        assert answers.labels is not None, "the monitor benchmark needs a classification model"
        labels = [str(v) for v in answers.labels]
        capture = work / "capture"
        started = time.perf_counter()
        size = generate(capture, texts, labels, records, args.per_file, args.seed)
        generated = time.perf_counter() - started
        command = [
            sys.executable,
            "-c",
            PEAK_WRAPPER,
            "monitor",
            "run",
            "--baseline",
            str(baseline_dir),
            "--capture",
            str(capture),
            "--out",
            str(work / "run"),
        ]
        started = time.perf_counter()
        finished = subprocess.run(command, capture_output=True, text=True, check=False, env={**os.environ})
        seconds = time.perf_counter() - started
        peak_mib = _peak_mib(finished.stderr)
        if finished.returncode not in (0, 1):
            raise SystemExit(f"monitor run failed ({finished.returncode}): {finished.stderr[-2000:]}")
        report = json.loads((work / "run" / "report.json").read_text(encoding="utf-8"))
    result = {
        "records": records,
        "files": report["read"]["files_read"],
        "capture_mib": size / 2**20,
        "generate_seconds": generated,
        "run_seconds": seconds,
        "records_per_second": records / seconds,
        "peak_rss_mib": peak_mib,
        "exit_status": finished.returncode,
        "analysed_records": report["read"]["records"],
        "violations": [
            f"{c['check']} on {c['feature']}" for c in report["checks"] if c["status"] == "violation"
        ],
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
    }
    print(
        f"monitor run over {records:,} captured records ({result['files']} files, {result['capture_mib']:.0f} MiB): "
        f"{seconds:.1f} s ({result['records_per_second']:,.0f} records/s), peak RSS {peak_mib:.0f} MiB, "
        f"exit {finished.returncode}; generating them took {generated:.1f} s"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main()

"""``make bench-batch`` in a short form, so it cannot rot: every measurement runs on tiny inputs and the table
holds a row for each (about 15 s, so it runs with `make test`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_short_batch_benchmark_run(
    trained_model_dir: Path, prepared_reviews_path: Path, tmp_path: Path
) -> None:
    sizes = ["--mb", "8", "--endpoint-mb", "1", "--single-mb", "0.05", "--rss-mb", "1,2"]
    ceiling = ["--ceiling-records", "20000", "--ceiling-seconds", "1", "--workers", "2"]
    script = [sys.executable, str(ROOT / "benchmarks/batch_transform.py"), "--work", str(tmp_path)]
    inputs = ["--model", str(trained_model_dir), "--data", str(prepared_reviews_path)]
    finished = subprocess.run(
        [*script, *inputs, *sizes, *ceiling], capture_output=True, text=True, timeout=600, check=False
    )

    assert finished.returncode == 0, finished.stderr[-3000:]
    rows = [line for line in finished.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    names = [row.split("|")[1].strip() for row in rows[1:]]
    assert names == [
        "ceiling (predict only), before",
        "ceiling (predict only), after",
        "in-process engine, 2 workers",
        "endpoint engine",
        "endpoint engine, SingleRecord",
        "memory, 1 MB",
        "memory, 2 MB",
    ]
    assert "× the ceilings' mean (" in rows[3] and "goal ≥ 0.8×)" in rows[3] and "(goal ≤ 1.10×)" in rows[7]
    assert "MiniLM: skipped (no --minilm-model)" in finished.stdout

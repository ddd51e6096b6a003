"""``benchmarks/capture_overhead.py --quick`` runs end to end on a small model: both servers measured, every
answered request of the capturing one captured, the cost computed from the two rates."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_capture_benchmark_measures_both_servers_and_loses_no_exchange(
    trained_model_dir: Path, prepared_reviews_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "capture.json"
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "capture_overhead.py"),
        "--model",
        str(trained_model_dir),
        "--data",
        str(prepared_reviews_path),
        "--quick",
        "--out",
        str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())
    best = results["best"]
    assert best["off"]["requests_per_s"] > 0 and best["capture 100%"]["requests_per_s"] > 0
    ratio = best["capture 100%"]["requests_per_s"] / best["off"]["requests_per_s"]
    assert results["throughput_ratio"] == pytest.approx(ratio)
    assert results["answered"] > 0 and results["captured"] == results["answered"] and results["dropped"] == 0
    assert "capture at 100 %" in done.stdout

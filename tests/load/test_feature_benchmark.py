"""``benchmarks/feature_overhead.py --quick`` runs end to end on a small model for each feature: both servers
measured, the cost computed from the two rates, and what the feature did counted (every answered request of
the capturing server captured; the variants' requests shared between both; the keyed server's requests in its
JSON access log)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize("feature", ["capture", "variants", "security"])
def test_the_feature_benchmark_measures_both_servers_and_counts_what_the_feature_did(
    trained_model_dir: Path, prepared_reviews_path: Path, tmp_path: Path, feature: str
) -> None:
    out = tmp_path / f"{feature}.json"
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "feature_overhead.py"),
        "--feature",
        feature,
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
    assert best["off"]["requests_per_s"] > 0 and best[feature]["requests_per_s"] > 0
    ratio = best[feature]["requests_per_s"] / best["off"]["requests_per_s"]
    assert results["throughput_ratio"] == pytest.approx(ratio)
    counts = results["counts"]
    if feature == "capture":
        assert counts["answered"] > 0 and counts["captured"] == counts["answered"] and counts["dropped"] == 0
    elif feature == "security":  # every answered request of the keyed server has its JSON access line
        assert counts["access_lines_200"] > 0
    else:
        assert counts["blue"] > 0 and counts["green"] > 0
    assert f"{feature}: best" in done.stdout

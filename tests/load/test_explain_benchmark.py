"""``make bench-explain`` in its quick form, so it cannot rot: every measurement runs on the test model and the
results hold each with sane values (about 30 s); and the helpers that turn explanations into word rankings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.runtime.explain.explanation import Explanation, Part
from services.runtime.explain.tokens import words
from tests.load.conftest import load_benchmark

ROOT = Path(__file__).resolve().parents[2]
BUDGETS = [8, 16, 32, 64, 128, 256]


def _sane_point(point: dict[str, Any]) -> None:
    latency = point["latency_ms"]
    assert point["errors"] == 0, point["error_samples"]
    assert point["ok"] > 0 and point["requests_per_s"] > 0
    assert 0 < latency["p50"] <= latency["p99"] <= latency["max"]
    assert len(point["load"]) == 2


@pytest.mark.slow
def test_quick_explain_benchmark_run(
    trained_model_dir: Path, prepared_reviews_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    command = [
        sys.executable, str(ROOT / "benchmarks/explain_serving.py"), "--quick", "--model", str(trained_model_dir),
        "--data", str(prepared_reviews_path), "--out", str(out), "--work", str(tmp_path / "work"),
    ]  # fmt: skip
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)

    assert finished.returncode == 0, finished.stderr[-3000:]
    results = json.loads((out / "explain_results.json").read_text())
    for name in ("explain_serving.csv", "explain_agreement.csv", "explain_summary.md", "explain_budget.png"):
        assert (out / name).stat().st_size > 0, name

    http = results["linear"]["http"]
    levels = results["sizes"]["levels"]
    assert set(http["closed"]) == {"predict", "explain", "explain_sampling"}
    for points in http["closed"].values():
        assert [p["concurrency"] for p in points] == levels
        for point in points:
            _sane_point(point)
    has_explainer = (trained_model_dir / "explainer.onnx").is_file()
    assert results["linear"]["has_explainer"] is has_explainer
    assert http["answers"]["explain"]["method"] == ("linear" if has_explainer else "sampling")
    sampling = http["answers"]["explain_sampling"]
    assert (sampling["method"], sampling["output"], sampling["budget"]) == ("sampling", "probability", 64)
    assert 0 < sampling["evaluations"] <= 64
    best = {name: max(p["requests_per_s"] for p in points) for name, points in http["closed"].items()}
    assert http["open_rate"] == pytest.approx(min(best["predict"], best["explain"]) / 2)
    for point in http["open"].values():
        _sane_point(point)
        assert point["rate"] == pytest.approx(http["open_rate"], rel=1e-3)
    p99 = {name: point["latency_ms"]["p99"] for name, point in http["open"].items()}
    assert http["ratios"]["p99_explain_over_predict"] == pytest.approx(p99["explain"] / p99["predict"])
    assert http["ratios"]["throughput_explain_over_predict"] == pytest.approx(
        best["explain"] / best["predict"]
    )

    found = results["linear"]["agreement"]
    assert [row["budget"] for row in found["budgets"]] == BUDGETS
    assert found["reviews"] == results["sizes"]["reviews"]
    for row in found["budgets"]:
        assert 0 < row["evaluations_mean"] <= row["budget"]
        assert row["ms_median"] > 0 and 0 <= row["exact_share"] <= 1 and 0 <= row["top5_mean"] <= 1
        assert -1 <= row["spearman_min"] <= row["spearman_mean"] <= 1
    evaluations = [row["evaluations_mean"] for row in found["budgets"]]
    assert evaluations == sorted(evaluations)
    # Far above chance: a broken word mapping or estimator gives about 0 here.
    assert found["budgets"][-1]["spearman_mean"] > 0.3
    assert -1 <= found["shap_vs_shap"]["spearman_mean"] <= 1

    exact = results["linear"]["exact"]
    if has_explainer:
        assert exact["reviews"] == results["sizes"]["reviews"]
        assert exact["max_abs_diff"] < 1e-5 and exact["max_abs_diff_base"] < 1e-5
        assert min(exact["ms_median_predict"], exact["ms_median_linear"]) > 0
    else:
        assert "skipped" in exact
    assert results["minilm"] == {"skipped": "no --minilm-model"}
    assert "MiniLM: skipped (no --minilm-model)" in finished.stdout
    assert "| `/explain` |" in finished.stdout and "(goal ≤ 2×:" in finished.stdout


def test_word_values_share_a_group_among_its_words() -> None:
    agreement = load_benchmark("explain_agreement")
    text = "soft fabric, runs small!"
    found = words(text)
    explanation = Explanation(
        method="sampling",
        output="probability",
        parts=[
            Part("review_body", "soft fabric", ((0, 11),)),
            Part("review_body", "runs small", ((13, 23),)),
        ],
        contributions=np.array([[0.4, -0.2], [-0.4, 0.2]]),
        base_values=np.zeros(2),
        values=np.array([0.2, -0.2]),
    )

    assert agreement.word_values(explanation, 0, found).tolist() == pytest.approx([0.2, 0.2, -0.1, -0.1])
    assert agreement.word_values(explanation, 1, found).sum() == pytest.approx(-0.2)


@pytest.mark.parametrize(
    ("ours", "reference", "rho", "top"),
    [
        ([1.0, 2.0, 3.0], [10.0, 20.0, 30.0], 1.0, 1.0),
        ([3.0, 2.0, 1.0], [1.0, 2.0, 3.0], -1.0, 1.0),
        ([1.0, 1.0, 1.0], [1.0, 2.0, 3.0], 0.0, 1.0),
        ([0.0] * 5 + [1.0] * 5, [1.0] * 5 + [0.0] * 5, -1.0, 0.0),
    ],
    ids=["same-order", "reversed", "constant-counts-zero", "disjoint-top-5"],
)
def test_rank_agreement(ours: list[float], reference: list[float], rho: float, top: float) -> None:
    agreement = load_benchmark("explain_agreement")

    assert agreement.spearman(np.array(ours), np.array(reference)) == pytest.approx(rho)
    assert agreement.top_overlap(np.array(ours), np.array(reference)) == top

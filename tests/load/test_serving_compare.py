"""``make bench``'s harness in a short form, so it cannot rot: every variant served on loopback, driven by the
client process, results, agreement and plots written (slow: about a minute)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import SAMPLE_ROWS
from tests.load.conftest import load_benchmark

pytestmark = pytest.mark.slow


def test_short_benchmark_run(prepared_reviews_path: Path, tmp_path: Path) -> None:
    compare = load_benchmark("serving_compare")
    results = compare.main(
        [
            "--data",
            str(prepared_reviews_path),
            "--sample",
            str(SAMPLE_ROWS),
            "--work",
            str(tmp_path / "work"),
            "--out",
            str(tmp_path / "out"),
            "--concurrency",
            "1",
            "4",
            "--seconds",
            "1",
            "--slo-seconds",
            "1",
            "--cold-start-runs",
            "1",
            "--batch",
            "8",
            "--peers",  # none: the peers' short form runs behind the bench marker (test_serving_peers.py)
        ]
    )
    assert json.loads((tmp_path / "out" / "serving_results.json").read_text())["ratios"] == pytest.approx(
        results["ratios"]
    )
    for name in ("inprocess", "tripod", "tripod_services", "fused", "sklearn", "floor"):
        points = results["variants"][name]["points"]
        assert len(points) == 4 and all(p["ok"] > 0 and p["errors"] == 0 for p in points), (name, points)
    agreement = results["label_agreement"]
    assert agreement["tripod"] == agreement["tripod_services"] == agreement["fused"] == 1.0
    assert agreement["sklearn"] >= 0.99
    assert "floor" not in agreement
    assert results["variants"]["tripod"]["half_max_single"]["errors"] == 0
    roles = {
        name: {row["role"] for row in results["variants"][name]["memory"]}
        for name in ("tripod", "tripod_services")
    }
    stage_workers = {"worker tripod_transformer", "worker tripod_classifier", "worker tripod_inverse_label"}
    assert "worker tripod" in roles["tripod"] and not roles["tripod"] & stage_workers
    assert roles["tripod_services"] >= {"worker tripod", *stage_workers}
    assert len(results["cold_start_s"]) == 1
    measured = {g["key"] for g in results["goals"] if g["met"] != "not measured"}
    # the goals against the best peer need the peers (tests/load/test_serving_peers.py)
    assert measured == set(compare.GOALS) - {"single_vs_best_peer", "batched_vs_best_peer"}
    for png in ("throughput_vs_concurrency.png", "latency_percentiles.png", "ratios.png"):
        assert (tmp_path / "out" / png).stat().st_size > 10_000
    summary = (tmp_path / "out" / "serving_summary.md").read_text()
    assert "| Tripod HTTP (3 stages in the entry worker, default) | 8 |" in summary
    assert "| Tripod HTTP (3 stage services) | 8 |" in summary


def test_handwritten_transformers_service_answers_predict_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    """The MiniLM baseline with the bundled base weights and a fresh three-label head (no fit needed)."""
    from training.automl.families.minilm import model_path

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_MODEL_DIR", str(model_path()))
    monkeypatch.setenv("HF_LABELS", "negative,neutral,positive")
    service = load_benchmark("serving_torch_service").HandWrittenTransformers()
    answers = service.predict([{"review_body": "Love it"}, {"review_body": "Awful, returned it. " * 100}])
    assert len(answers) == 2
    assert all(set(a) == {"predicted_label", "probability", "probabilities"} for a in answers)
    assert all(abs(sum(a["probabilities"].values()) - 1) < 1e-5 for a in answers)

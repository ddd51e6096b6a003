"""The peer model servers of ``make bench`` in a short form (bench marker: their environments take minutes to
install the first time): each one serves the same model and answers the in-process runtime's labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import SAMPLE_ROWS
from tests.load.conftest import load_benchmark

pytestmark = pytest.mark.bench

ROOT = Path(__file__).resolve().parents[2]
PEER_ENVS = ROOT / "loadtests" / "results" / "bench" / "peers"
"""The peers' environments, shared with ``make bench`` (built once, rebuilt when their pins change)."""


def test_every_peer_answers_the_in_process_runtimes_labels_on_200_held_out_reviews(
    prepared_reviews_path: Path, tmp_path: Path
) -> None:
    compare = load_benchmark("serving_compare")
    peers = load_benchmark("serving_peers")
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
            "--variants",
            "inprocess",
            "tripod",
            "--peer-envs",
            str(PEER_ENVS),
            "--concurrency",
            "2",
            "--seconds",
            "1",
            "--slo-seconds",
            "1",
            "--cold-start-runs",
            "0",
            "--batch",
            "8",
            "--no-plots",
        ]
    )
    assert len(results["variants"]["inprocess"]["labels"]) == 200
    for name in peers.PEERS:
        variant = results["variants"][name]
        assert results["label_agreement"][name] == 1.0, name
        assert all(p["ok"] > 0 and p["errors"] == 0 for p in variant["points"]), (name, variant["points"])
        assert variant["half_max_single"]["errors"] == 0, name
        assert variant["install_mib"] > 0 and variant["memory_total"]["processes"] >= 1, name
    assert {"tripod/best peer single", "tripod/best peer batched"} <= set(results["ratios"])
    goals = {g["key"]: g for g in results["goals"]}
    assert goals["single_vs_best_peer"]["met"] in ("yes", "no")
    assert goals["batched_vs_best_peer"]["met"] in ("yes", "no")

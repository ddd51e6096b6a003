"""The monitoring benchmarks run in a short form, so they cannot rot; the full runs are in docs/monitoring.md."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_scale_benchmark_short_form(
    trained_model_dir: Path, prepared_reviews_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "scale.json"
    args = ["--records", "3000", "--per-file", "1000", "--model", str(trained_model_dir)]
    results = _load("monitor_scale").main(
        [*args, "--data", str(prepared_reviews_path), "--work", str(tmp_path / "work"), "--json", str(out)]
    )
    assert json.loads(out.read_text()) == results
    assert results["analysed_records"] == 3000 and results["files"] >= 3
    assert (
        results["exit_status"] in (0, 1) and 0 < results["peak_rss_mib"] < 2048 and results["run_seconds"] > 0
    )


@pytest.mark.slow
def test_thresholds_benchmark_short_form(
    prepared_reviews_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--data", str(prepared_reviews_path), "--sizes", "200", "--windows", "3", "--domain-windows", "1"]
    report = _load("monitor_thresholds").main([*args, "--train-sample", "1500", "--work", str(tmp_path)])
    assert set(report["scenarios"]) == {
        "held-out (no drift)",
        "one department (Dresses)",
        "short reviews (< 100 characters)",
        "French and German reviews",
        "flipped label mix (negative only)",
    }
    quiet = report["scenarios"]["held-out (no drift)"]["200"]
    assert (
        quiet["domain_classifier_check"]["windows"] == 1 and quiet["text_length_drift_check"]["windows"] == 3
    )
    assert report["scenarios"]["French and German reviews"]["200"]["oov_rate_check"]["fired"] == 1
    assert "| held-out (no drift) | 200 | oov_rate_check | 3 |" in capsys.readouterr().out

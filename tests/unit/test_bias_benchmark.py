"""The bias scale benchmark runs in a short form, so it cannot rot; the full run is `make bench`-sized."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bias_scale.py"


def test_benchmark_short_form_runs_and_agrees_with_smclarify(tmp_path: Path) -> None:
    pytest.importorskip("smclarify")
    spec = importlib.util.spec_from_file_location("bias_scale", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "results.json"
    results = module.main(
        ["--rows", "50000", "--smclarify-rows", "1500", "--repeats", "1", "--json", str(out)]
    )
    assert json.loads(out.read_text()) == results
    assert results["facet_values"] == 20 and results["tripod_seconds"] < 10
    assert results["values_compared"] == 20 * 8
    assert results["max_abs_difference"] < 1e-9

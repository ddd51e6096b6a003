"""The same data, options and seed give byte-identical model files (training/automl/candidate.py's
``canonical_stage``; what is and is not reproducible: models/README.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import TARGET, TEXT_COLUMN

TRAIN = (
    "import sys\n"
    "from training.train import run_training\n"
    "run_training(sys.argv[1], sys.argv[2], [sys.argv[3]], sys.argv[4], seed=42, sample=600, progress=False)\n"
)


def _train(data: Path, root: Path, hash_seed: str) -> None:
    # Separate processes with different string-hash seeds: set and dict orders inside the converters change
    # between processes, not within one, so one process training twice would not catch them.
    subprocess.run(
        [sys.executable, "-c", TRAIN, str(data), TARGET, TEXT_COLUMN, str(root)],
        env={**os.environ, "PYTHONHASHSEED": hash_seed},
        check=True,
        capture_output=True,
        timeout=300,
    )


def test_two_trainings_with_the_same_seed_write_identical_files_and_digests(
    prepared_reviews_path: Path, tmp_path: Path
) -> None:
    root = tmp_path / "reviews"
    _train(prepared_reviews_path, root, "1")
    _train(prepared_reviews_path, root, "2")
    first, second = (json.loads((root / v / "manifest.json").read_text()) for v in ("v1", "v2"))
    assert set(first["files"]) >= {
        "transformer.onnx",
        "classifier.onnx",
        "inverse_label.onnx",
        "explainer.onnx",
        "explainer_features.json",
        "metrics.json",
    }
    assert first["files"] == second["files"]
    for name in first["files"]:
        assert (root / "v1" / name).read_bytes() == (root / "v2" / name).read_bytes(), name
    differing = {key for key in first if first[key] != second[key]}
    assert differing <= {"created_at", "version"}

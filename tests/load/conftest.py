"""Held-out records of the test model and the benchmark modules, which live outside the installed packages."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from loadtests.sample import held_out_records, write_records
from tests.conftest import SAMPLE_ROWS, TARGET, TEXT_COLUMN

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_benchmark(name: str) -> ModuleType:
    """Import ``benchmarks/<name>.py`` (the harness imports its siblings by plain name)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def held_out(prepared_reviews_path: Path) -> list[dict[str, str]]:
    """The test split of the 2,000-review sample ``trained_model_dir`` was trained on, as records."""
    return held_out_records(prepared_reviews_path, TARGET, [TEXT_COLUMN], sample=SAMPLE_ROWS, limit=200)


@pytest.fixture(scope="session")
def sample_file(held_out: list[dict[str, str]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_records(tmp_path_factory.mktemp("load") / "sample.jsonl", held_out)

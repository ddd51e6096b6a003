"""The Bento carries exactly the serving dependencies that pyproject.toml pins."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_bentofile_packages_equal_the_pinned_serving_dependencies() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    bentofile = yaml.safe_load((ROOT / "bentofile.yaml").read_text())
    assert bentofile["python"]["packages"] == project["dependencies"]
    assert all("==" in requirement for requirement in project["dependencies"])


def test_training_libraries_are_not_serving_dependencies() -> None:
    bentofile = yaml.safe_load((ROOT / "bentofile.yaml").read_text())
    names = {requirement.split("==")[0] for requirement in bentofile["python"]["packages"]}
    assert names.isdisjoint({"torch", "scikit-learn", "transformers", "skl2onnx", "pandas", "shap"})


def test_the_bento_ships_the_serving_code_and_no_test_harness() -> None:
    bentofile = yaml.safe_load((ROOT / "bentofile.yaml").read_text())
    included = bentofile["include"]
    assert "services/**/*.py" in included
    assert not any(pattern.startswith(("harness", "tests", "training", "benchmarks")) for pattern in included)
    assert bentofile["service"] == "services.http.service:Tripod"

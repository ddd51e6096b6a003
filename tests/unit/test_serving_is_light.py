"""Serving never imports training libraries: the import path of every serving module stays small."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ["torch", "sklearn", "transformers", "skl2onnx", "training", "pandas", "scipy", "onnx", "shap"]
ENTRY_POINTS = ["tripod.cli", "harness.demo"]


def test_every_serving_module_loads_no_training_library(tmp_path: Path) -> None:
    code = (
        "import importlib, json, pkgutil, sys\n"
        "import services\n"
        "names = [m.name for m in pkgutil.walk_packages(services.__path__, 'services.')]\n"
        f"for name in names + {ENTRY_POINTS!r}: importlib.import_module(name)\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    env = {"TRIPOD_MODEL_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert json.loads(result.stdout) == []

"""Serving never imports training libraries: the import path of every serving module stays small."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["torch", "sklearn", "transformers", "skl2onnx", "training", "pandas", "scipy", "onnx", "shap"]
SERVING_MODULES = ["services.service", "services.batch", "services.runtime", "tripod.cli", "tripod.demo"]


def test_serving_modules_load_no_training_library(tmp_path) -> None:
    code = (
        "import importlib, json, sys\n"
        f"for name in {SERVING_MODULES!r}: importlib.import_module(name)\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    env = {"TRIPOD_MODEL_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert json.loads(result.stdout) == []

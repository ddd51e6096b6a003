"""Opening the stages checks what digests cannot: that the manifest describes these graphs and that they fit
each other (``services/runtime/stages.py``).  Each case edits a real model's manifest and regenerates its
digest, as a careless hand or an attacker would."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from services.artifacts import MANIFEST_DIGEST_NAME, ModelArtifact, manifest_digest_line
from services.errors import ModelIntegrityError
from services.runtime.pipeline import Pipeline

Manifest = dict[str, object]


@pytest.fixture
def model_copy(trained_model_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained_model_dir, tmp_path / "model"))


def rewrite_manifest(model_dir: Path, change: Callable[[Manifest], None]) -> None:
    manifest = json.loads((model_dir / "manifest.json").read_text())
    change(manifest)
    encoded = (json.dumps(manifest, indent=2) + "\n").encode()
    (model_dir / "manifest.json").write_bytes(encoded)
    (model_dir / MANIFEST_DIGEST_NAME).write_text(manifest_digest_line(encoded))


def _reverse_labels(manifest: Manifest) -> None:
    manifest["labels"] = list(reversed(manifest["labels"]))  # type: ignore[call-overload]


def _swap_transformer_and_classifier(manifest: Manifest) -> None:
    stages = manifest["stages"]
    assert isinstance(stages, dict)
    stages["transformer"], stages["classifier"] = stages["classifier"], stages["transformer"]


def _drop_a_label(manifest: Manifest) -> None:
    manifest["labels"] = manifest["labels"][:-1]  # type: ignore[index]


def _rename_an_output(manifest: Manifest) -> None:
    manifest["stages"]["inverse_label"]["outputs"][0]["name"] = "label_text"  # type: ignore[index]


def _retype_the_input(manifest: Manifest) -> None:
    manifest["inputs"][0]["dtype"] = "float"  # type: ignore[index]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(_reverse_labels, "inverse_label.onnx maps class indices 0..2 to", id="reversed-labels"),
        pytest.param(
            _swap_transformer_and_classifier, "the manifest's stages do not fit the graphs", id="swapped"
        ),
        pytest.param(
            _drop_a_label, "3 class probabilities per record, but the manifest has 2 labels", id="label-count"
        ),
        pytest.param(_rename_an_output, "the manifest says inverse_label.onnx takes", id="renamed-output"),
        pytest.param(_retype_the_input, r"is float in the manifest but tensor\(string\)", id="input-type"),
    ],
)
def test_a_manifest_that_does_not_describe_its_graphs_is_refused_in_one_line(
    model_copy: Path, change: Callable[[Manifest], None], message: str
) -> None:
    rewrite_manifest(model_copy, change)
    ModelArtifact.from_directory(model_copy)  # the files and the manifest's own digest are fine
    with pytest.raises(ModelIntegrityError, match=message) as raised:
        Pipeline.from_directory(model_copy)
    assert "\n" not in str(raised.value)


def test_an_untouched_model_opens(model_copy: Path) -> None:
    pipeline = Pipeline.from_directory(model_copy)
    assert pipeline.class_names == tuple(pipeline.manifest.labels)

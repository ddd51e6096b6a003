"""Model versions for tests and benchmarks: copies of one trained model published under other version names."""

from __future__ import annotations

import shutil
from pathlib import Path

from services.artifacts import read_manifest, write_manifest


def model_version_copy(model: Path, folder: Path, version: str) -> Path:
    """A copy of a trained model as ``folder/version``, its manifest naming that version (so another digest):
    what ``tripod train`` would publish as the next version, without training again."""
    copy = folder / version
    shutil.copytree(model, copy)
    write_manifest(copy, read_manifest(copy).model_copy(update={"version": version}))
    return copy

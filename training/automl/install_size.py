"""What a family costs to install: the bytes on disk of the distributions only it needs.

Measured from the installed files (``importlib.metadata``), not quoted from an index: wheels differ by platform
(torch's CPU wheel is a fraction of its CUDA one), and the number that matters is this environment's.
"""

from __future__ import annotations

import functools
from importlib import metadata
from pathlib import Path


@functools.cache
def distribution_bytes(name: str) -> int:
    """Bytes of the installed files of distribution ``name``; 0 when it is not installed."""
    try:
        files = metadata.distribution(name).files or []
    except metadata.PackageNotFoundError:
        return 0
    total = 0
    for file in files:
        path = Path(str(file.locate()))
        if path.is_file():
            total += path.stat().st_size
    return total


def directory_bytes(directory: Path) -> int:
    """Bytes of the files under ``directory`` (0 when it does not exist)."""
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file()) if directory.is_dir() else 0

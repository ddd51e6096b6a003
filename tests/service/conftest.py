"""A real Tripod server on a loopback port, started once for the service tests and always stopped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.runtime import InferencePipeline
from tripod.server_process import RunningServer, running_server


@pytest.fixture(scope="session")
def server(trained_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    log = tmp_path_factory.mktemp("server") / "server.log"
    with running_server(trained_model_dir, log_path=log) as running:
        yield running


@pytest.fixture(scope="session")
def pipeline(trained_model_dir: Path) -> InferencePipeline:
    return InferencePipeline.from_directory(trained_model_dir)


@pytest.fixture(scope="session")
def column(pipeline: InferencePipeline) -> str:
    """The served model's one text input column (``review_body``)."""
    return pipeline.input_names[0]

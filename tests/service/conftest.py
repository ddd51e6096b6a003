"""A real Tripod server on a loopback port, started once for the service tests and always stopped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.server import RunningServer, running_server
from services.runtime.pipeline import Pipeline


@pytest.fixture(scope="session", params=["local", "services"], ids=lambda stages: f"stages={stages}")
def server(
    request: pytest.FixtureRequest, trained_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """Every protocol test runs against both topologies: the stages in the entry worker (the default) and the
    three BentoML stage services composed with ``bentoml.depends``."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    with running_server(trained_model_dir, env={"TRIPOD_STAGES": request.param}, log_path=log) as running:
        yield running


@pytest.fixture(scope="session")
def default_server(
    trained_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """``tripod serve`` with its default settings, for the long fuzzing runs (once is enough)."""
    log = tmp_path_factory.mktemp("default_server") / "server.log"
    with running_server(trained_model_dir, log_path=log) as running:
        yield running


@pytest.fixture(scope="session")
def pipeline(trained_model_dir: Path) -> Pipeline:
    return Pipeline.from_directory(trained_model_dir)


@pytest.fixture(scope="session")
def column(pipeline: Pipeline) -> str:
    """The served model's one text input column (``review_body``)."""
    return pipeline.input_names[0]

"""The locustfile runs against a real server on loopback, and the SLO check fails on an injected error.

A 10-second form of ``make loadtest``: every scenario (single and batched ``/predict``, CSV ``/invocations``,
``/v2`` infer, ``/explain``) is sent and answered correctly; then a run with a task the server must refuse (a record with an
unknown field, answered 422) fails the SLO check, through Locust's own failure accounting.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.server import RunningServer, running_server
from loadtests import slo
from loadtests.run import run_locust

SCENARIOS = {"/predict [1]", "/predict [8]", "/invocations csv [8]", "/v2 infer [8]", "/explain [1]"}
EVEN_WEIGHTS = {
    f"TRIPOD_LOAD_WEIGHT_{name}": "1"
    for name in ("PREDICT", "PREDICT_BATCH", "INVOCATIONS", "OIP", "EXPLAIN")
}
LOAD = {
    **EVEN_WEIGHTS,
    "TRIPOD_LOAD_BATCH": "8",
    "TRIPOD_LOAD_WAIT_MIN_S": "0.05",
    "TRIPOD_LOAD_WAIT_MAX_S": "0.2",
}


@pytest.fixture(scope="module")
def server(trained_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    log = tmp_path_factory.mktemp("load_server") / "server.log"
    with running_server(trained_model_dir, log_path=log) as running:
        yield running


def test_locustfile_runs_every_scenario_without_errors(
    server: RunningServer, sample_file: Path, tmp_path: Path
) -> None:
    prefix = tmp_path / "locust"
    status = run_locust(
        server.url,
        sample_file,
        prefix,
        duration=10,
        users=2,
        spawn_rate=2,
        model_name="reviews",
        env=LOAD,
        quiet=True,
    )
    verdict = slo.check(f"{prefix}_stats.csv", slo.Objectives(p99_ms=10_000))
    assert status == 0, verdict.report()
    assert verdict.passed, verdict.report()
    sent = {s.name: s.requests for s in verdict.stats if s.name != slo.AGGREGATED}
    assert set(sent) == SCENARIOS and all(n > 0 for n in sent.values()), sent
    assert Path(f"{prefix}_report.html").stat().st_size > 0


def test_slo_check_fails_on_an_injected_error(
    server: RunningServer, sample_file: Path, tmp_path: Path
) -> None:
    prefix = tmp_path / "locust"
    env = {**LOAD, "TRIPOD_LOAD_INJECT_ERRORS": "4", "TRIPOD_LOAD_MAX_REQUESTS": "40"}
    status = run_locust(
        server.url,
        sample_file,
        prefix,
        duration=4,
        users=2,
        spawn_rate=2,
        model_name="reviews",
        env=env,
        quiet=True,
    )
    assert status == 1  # Locust's own verdict: some requests failed
    verdict = slo.check(f"{prefix}_stats.csv", slo.Objectives(p99_ms=10_000))
    assert not verdict.passed
    assert any("requests failed" in miss for miss in verdict.misses)
    assert any("/predict [injected error]" in f and "422" in f for f in verdict.failures), verdict.failures
    injected = next(s for s in verdict.stats if s.name == "/predict [injected error]")
    assert injected.failures == injected.requests > 0
    assert slo.main([f"{prefix}_stats.csv"]) == 1

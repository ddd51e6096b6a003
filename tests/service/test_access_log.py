"""``TRIPOD_ACCESS_LOG``: one access line per answered request by default, in text and JSON mode; none when off,
while the server's other lines stay."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from harness.server import running_server


def _served_log(model: Path, tmp_path: Path, column: str, env: dict[str, str]) -> str:
    log = tmp_path / "server.log"
    with running_server(model, env={"BENTOML_HOME": str(tmp_path / "home"), **env}, log_path=log) as server:
        for text in ("great", "awful", "fine"):
            answer = httpx.post(f"{server.url}/predict", json={"records": [{column: text}]}, timeout=30)
            assert answer.status_code == 200
        assert (
            httpx.post(f"{server.url}/predict", json={"records": [{"nope": "x"}]}, timeout=30).status_code
            == 422
        )
    return log.read_text()


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_every_answered_request_gets_one_access_line_by_default(
    trained_model_dir: Path, tmp_path: Path, column: str, log_format: str
) -> None:
    text = _served_log(trained_model_dir, tmp_path, column, {"TRIPOD_LOG_FORMAT": log_format})
    lines = [line for line in text.splitlines() if "/predict" in line]
    assert len(lines) == 4, lines


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_access_line_when_the_access_log_is_off(
    trained_model_dir: Path, tmp_path: Path, column: str, log_format: str
) -> None:
    text = _served_log(
        trained_model_dir, tmp_path, column, {"TRIPOD_LOG_FORMAT": log_format, "TRIPOD_ACCESS_LOG": "false"}
    )
    assert "/predict" not in text
    assert "stages run in this worker" in text  # the server's own lines stay

"""Run the ``tripod`` CLI in-process from tests, through its real entry point."""

from __future__ import annotations

import sys

import pytest


def run_cli(
    args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """Run ``tripod ARGS`` in this process through the real entry point; returns (status, stdout, stderr)."""
    from tripod import cli

    monkeypatch.setattr(sys, "argv", ["tripod", *args])
    try:
        cli.main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


def error_line(err: str) -> str:
    """The one error line, without the progress bars tqdm may have drawn before it."""
    lines = [line for line in err.splitlines() if line.startswith("tripod: error: ")]
    assert len(lines) == 1, err
    return lines[0]

"""Tracing of the entry service: out of the way unless BentoML's configuration names an exporter and a rate."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from services.http.tracing import EVERY_URL

PROBE = "import json; from services.http.tracing import service_tracing; print(json.dumps(service_tracing()))"


def _section(options: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("BENTOML_CONFIG", "BENTOML_CONFIG_OPTIONS")}
    if options is not None:
        env["BENTOML_CONFIG_OPTIONS"] = options
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "options",
    [None, "tracing.exporter_type=otlp", "tracing.sample_rate=1.0"],
    ids=["bentoml-defaults", "exporter-without-rate", "rate-without-exporter"],
)
def test_no_url_is_traced_when_no_span_could_be_exported(options: str | None) -> None:
    assert _section(options) == {"excluded_urls": EVERY_URL}


def test_every_url_is_traced_as_bentoml_does_when_an_exporter_and_a_rate_are_configured() -> None:
    assert _section("tracing.exporter_type=in_memory tracing.sample_rate=0.5") == {}

"""OpenTelemetry tracing of the entry service: on when an operator configures it, out of the way otherwise.

BentoML wraps every request in OpenTelemetry's ASGI middleware, which opens a server span and one more span per
ASGI message sent, and puts the trace context in the access line — even with BentoML's defaults, where no
exporter is set and the sample rate is 0, so no span ever leaves the process.  On a single-review ``/predict``
that was 290 µs of the entry worker's 980 µs of CPU time per request (CPU time per request, one run each,
docs/benchmarks.md "Ahead of the peers").

So Tripod's entry service excludes every URL from tracing unless tracing is configured — an exporter
(``tracing.exporter_type``) and a sample rate above 0 in BentoML's configuration (``BENTOML_CONFIG`` or
``BENTOML_CONFIG_OPTIONS``); then every route is traced as BentoML does it.  Excluded URLs pass straight through
the middleware.  Request ids (``services/http/requestid.py``) do not depend on tracing.
"""

from __future__ import annotations

from typing import Any

EVERY_URL = ".*"


def tracing_configured() -> bool:
    """Whether BentoML's configuration names an exporter and samples some requests."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    exporter = BentoMLContainer.tracing.exporter_type.get()
    rate = BentoMLContainer.tracing.sample_rate.get()
    return bool(exporter) and bool(rate)


def service_tracing() -> dict[str, Any]:
    """The ``tracing`` section of the entry service's configuration (empty: BentoML's, as configured)."""
    return {} if tracing_configured() else {"excluded_urls": EVERY_URL}

"""The floor under every BentoML variant: the same route, request and answer shape, and no model at all.

``POST /predict`` parses the records and answers each with a constant prediction, so its throughput is what
BentoML, HTTP and JSON allow on this machine before any inference; no service that parses these requests can
beat it.  ``benchmarks/serving_compare.py`` reports Tripod against it next to the in-process ceiling, which
separates what the serving framework costs from what Tripod's pipeline adds.

Serve it with ``bentoml serve serving_floor_service:Floor --working-dir benchmarks``.
"""

from __future__ import annotations

from typing import Any

import bentoml

from services.codecs.json_records import encode_json
from services.http.predict import Predictions

ANSWER = {
    "predicted_label": "positive",
    "probability": 0.9,
    "probabilities": {"negative": 0.05, "neutral": 0.05, "positive": 0.9},
}


@bentoml.service(name="bentoml_floor")
class Floor:
    @bentoml.api(route="/predict")
    def predict(self, records: list[dict[str, Any]]) -> Predictions:
        """Answered as Tripod answers (``services.http.predict.predict_answer``): encoded once, sent as is."""
        from starlette.responses import Response

        return Response(encode_json([ANSWER] * len(records)), media_type="application/json")  # type: ignore[return-value]

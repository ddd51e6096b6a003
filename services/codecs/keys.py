"""The keys an answer row can carry (SageMaker's ``/invocations`` lets a request choose among them)."""

from __future__ import annotations

CLASSIFICATION_KEYS = ("predicted_label", "probability", "probabilities", "labels")
REGRESSION_KEYS = ("predicted_value",)

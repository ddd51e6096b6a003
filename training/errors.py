"""Errors that training raises on purpose.

They derive from :class:`services.errors.TripodError`, so the CLI prints their message on one line and exits
non-zero, exactly as it does for serving errors.  Anything else that escapes training is a bug.
"""

from __future__ import annotations

from services.errors import TripodError


class DataError(TripodError):
    """A table that cannot be read or does not have the shape training needs (missing file or column...)."""


class ParityError(TripodError):
    """The exported ONNX stages do not reproduce the scikit-learn model within the stated tolerances.

    Export refuses to write such a model directory: serving it would silently change predictions.
    """


class ExplainerError(ParityError):
    """The exported explainer stage does not reproduce ``shap`` or the model's own scores within tolerance.

    A parity failure like any other: export publishes nothing, since serving would explain predictions with
    numbers that do not add up to them.
    """

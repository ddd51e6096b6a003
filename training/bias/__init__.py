"""Pre- and post-training bias reports in the shape of SageMaker Clarify's ``analysis.json``, and balancing.

``tripod bias`` reads a table, turns the label into "positive or not" (multi-class labels through a list of
positive values, numeric labels through a threshold), turns each facet into groups (each value against the
rest, given sensitive values against the rest, or the rows above a threshold against the rows at or below it),
and computes Clarify's metrics with :mod:`training.bias.metrics`.  Predictions for post-training metrics come
from a column or from a model directory, run through the same ONNX runtime that serves it.

Rows whose label (or prediction) is missing are left out of every metric; rows whose facet is missing are left
out of that facet's metrics.  Both are counted in ``details.excluded`` and shown in the report.

Modules: :mod:`~training.bias.specs` (label and facet definitions), :mod:`~training.bias.metrics` (the metrics
over count tables), :mod:`~training.bias.analysis` (:func:`bias_analysis`), :mod:`~training.bias.balance`
(down-sampling), :mod:`~training.bias.report` (HTML).  ``tripod bias`` and ``tripod balance`` need only the
names below.
"""

from training.bias.analysis import bias_analysis, predict_with_model
from training.bias.balance import balance
from training.bias.report import balance_report, render_balance_html, write_bias_report
from training.bias.specs import BiasError, FacetSpec, LabelSpec

__all__ = [
    "BiasError",
    "FacetSpec",
    "LabelSpec",
    "balance",
    "balance_report",
    "bias_analysis",
    "predict_with_model",
    "render_balance_html",
    "write_bias_report",
]

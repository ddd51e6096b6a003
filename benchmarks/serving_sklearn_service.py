"""The scikit-learn service a user writes by hand: the fitted pipeline, pickled, in one BentoML service.

It is the baseline Tripod's pipeline is compared with (``benchmarks/serving_compare.py``), written the way the
BentoML quickstarts write one: load the pickle in ``__init__``, call ``predict_proba`` on each request's
records, BentoML's defaults everywhere (one worker, one thread, no adaptive batching: a user has to opt into
batching, and ``predict_proba`` on a DataFrame of records is not a batchable signature).  Same request and
answer shape as Tripod's ``POST /predict``.  It lives under ``benchmarks/``: ``services/`` never imports
scikit-learn.

Serve it with ``SKLEARN_PIPELINE=path.pkl bentoml serve serving_sklearn_service:HandWrittenSklearn
--working-dir benchmarks``; the pickle is ``{"pipeline": Pipeline, "labels": [...]}`` as written by
``serving_artifacts.prepare_tfidf``.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

import bentoml
import pandas as pd


@bentoml.service(name="handwritten_sklearn")
class HandWrittenSklearn:
    def __init__(self) -> None:
        with open(os.environ["SKLEARN_PIPELINE"], "rb") as handle:
            saved = pickle.load(handle)
        self.pipeline = saved["pipeline"]
        self.labels = list(saved["labels"])

    @bentoml.api(route="/predict")
    def predict(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        probabilities = self.pipeline.predict_proba(pd.DataFrame.from_records(records))
        answers = []
        for row in probabilities:
            best = int(row.argmax())
            answers.append(
                {
                    "predicted_label": self.labels[best],
                    "probability": float(row[best]),
                    "probabilities": dict(zip(self.labels, map(float, row), strict=True)),
                }
            )
        return answers

"""The transformer service a user writes by hand: ``transformers`` + PyTorch in one BentoML service.

The baseline of the MiniLM scenario in ``benchmarks/serving_compare.py``, written as the BentoML and
Hugging Face examples write it: tokenizer and model loaded in ``__init__``, each request tokenized with
dynamic padding (``padding=True``, truncation at ``max_length``) and run under ``torch.inference_mode()``:
float32, PyTorch's default threads, BentoML's defaults (one worker, one thread, no adaptive batching).  Same
request and answer shape as Tripod's ``POST /predict``.  It lives under ``benchmarks/``: ``services/`` never
imports torch.

``HF_MODEL_DIR`` is either what ``serving_artifacts.save_for_transformers`` wrote from a fitted MiniLM
(``tripod.json`` beside the weights: ``"pooling": "mean"`` for the encoder + mean pooling + ``head.pt``, as
the ``minilm`` family builds it, or ``"model"`` for a ``*ForSequenceClassification`` checkpoint), or plain
weights such as the bundled all-MiniLM-L6-v2, loaded with ``AutoModelForSequenceClassification`` and a fresh
head of ``HF_LABELS`` (comma-separated): the same computation, not the same answers.  ``HF_MAX_LENGTH``
(default 128) and ``HF_INPUT`` (the record field holding the text, default ``review_body``) override
``tripod.json``; ``HF_TORCH_THREADS`` sets PyTorch's intra-op threads (default: PyTorch's, one per core).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import bentoml
import torch
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer


@bentoml.service(name="handwritten_transformers")
class HandWrittenTransformers:
    def __init__(self) -> None:
        path = Path(os.environ["HF_MODEL_DIR"])
        if threads := os.environ.get(
            "HF_TORCH_THREADS"
        ):  # the benchmark's second variant; a user keeps the default
            torch.set_num_threads(int(threads))
        saved = json.loads((path / "tripod.json").read_text()) if (path / "tripod.json").exists() else {}
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.max_length = int(os.environ.get("HF_MAX_LENGTH", saved.get("max_length", 128)))
        self.input = os.environ.get("HF_INPUT", saved.get("input", "review_body"))
        labels = [x for x in os.environ.get("HF_LABELS", "").split(",") if x] or saved.get("labels", [])
        self.mean_pooling = saved.get("pooling") == "mean"
        if self.mean_pooling:
            self.encoder = AutoModel.from_pretrained(path, add_pooling_layer=False).eval()
            self.head = torch.nn.Linear(self.encoder.config.hidden_size, len(labels))
            self.head.load_state_dict(torch.load(path / "head.pt"))
            self.head.eval()
        else:
            extra = {"num_labels": len(labels)} if labels else {}
            self.model = AutoModelForSequenceClassification.from_pretrained(path, **extra).eval()
            labels = labels or [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]
        self.labels = labels

    def logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if not self.mean_pooling:
            return self.model(**batch).logits
        hidden = self.encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return self.head((hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0))

    @bentoml.api(route="/predict")
    def predict(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        texts = [str(record[self.input]) for record in records]
        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        with torch.inference_mode():
            probabilities = torch.softmax(self.logits(dict(batch)), dim=-1).numpy()
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

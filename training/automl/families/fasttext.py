"""fastText-style supervised text classifier: the mean of word and word-bigram embeddings → one linear layer.

The family trains with torch and exports two graphs that need nothing beyond onnxruntime's own operators
(built in :mod:`training.automl.families.fasttext_onnx`, beside the tokenizer they reproduce):

* ``transformer.onnx`` tokenizes inside ONNX: ``StringNormalizer`` (lower case, ``C.UTF-8``) → ``Tokenizer``
  (``com.microsoft``, re2) → ``LabelEncoder`` (word → id) and, for bigrams, integer arithmetic on the two word
  ids → ``LabelEncoder`` (bigram key → id).  It emits ``features``: int64 ``[None, 2 * max_tokens]``: the ids
  of the first ``max_tokens`` words, then the ids of the bigrams they form, padded with ``PAD_ID`` (0).
* ``classifier.onnx`` (or ``regressor.onnx``): ``Gather`` the embeddings, average over the non-pad ids, a
  linear layer, then softmax + arg-max (or the value).

Several text columns are joined with ``" | "`` (``StringConcat`` in the graph); ``|`` is no token character.
Categorical and numeric input columns are accepted by the graph (the contract takes every input) but not used.

Validation objective (``on_epoch`` and early stopping): macro-F1 for classification, R² for regression
(:func:`~training.automl.families.torch_common.validation_objective`).  After training, classification can add
per-class logit offsets fitted on validation to maximize macro-F1 (``adjust_priors``); they are part of the
exported graph, so parity covers them.
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from training.automl.candidate import (
    BudgetExceeded,
    CandidateModel,
    EpochCallback,
    OnnxStages,
    Params,
    Preset,
)
from training.automl.families.fasttext_onnx import PAD_ID, estimator_graph, tokenize, transformer_graph
from training.automl.families.torch_common import (
    fit_logit_offsets,
    join_columns,
    one_torch_thread,
    past,
    training_loss,
    validation_objective,
)
from training.export import build_inverse_label
from training.problem import Problem

if TYPE_CHECKING:
    import optuna


class _Bag(torch.nn.Module):
    """Mean of the embeddings of the non-pad ids, then a linear layer."""

    def __init__(self, n_ids: int, dim: int, n_outputs: int, dropout: float) -> None:
        super().__init__()
        # Sparse gradients: a step touches only the rows of its batch's ids, not the whole (n_ids, dim) table.
        self.embedding = torch.nn.Embedding(n_ids, dim, padding_idx=PAD_ID, sparse=True)
        torch.nn.init.uniform_(self.embedding.weight, -1.0 / dim, 1.0 / dim)
        with torch.no_grad():
            self.embedding.weight[PAD_ID].zero_()
        self.dropout = torch.nn.Dropout(dropout)
        self.linear = torch.nn.Linear(dim, n_outputs)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        summed = self.embedding(ids).sum(dim=1)
        count = (ids != PAD_ID).sum(dim=1, keepdim=True).clamp(min=1).to(summed.dtype)
        return self.linear(self.dropout(summed / count))


class FastTextModel(CandidateModel):
    """fastText-style classifier (or regressor) over the text columns; see the module docstring."""

    family = "fasttext"
    packages = ("torch",)
    iterative = True

    @classmethod
    def supports(cls, problem: Problem) -> bool:
        return len(problem.roles.text) >= 1

    @classmethod
    def suggest(cls, trial: optuna.Trial, preset: Preset, problem: Problem) -> Params:
        params = cls.default_params(preset, problem)
        # Optuna names carry the family prefix: one study searches every family.
        params["dim"] = trial.suggest_categorical(
            "fasttext_dim", [32, 64, 100] if preset == "fast" else [32, 64, 100, 200]
        )
        params["lr"] = trial.suggest_float("fasttext_lr", 1e-3, 3e-2, log=True)
        params["batch_size"] = trial.suggest_categorical("fasttext_batch_size", [32, 64, 128])
        params["dropout"] = trial.suggest_float("fasttext_dropout", 0.0, 0.5)
        params["weight_decay"] = trial.suggest_float("fasttext_weight_decay", 1e-6, 1e-2, log=True)
        params["bigrams"] = trial.suggest_categorical("fasttext_bigrams", [True, False])
        params["min_count"] = trial.suggest_int("fasttext_min_count", 1, 3)
        if problem.is_classification:
            params["class_weight"] = trial.suggest_categorical(
                "fasttext_class_weight", ["none", "sqrt", "balanced"]
            )
        return params

    @classmethod
    def default_params(cls, preset: Preset, problem: Problem) -> Params:
        return {
            "dim": 64,
            "lr": 2e-3,
            "batch_size": 64,
            "dropout": 0.2,
            "weight_decay": 1e-4,
            "bigrams": True,
            "min_count": 2,
            "max_vocabulary": 50_000,
            "max_tokens": 128,
            "class_weight": "sqrt" if problem.is_classification else "none",
            "adjust_priors": problem.is_classification,
            "max_epochs": {"fast": 10, "balanced": 20, "best": 40}[preset],
            "patience": {"fast": 2, "balanced": 3, "best": 4}[preset],
        }

    # -- ids ------------------------------------------------------------------------------------------------

    def _texts(self, frame: pd.DataFrame) -> list[str]:
        return join_columns(self.problem.input_frame(frame), self.problem.roles.text)

    def _build_vocabularies(self, token_lists: list[list[str]]) -> None:
        p = self.params
        limit = int(p.get("max_vocabulary", 50_000))
        min_count = int(p.get("min_count", 2))
        words = Counter(t for tokens in token_lists for t in tokens[: self.max_tokens_])
        kept = sorted((w for w, c in words.items() if c >= min_count), key=lambda w: (-words[w], w))[:limit]
        self.vocabulary_ = {w: i + 1 for i, w in enumerate(kept)}  # 0 is PAD_ID
        self.bigrams_: dict[int, int] = {}
        if p.get("bigrams", True):
            n_words = len(self.vocabulary_) + 1
            pairs: Counter[int] = Counter()
            for tokens in token_lists:
                ids = [self.vocabulary_.get(t, PAD_ID) for t in tokens[: self.max_tokens_]]
                pairs.update(a * n_words + b for a, b in itertools.pairwise(ids) if a and b)
            kept_pairs = sorted((k for k, c in pairs.items() if c >= min_count), key=lambda k: (-pairs[k], k))
            self.bigrams_ = {k: n_words + i for i, k in enumerate(kept_pairs[:limit])}

    @property
    def n_ids_(self) -> int:
        return 1 + len(self.vocabulary_) + len(self.bigrams_)

    def _ids(self, texts: Sequence[str]) -> np.ndarray:
        """``(n_samples, 2 * max_tokens)`` int64: word ids, then bigram ids, as the transformer emits."""
        length = self.max_tokens_
        n_words = len(self.vocabulary_) + 1
        out = np.zeros((len(texts), 2 * length), dtype=np.int64)
        for row, text in enumerate(texts):
            ids = [self.vocabulary_.get(t, PAD_ID) for t in tokenize(text)[:length]]
            out[row, : len(ids)] = ids
            for j, (a, b) in enumerate(itertools.pairwise(ids)):
                if a and b:
                    out[row, length + j] = self.bigrams_.get(a * n_words + b, PAD_ID)
        return out

    # -- training -------------------------------------------------------------------------------------------

    def _targets(self, frame: pd.DataFrame) -> np.ndarray:
        y = self.problem.encode_target(frame)
        if self.problem.is_classification:
            return y
        return ((y - self.y_mean_) / self.y_scale_).astype(np.float32)

    def _loss(self, y: np.ndarray) -> torch.nn.Module:
        return training_loss(self.problem, y, str(self.params.get("class_weight", "none")))

    def _raw_outputs(self, ids: np.ndarray) -> np.ndarray:
        self.model_.eval()
        with torch.no_grad():
            out = [self.model_(torch.from_numpy(ids[i : i + 2048])) for i in range(0, len(ids), 2048)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.model_.linear.out_features), np.float32)

    def fit(
        self,
        train: pd.DataFrame,
        validation: pd.DataFrame,
        *,
        deadline: float | None = None,
        on_epoch: EpochCallback | None = None,
    ) -> FastTextModel:
        if past(deadline):
            raise BudgetExceeded("the deadline passed before fastText training started")
        with one_torch_thread():
            return self._fit(train, validation, deadline, on_epoch)

    def _fit(
        self,
        train: pd.DataFrame,
        validation: pd.DataFrame,
        deadline: float | None,
        on_epoch: EpochCallback | None,
    ) -> FastTextModel:
        p = self.params
        torch.manual_seed(self.seed)
        generator = np.random.default_rng(self.seed)
        self.max_tokens_ = int(p.get("max_tokens", 128))
        train_texts = self._texts(train)
        self._build_vocabularies([tokenize(t) for t in train_texts])
        x_train = self._ids(train_texts)
        x_valid = self._ids(self._texts(validation))
        if self.problem.is_classification:
            self.y_mean_, self.y_scale_ = 0.0, 1.0
            self.offsets_ = np.zeros(len(self.problem.labels), dtype=np.float32)
        else:
            raw = self.problem.encode_target(train)
            self.y_mean_, self.y_scale_ = float(raw.mean()), float(raw.std() or 1.0)
        y_train = self._targets(train)
        y_valid_raw = self.problem.encode_target(validation)
        n_out = len(self.problem.labels) if self.problem.is_classification else 1
        self.model_ = _Bag(self.n_ids_, int(p.get("dim", 64)), n_out, float(p.get("dropout", 0.2)))
        lr = float(p.get("lr", 5e-3))
        optimizers = [
            torch.optim.SparseAdam(list(self.model_.embedding.parameters()), lr=lr),
            torch.optim.AdamW(
                self.model_.linear.parameters(), lr=lr, weight_decay=float(p.get("weight_decay", 1e-4))
            ),
        ]
        loss_fn = self._loss(y_train)
        batch = int(p.get("batch_size", 64))
        best_score, best_state, stale = -math.inf, None, 0
        self.epochs_, self.history_ = 0, []
        started = time.monotonic()
        for epoch in range(int(p.get("max_epochs", 20))):
            self.model_.train()
            order = generator.permutation(len(x_train))
            for start in range(0, len(order), batch):
                index = order[start : start + batch]
                for optimizer in optimizers:
                    optimizer.zero_grad()
                output = self.model_(torch.from_numpy(x_train[index]))
                target = torch.from_numpy(y_train[index])
                loss = loss_fn(output, target) if n_out > 1 else loss_fn(output[:, 0], target)
                loss.backward()
                for optimizer in optimizers:
                    optimizer.step()
                if past(deadline):
                    break
            validation_scores = self._scores_from_ids(x_valid)
            score = validation_objective(self.problem, y_valid_raw, validation_scores)
            self.epochs_ = epoch + 1
            self.history_.append(score)
            if score > best_score:
                best_score, best_state, stale = score, copy.deepcopy(self.model_.state_dict()), 0
            else:
                stale += 1
            if on_epoch is not None:
                on_epoch(epoch, validation_scores)
            if past(deadline) or stale >= int(p.get("patience", 3)):
                break
        assert best_state is not None
        self.model_.load_state_dict(best_state)
        self.fit_seconds_ = time.monotonic() - started
        if self.problem.is_classification and p.get("adjust_priors", False) and len(x_valid):
            log_p = np.log(np.clip(self._scores_from_ids(x_valid), 1e-12, None))
            self.offsets_ = fit_logit_offsets(log_p, y_valid_raw)
        self.validation_score_ = validation_objective(
            self.problem, y_valid_raw, self._scores_from_ids(x_valid)
        )
        return self

    # -- prediction ------------------------------------------------------------------------------------------

    def _scores_from_ids(self, ids: np.ndarray) -> np.ndarray:
        raw = self._raw_outputs(ids)
        if not self.problem.is_classification:
            return raw[:, 0].astype(np.float64) * self.y_scale_ + self.y_mean_
        logits = torch.from_numpy(raw + self.offsets_)
        return torch.softmax(logits, dim=1).numpy().astype(np.float64)

    def predict_scores(self, frame: pd.DataFrame) -> np.ndarray:
        with one_torch_thread():
            return self._scores_from_ids(self._ids(self._texts(frame)))

    # -- export ----------------------------------------------------------------------------------------------

    def to_onnx(self) -> OnnxStages:
        transformer = transformer_graph(self.problem, self.vocabulary_, self.bigrams_, self.max_tokens_)
        weight = self.model_.linear.weight.detach().numpy().T.astype(np.float32)  # (dim, n_out)
        bias = self.model_.linear.bias.detach().numpy().astype(np.float32)
        if self.problem.is_classification:
            bias = bias + self.offsets_
        else:
            weight, bias = weight * self.y_scale_, bias * self.y_scale_ + self.y_mean_
        embedding = self.model_.embedding.weight.detach().numpy().astype(np.float32)
        if not self.problem.is_classification:
            return OnnxStages(transformer, estimator_graph(embedding, weight, bias, self.max_tokens_, None))
        estimator = estimator_graph(embedding, weight, bias, self.max_tokens_, len(self.problem.labels))
        return OnnxStages(transformer, estimator, build_inverse_label(self.problem.labels))


def describe(model: FastTextModel) -> dict[str, Any]:
    """Facts about a fitted model for the leaderboard and notebooks."""
    return {
        "vocabulary": len(model.vocabulary_),
        "bigrams": len(model.bigrams_),
        "epochs": model.epochs_,
        "fit_seconds": round(model.fit_seconds_, 2),
        "validation_objective": model.validation_score_,
    }

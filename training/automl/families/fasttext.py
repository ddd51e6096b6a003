"""fastText-style supervised text classifier: the mean of word and word-bigram embeddings → one linear layer.

The family trains with torch and exports two graphs that need nothing beyond onnxruntime's own operators:

* ``transformer.onnx`` tokenizes inside ONNX: ``StringNormalizer`` (lower case, ``C.UTF-8``) → ``Tokenizer``
  (``com.microsoft``, re2) → ``LabelEncoder`` (word → id) and, for bigrams, integer arithmetic on the two word
  ids → ``LabelEncoder`` (bigram key → id).  It emits ``features``: int64 ``[None, 2 * max_tokens]``: the ids
  of the first ``max_tokens`` words, then the ids of the bigrams they form, padded with ``PAD_ID`` (0).
* ``classifier.onnx`` (or ``regressor.onnx``): ``Gather`` the embeddings, average over the non-pad ids, a
  linear layer, then softmax + arg-max (or the value).

The Python tokenizer (:func:`tokenize`) is the definition; the graph reproduces it exactly:

* Lower-casing: onnxruntime's ``StringNormalizer`` maps each code point with the C library's ``towlower``.
  Python's ``str.lower`` agrees on every code point except U+0130 (İ → "i̇", two code points) and it lowers Σ
  to a final ς at word ends; :func:`normalize` maps those two first, so the result is the same string (a test
  checks all 1.1 M code points).
* Tokens: maximal runs of ASCII letters and digits and Latin letters with diacritics (U+00DF–U+024F), and
  each emoji or symbol in U+2600–U+27BF and U+1F300–U+1FAFF as its own token.  The classes are explicit
  code-point ranges, so Python's ``re`` and re2 read them the same way.  Apostrophes split words (``didn’t``
  and ``didn't`` both give ``didn``, ``t``).
* Words outside the vocabulary get ``PAD_ID`` and are ignored, as fastText ignores unknown words; a bigram
  exists only when both words are known and the pair is in the bigram vocabulary.
* Texts longer than ``max_tokens`` words are truncated; an empty text has no ids and gets the linear layer's
  bias (the prior-like answer).

Several text columns are joined with ``" | "`` (``StringConcat`` in the graph); ``|`` is no token character.
Categorical and numeric input columns are accepted by the graph (the contract takes every input) but not used.

Validation objective (``on_epoch`` and early stopping): macro-F1 for classification (the product's headline
metric; with 77 % positive reviews accuracy rewards ignoring "neutral"), R² for regression.  After training,
classification can add per-class logit offsets fitted on validation to maximize macro-F1
(``adjust_priors``); they are part of the exported graph, so parity covers them.
"""

from __future__ import annotations

import contextlib
import copy
import math
import re
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import pandas as pd
import torch
from onnx import TensorProto, helper, numpy_helper
from sklearn.metrics import f1_score, r2_score

from services.runtime import FEATURES, LABEL, PREDICTIONS, PROBABILITIES
from training.automl.candidate import (
    BudgetExceeded,
    CandidateModel,
    EpochCallback,
    OnnxStages,
    Params,
    Preset,
    remaining,
)
from training.automl.problem import Problem
from training.export import build_inverse_label

if TYPE_CHECKING:
    import optuna

PAD_ID = 0


def join_columns_nodes(
    columns: list[str], constants: dict[str, np.ndarray]
) -> tuple[list[onnx.NodeProto], str]:
    """Graph nodes that join text columns with ``COLUMN_SEPARATOR`` as :func:`join_columns` does in Python.

    Adds the separator to ``constants`` when needed; returns the nodes and the name of the joined tensor.
    """
    nodes: list[onnx.NodeProto] = []
    joined = columns[0]
    if len(columns) > 1:
        constants["separator"] = np.array([COLUMN_SEPARATOR], dtype=object)
    for i, column in enumerate(columns[1:]):
        nodes += [
            helper.make_node("StringConcat", [joined, "separator"], [f"join{i}_a"]),
            helper.make_node("StringConcat", [f"join{i}_a", column], [f"join{i}"]),
        ]
        joined = f"join{i}"
    return nodes, joined


def training_loss(problem: Problem, y: np.ndarray, class_weight: str) -> torch.nn.Module:
    """MSE for regression; cross-entropy weighted ``none``, ``balanced`` or ``sqrt`` (of balanced) otherwise.

    Shared by the torch families (fastText, MiniLM).
    """
    if not problem.is_classification:
        return torch.nn.MSELoss()
    if class_weight == "none":
        return torch.nn.CrossEntropyLoss()
    counts = np.bincount(y, minlength=len(problem.labels)).astype(np.float64)
    weights = len(y) / (len(counts) * np.maximum(counts, 1.0))
    if class_weight == "sqrt":
        weights = np.sqrt(weights)
    return torch.nn.CrossEntropyLoss(weight=torch.tensor(weights / weights.mean(), dtype=torch.float32))


"""Id of padding and of unknown words and bigrams; its embedding is zero and it is left out of the mean."""
COLUMN_SEPARATOR = " | "
OPSET = 21
ML_OPSET = 3
LOCALE = "C.UTF-8"
_TOKEN_CHARS = "0-9a-z\u00df-\u00f6\u00f8-\u00ff\u0100-\u024f"
_SYMBOL_CHARS = "\u2600-\u27bf\U0001f300-\U0001faff"
TOKEN_PATTERN = f"[{_TOKEN_CHARS}]+|[{_SYMBOL_CHARS}]"
"""Python's pattern; :data:`TOKEN_PATTERN_RE2` is the same classes in re2's ``\\x{...}`` notation."""
_TOKEN_RE = re.compile(TOKEN_PATTERN)
# Python's lower() differs from towlower on these two code points only (İ expands, Σ becomes ς at word ends).
_LOWER_FIXES = str.maketrans({"\u0130": "i", "\u03a3": "\u03c3"})
_PAD_TOKEN = "#"  # the Tokenizer op's pad value; "#" is no token character, so it never meets a real word


def _re2_class(chars: str) -> str:
    return "".join(f"\\x{{{ord(c):04X}}}" if ord(c) > 0x7F else c for c in chars)


TOKEN_PATTERN_RE2 = f"[{_re2_class(_TOKEN_CHARS)}]+|[{_re2_class(_SYMBOL_CHARS)}]"


def normalize(text: str) -> str:
    """Lower-case ``text`` exactly as onnxruntime's ``StringNormalizer`` does under ``C.UTF-8``."""
    return text.translate(_LOWER_FIXES).lower()


def tokenize(text: str) -> list[str]:
    """The words of ``text``, as the transformer graph splits them."""
    return _TOKEN_RE.findall(normalize(text))


def join_columns(frame: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """One text per row: the text columns joined with :data:`COLUMN_SEPARATOR` (the graph does the same)."""
    texts = frame[columns[0]].tolist()
    for column in columns[1:]:
        texts = [f"{a}{COLUMN_SEPARATOR}{b}" for a, b in zip(texts, frame[column].tolist(), strict=True)]
    return texts


# ----------------------------------------------------------------------------------------------------------
# Helpers shared with the MiniLM family: the validation objective and the macro-F1 logit offsets.


def validation_objective(problem: Problem, y: np.ndarray, scores: np.ndarray) -> float:
    """Macro-F1 for classification (higher is better), R² for regression."""
    if problem.is_classification:
        return float(
            f1_score(
                y, scores.argmax(axis=1), labels=range(len(problem.labels)), average="macro", zero_division=0
            )
        )
    return float(r2_score(y, scores))


def fit_logit_offsets(log_probabilities: np.ndarray, y: np.ndarray, *, rounds: int = 3) -> np.ndarray:
    """Per-class offsets added to ``log_probabilities`` that maximize macro-F1 against ``y``.

    Coordinate search over a grid, class 0 fixed at 0; keeps zeros unless macro-F1 improves.  Moves the
    decision threshold of rare classes (neutral reviews) the way a cost-sensitive rule would.

    Returns:
        ``(n_classes,)`` float32 offsets.
    """
    n_classes = log_probabilities.shape[1]
    labels = range(n_classes)
    offsets = np.zeros(n_classes)

    def score(candidate: np.ndarray) -> float:
        predicted = (log_probabilities + candidate).argmax(axis=1)
        return float(f1_score(y, predicted, labels=labels, average="macro", zero_division=0))

    best = score(offsets)
    grid = np.linspace(-3.0, 3.0, 61)
    for _ in range(rounds):
        improved = False
        for k in range(1, n_classes):
            for value in grid:
                candidate = offsets.copy()
                candidate[k] = value
                s = score(candidate)
                if s > best + 1e-9:
                    best, offsets, improved = s, candidate, True
        if not improved:
            break
    return offsets.astype(np.float32)


def past(deadline: float | None) -> bool:
    return remaining(deadline) <= 0


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run torch on one thread inside the block.

    The fastText model's operations are tiny; with two threads on a busy 2-core machine torch's OpenMP workers
    spin-wait for each other, measured 10x slower than one thread.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------------------------------------


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
                pairs.update(a * n_words + b for a, b in zip(ids[:-1], ids[1:], strict=True) if a and b)
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
            for j, (a, b) in enumerate(zip(ids[:-1], ids[1:], strict=True)):
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
        transformer = self._transformer_graph()
        if self.problem.is_classification:
            return OnnxStages(transformer, self._estimator_graph(), build_inverse_label(self.problem.labels))
        return OnnxStages(transformer, self._estimator_graph(), None)

    def _transformer_graph(self) -> onnx.ModelProto:
        length = self.max_tokens_
        n_words = len(self.vocabulary_) + 1
        inputs = []
        for column in self.problem.roles.inputs:
            elem = TensorProto.STRING if column.dtype == "string" else TensorProto.FLOAT
            inputs.append(helper.make_tensor_value_info(column.name, elem, [None, 1]))
        const = {
            "flat_shape": np.array([-1], np.int64),
            "zero_i": np.array([0], np.int64),
            "one_i": np.array([1], np.int64),
            "length_i": np.array([length], np.int64),
            "axis1": np.array([1], np.int64),
            "pad_row": np.zeros((1, length), np.int64),
            "pad_id": np.array(PAD_ID, np.int64),
            "n_words": np.array(n_words, np.int64),
        }
        nodes, joined = join_columns_nodes(list(self.problem.roles.text), const)
        nodes += [
            helper.make_node("Reshape", [joined, "flat_shape"], ["text"]),
            helper.make_node(
                "StringNormalizer",
                ["text"],
                ["lowered"],
                case_change_action="LOWER",
                is_case_sensitive=1,
                locale=LOCALE,
            ),
            helper.make_node(
                "Tokenizer",
                ["lowered"],
                ["tokens"],
                domain="com.microsoft",
                mark=0,
                mincharnum=1,
                pad_value=_PAD_TOKEN,
                tokenexp=TOKEN_PATTERN_RE2,
            ),
            helper.make_node(
                "LabelEncoder",
                ["tokens"],
                ["token_ids"],
                domain="ai.onnx.ml",
                keys_strings=list(self.vocabulary_) or [_PAD_TOKEN],
                values_int64s=list(self.vocabulary_.values()) or [PAD_ID],
                default_int64=PAD_ID,
            ),
            # Pad (N, T) to at least L columns with PAD_ID, keep the first L: truncation and padding at once.
            helper.make_node("Shape", ["token_ids"], ["ids_shape"], start=0, end=1),
            helper.make_node("Concat", ["ids_shape", "length_i"], ["pad_shape"], axis=0),
            helper.make_node("Expand", ["pad_row", "pad_shape"], ["pad_block"]),
            helper.make_node("Concat", ["token_ids", "pad_block"], ["padded"], axis=1),
            helper.make_node("Slice", ["padded", "zero_i", "length_i", "axis1"], ["word_ids"]),
        ]
        outputs = ["word_ids"]
        if self.bigrams_:
            const.update(
                {
                    "first_end": np.array([length - 1], np.int64),
                    "pad_column": np.zeros((1, 1), np.int64),
                    "n_rows_one": np.array([1], np.int64),
                }
            )
            nodes += [
                helper.make_node("Slice", ["word_ids", "zero_i", "first_end", "axis1"], ["left"]),
                helper.make_node("Slice", ["word_ids", "one_i", "length_i", "axis1"], ["right"]),
                helper.make_node("Mul", ["left", "n_words"], ["left_scaled"]),
                helper.make_node("Add", ["left_scaled", "right"], ["pair_key"]),
                helper.make_node(
                    "LabelEncoder",
                    ["pair_key"],
                    ["pair_found"],
                    domain="ai.onnx.ml",
                    keys_int64s=list(self.bigrams_),
                    values_int64s=list(self.bigrams_.values()),
                    default_int64=PAD_ID,
                ),
                # A pair with an unknown word (id 0) never counts, even if its key collides with a real pair.
                helper.make_node("Equal", ["left", "pad_id"], ["left_pad"]),
                helper.make_node("Equal", ["right", "pad_id"], ["right_pad"]),
                helper.make_node("Or", ["left_pad", "right_pad"], ["pair_pad"]),
                helper.make_node("Where", ["pair_pad", "pad_id", "pair_found"], ["pair_ids"]),
                helper.make_node("Concat", ["ids_shape", "n_rows_one"], ["column_shape"], axis=0),
                helper.make_node("Expand", ["pad_column", "column_shape"], ["last_pair"]),
                helper.make_node("Concat", ["pair_ids", "last_pair"], ["bigram_ids"], axis=1),
            ]
            outputs.append("bigram_ids")
        else:
            nodes.append(helper.make_node("Expand", ["pad_row", "pad_shape"], ["bigram_ids"]))
            outputs.append("bigram_ids")
        nodes.append(helper.make_node("Concat", outputs, [FEATURES], axis=1))
        initializers = [
            numpy_helper.from_array(value, name)
            if value.dtype != object
            else helper.make_tensor(name, TensorProto.STRING, value.shape, [v.encode() for v in value])
            for name, value in const.items()
        ]
        graph = helper.make_graph(
            nodes,
            "fasttext_transformer",
            inputs,
            [helper.make_tensor_value_info(FEATURES, TensorProto.INT64, [None, 2 * length])],
            initializers,
        )
        return _model(graph, [("", OPSET), ("ai.onnx.ml", ML_OPSET), ("com.microsoft", 1)])

    def _estimator_graph(self) -> onnx.ModelProto:
        length = 2 * self.max_tokens_
        embedding = self.model_.embedding.weight.detach().numpy().astype(np.float32)
        weight = self.model_.linear.weight.detach().numpy().T.astype(np.float32)  # (dim, n_out)
        bias = self.model_.linear.bias.detach().numpy().astype(np.float32)
        if self.problem.is_classification:
            bias = bias + self.offsets_
        else:
            weight, bias = weight * self.y_scale_, bias * self.y_scale_ + self.y_mean_
        const = {
            "embedding": embedding,
            "weight": weight.astype(np.float32),
            "bias": bias.astype(np.float32),
            "pad_id": np.array(PAD_ID, np.int64),
            "axis1": np.array([1], np.int64),
            "one_f": np.array(1.0, np.float32),
        }
        nodes = [
            helper.make_node("Gather", ["embedding", FEATURES], ["vectors"], axis=0),
            helper.make_node("ReduceSum", ["vectors", "axis1"], ["summed"], keepdims=0),
            helper.make_node("Equal", [FEATURES, "pad_id"], ["is_pad"]),
            helper.make_node("Not", ["is_pad"], ["is_id"]),
            helper.make_node("Cast", ["is_id"], ["id_flags"], to=TensorProto.FLOAT),
            helper.make_node("ReduceSum", ["id_flags", "axis1"], ["count"], keepdims=1),
            helper.make_node("Max", ["count", "one_f"], ["safe_count"]),
            helper.make_node("Div", ["summed", "safe_count"], ["mean"]),
            helper.make_node("MatMul", ["mean", "weight"], ["linear"]),
        ]
        features = helper.make_tensor_value_info(FEATURES, TensorProto.INT64, [None, length])
        if self.problem.is_classification:
            n_classes = len(self.problem.labels)
            nodes += [
                helper.make_node("Add", ["linear", "bias"], ["logits"]),
                helper.make_node("Softmax", ["logits"], [PROBABILITIES], axis=1),
                helper.make_node("ArgMax", [PROBABILITIES], [LABEL], axis=1, keepdims=0, select_last_index=0),
            ]
            outputs = [
                helper.make_tensor_value_info(LABEL, TensorProto.INT64, [None]),
                helper.make_tensor_value_info(PROBABILITIES, TensorProto.FLOAT, [None, n_classes]),
            ]
        else:
            nodes.append(helper.make_node("Add", ["linear", "bias"], [PREDICTIONS]))
            outputs = [helper.make_tensor_value_info(PREDICTIONS, TensorProto.FLOAT, [None, 1])]
        graph = helper.make_graph(
            nodes,
            "fasttext_estimator",
            [features],
            outputs,
            [numpy_helper.from_array(v, k) for k, v in const.items()],
        )
        return _model(graph, [("", OPSET)])


def _model(graph: onnx.GraphProto, opsets: list[tuple[str, int]]) -> onnx.ModelProto:
    imports = [helper.make_opsetid(domain, version) for domain, version in opsets]
    standard = [i for i in imports if i.domain in ("", "ai.onnx.ml")]
    # The lowest IR version for these opsets, not onnx's newest: onnxruntime refuses newer IR versions.
    model = helper.make_model(
        graph,
        opset_imports=imports,
        ir_version=helper.find_min_ir_version_for(standard),
        producer_name="tripod",
    )
    onnx.checker.check_model(model)
    return model


def describe(model: FastTextModel) -> dict[str, Any]:
    """Facts about a fitted model for the leaderboard and notebooks."""
    return {
        "vocabulary": len(model.vocabulary_),
        "bigrams": len(model.bigrams_),
        "epochs": model.epochs_,
        "fit_seconds": round(model.fit_seconds_, 2),
        "validation_objective": model.validation_score_,
    }

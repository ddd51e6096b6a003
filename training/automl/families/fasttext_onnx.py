"""The fastText family's tokenizer, defined in Python and reproduced in ONNX, and its two graphs.

The Python tokenizer (:func:`tokenize`) is the definition; ``transformer.onnx`` reproduces it exactly:

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

The graphs are built from plain arrays (vocabularies, weights), so this module needs no torch.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from services.artifacts import FEATURES, LABEL, PREDICTIONS, PROBABILITIES
from training.automl.families.torch_common import join_columns_nodes
from training.problem import Problem

PAD_ID = 0
"""Id of padding and of unknown words and bigrams; its embedding is zero and it is left out of the mean."""
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


def transformer_graph(
    problem: Problem, vocabulary: Mapping[str, int], bigrams: Mapping[int, int], max_tokens: int
) -> onnx.ModelProto:
    """``transformer.onnx``: input columns → ``features`` int64 ``[None, 2 * max_tokens]``.

    The ids of the first ``max_tokens`` words, then the ids of the bigrams they form (bigram key
    ``first * (len(vocabulary) + 1) + second``), padded with ``PAD_ID``.
    """
    length = max_tokens
    n_words = len(vocabulary) + 1
    inputs = []
    for column in problem.roles.inputs:
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
    nodes, joined = join_columns_nodes(list(problem.roles.text), const)
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
            keys_strings=list(vocabulary) or [_PAD_TOKEN],
            values_int64s=list(vocabulary.values()) or [PAD_ID],
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
    if bigrams:
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
                keys_int64s=list(bigrams),
                values_int64s=list(bigrams.values()),
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


def estimator_graph(
    embedding: np.ndarray, weight: np.ndarray, bias: np.ndarray, max_tokens: int, n_classes: int | None
) -> onnx.ModelProto:
    """``classifier.onnx`` (``n_classes`` given) or ``regressor.onnx``: mean of embeddings → linear layer.

    Args:
        embedding: ``(n_ids, dim)``, the ``PAD_ID`` row zero.
        weight: ``(dim, n_outputs)``, with regression's target scaling already folded in.
        bias: ``(n_outputs,)``, with the classification logit offsets (or the regression scaling) folded in.
        max_tokens: the transformer's ``max_tokens`` (``features`` has twice as many columns).
        n_classes: number of classes, or None for regression.
    """
    length = 2 * max_tokens
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
    if n_classes is not None:
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

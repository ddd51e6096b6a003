"""The MiniLM family's ONNX stages: the tokenizer graph, the exported encoder, padding trim, int8 quantization.

* ``transformer.onnx``: the Hugging Face tokenizer as onnxruntime-extensions' ``BertTokenizer`` operator inside
  an ONNX ``Loop`` (:func:`build_tokenizer_graph`; details in :mod:`training.automl.families.minilm`).
* ``classifier.onnx`` / ``regressor.onnx``: the fine-tuned encoder and head exported with torch's TorchScript
  exporter (:func:`export_estimator`), with the fixed-length padding cut to the batch's longest row ahead of
  the encoder (:func:`trim_padding`) and optionally int8 dynamic quantization (:func:`quantize`).
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from services.artifacts import FEATURES, LABEL, PREDICTIONS, PROBABILITIES
from training.automl.families.torch_common import join_columns_nodes
from training.problem import Problem

if TYPE_CHECKING:
    import onnxruntime as ort

    from training.automl.families.minilm import MeanPoolingClassifier

OPSET = 17  # the TorchScript exporter's well-trodden opset; the tokenizer graph needs StringConcat (opset 20)
TOKENIZER_OPSET = 21
EXTENSIONS_DOMAIN = "ai.onnx.contrib"
EVAL_BATCH = 64
"""Rows per ONNX (and torch) scoring batch."""


class _Scorer(torch.nn.Module):
    """``classifier.onnx``: ids → mask (ids != pad) → encoder → probabilities + label, or the value."""

    def __init__(
        self,
        model: MeanPoolingClassifier,
        pad_id: int,
        offsets: np.ndarray | None,
        y_mean: float,
        y_scale: float,
    ) -> None:
        super().__init__()
        self.model = model
        self.pad_id = pad_id
        self.classification = offsets is not None
        self.register_buffer(
            "offsets", torch.tensor(offsets if offsets is not None else [0.0], dtype=torch.float32)
        )
        self.y_mean, self.y_scale = y_mean, y_scale

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        mask = (features != self.pad_id).to(torch.int64)
        logits = self.model(features, mask)
        if self.classification:
            probabilities = torch.softmax(logits + self.offsets, dim=1)
            return torch.argmax(probabilities, dim=1), probabilities
        return (logits * self.y_scale + self.y_mean,)


def _strip_accents(tokenizer: Any) -> bool:
    """Whether the tokenizer strips accents: BERT's rule is ``strip_accents`` if set, else ``lowercase``."""
    strip = tokenizer.init_kwargs.get("strip_accents")
    return bool(tokenizer.init_kwargs.get("do_lower_case", True) if strip is None else strip)


def wordpiece_node(tokenizer: Any) -> onnx.NodeProto:
    """onnxruntime-extensions' ``BertTokenizer`` operator configured as ``tokenizer`` (one text in, ids out).

    Built from the tokenizer's own vocabulary, case and accent rules and special tokens, so any BERT-style
    WordPiece tokenizer fits: MiniLM's (``[CLS]`` … ``[SEP]``) and MPNet's (``<s>`` … ``</s>``, which
    ``gen_processing_models`` does not know).  ``gen_processing_models`` also writes ``strip_accents=0`` while
    these tokenizers strip accents (they lower-case and leave ``strip_accents`` unset), hence BERT's own rule.
    """
    vocabulary = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    if [index for _, index in vocabulary] != list(range(len(vocabulary))):
        raise ValueError("the tokenizer's vocabulary ids are not 0..n-1")
    return helper.make_node(
        "BertTokenizer",
        ["one_text"],
        ["row_ids", "row_types", "row_mask"],
        name="bert_tokenizer",
        domain=EXTENSIONS_DOMAIN,
        vocab_file="\n".join(token for token, _ in vocabulary),
        do_lower_case=int(bool(tokenizer.init_kwargs.get("do_lower_case", True))),
        strip_accents=int(_strip_accents(tokenizer)),
        cls_token=str(tokenizer.cls_token),
        sep_token=str(tokenizer.sep_token),
        unk_token=str(tokenizer.unk_token),
        pad_token=str(tokenizer.pad_token),
        mask_token=str(tokenizer.mask_token),
    )


def build_tokenizer_graph(tokenizer: Any, problem: Problem, max_length: int) -> onnx.ModelProto:
    """``transformer.onnx``: input columns → ``features`` int64 ``[None, max_length]`` (module docstring)."""
    tokenize_node = wordpiece_node(tokenizer)
    pad_id = int(tokenizer.pad_token_id)
    sep_id = int(tokenizer.sep_token_id)

    def i64(values: Any) -> np.ndarray:
        return np.array(values, dtype=np.int64)

    body_constants = {
        "b_zero": i64([0]),
        "b_one": i64([1]),
        "b_length": i64([max_length]),
        "b_sep": i64([sep_id]),
        "b_pad": np.full(max_length, pad_id, dtype=np.int64),
        "b_axis0": i64([0]),
    }
    body_nodes = [
        helper.make_node("Gather", ["text", "iteration"], ["scalar_text"], axis=0),
        helper.make_node("Unsqueeze", ["scalar_text", "b_axis0"], ["one_text"]),
        tokenize_node,
        # [CLS] w1 … wT [SEP] → keep = min(T + 2, L); the first keep-1 ids, then [SEP], then pads, cut at L.
        helper.make_node("Shape", ["row_ids"], ["n_ids"]),
        helper.make_node("Min", ["n_ids", "b_length"], ["keep"]),
        helper.make_node("Sub", ["keep", "b_one"], ["head_end"]),
        helper.make_node("Slice", ["row_ids", "b_zero", "head_end", "b_axis0"], ["head"]),
        helper.make_node("Concat", ["head", "b_sep", "b_pad"], ["padded"], axis=0),
        helper.make_node("Slice", ["padded", "b_zero", "b_length", "b_axis0"], ["row_out"]),
        helper.make_node("Identity", ["condition"], ["condition_out"]),
    ]
    body = helper.make_graph(
        body_nodes,
        "tokenize_one",
        [
            helper.make_tensor_value_info("iteration", TensorProto.INT64, []),
            helper.make_tensor_value_info("condition", TensorProto.BOOL, []),
        ],
        [
            helper.make_tensor_value_info("condition_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("row_out", TensorProto.INT64, [max_length]),
        ],
        [numpy_helper.from_array(v, k) for k, v in body_constants.items()],
    )
    inputs = []
    for column in problem.roles.inputs:
        elem = TensorProto.STRING if column.dtype == "string" else TensorProto.FLOAT
        inputs.append(helper.make_tensor_value_info(column.name, elem, [None, 1]))
    constants: dict[str, np.ndarray] = {
        "flat": i64([-1]),
        "out_shape": i64([-1, max_length]),
        "first": i64([0]),
    }
    nodes, joined = join_columns_nodes(list(problem.roles.text), constants)
    nodes += [
        helper.make_node("Reshape", [joined, "flat"], ["text"]),
        helper.make_node("Shape", ["text"], ["n_rows_1d"]),
        helper.make_node("Squeeze", ["n_rows_1d", "first"], ["n_rows"]),
        helper.make_node("Loop", ["n_rows", ""], ["stacked"], body=body),
        # Reshape gives an empty batch its (0, L) shape too.
        helper.make_node("Reshape", ["stacked", "out_shape"], [FEATURES]),
    ]
    initializers = [
        helper.make_tensor(k, TensorProto.STRING, v.shape, [s.encode() for s in v])
        if v.dtype == object
        else numpy_helper.from_array(v, k)
        for k, v in constants.items()
    ]
    graph = helper.make_graph(
        nodes,
        "minilm_tokenizer",
        inputs,
        [helper.make_tensor_value_info(FEATURES, TensorProto.INT64, [None, max_length])],
        initializers,
    )
    opsets = [helper.make_opsetid("", TOKENIZER_OPSET), helper.make_opsetid(EXTENSIONS_DOMAIN, 1)]
    model = helper.make_model(
        graph,
        opset_imports=opsets,
        producer_name="tripod",
        ir_version=helper.find_min_ir_version_for([opsets[0]]),
    )
    return model


def export_estimator(
    model: MeanPoolingClassifier,
    pad_id: int,
    max_length: int,
    offsets: np.ndarray | None,
    y_mean: float,
    y_scale: float,
) -> onnx.ModelProto:
    """The encoder and head as ``classifier.onnx`` (``label``, ``probabilities``) or ``regressor.onnx``."""
    scorer = _Scorer(copy.deepcopy(model).eval(), pad_id, offsets, y_mean, y_scale).eval()
    example = torch.full((2, max_length), pad_id, dtype=torch.long)
    example[:, 0], example[:, 1] = 101, 102
    outputs = [LABEL, PROBABILITIES] if offsets is not None else [PREDICTIONS]
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        path = (
            Path(tmp) / "estimator.onnx"
        )  # torch.onnx.export takes a path (its signature has no file objects)
        torch.onnx.export(
            scorer,
            (example,),
            path,
            dynamo=False,
            input_names=[FEATURES],
            output_names=outputs,
            dynamic_axes={name: {0: "batch"} for name in [FEATURES, *outputs]},
            opset_version=OPSET,
            do_constant_folding=True,
        )
        onx = trim_padding(onnx.load_model(path), pad_id)
    onnx.checker.check_model(onx)
    return onx


def trim_padding(model: onnx.ModelProto, pad_id: int) -> onnx.ModelProto:
    """Cut ``features`` to the longest real sequence of the batch before the encoder runs.

    The transformer stage pads every row to the fixed ``max_length`` so requests of any length batch together;
    the columns past the longest row are pad for every row, masked out of attention and of the mean pooling, so
    dropping them changes no number while the encoder's cost follows the real length (a 20-token review no
    longer pays for 128).  Inserted as ONNX nodes ahead of every consumer of ``features``.
    """
    trimmed = f"{FEATURES}_trimmed"
    for node in model.graph.node:
        node.input[:] = [trimmed if name == FEATURES else name for name in node.input]
    constants = [
        numpy_helper.from_array(np.array(pad_id, dtype=np.int64), "trim_pad_id"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "trim_start"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "trim_axis"),
    ]
    nodes = [
        helper.make_node("Equal", [FEATURES, "trim_pad_id"], ["trim_is_pad"]),
        helper.make_node("Not", ["trim_is_pad"], ["trim_is_real"]),
        helper.make_node("Cast", ["trim_is_real"], ["trim_real"], to=TensorProto.INT64),
        helper.make_node("ReduceSum", ["trim_real", "trim_axis"], ["trim_lengths"], keepdims=0),
        helper.make_node("ReduceMax", ["trim_lengths"], ["trim_longest"], keepdims=1),
        helper.make_node("Slice", [FEATURES, "trim_start", "trim_longest", "trim_axis"], [trimmed]),
    ]
    model.graph.initializer.extend(constants)
    existing = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes + existing)
    return model


def quantize(model: onnx.ModelProto) -> onnx.ModelProto:
    """int8 dynamic quantization of the MatMul weights (activations quantized per batch at run time)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        onnx.save_model(model, source)
        quantize_dynamic(source, target, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])
        return onnx.load_model(target)


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def score_ids(session: ort.InferenceSession, ids: np.ndarray) -> np.ndarray:
    name = session.get_outputs()[-1].name
    parts = [
        session.run([name], {FEATURES: ids[i : i + EVAL_BATCH]})[0] for i in range(0, len(ids), EVAL_BATCH)
    ]
    return np.concatenate(parts).astype(np.float64)

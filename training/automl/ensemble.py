"""Soft voting over the top candidates, exported as one transformer graph and one classifier graph.

Members differ in what their transformer emits (TF-IDF floats, token ids…), but the stage contract carries
one ``features`` tensor.  The ensemble's transformer therefore runs every member's transformer on the shared
inputs, casts each ``features`` to float32 and concatenates them; its classifier slices each member's columns
back out, casts them to the member's type (token ids stay exact: float32 holds integers up to 2^24), runs the
member's estimator and takes the weighted mean of the probabilities (or the regression values); the weights come
from greedy ensemble selection (:func:`select_weights`) on the selection split, rows no member was tuned on.  The graphs are inlined with
per-member name prefixes after bringing every member to one opset.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd
from onnx import TensorProto, helper, numpy_helper, version_converter

from services.artifacts import FEATURES, LABEL, PREDICTIONS, PROBABILITIES
from training.automl.candidate import CandidateModel, OnnxStages, Params, Preset
from training.automl.limits import NO_LIMITS, ServingLimits
from training.automl.objectives import Objective
from training.automl.search import (
    LATENCY_ROWS,
    TrialRecord,
    load_candidate,
    single_row_latency_ms,
    test_scores,
)
from training.data import Split
from training.problem import Problem

logger = logging.getLogger(__name__)

MAX_MEMBERS = 4
SELECTION_ROUNDS = 12


class SoftVotingEnsemble(CandidateModel):
    """Weighted mean of the members' probabilities (or values).

    Params: ``members`` (trial numbers), ``families`` and ``member_params`` (to rebuild the members), ``weights``
    (one per member, summing to 1; equal when absent).
    """

    family = "ensemble"

    def __init__(
        self, problem: Problem, params: Params, seed: int = 42, members: Sequence[CandidateModel] = ()
    ) -> None:
        super().__init__(problem, params, seed)
        self.members = list(members)
        self.max_probability_tolerance = max(
            (m.max_probability_tolerance for m in self.members), default=1e-3
        )

    @classmethod
    def default_params(cls, preset: Preset, problem: Problem) -> Params:
        return {}

    @classmethod
    def suggest(cls, trial: Any, preset: Preset, problem: Problem) -> Params:
        return {}  # an ensemble is assembled from finished trials, never sampled

    def fit(
        self,
        train: pd.DataFrame,
        validation: pd.DataFrame,
        *,
        deadline: float | None = None,
        on_epoch: Any = None,
    ) -> SoftVotingEnsemble:
        """Refit every member (members arrive fitted from the search; the notebook uses this to reproduce)."""
        for member in self.members:
            member.fit(train, validation, deadline=deadline)
        return self

    @property
    def weights(self) -> np.ndarray:
        given = self.params.get("weights")
        weights = np.ones(len(self.members)) if given is None else np.asarray(given, dtype=np.float64)
        return weights / weights.sum()

    def predict_scores(self, frame: pd.DataFrame) -> np.ndarray:
        scores = [np.asarray(m.predict_scores(frame), dtype=np.float64) for m in self.members]
        return np.tensordot(self.weights, np.stack(scores), axes=1)

    def to_onnx(self) -> OnnxStages:
        staged = [member.to_onnx() for member in self.members]
        opset = max(_opset(s.transformer) for s in staged) if staged else 21
        transformers = [_to_opset(s.transformer, opset) for s in staged]
        estimators = [_to_opset(s.estimator, opset) for s in staged]
        inverse_label = staged[0].inverse_label if self.problem.is_classification else None
        return OnnxStages(
            transformer=self._compose_transformer(transformers),
            estimator=self._compose_estimator(estimators, transformers),
            inverse_label=inverse_label,
        )

    def _compose_transformer(self, members: Sequence[onnx.ModelProto]) -> onnx.ModelProto:
        inputs = [_input_value(column) for column in self.problem.roles.inputs]
        shared = {value.name for value in inputs}
        nodes, initializers, casts = [], [], []
        width = 0
        for index, member in enumerate(members):
            prefix = f"m{index}_"
            member_nodes, member_inits = _prefixed(member.graph, prefix, keep=shared)
            nodes += member_nodes
            initializers += member_inits
            cast = f"{prefix}features_float"
            nodes.append(helper.make_node("Cast", [prefix + FEATURES], [cast], to=TensorProto.FLOAT))
            casts.append(cast)
            width += _feature_width(member)
        nodes.append(helper.make_node("Concat", casts, [FEATURES], axis=1))
        output = helper.make_tensor_value_info(FEATURES, TensorProto.FLOAT, [None, width])
        return _model(nodes, initializers, inputs, [output], members, "ensemble_transformer")

    def _compose_estimator(
        self, estimators: Sequence[onnx.ModelProto], transformers: Sequence[onnx.ModelProto]
    ) -> onnx.ModelProto:
        widths = [_feature_width(t) for t in transformers]
        dtypes = [t.graph.output[0].type.tensor_type.elem_type for t in transformers]
        classification = self.problem.is_classification
        weights = self.weights
        nodes, initializers, scored = [], [], []
        offset = 0
        for index, (member, width, dtype) in enumerate(zip(estimators, widths, dtypes, strict=True)):
            prefix = f"m{index}_"
            bounds = [
                numpy_helper.from_array(np.array([v], dtype=np.int64), f"{prefix}{n}")
                for n, v in (("start", offset), ("end", offset + width), ("axis", 1))
            ]
            initializers += bounds
            nodes.append(
                helper.make_node(
                    "Slice", [FEATURES, f"{prefix}start", f"{prefix}end", f"{prefix}axis"], [f"{prefix}slice"]
                )
            )
            nodes.append(helper.make_node("Cast", [f"{prefix}slice"], [prefix + FEATURES], to=dtype))
            member_nodes, member_inits = _prefixed(member.graph, prefix, keep=set())
            nodes += member_nodes
            initializers += member_inits
            output = prefix + (PROBABILITIES if classification else PREDICTIONS)
            if not classification:
                flat = f"{prefix}flat"
                initializers.append(numpy_helper.from_array(np.array([-1], dtype=np.int64), f"{prefix}shape"))
                nodes.append(helper.make_node("Reshape", [output, f"{prefix}shape"], [flat]))
                output = flat
            nodes.append(helper.make_node("Cast", [output], [f"{prefix}scores"], to=TensorProto.FLOAT))
            initializers.append(
                numpy_helper.from_array(np.array(weights[index], dtype=np.float32), f"vote_weight_{index}")
            )
            nodes.append(
                helper.make_node(
                    "Mul", [f"{prefix}scores", f"vote_weight_{index}"], [f"vote_weighted_{index}"]
                )
            )
            scored.append(f"vote_weighted_{index}")
            offset += width
        nodes.append(helper.make_node("Sum", scored, ["score_sum"]))
        features_input = helper.make_tensor_value_info(FEATURES, TensorProto.FLOAT, [None, offset])
        if classification:
            classes = len(self.problem.labels)
            nodes.append(helper.make_node("Identity", ["score_sum"], [PROBABILITIES]))
            nodes.append(helper.make_node("ArgMax", [PROBABILITIES], [LABEL], axis=1, keepdims=0))
            outputs = [
                helper.make_tensor_value_info(LABEL, TensorProto.INT64, [None]),
                helper.make_tensor_value_info(PROBABILITIES, TensorProto.FLOAT, [None, classes]),
            ]
        else:
            nodes.append(helper.make_node("Identity", ["score_sum"], [PREDICTIONS]))
            outputs = [helper.make_tensor_value_info(PREDICTIONS, TensorProto.FLOAT, [None])]
        return _model(nodes, initializers, [features_input], outputs, estimators, "ensemble_estimator")


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 21)


def _to_opset(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    return model if _opset(model) == opset else version_converter.convert_version(model, opset)


def _feature_width(transformer: onnx.ModelProto) -> int:
    dims = transformer.graph.output[0].type.tensor_type.shape.dim
    if len(dims) != 2 or not dims[1].HasField("dim_value"):
        raise ValueError("a member's features must have a fixed width to be combined")
    return int(dims[1].dim_value)


def _input_value(column: Any) -> onnx.ValueInfoProto:
    elem = TensorProto.STRING if column.dtype == "string" else TensorProto.FLOAT
    return helper.make_tensor_value_info(column.name, elem, [None, 1])


def _prefixed(
    graph: onnx.GraphProto, prefix: str, keep: set[str]
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """A graph's nodes and initializers with every name prefixed, except the shared inputs in ``keep``.

    A member's transformer may declare only the inputs it uses; its inputs stay unprefixed so they read the
    ensemble's shared inputs of the same names.  Control-flow bodies (a tokenizer's ``Loop``) are renamed with
    the same rule, so their references to outer names stay consistent.
    """

    counter = iter(range(1 << 62))

    def rename(name: str) -> str:
        return name if not name or name in keep else prefix + name

    def rename_graph(body: onnx.GraphProto) -> onnx.GraphProto:
        copy = onnx.GraphProto()
        copy.CopyFrom(body)
        for values in (copy.input, copy.output, copy.value_info):
            for value in values:
                value.name = rename(value.name)
        for tensor in copy.initializer:
            tensor.name = rename(tensor.name)
        del copy.node[:]
        copy.node.extend(rename_node(node) for node in body.node)
        return copy

    def rename_node(node: onnx.NodeProto) -> onnx.NodeProto:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.input[:] = [rename(n) for n in node.input]
        copy.output[:] = [rename(n) for n in node.output]
        copy.name = f"{prefix}{node.name or node.op_type}_{next(counter)}"  # unnamed nodes must stay unique
        for attribute in copy.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                attribute.g.CopyFrom(rename_graph(attribute.g))
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                bodies = [rename_graph(g) for g in attribute.graphs]
                del attribute.graphs[:]
                attribute.graphs.extend(bodies)
        return copy

    nodes = [rename_node(node) for node in graph.node]
    initializers = []
    for tensor in graph.initializer:
        copy = onnx.TensorProto()
        copy.CopyFrom(tensor)
        copy.name = rename(tensor.name)
        initializers.append(copy)
    return nodes, initializers


def _model(
    nodes: list[onnx.NodeProto],
    initializers: list[onnx.TensorProto],
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
    members: Sequence[onnx.ModelProto],
    name: str,
) -> onnx.ModelProto:
    opsets: dict[str, int] = {}
    for member in members:
        for entry in member.opset_import:
            domain = "" if entry.domain == "ai.onnx" else entry.domain
            opsets[domain] = max(opsets.get(domain, 0), entry.version)
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=initializers)
    imports = [helper.make_opsetid(domain, version) for domain, version in opsets.items()]
    model = helper.make_model(
        graph, opset_imports=imports, producer_name="tripod", ir_version=max(m.ir_version for m in members)
    )
    onnx.checker.check_model(model)
    return model


@dataclass(frozen=True)
class EnsembleResult:
    candidate: SoftVotingEnsemble
    record: TrialRecord


def choose_members(
    records: Sequence[TrialRecord],
    objective: Objective,
    k: int = MAX_MEMBERS,
    limits: ServingLimits = NO_LIMITS,
) -> list[TrialRecord]:
    """The best finished trial of each family by :attr:`TrialRecord.choice_score`, best first, then the next
    best overall, up to ``k``; only candidates within ``limits`` (a member over them would put the ensemble
    over them too)."""
    done = [
        r
        for r in records
        if r.state == "complete"
        and r.validation is not None
        and r.family != "ensemble"
        and limits.violation(r) is None
    ]
    done.sort(key=lambda r: r.choice_score, reverse=objective.direction == "maximize")  # type: ignore[arg-type,return-value]
    chosen: list[TrialRecord] = []
    for record in done:
        if record.family not in {c.family for c in chosen}:
            chosen.append(record)
    for record in done:
        if len(chosen) >= k:
            break
        if record not in chosen:
            chosen.append(record)
    return chosen[:k]


def select_weights(
    objective: Objective,
    problem: Problem,
    truth: np.ndarray,
    scores: Sequence[np.ndarray],
    rounds: int = SELECTION_ROUNDS,
) -> np.ndarray:
    """Greedy ensemble selection with replacement (Caruana et al., 2004): the weights of the members.

    Each round adds the member whose extra vote makes the running average score best on validation; the weight
    of a member is the share of rounds that picked it, and the rounds up to the best average are kept.  The
    first pick is the best single member, so the result never scores below it on validation; a weak member
    gets a small weight or none instead of an equal third of the vote.
    """
    counts = np.zeros(len(scores))
    total = np.zeros_like(np.asarray(scores[0], dtype=np.float64))
    best_value, best_counts = None, counts.copy()
    for round_ in range(1, rounds + 1):
        values = [objective.score(problem, truth, (total + s) / round_) for s in scores]
        pick = int(np.argmax(values) if objective.direction == "maximize" else np.argmin(values))
        counts[pick] += 1
        total = total + scores[pick]
        if best_value is None or objective.better(values[pick], best_value):
            best_value, best_counts = values[pick], counts.copy()
    return best_counts / best_counts.sum()


def _vote(weights: np.ndarray, scores: Sequence[np.ndarray]) -> np.ndarray:
    return np.asarray(sum(w * s for w, s in zip(weights, scores, strict=True)), dtype=np.float64)


def cross_fitted_score(
    objective: Objective, problem: Problem, truth: np.ndarray, scores: Sequence[np.ndarray], *, seed: int
) -> float:
    """The ensemble's objective on rows its weights were not fitted on.

    Weights fitted on the selection rows would flatter the ensemble if it were then compared on those rows
    with single candidates, which fit nothing there.  So the rows are halved (seeded): weights are selected on
    each half and the other half is voted with them, and the objective is computed on the pooled votes."""
    order = np.random.default_rng(seed).permutation(len(truth))
    halves = (order[: len(order) // 2], order[len(order) // 2 :])
    pooled = np.zeros_like(np.asarray(scores[0], dtype=np.float64))
    for fitted, held in (halves, halves[::-1]):
        weights = select_weights(objective, problem, truth[fitted], [s[fitted] for s in scores])
        pooled[held] = _vote(weights, [s[held] for s in scores])
    return objective.score(problem, truth, pooled)


def try_ensemble(
    records: Sequence[TrialRecord],
    objective: Objective,
    problem: Problem,
    split: Split,
    run_dir: Path,
    *,
    seed: int = 42,
    limits: ServingLimits = NO_LIMITS,
) -> EnsembleResult | None:
    """Weighted soft vote of the top candidates; None when fewer than two finished, the selection keeps a
    single member, or the graphs cannot be combined.  The ensemble is measured like any candidate; one over
    ``limits`` is returned (for the leaderboard) but may not be chosen.

    With a selection split (AutoML's), members are ranked and weighted there, on rows none of them was tuned
    on, and the ensemble's selection score is cross-fitted (:func:`cross_fitted_score`); without one, on
    validation."""
    chosen = choose_members(records, objective, limits=limits)
    if len(chosen) < 2:
        return None
    members = [load_candidate(r) for r in chosen]
    weigh_on = split.selection if len(split.selection) else split.validation
    truth = problem.encode_target(weigh_on)
    member_scores = [np.asarray(m.predict_scores(weigh_on), dtype=np.float64) for m in members]
    weights = select_weights(objective, problem, truth, member_scores)
    kept = np.flatnonzero(weights > 0)
    if len(kept) < 2:
        return None
    chosen, members = [chosen[i] for i in kept], [members[i] for i in kept]
    member_scores = [member_scores[i] for i in kept]
    params = {
        "members": [r.number for r in chosen],
        "families": [r.family for r in chosen],
        "member_params": [r.params for r in chosen],
        "weights": [float(weights[i]) for i in kept],
    }
    ensemble = SoftVotingEnsemble(problem, params, seed, members)
    record = TrialRecord(
        number=max(r.number for r in records) + 1,
        family="ensemble",
        params=ensemble.params,
        state="complete",
        fit_seconds=sum(r.fit_seconds for r in chosen),
    )
    validation_truth = problem.encode_target(split.validation)
    record.validation = objective.score(problem, validation_truth, ensemble.predict_scores(split.validation))
    if len(split.selection):
        record.selection = cross_fitted_score(objective, problem, truth, member_scores, seed=seed)
    record.test = test_scores(problem, objective, ensemble, split.test)
    try:
        record.model_bytes, record.latency_ms = single_row_latency_ms(
            ensemble, split.validation.head(LATENCY_ROWS)
        )
    except (ValueError, onnx.checker.ValidationError, RuntimeError) as exc:
        logger.warning(
            "the ensemble of %s cannot be exported as one graph: %s", record.params["families"], exc
        )
        return None
    path = run_dir / "candidates" / f"{record.number:04d}.pkl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        pickle.dump(ensemble, handle)
    record.candidate_path = str(path)
    record.save(run_dir / "ensemble")  # beside, not among, the study's trials: a resumed search ignores it
    return EnsembleResult(ensemble, record)

"""The shape every AutoML candidate family has: search space, fit, predict, and export as ONNX stages.

A family is a class; a candidate is one instance with chosen hyperparameters.  The search (``search.py``) only
talks to this interface, so a new family is one new module under ``training/automl/families/`` registered in
``families/__init__.py``.

Stage contract (``models/README.md``): the transformer graph takes one input per ``problem.roles.inputs``
column (``tensor(string)`` ``[None, 1]`` for text and categorical, ``tensor(float)`` ``[None, 1]`` for numeric,
NaN when missing) and emits exactly one tensor named ``features`` (float32 ``[None, F]``, or int64 token ids
``[None, L]`` with a fixed ``L``); the estimator graph takes ``features`` and emits ``label`` (int64 ``[None]``)
and ``probabilities`` (float32 ``[None, C]``) for classification, or ``predictions`` (float32 ``[None]`` or
``[None, 1]``) for regression.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import onnx
import pandas as pd

from services.artifacts import CLASSIFIER_FILE, INVERSE_LABEL_FILE, REGRESSOR_FILE, TRANSFORMER_FILE
from training.problem import Problem

if TYPE_CHECKING:
    import optuna

    from training.explain.linear import LinearExplainer

Preset = Literal["fast", "balanced", "best"]
Params = dict[str, Any]
EpochCallback = Callable[..., None]
"""``on_epoch(step, validation_scores, rows=None)``: iterative families call it after each epoch with their
current predictions on the validation frame (probabilities ``(n, C)`` or values ``(n,)``, as
``predict_scores``), or on the validation rows at positions ``rows`` when they score a subset; the search
scores them with *its* objective, so every family is pruned on the same scale.  It may raise
``optuna.TrialPruned`` (stop this candidate): let it propagate."""


class BudgetExceeded(Exception):
    """Raised by a family's ``fit`` when the deadline passes before it has anything usable."""


@dataclass(frozen=True)
class OnnxStages:
    """A candidate's graphs in memory: transformer, estimator (classifier or regressor), inverse label."""

    transformer: onnx.ModelProto
    estimator: onnx.ModelProto
    inverse_label: onnx.ModelProto | None = None

    def save(self, directory: Path) -> dict[str, Path]:
        """Write the graphs under their contract file names; returns ``{stage: path}`` (manifest stage keys)."""
        paths = {"transformer": directory / TRANSFORMER_FILE}
        if self.inverse_label is None:
            paths["regressor"] = directory / REGRESSOR_FILE
        else:
            paths["classifier"] = directory / CLASSIFIER_FILE
            paths["inverse_label"] = directory / INVERSE_LABEL_FILE
        graphs: dict[str, onnx.ModelProto | None] = {
            "transformer": self.transformer,
            "classifier": self.estimator,
            "regressor": self.estimator,
            "inverse_label": self.inverse_label,
        }
        for stage, path in paths.items():
            graph = graphs[stage]
            assert graph is not None
            onnx.save_model(canonical_stage(graph, stage), path)
        return paths


def canonical_stage(model: onnx.ModelProto, name: str) -> onnx.ModelProto:
    """``model`` as it is written: its graph named ``name`` and its opset imports sorted by domain (a copy).

    The same fitted model must give the same bytes (and the same sha256 in the manifest), and converters do not
    promise that: skl2onnx names every graph with a random ``uuid4`` and lists opset domains in set order, which
    changes with Python's string-hash seed from one process to the next.
    """
    canonical = onnx.ModelProto()
    canonical.CopyFrom(model)
    canonical.graph.name = name
    imports = sorted((entry.domain, entry.version) for entry in canonical.opset_import)
    del canonical.opset_import[:]
    canonical.opset_import.extend(onnx.helper.make_opsetid(domain, version) for domain, version in imports)
    return canonical


def remaining(deadline: float | None) -> float:
    """Seconds left before ``deadline`` (a ``time.monotonic()`` value); infinity without one."""
    return float("inf") if deadline is None else deadline - time.monotonic()


class CandidateModel(ABC):
    """One family of models.  Follows scikit-learn's habits: ``__init__`` stores, ``fit`` returns ``self``,
    learned state ends in ``_``.

    Args:
        problem: the problem (target, labels, column roles); the family reads only the columns it uses.
        params: hyperparameters, as :meth:`suggest` returns them.
        seed: seeds every random choice of the fit.
    """

    family: ClassVar[str]
    """Stable name, used on the leaderboard, in manifests and in notebooks."""
    iterative: ClassVar[bool] = False
    """True when ``fit`` reports per-epoch validation scores (and can be pruned)."""
    packages: ClassVar[tuple[str, ...]] = ()
    """Distributions the family's fit and export import beyond what every family uses (numpy, pandas, onnx,
    onnxruntime, scikit-learn's metrics): its install size on the leaderboard."""
    max_probability_tolerance: float = 1e-3
    """Export's parity tolerance for this family (label agreement is always ≥ 99.9 %); an instance may widen
    it (an int8-quantized MiniLM, an ensemble of such members)."""

    def __init__(self, problem: Problem, params: Mapping[str, Any], seed: int = 42) -> None:
        self.problem = problem
        self.params = dict(params)
        self.seed = seed

    @classmethod
    def install_bytes(cls) -> int:
        """Bytes on disk of :attr:`packages` in this environment (plus any data the family unpacks)."""
        from training.automl.install_size import distribution_bytes

        return sum(distribution_bytes(name) for name in cls.packages)

    @classmethod
    def supports(cls, problem: Problem) -> bool:
        """Whether the family can model this problem (e.g. text families need a text column)."""
        return True

    @classmethod
    @abstractmethod
    def suggest(cls, trial: optuna.Trial, preset: Preset, problem: Problem) -> Params:
        """Draw hyperparameters for one trial; ``preset`` narrows or widens the ranges."""

    @classmethod
    @abstractmethod
    def default_params(cls, preset: Preset, problem: Problem) -> Params:
        """A strong first point, enqueued before the sampler explores (and the notebook's reference values)."""

    @abstractmethod
    def fit(
        self,
        train: pd.DataFrame,
        validation: pd.DataFrame,
        *,
        deadline: float | None = None,
        on_epoch: EpochCallback | None = None,
    ) -> CandidateModel:
        """Fit on ``train`` (raw frame with the target); ``validation`` is for early stopping and pruning only.

        Raises:
            BudgetExceeded: the deadline passed before a usable model existed.
        """

    @abstractmethod
    def predict_scores(self, frame: pd.DataFrame) -> np.ndarray:
        """Class probabilities ``(n_samples, n_classes)`` in ``problem.labels`` order, or regression values
        ``(n_samples,)``, computed by the training framework (the reference the ONNX stages must match)."""

    @abstractmethod
    def to_onnx(self) -> OnnxStages:
        """The fitted model as ONNX stages following the contract in this module's docstring."""

    def explainer(self) -> LinearExplainer | None:
        """The exact explainer stage exported beside the model (``explainer.onnx``), or None.

        Only a family whose scores are linear in its ``features`` has one; the others (trees, networks, an
        ensemble's blend of probabilities) export none.
        """
        return None

    def size_bytes(self) -> int:
        """Size of the exported graphs, for the leaderboard."""
        stages = self.to_onnx()
        graphs = [stages.transformer, stages.estimator, stages.inverse_label]
        return sum(g.ByteSize() for g in graphs if g is not None)

"""Candidate search: Optuna (TPE) over the families of a preset, bounded by a time budget and a count.

One study holds every trial; its first trials are each family's default parameters (a strong start), then TPE
samples the family and its hyperparameters.  Iterative families report per-epoch validation scores so a
median pruner, comparing each trial with finished trials of its own family, stops hopeless trials early.  The
study lives in SQLite by default (a PostgreSQL URL works too, so several machines can run trials of one study),
each finished candidate is pickled beside it, and each trial's record is written as JSON, so a run interrupted
by Ctrl-C or a crash resumes where it stopped and its finished candidates stay usable.  Ctrl-C stops the running
candidate and then the study, never Optuna's own bookkeeping (:mod:`training.automl.interrupt`).
"""

from __future__ import annotations

import json
import logging
import math
import pickle
import re
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from tqdm.auto import tqdm

from services.runtime.pipeline import Pipeline
from services.runtime.schema import Records
from training.automl.candidate import BudgetExceeded, CandidateModel, Preset, remaining
from training.automl.families import FAMILY_PATHS, family_class
from training.automl.interrupt import Interrupt
from training.automl.limits import NO_LIMITS, ServingLimits
from training.automl.objectives import Objective
from training.data import Split
from training.errors import DataError
from training.problem import Problem

logger = logging.getLogger(__name__)

PRESET_FAMILIES: dict[str, tuple[str, ...]] = {
    "fast": ("tfidf_linear",),
    "balanced": ("tfidf_linear", "gbdt", "fasttext"),
    # mpnet before minilm: the best preset's MiniLM fit runs to the deadline, mpnet takes a share and stops.
    "best": ("tfidf_linear", "fasttext", "gbdt", "mpnet", "minilm"),
}
SELECTION_FRACTION = 0.1
"""Share of the rows held out to choose the best candidate and weigh the ensemble (taken from the training
rows): the search tunes on validation, so choosing on validation too would favour the candidate luckiest there."""
LATENCY_ROWS = 50
"""Validation rows timed one at a time (the first ones: the split is seeded, so the sample is fixed)."""
LATENCY_PASSES = 4
"""Passes over those rows: 200 timings per candidate, enough for a p99."""
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h)?\s*$", re.IGNORECASE)


def parse_duration(text: str | float) -> float:
    """Seconds from ``"90"``, ``"90s"``, ``"20m"`` or ``"1.5h"``.

    Raises:
        DataError: anything else.
    """
    if isinstance(text, int | float):
        return float(text)
    match = _DURATION.match(text)
    if not match:
        raise DataError(f"cannot read the duration {text!r}; write e.g. 90s, 20m or 1h")
    value, unit = float(match.group(1)), (match.group(2) or "s").lower()
    return value * {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}[unit]


@dataclass(frozen=True)
class SearchSettings:
    """What the user bounds: time, count, preset (which families and how wide their ranges), seed, storage."""

    time_budget_s: float = 600.0
    max_candidates: int | None = None
    preset: Preset = "balanced"
    seed: int = 42
    families: tuple[str, ...] | None = None
    storage: str | None = None
    """Optuna storage URL; default ``sqlite:///<run_dir>/study.db``."""
    study_name: str = "tripod"

    def chosen_families(self, problem: Problem) -> list[str]:
        """The preset's families (or the explicit list) that are available and support the problem."""
        names = self.families or PRESET_FAMILIES[self.preset]
        unknown = [n for n in names if n not in FAMILY_PATHS]
        if self.families and unknown:
            raise DataError(f"unknown candidate families {unknown}; known: {sorted(FAMILY_PATHS)}")
        return [n for n in names if n in FAMILY_PATHS and family_class(n).supports(problem)]


@dataclass
class TrialRecord:
    """One row of the leaderboard."""

    number: int
    family: str
    params: dict[str, Any]
    state: str
    """``complete``, ``pruned``, ``over_budget``, ``interrupted`` (Ctrl-C) or ``failed``."""
    validation: float | None = None
    test: dict[str, float] = field(default_factory=dict)
    fit_seconds: float = 0.0
    model_bytes: int | None = None
    latency_ms: float | None = None
    """Single-review p99 (ms) of the exported stages through the serving pipeline."""
    error: str | None = None
    candidate_path: str | None = None
    selection: float | None = None
    """The objective on the selection split (rows no candidate was tuned on); None without one."""

    @property
    def choice_score(self) -> float | None:
        """What the choice compares: the selection split's objective, or validation's without one."""
        return self.validation if self.selection is None else self.selection

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{self.number:04d}.json").write_text(json.dumps(asdict(self), indent=2, default=str))

    @classmethod
    def load_all(cls, directory: Path) -> list[TrialRecord]:
        return [cls(**json.loads(p.read_text())) for p in sorted(directory.glob("*.json"))]


def load_candidate(record: TrialRecord) -> CandidateModel:
    """The fitted candidate of a finished trial, from its pickle."""
    assert record.candidate_path is not None, f"trial {record.number} has no fitted candidate"
    with open(record.candidate_path, "rb") as handle:
        return pickle.load(handle)


def test_scores(
    problem: Problem, objective: Objective, candidate: CandidateModel, frame: pd.DataFrame
) -> dict[str, float]:
    """Headline test scores for the leaderboard: the objective plus the usual ones of the problem type."""
    from training.automl.objectives import OBJECTIVES

    truth = problem.encode_target(frame)
    scores = np.asarray(candidate.predict_scores(frame))
    names = ["accuracy", "macro_f1"] if problem.is_classification else ["rmse", "mae", "r2"]
    return {
        name: OBJECTIVES[name].score(problem, truth, scores)
        for name in dict.fromkeys([objective.name, *names])
    }


def single_row_latency_ms(candidate: CandidateModel, rows: pd.DataFrame) -> tuple[int, float]:
    """ONNX size in bytes and the single-review p99 latency (ms) of the exported stages through the serving
    pipeline: each of ``rows`` predicted alone, :data:`LATENCY_PASSES` times, after one warm-up pass."""
    problem = candidate.problem
    with tempfile.TemporaryDirectory() as tmp:
        paths = candidate.to_onnx().save(Path(tmp))
        size = sum(p.stat().st_size for p in paths.values())
        pipeline = Pipeline.from_stage_files(paths, problem.roles.inputs, problem.labels)
        singles = [Records([row]) for row in problem.input_frame(rows).to_numpy(dtype=object).tolist()]
        for records in singles:
            pipeline.predict(records)
        timings = []
        for _ in range(LATENCY_PASSES):
            for records in singles:
                start = time.perf_counter()
                pipeline.predict(records)
                timings.append(time.perf_counter() - start)
    return size, 1000 * float(np.percentile(timings, 99))


class Search:
    """Runs the study for one problem and split; see the module docstring."""

    def __init__(
        self,
        problem: Problem,
        split: Split,
        objective: Objective,
        settings: SearchSettings,
        run_dir: Path,
        *,
        progress: bool = True,
    ) -> None:
        self.problem = problem
        self.split = split
        self.objective = objective
        self.settings = settings
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.families = settings.chosen_families(problem)
        if not self.families:
            raise DataError(f"no candidate family of preset {settings.preset!r} supports this problem")
        self.y_validation = problem.encode_target(split.validation)
        self.y_selection = problem.encode_target(split.selection) if len(split.selection) else None
        self.interrupt = Interrupt()

    @property
    def trials_dir(self) -> Path:
        return self.run_dir / "trials"

    def run(self) -> list[TrialRecord]:
        """Search until the budget, the candidate count or Ctrl-C ends it; returns every trial's record."""
        optuna.logging.set_verbosity(optuna.logging.ERROR)  # failures are logged once, by us
        self.run_dir.mkdir(parents=True, exist_ok=True)
        storage = self.settings.storage or f"sqlite:///{(self.run_dir / 'study.db').resolve()}"
        with (
            warnings.catch_warnings()
        ):  # TPE's ``group`` option is marked experimental; we rely on it knowingly
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(seed=self.settings.seed, multivariate=True, group=True)
        study = optuna.create_study(
            study_name=self.settings.study_name,
            storage=storage,
            load_if_exists=True,
            direction=self.objective.direction,
            sampler=sampler,
            pruner=FamilyMedianPruner(n_startup_trials=2, n_warmup_steps=1),
        )
        if not study.trials:  # a fresh study starts from each family's defaults
            for family in self.families:
                study.enqueue_trial({"family": family}, user_attrs={"defaults": True})
        done = len([t for t in study.trials if t.state.is_finished()])
        remaining_count = (
            None if self.settings.max_candidates is None else max(0, self.settings.max_candidates - done)
        )
        self.deadline = time.monotonic() + self.settings.time_budget_s
        self.bar = tqdm(
            total=self.settings.max_candidates,
            initial=done,
            desc="automl",
            unit="candidate",
            disable=not self.progress,
        )
        self.interrupt = Interrupt()
        try:
            with self.interrupt:
                if remaining_count != 0:
                    study.optimize(
                        self._objective,
                        n_trials=remaining_count,
                        timeout=self.settings.time_budget_s,
                        catch=(Exception,),
                        callbacks=[self.interrupt.stop_study],
                        gc_after_trial=True,
                    )
        finally:
            self.bar.close()
        records = TrialRecord.load_all(self.trials_dir)
        if self.interrupt.requested:
            finished = sum(r.state == "complete" for r in records)
            logger.warning("interrupted: keeping the %d finished candidates", finished)
        return records

    def _objective(self, trial: Any) -> float:
        family = trial.suggest_categorical("family", self.families)
        cls = family_class(family)
        preset = self.settings.preset
        params = (
            cls.default_params(preset, self.problem)
            if trial.user_attrs.get("defaults")
            else cls.suggest(trial, preset, self.problem)
        )
        record = TrialRecord(number=trial.number, family=family, params=params, state="running")
        candidate_bar = tqdm(
            desc=f"  #{trial.number} {family}",
            unit="epoch",
            leave=False,
            disable=not self.progress or not cls.iterative,
        )

        def on_epoch(step: int, validation_scores: np.ndarray, rows: np.ndarray | None = None) -> None:
            truth = self.y_validation if rows is None else self.y_validation[rows]
            value = self.objective.score(self.problem, truth, np.asarray(validation_scores))
            candidate_bar.update()
            candidate_bar.set_postfix({self.objective.name: f"{value:.4f}"})
            with self.interrupt.deferred():  # never cut a write to the study's storage
                trial.report(value, step)
                prune = trial.should_prune()
            if prune:
                raise optuna.TrialPruned(f"pruned at epoch {step} with {self.objective.name} {value:.4f}")

        started = time.monotonic()
        try:
            if remaining(self.deadline) <= 0:
                raise BudgetExceeded("no time left")
            with self.interrupt.interruptible():  # minutes of fit and scoring: Ctrl-C stops them at once
                candidate = cls(self.problem, params, seed=self.settings.seed)
                candidate.fit(
                    self.split.train, self.split.validation, deadline=self.deadline, on_epoch=on_epoch
                )
                record.fit_seconds = time.monotonic() - started
                scores = np.asarray(candidate.predict_scores(self.split.validation))
                record.validation = self.objective.score(self.problem, self.y_validation, scores)
                if not math.isfinite(record.validation):
                    raise ValueError(f"validation {self.objective.name} is {record.validation}")
                if self.y_selection is not None:
                    chosen_on = np.asarray(candidate.predict_scores(self.split.selection))
                    record.selection = self.objective.score(self.problem, self.y_selection, chosen_on)
                record.test = test_scores(self.problem, self.objective, candidate, self.split.test)
                record.model_bytes, record.latency_ms = single_row_latency_ms(
                    candidate, self.split.validation.head(LATENCY_ROWS)
                )
            path = self.run_dir / "candidates" / f"{trial.number:04d}.pkl"
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as handle:
                pickle.dump(candidate, handle)
            record.candidate_path = str(path)
            record.state = "complete"
            return record.validation
        except optuna.TrialPruned as exc:
            record.state, record.error = "pruned", str(exc)
            raise
        except BudgetExceeded as exc:
            record.state, record.error = "over_budget", f"the time budget ran out: {exc}"
            raise optuna.TrialPruned(record.error) from exc
        except KeyboardInterrupt:
            # Optuna records the trial as pruned; the study stops after it (Interrupt.stop_study).
            record.state, record.error = "interrupted", "stopped by Ctrl-C"
            raise optuna.TrialPruned(record.error) from None
        except Exception as exc:
            record.state, record.error = "failed", f"{type(exc).__name__}: {exc}"
            logger.warning("trial %d (%s) failed: %s", trial.number, family, record.error)
            raise
        finally:
            record.fit_seconds = record.fit_seconds or time.monotonic() - started
            candidate_bar.close()
            record.save(self.trials_dir)
            best = [
                r.validation
                for r in TrialRecord.load_all(self.trials_dir)
                if r.state == "complete" and r.validation is not None
            ]
            if best:
                top = max(best) if self.objective.direction == "maximize" else min(best)
                self.bar.set_postfix(
                    {
                        f"best {self.objective.name}": f"{top:.4f}",
                        "left": f"{max(0, remaining(self.deadline)):.0f}s",
                    }
                )
            self.bar.update()


class FamilyMedianPruner(optuna.pruners.BasePruner):
    """Optuna's median rule, but among trials of the same family only.

    Families count epochs differently (a fastText epoch is a pass over the data, a MiniLM epoch a chunk of 2,000
    rows), so comparing a MiniLM trial's first epoch with fastText's would prune every transformer.  A trial is
    stopped when its value at a step is worse than the median of the finished trials of its own family at that
    step, once ``n_startup_trials`` of them exist.
    """

    def __init__(self, n_startup_trials: int = 2, n_warmup_steps: int = 1) -> None:
        self.n_startup_trials = n_startup_trials
        self.n_warmup_steps = n_warmup_steps

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or step < self.n_warmup_steps:
            return False
        family = trial.params.get("family")
        peers = [
            t.intermediate_values[step]
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if t.params.get("family") == family and step in t.intermediate_values
        ]
        if len(peers) < self.n_startup_trials:
            return False
        value, median = trial.intermediate_values[step], float(np.median(peers))
        return value < median if study.direction == optuna.study.StudyDirection.MAXIMIZE else value > median


def best_record(
    records: Sequence[TrialRecord], objective: Objective, limits: ServingLimits = NO_LIMITS
) -> TrialRecord | None:
    """The complete trial within ``limits`` with the best :attr:`TrialRecord.choice_score` (ties: the earlier
    trial)."""
    best: TrialRecord | None = None
    for record in records:
        score = record.choice_score
        if record.state != "complete" or score is None or limits.violation(record) is not None:
            continue
        if best is None or objective.better(score, best.choice_score):  # type: ignore[arg-type]
            best = record
    return best

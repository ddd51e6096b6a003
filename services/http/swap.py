"""Model swaps without a restart: a worker follows its model pointer and serves a new version once it verified it.

``tripod models promote`` (or ``tripod train``) moves ``<registry>/<name>/latest``; every worker whose
``TRIPOD_MODEL_DIR`` is that link polls where it leads every ``TRIPOD_MODEL_POLL_S`` seconds.  When it moves,
the worker opens the new version completely — the manifest and every digest, the graphs against the manifest,
the start-up probe — on a thread of its own, and only then replaces the pipeline the routes read
(:class:`ModelSlot`, one attribute assignment).  A request reads the slot once, when it starts, so requests in
flight finish on the version they began with, and none is dropped.  A version that does not verify is refused:
the old one keeps serving, the log says why in one line and ``tripod_model_swaps_total{outcome="refused"}``
counts it; it is tried again only if the pointer moves again.

Stage services (``TRIPOD_STAGES=services``) load the model in every stage process; there a new version is a
rollout (docs/deploy.md), and polling is off.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from services.artifacts import ModelArtifact, resolve_model_dir
from services.errors import TripodError
from services.runtime.pipeline import Pipeline

logger = logging.getLogger("tripod.swap")


class ModelSlot:
    """The pipeline a worker serves now.  Routes read :attr:`pipeline` once per request."""

    def __init__(self, pipeline: Pipeline, directory: Path) -> None:
        self.pipeline = pipeline
        self.directory = directory
        """The resolved version directory being served."""


class ModelWatcher:
    """A daemon thread that swaps :class:`ModelSlot`'s pipeline when the model pointer moves.

    Args:
        pointer: the configured model directory (a ``latest`` link, or a plain directory that never moves).
        build: opens a verified artifact as a ready pipeline (the same code the worker started with).
        on_swap: called with ``(old, new)`` pipelines after a swap (metrics); ``on_refused`` with the reason.
    """

    def __init__(
        self,
        slot: ModelSlot,
        pointer: Path,
        build: Callable[[ModelArtifact], Pipeline],
        *,
        interval_s: float,
        on_swap: Callable[[Pipeline, Pipeline], None] = lambda _old, _new: None,
        on_refused: Callable[[str], None] = lambda _reason: None,
    ) -> None:
        self.slot, self.pointer, self.build = slot, pointer, build
        self.interval_s = interval_s
        self.on_swap, self.on_refused = on_swap, on_refused
        self._refused: Path | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tripod-model-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def check(self) -> bool:
        """Look at the pointer once; swap if it leads to a new version.  Returns whether it swapped."""
        try:
            target = resolve_model_dir(self.pointer)
        except TripodError as exc:
            return self._refuse(None, str(exc))
        if target in (self.slot.directory, self._refused):
            return False
        try:
            pipeline = self.build(ModelArtifact.from_directory(target))
        except TripodError as exc:
            return self._refuse(target, str(exc))
        except (
            Exception
        ) as exc:  # an unforeseen failure must leave the old model serving, never kill the worker
            logger.exception("model swap: %s could not be opened", target)
            return self._refuse(target, f"{type(exc).__name__}: {exc}")
        old = self.slot.pipeline
        self.slot.pipeline, self.slot.directory = pipeline, target
        self._refused = None
        new = pipeline.manifest
        logger.info(
            "model swap: now serving %s %s from %s (was %s)",
            new.name,
            new.version,
            target,
            old.manifest.version,
        )
        self.on_swap(old, pipeline)
        return True

    def _refuse(self, target: Path | None, reason: str) -> bool:
        if target is not None and target == self._refused:
            return False
        self._refused = target
        logger.warning(
            "model swap refused, still serving %s: %s", self.slot.pipeline.manifest.version, reason
        )
        self.on_refused(reason)
        return False

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.check()

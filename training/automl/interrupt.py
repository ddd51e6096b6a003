"""Ctrl-C during a search: stop after the running candidate, keep everything that finished.

Python raises ``KeyboardInterrupt`` wherever the main thread happens to be when SIGINT arrives.  Landing inside
Optuna's own trial bookkeeping is not safe: optuna 5.0's ``_run_trial`` reads, in a ``finally``, the state that
an interrupted ``tell`` never set, which turned Ctrl-C into an ``UnboundLocalError``, and an interrupted storage
write can leave the study half-written.  So while a search runs, :class:`Interrupt` owns SIGINT:

* inside :meth:`Interrupt.interruptible` (a candidate's fit and scoring, which can take minutes) Ctrl-C raises
  ``KeyboardInterrupt`` at once; the search's objective turns it into a stopped trial;
* anywhere else it only records the request, and :meth:`Interrupt.stop_study`, an Optuna callback run after
  every trial, stops the study.

The previous handler is restored when the search ends, so Ctrl-C during the export afterwards behaves as usual.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType, TracebackType
from typing import Any

import optuna


class Interrupt:
    """SIGINT handling for the duration of a ``with`` block; see the module docstring.

    Outside the main thread (where Python cannot install signal handlers) it installs nothing and Ctrl-C keeps
    its default behaviour.
    """

    def __init__(self) -> None:
        self.requested = False
        self._interruptible = False
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> Interrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        if self._interruptible:
            raise KeyboardInterrupt

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        """A block that Ctrl-C stops at once (with ``KeyboardInterrupt``), also when it came just before."""
        if self.requested:
            raise KeyboardInterrupt
        self._interruptible = True
        try:
            yield
        finally:
            self._interruptible = False

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Within an interruptible block, a stretch Ctrl-C must not cut (a trial's report to the study's
        storage); an interrupt requested meanwhile is raised when the stretch ends."""
        outer = self._interruptible
        self._interruptible = False
        try:
            yield
        finally:
            self._interruptible = outer
        if outer and self.requested:
            raise KeyboardInterrupt

    def stop_study(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """Optuna callback, run after every trial: stop the study once Ctrl-C was pressed."""
        if self.requested:
            study.stop()

"""Start-up of a serving process: die with the parent, and keep the garbage collector off the request path.

Standard library only: ``tripod serve`` uses :func:`die_with_parent` before the server starts, and must not pay
for numpy or onnxruntime to do so."""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: signal.Signals = signal.SIGTERM) -> None:
    """Ask Linux to send ``sig`` to this process when its parent dies.

    BentoML's workers are children of its arbiter (``bentoml serve``); if the arbiter is killed with SIGKILL
    it cannot stop them, and they keep the listening socket, so the port stays taken by orphans.  With this
    they get SIGTERM and stop gracefully.  A no-op where ``prctl`` does not exist (not Linux).
    """
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(sig))
    if os.getppid() != parent:  # the parent died before the call: nothing will signal us
        os.kill(os.getpid(), sig)


def settle_heap() -> None:
    """Keep the garbage collector from stalling requests: freeze what start-up built, and after every full
    collection freeze its survivors.

    A full collection walks every tracked object that is not frozen, and a serving worker keeps creating
    long-lived ones after start-up (routes, caches, metric children).  Measured with ``benchmarks/
    serving_compare.py`` (single reviews, open loop at half the maximum rate): p99 204 ms with Python's
    defaults, 123 ms with 140x rarer young collections, 29.5 ms with the collector off, 25.5 ms with this.
    What survives a full collection is long-lived by then; freezing it means the next full collection only
    walks what came after.  Garbage without cycles is still freed at once by reference counting; the cost is
    that a cycle made unreachable after its objects were frozen is never reclaimed.
    """
    gc.collect()
    gc.freeze()
    if _freeze_survivors not in gc.callbacks:
        gc.callbacks.append(_freeze_survivors)


def _freeze_survivors(phase: str, info: dict[str, int]) -> None:
    if phase == "stop" and info.get("generation") == 2:
        gc.freeze()

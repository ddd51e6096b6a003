"""A bounded, seeded uniform sample of a stream (reservoir sampling, Vitter's algorithm R).

The domain-classifier test needs raw texts, and a million captured records must not all be kept: the
reservoir holds at most ``size`` items, each item of the stream equally likely to be among them, whatever
the stream's length.  The same seed and the same stream give the same sample.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


class Reservoir(Generic[T]):
    """At most ``size`` items of a stream, uniformly drawn."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.seen = 0
        self.items: list[T] = []
        self._random = random.Random(seed)

    def add(self, items: Iterable[T]) -> None:
        size, chosen, draw = self.size, self.items, self._random.randrange
        for item in items:
            self.seen += 1
            if len(chosen) < size:
                chosen.append(item)
            else:
                slot = draw(self.seen)
                if slot < size:
                    chosen[slot] = item

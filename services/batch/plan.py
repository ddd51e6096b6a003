"""The work of a job: input objects cut into work units, and the units a shard takes.

A line-split, uncompressed object larger than ``split_mb`` becomes several units of consecutive byte ranges
(records belong to the range holding their first byte, :mod:`services.batch.records`), so one huge file
spreads over worker processes and shards.  The cut depends only on the object's size and ``split_mb``, never on
the number of shards, so mini-batches — and therefore outputs — are the same however many shards share the job.
Shard ``i`` of ``n`` takes units ``i, i + n, i + 2n, …`` of the sorted list: together the shards take every
unit exactly once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from services.batch.storage import InputObject

MIB = 1 << 20


@dataclass(frozen=True)
class WorkUnit:
    """A byte range of one input object (the whole object when ``parts`` is 1)."""

    input: InputObject
    part: int
    parts: int
    start: int
    end: int | None
    """First byte past the range; None: to the end of the object."""

    @property
    def name(self) -> str:
        """How the job's state names this unit: the object's relative path, and the part when it has several."""
        if self.parts == 1:
            return self.input.relative
        return f"{self.input.relative}.part-{self.part:05d}-of-{self.parts:05d}"


def plan_units(inputs: list[InputObject], *, splittable: bool, split_mb: int) -> list[WorkUnit]:
    """Every work unit of the job, in input order and, within an object, in byte order."""
    limit = split_mb * MIB
    units = []
    for obj in inputs:
        parts = math.ceil(obj.size / limit) if splittable and obj.size > limit else 1
        for part in range(parts):
            end = (part + 1) * limit if part < parts - 1 else None
            units.append(WorkUnit(obj, part, parts, part * limit, end))
    return units


def shard_units(units: list[WorkUnit], index: int, count: int) -> list[WorkUnit]:
    """The units shard ``index`` of ``count`` processes (see the module docstring)."""
    return units[index::count]

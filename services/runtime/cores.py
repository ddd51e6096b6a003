"""How many cores this process may use — the default number of worker processes, served and batch alike."""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def cpu_budget(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup v2 quota (a pod's CPU limit).

    ``os.cpu_count()`` would be the node's cores, so a pod limited to 2 CPUs on a 64-core node would start 64
    workers and be throttled; the quota (rounded up) is what the kernel lets the pod run.
    """
    cores = len(os.sched_getaffinity(0))
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return cores
    if quota == "max":
        return cores
    return max(1, min(cores, math.ceil(int(quota) / int(period))))

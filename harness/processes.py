"""A process and its descendants, as the benchmarks measure them (a server's workers, a job's pool)."""

from __future__ import annotations

import psutil


def process_tree(process: psutil.Process) -> list[psutil.Process]:
    """The process and all its descendants alive now (empty once it has exited)."""
    try:
        return [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_rss(process: psutil.Process) -> int:
    """Resident bytes of a process and all its descendants (workers, the resource tracker)."""
    total = 0
    for member in process_tree(process):
        try:
            total += member.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total

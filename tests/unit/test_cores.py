"""The default number of workers: the cores a process may use, capped by a cgroup v2 CPU limit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from services.runtime.cores import cpu_budget

AFFINITY = len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [
        ("max 100000\n", AFFINITY),  # no limit: the affinity
        ("150000 100000\n", min(AFFINITY, 2)),  # 1.5 CPUs: rounded up
        ("50000 100000\n", 1),  # half a CPU: still one worker
        ("6400000 100000\n", AFFINITY),  # a limit above the cores the process may run on
    ],
)
def test_cpu_budget_is_the_affinity_capped_by_the_cgroup_quota(
    tmp_path: Path, cpu_max: str, expected: int
) -> None:
    path = tmp_path / "cpu.max"
    path.write_text(cpu_max)
    assert cpu_budget(path) == expected


def test_cpu_budget_without_a_cgroup_v2_file_or_with_a_broken_one_is_the_affinity(tmp_path: Path) -> None:
    assert cpu_budget(tmp_path / "absent") == AFFINITY
    broken = tmp_path / "cpu.max"
    broken.write_text("garbage\n")
    assert cpu_budget(broken) == AFFINITY


def test_the_serving_default_of_workers_is_the_cpu_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.settings import ServingSettings

    monkeypatch.delenv("TRIPOD_WORKERS", raising=False)
    assert ServingSettings().workers == cpu_budget()

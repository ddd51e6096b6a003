"""The SLO checker judges Locust's CSV stats: zero errors, p99 under limits, some traffic at all."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from loadtests import slo

HEADER = [
    "Type",
    "Name",
    "Request Count",
    "Failure Count",
    "Median Response Time",
    "Average Response Time",
    "Min Response Time",
    "Max Response Time",
    "Average Content Size",
    "Requests/s",
    "Failures/s",
    "50%",
    "66%",
    "75%",
    "80%",
    "90%",
    "95%",
    "98%",
    "99%",
    "99.9%",
    "99.99%",
    "100%",
]


def _stats(tmp_path: Path, rows: list[tuple[str, int, int, str, str]]) -> Path:
    """rows: (name, requests, failures, p50, p99) → a ``<prefix>_stats.csv`` in Locust's layout."""
    path = tmp_path / "run_stats.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for name, requests, failures, p50, p99 in rows:
            kind = "" if name == "Aggregated" else "POST"
            writer.writerow(
                [
                    kind,
                    name,
                    requests,
                    failures,
                    p50,
                    p50,
                    1,
                    p99,
                    100,
                    5.0,
                    0.0,
                    p50,
                    p50,
                    p50,
                    p50,
                    p99,
                    p99,
                    p99,
                    p99,
                    p99,
                    p99,
                    p99,
                ]
            )
    return path


def test_a_clean_fast_run_passes(tmp_path: Path) -> None:
    path = _stats(tmp_path, [("/predict [1]", 100, 0, "20", "90"), ("Aggregated", 100, 0, "20", "90")])
    verdict = slo.check(path, slo.Objectives(p99_ms=100))
    assert verdict.passed and verdict.misses == []
    assert "SLO met" in verdict.report()


@pytest.mark.parametrize(
    ("rows", "objectives", "miss"),
    [
        ([("/predict [1]", 100, 1, "20", "90")], slo.Objectives(), "1 of 100 requests failed"),
        ([("/predict [1]", 100, 0, "20", "900")], slo.Objectives(p99_ms=500), r"/predict \[1\]: p99 900 ms"),
        (
            [("/predict [32]", 10, 0, "20", "400")],
            slo.Objectives(p99_ms=1000, p99_ms_for={"/predict [32]": 300}),
            "over the 300 ms limit",
        ),
        ([("/predict [1]", 0, 0, "N/A", "N/A")], slo.Objectives(), "only 0 requests"),
        (
            [("/predict [1]", 5, 0, "20", "30")],
            slo.Objectives(p99_ms_for={"/explain [1]": 50}),
            "has a p99 limit but sent no request",
        ),
    ],
    ids=["an-error", "p99-over-default", "p99-over-own-limit", "no-traffic", "limit-for-missing-request"],
)
def test_a_missed_objective_fails(
    tmp_path: Path, rows: list[tuple[str, int, int, str, str]], objectives: slo.Objectives, miss: str
) -> None:
    verdict = slo.check(
        _stats(tmp_path, [*rows, ("Aggregated", rows[0][1], rows[0][2], "20", "30")]), objectives
    )
    assert not verdict.passed
    assert any(re.search(miss, m) for m in verdict.misses), verdict.misses


def test_the_command_exits_1_on_a_miss_and_names_the_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _stats(tmp_path, [("/predict [1]", 10, 2, "20", "90"), ("Aggregated", 10, 2, "20", "90")])
    (tmp_path / "run_failures.csv").write_text(
        'Method,Name,Error,Occurrences\nPOST,/predict [1],"HTTP 500",2\n'
    )
    assert slo.main([str(path), "--json", str(tmp_path / "v.json")]) == 1
    out = capsys.readouterr().out
    assert "SLO MISSED" in out and "HTTP 500 (2×)" in out
    assert (tmp_path / "v.json").exists()
    assert slo.main([str(path), "--max-failures", "2"]) == 0


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (["/predict [1]=300"], {"/predict [1]": 300.0}),
        (["/predict [1]=300;/v2 infer [32]=1500", ""], {"/predict [1]": 300.0, "/v2 infer [32]": 1500.0}),
    ],
    ids=["one", "semicolons"],
)
def test_parse_limits(items: list[str], expected: dict[str, float]) -> None:
    assert slo.parse_limits(items) == expected


def test_parse_limits_refuses_a_bare_value() -> None:
    with pytest.raises(ValueError, match="expected NAME=MS"):
        slo.parse_limits(["300"])

"""Resume and shards: a job killed with SIGKILL and run again, and a job split over shards running at once,
both write exactly the bytes of one uninterrupted job, with no record lost or duplicated."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.batch.jobs import csv_lines, outputs, summary_of, transform, write

SPLIT_MB = 1


@pytest.fixture(scope="module")
def job_input(prepared_reviews: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten CSV files of 2,000 reviews, each with two bad records, and one 3 MB file cut into 1 MB ranges."""
    folder = tmp_path_factory.mktemp("job-input")
    texts = [" ".join(t.split()) for t in prepared_reviews["review_body"].dropna().astype(str).tolist()]
    for number in range(10):
        rows: list[list[object]] = [[texts[(number * 2000 + i) % len(texts)]] for i in range(2000)]
        rows[number * 7] = rows[1500 + number] = ["too", "many", "fields"]
        write(folder / f"part-{number:02d}.csv", csv_lines(rows))
    big = csv_lines([[text] for text in texts[:9000]])
    assert len(big) > 2 * SPLIT_MB << 20
    write(folder / "big/all.csv", big)
    return folder


def command(model: Path, source: Path, output: Path) -> list[str]:
    return [
        sys.executable, "-m", "tripod.cli", "transform", "--model", str(model), "--input", str(source),
        "--output", str(output), "--split-type", "Line", "--max-record-errors", "2", "--split-mb", str(SPLIT_MB),
        "--max-payload-mb", "1", "--workers", "1",
    ]  # fmt: skip


def start(args: list[str], **env: str) -> subprocess.Popen[bytes]:
    """The job in its own process group, as a pod's containers are: SIGKILL takes its workers too."""
    return subprocess.Popen(
        args,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


@pytest.fixture(scope="module")
def reference(
    trained_model_dir: Path, job_input: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, float]:
    """One uninterrupted job: its output folder and how long it took."""
    output = tmp_path_factory.mktemp("reference") / "out"
    started = time.monotonic()
    finished = subprocess.run(command(trained_model_dir, job_input, output), capture_output=True, check=False)
    assert finished.returncode == 0, finished.stderr.decode()
    return output, time.monotonic() - started


def test_the_reference_job_wrote_every_file_and_its_bad_records(reference: tuple[Path, float]) -> None:
    output, _ = reference
    written = outputs(output)
    assert len([name for name in written if name.endswith(".csv.out")]) == 11
    assert len([name for name in written if name.endswith(".errors.jsonl")]) == 10
    assert summary_of(output)["totals"] == {"files": 11, "failed": 0, "records": 29000, "errors": 20}


def test_a_job_killed_at_a_random_point_and_run_again_writes_the_same_bytes(
    trained_model_dir: Path, job_input: Path, reference: tuple[Path, float], tmp_path: Path
) -> None:
    expected, _ = reference
    seed = random.randrange(1 << 30)
    chance = random.Random(seed)
    # Of 13 units (the 3 ranges of big/all.csv first, then 10 files): at least one whole file done, some not.
    units_done, extra_s = chance.randint(4, 9), chance.uniform(0.0, 0.15)
    args = command(trained_model_dir, job_input, tmp_path / "out")

    job = start(args)
    done = tmp_path / "out/.tripod/done"
    deadline = time.monotonic() + 120
    while len(list(done.rglob("*.json"))) < units_done and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(extra_s)  # into the middle of a unit
    assert job.poll() is None, f"seed {seed}: the job ended before its kill"
    os.killpg(job.pid, signal.SIGKILL)
    job.wait(timeout=30)
    finished = subprocess.run(args, capture_output=True, check=False)

    assert finished.returncode == 0, finished.stderr.decode()
    assert outputs(tmp_path / "out") == outputs(expected), f"seed {seed}"
    statuses = [f["status"] for f in summary_of(tmp_path / "out")["files"]]
    assert "skipped" in statuses and "done" in statuses, (
        f"seed {seed}: the kill missed the middle: {statuses}"
    )
    assert summary_of(tmp_path / "out")["totals"] == summary_of(expected)["totals"]


def test_a_rerun_of_a_finished_job_does_nothing_and_reports_the_same_totals(
    trained_model_dir: Path, job_input: Path, tmp_path: Path
) -> None:
    first = transform(
        trained_model_dir, job_input / "big", tmp_path / "out", split_type="Line", split_mb=SPLIT_MB
    )
    before = {path: path.stat().st_mtime_ns for path in (tmp_path / "out").rglob("*.out")}

    again = transform(
        trained_model_dir, job_input / "big", tmp_path / "out", split_type="Line", split_mb=SPLIT_MB
    )

    assert [f.status for f in again.files] == ["skipped"]
    assert again.as_dict()["totals"] == first.as_dict()["totals"]
    assert {path: path.stat().st_mtime_ns for path in (tmp_path / "out").rglob("*.out")} == before


def test_a_changed_input_or_option_is_done_again(trained_model_dir: Path, tmp_path: Path) -> None:
    source = write(tmp_path / "in/a.csv", csv_lines([["lovely dress"], ["awful fit"]]))
    transform(trained_model_dir, tmp_path / "in", tmp_path / "out", split_type="Line")

    write(source, csv_lines([["lovely dress"], ["awful fit"], ["fine"]]))
    changed = transform(trained_model_dir, tmp_path / "in", tmp_path / "out", split_type="Line")
    assert [(f.status, f.records) for f in changed.files] == [("done", 3)]

    other_keys = transform(
        trained_model_dir,
        tmp_path / "in",
        tmp_path / "out",
        split_type="Line",
        response_keys="predicted_label",
    )
    assert [f.status for f in other_keys.files] == ["done"]
    assert (tmp_path / "out/a.csv.out").read_text().splitlines()[0] in {"positive", "neutral", "negative"}


def test_a_temporary_file_left_by_a_killed_writer_is_removed_when_its_file_is_done_again(
    trained_model_dir: Path, tmp_path: Path
) -> None:
    write(tmp_path / "in/a.csv", csv_lines([["lovely dress"]]))
    leftover = write(tmp_path / "out/.a.csv.out.0123456789abcdef.tmp", b"half an output")
    unrelated = write(tmp_path / "out/.notes.txt", b"the user's own file")

    transform(trained_model_dir, tmp_path / "in", tmp_path / "out", split_type="Line")

    assert not leftover.exists() and unrelated.exists()


def test_shards_running_at_once_write_exactly_the_single_jobs_output(
    trained_model_dir: Path, job_input: Path, reference: tuple[Path, float], tmp_path: Path
) -> None:
    expected, _ = reference
    args = command(trained_model_dir, job_input, tmp_path / "out")

    shards = [start(args, JOB_COMPLETION_INDEX=str(i), TRIPOD_SHARD_COUNT="2") for i in range(2)]
    results = [shard.communicate(timeout=600) for shard in shards]

    assert [shard.returncode for shard in shards] == [0, 0], [err.decode() for _, err in results]
    assert outputs(tmp_path / "out") == outputs(expected)
    summaries = [summary_of(tmp_path / "out", f"summary-{i}-of-2.json") for i in range(2)]
    records = [sum(f["records"] for f in s["files"] if f["input"].endswith("part-00.csv")) for s in summaries]
    assert sorted(records) == [0, 2000]  # a whole file belongs to one shard
    assert sum(s["totals"]["records"] for s in summaries) == 29000
    assert not list(
        (tmp_path / "out/.tripod").glob("parts/**/*.out")
    )  # the ranges were assembled and removed


def test_one_file_split_into_byte_ranges_spreads_over_shards_and_assembles_in_order(
    trained_model_dir: Path, job_input: Path, reference: tuple[Path, float], tmp_path: Path
) -> None:
    expected, _ = reference
    common: dict[str, object] = {
        "split_type": "Line",
        "split_mb": SPLIT_MB,
        "max_payload_mb": 1,
        "shard_count": 3,
    }

    results = [
        transform(trained_model_dir, job_input / "big", tmp_path / "out", shard_index=i, **common)
        for i in range(3)
    ]

    assert [[f.status for f in r.files] for r in results] == [
        ["waiting for other shards"],
        ["waiting for other shards"],
        ["done"],
    ]
    assert (tmp_path / "out/all.csv.out").read_bytes() == (expected / "big/all.csv.out").read_bytes()
    marker = json.loads((tmp_path / "out/.tripod/done/all.csv.json").read_text())
    assert (marker["ok"], marker["records"]) == (True, 9000)


def test_options_that_cannot_change_an_output_do_not_redo_it_and_a_smaller_budget_does(
    trained_model_dir: Path, tmp_path: Path
) -> None:
    write(tmp_path / "in/a.csv", csv_lines([["lovely dress"], ["a", "b", "c"], ["awful fit"]]))
    job: dict[str, object] = {"split_type": "Line", "max_record_errors": "1"}
    transform(trained_model_dir, tmp_path / "in", tmp_path / "out", **job)

    same: list[dict[str, object]] = [
        {"batch_strategy": "MultiRecord"},  # the default, now said
        {"max_payload_mb": 6},  # the default, now said
        {"max_record_errors": "5"},  # a larger budget: the file still fits it
        {"workers": 2},
    ]
    for change in same:
        rerun = transform(trained_model_dir, tmp_path / "in", tmp_path / "out", **{**job, **change})
        assert [f.status for f in rerun.files] == ["skipped"], change

    smaller = transform(
        trained_model_dir, tmp_path / "in", tmp_path / "out", **{**job, "max_record_errors": "0"}
    )
    assert [f.status for f in smaller.files] == ["failed"]


def test_a_changed_serving_setting_that_shapes_answers_redoes_the_files(
    trained_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "in/a.csv", csv_lines([["lovely dress"]]))
    transform(trained_model_dir, tmp_path / "in", tmp_path / "out", split_type="Line")

    monkeypatch.setenv("TRIPOD_RESPONSE_KEYS", "predicted_label")
    rerun = transform(trained_model_dir, tmp_path / "in", tmp_path / "out", split_type="Line")

    assert [f.status for f in rerun.files] == ["done"]
    assert (tmp_path / "out/a.csv.out").read_text().strip() in {"positive", "neutral", "negative"}

"""Transform jobs on object storage: an S3 prefix or manifest in, an S3 prefix out, through moto's S3 server on
loopback reached by the standard AWS variables — the same bytes as the job on local files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.batch.jobs import csv_lines, outputs, transform, write
from tests.cli import error_line, run_cli


@pytest.fixture(scope="module")
def files(prepared_reviews: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two small CSV files and one of 2.5 MB (cut into 1 MB ranges), on local disk."""
    folder = tmp_path_factory.mktemp("s3-input")
    texts = [" ".join(t.split()) for t in prepared_reviews["review_body"].dropna().astype(str).tolist()]
    write(folder / "a.csv", csv_lines([[t] for t in texts[:50]]))
    write(folder / "deep/b.csv", csv_lines([[t] for t in texts[50:80]]))
    big = csv_lines([[t] for t in texts[:8000]])
    assert len(big) > 2 << 20
    write(folder / "big.csv", big)
    return folder


def upload(s3_client: Any, bucket: str, folder: Path, prefix: str) -> None:
    name = bucket.removeprefix("s3://")
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            s3_client.put_object(
                Bucket=name, Key=f"{prefix}{path.relative_to(folder)}", Body=path.read_bytes()
            )


def downloaded(s3_client: Any, bucket: str, prefix: str) -> dict[str, bytes]:
    """Every object under ``prefix`` except the job's state, by its key after the prefix."""
    name = bucket.removeprefix("s3://")
    found = {}
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=name, Prefix=prefix):
        for item in page.get("Contents", []):
            key = item["Key"].removeprefix(prefix)
            if not key.startswith(".tripod/"):
                found[key] = s3_client.get_object(Bucket=name, Key=item["Key"])["Body"].read()
    return found


def test_an_s3_prefix_in_and_out_writes_the_local_jobs_bytes_and_resumes_from_its_state_in_s3(
    trained_model_dir: Path, files: Path, s3_client: Any, s3_bucket: str, tmp_path: Path
) -> None:
    upload(s3_client, s3_bucket, files, "input/")
    options: dict[str, object] = {"split_type": "Line", "split_mb": 1}
    transform(trained_model_dir, files, tmp_path / "local", **options)

    summary = transform(trained_model_dir, f"{s3_bucket}/input/", f"{s3_bucket}/output", **options)

    assert summary.succeeded
    assert downloaded(s3_client, s3_bucket, "output/") == outputs(tmp_path / "local")
    again = transform(trained_model_dir, f"{s3_bucket}/input/", f"{s3_bucket}/output", **options)
    assert [f.status for f in again.files] == ["skipped"] * 3
    assert again.as_dict()["totals"] == summary.as_dict()["totals"]


def test_a_manifest_in_s3_names_objects_by_their_path_after_the_prefix(
    trained_model_dir: Path, files: Path, s3_client: Any, s3_bucket: str
) -> None:
    upload(s3_client, s3_bucket, files, "data/")
    manifest = [{"prefix": f"{s3_bucket}/data/"}, "deep/b.csv", "a.csv"]
    s3_client.put_object(
        Bucket=s3_bucket.removeprefix("s3://"), Key="m.json", Body=json.dumps(manifest).encode()
    )

    transform(
        trained_model_dir,
        f"{s3_bucket}/m.json",
        f"{s3_bucket}/out/",
        input_type="manifest",
        split_type="Line",
    )

    assert sorted(downloaded(s3_client, s3_bucket, "out/")) == ["a.csv.out", "deep/b.csv.out"]


def test_a_missing_output_bucket_is_one_error_line_and_exit_2(
    trained_model_dir: Path,
    files: Path,
    s3_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["transform", "--model", str(trained_model_dir), "--input", str(files / "a.csv"), "--workers", "1"]

    code, _, err = run_cli([*args, "--output", "s3://no-such-bucket-for-output/out"], monkeypatch, capsys)

    assert code == 2
    assert error_line(err).startswith("tripod: error: cannot write s3://no-such-bucket-for-output/out/")

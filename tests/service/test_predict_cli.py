"""`tripod predict` over files: the same answers as the runtime, one-line errors, no partial output."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from services.runtime.pipeline import Pipeline
from services.runtime.schema import Records

TEXTS = [
    'Fits great, "true to size", love it',
    "Awful.\nThe seams split on day one",
    "It's okay, I guess",
    "",
]


def _tripod(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tripod.cli", *args], capture_output=True, text=True, check=False
    )


def _write_csv(path: Path, column: str) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", column, "sentiment"])
        writer.writerows([i, text, "ignored"] for i, text in enumerate(TEXTS))


@pytest.mark.parametrize("output_name", ["out.jsonl", "out.csv"])
@pytest.mark.parametrize("input_name", ["in.csv", "in.jsonl"])
def test_file_predictions_equal_the_runtime(
    trained_model_dir: Path, pipeline: Pipeline, tmp_path: Path, input_name: str, output_name: str
) -> None:
    column = pipeline.input_names[0]
    source, destination = tmp_path / input_name, tmp_path / output_name
    if input_name.endswith(".csv"):
        _write_csv(source, column)
    else:
        source.write_text("".join(json.dumps({column: text, "id": i}) + "\n" for i, text in enumerate(TEXTS)))
    result = _tripod(
        "predict", "--model", str(trained_model_dir), "--input", str(source), "--output", str(destination)
    )
    assert result.returncode == 0, result.stderr
    expected = [
        row["predicted_label"] for row in pipeline.predict(Records([{column: t} for t in TEXTS])).records()
    ]
    if output_name.endswith(".jsonl"):
        got = [json.loads(line)["predicted_label"] for line in destination.read_text().splitlines()]
    else:
        with destination.open(newline="") as handle:
            got = [row["predicted_label"] for row in csv.DictReader(handle)]
    assert got == expected


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(b"id,title\n1,hello\n", "no column(s) ['{col}']", id="missing-column"),
        pytest.param(b"", "is empty", id="empty-file"),
        pytest.param(b"id,{col}\n1,caf\xe9 \xff\n", "is not UTF-8 text", id="not-utf8"),
        pytest.param(
            b"id,{col}\n1,ok\n2,too,many\n", "record 1: 3 field(s) where the header has 2", id="ragged-row"
        ),
    ],
)
def test_bad_files_get_a_one_line_error_and_no_output(
    trained_model_dir: Path, pipeline: Pipeline, tmp_path: Path, content: bytes, message: str
) -> None:
    source, destination = tmp_path / "in.csv", tmp_path / "out.jsonl"
    source.write_bytes(content.replace(b"{col}", pipeline.input_names[0].encode()))
    result = _tripod(
        "predict", "--model", str(trained_model_dir), "--input", str(source), "--output", str(destination)
    )
    assert result.returncode == 2
    assert result.stderr.startswith("tripod: error: ")
    assert message.replace("{col}", pipeline.input_names[0]) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not destination.exists() and not list(tmp_path.glob("*.part"))


def test_a_tampered_model_is_refused_by_the_cli(trained_model_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(trained_model_dir, copy)
    with (copy / "transformer.onnx").open("ab") as handle:
        handle.write(b"\0")
    (tmp_path / "in.jsonl").write_text("{}\n")
    result = _tripod(
        "predict",
        "--model",
        str(copy),
        "--input",
        str(tmp_path / "in.jsonl"),
        "--output",
        str(tmp_path / "out.jsonl"),
    )
    assert result.returncode == 2
    assert "transformer.onnx does not match its sha256" in result.stderr

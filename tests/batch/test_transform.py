"""SageMaker's batch-transform semantics on real files with the in-process engine: outputs named after their
inputs, records in order, batching that never changes an answer, DataProcessing, AssembleWith, the payload
limit, per-record errors and their budget, and failures that stay in their own file."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from services.batch import storage
from services.runtime.pipeline import Pipeline
from services.runtime.schema import Records
from tests.batch.jobs import csv_lines, errors_of, jsonl_lines, outputs, summary_of, transform, write
from tests.cli import error_line, run_cli

N = 120


@pytest.fixture(scope="module")
def texts(prepared_reviews: pd.DataFrame) -> list[str]:
    """Real reviews with commas, quotes and line breaks inside, as users' files hold them."""
    column = prepared_reviews["review_body"].dropna().astype(str)
    quirky = column[column.str.contains('"') & column.str.contains("\n")].head(5).tolist()
    return quirky + column.head(N - len(quirky)).tolist()


@pytest.fixture(scope="module")
def flat_texts(texts: list[str]) -> list[str]:
    """The reviews on one line each (a line-split CSV record is one line)."""
    return [" ".join(text.split()) for text in texts]


@pytest.fixture(scope="module")
def expected(trained_model_dir: Path, flat_texts: list[str]) -> list[tuple[str, float]]:
    """What the model itself answers for each review: (label, probability)."""
    batch = Pipeline.from_directory(trained_model_dir).predict(
        Records(items=[{"review_body": text} for text in flat_texts])
    )
    return [(row["predicted_label"], row["probability"]) for row in batch.records()]


def parse_csv_answers(data: bytes) -> list[tuple[str, float]]:
    rows = [line.split(",") for line in data.decode().splitlines()]
    return [(label, float(probability)) for label, probability in rows]


# --- outputs and order ---------------------------------------------------------------------------------


def test_every_object_gives_its_relative_path_dot_out_with_one_answer_per_record_in_input_order(
    trained_model_dir: Path, flat_texts: list[str], expected: list[tuple[str, float]], tmp_path: Path
) -> None:
    write(tmp_path / "in/a.csv", csv_lines([[t] for t in flat_texts[:70]]))
    write(tmp_path / "in/nested/b.csv", csv_lines([[t] for t in flat_texts[70:]]))

    summary = transform(trained_model_dir, tmp_path / "in", tmp_path / "out", split_type="Line")

    assert summary.succeeded
    found = outputs(tmp_path / "out")
    assert sorted(found) == ["a.csv.out", "nested/b.csv.out"]
    answers = parse_csv_answers(found["a.csv.out"]) + parse_csv_answers(found["nested/b.csv.out"])
    assert [label for label, _ in answers] == [label for label, _ in expected]
    assert [p for _, p in answers] == pytest.approx([p for _, p in expected], abs=1e-6)


@pytest.mark.parametrize(
    "batching",
    [
        {"batch_strategy": "SingleRecord"},
        {"batch_strategy": "MultiRecord", "max_records_per_request": 7},
        {"batch_strategy": "MultiRecord", "max_payload_mb": 1},
    ],
    ids=["single-record", "multi-record-7", "multi-record-1mb"],
)
def test_how_records_are_batched_changes_no_answer_beyond_float32_rounding(
    trained_model_dir: Path, flat_texts: list[str], tmp_path: Path, batching: dict[str, object]
) -> None:
    """A matrix product over 1 row and over 64 rows may round the last bit of a float32 differently: the
    labels and lines are the same, probabilities equal to ~1e-7.  (The same batching gives the same bytes:
    resume, shards and engines keep it, see their tests.)"""
    write(tmp_path / "in/a.csv", csv_lines([[t] for t in flat_texts]))
    transform(
        trained_model_dir, tmp_path / "in", tmp_path / "one", split_type="Line", max_records_per_request=1000
    )

    transform(
        trained_model_dir, tmp_path / "in", tmp_path / "other", split_type="Line", workers=2, **batching
    )

    one = parse_csv_answers((tmp_path / "one/a.csv.out").read_bytes())
    other = parse_csv_answers((tmp_path / "other/a.csv.out").read_bytes())
    assert [label for label, _ in other] == [label for label, _ in one]
    assert [p for _, p in other] == pytest.approx([p for _, p in one], abs=1e-6)


def test_split_type_none_sends_each_file_as_one_request(
    trained_model_dir: Path, flat_texts: list[str], tmp_path: Path
) -> None:
    instances = {"instances": [{"review_body": text} for text in flat_texts[:3]]}
    write(tmp_path / "in/doc.json", json.dumps(instances).encode())

    transform(trained_model_dir, tmp_path / "in", tmp_path / "out", content_type="application/json")

    answer = json.loads((tmp_path / "out/doc.json.out").read_bytes())
    assert len(answer["predictions"]) == 3


def test_assemble_with_none_concatenates_answers_and_line_ends_each_one_with_a_newline(
    trained_model_dir: Path, flat_texts: list[str], tmp_path: Path
) -> None:
    write(tmp_path / "in/a.jsonl", jsonl_lines([{"review_body": text} for text in flat_texts[:3]]))
    common: dict[str, object] = {
        "content_type": "application/jsonlines",
        "accept": "application/json",
        "split_type": "Line",
        "batch_strategy": "SingleRecord",
    }

    transform(trained_model_dir, tmp_path / "in", tmp_path / "none", assemble_with="None", **common)
    transform(trained_model_dir, tmp_path / "in", tmp_path / "line", assemble_with="Line", **common)

    by_line = (tmp_path / "line/a.jsonl.out").read_bytes()
    documents = by_line.splitlines()
    assert len(documents) == 3 and all(json.loads(d)["predictions"][0]["predicted_label"] for d in documents)
    assert (tmp_path / "none/a.jsonl.out").read_bytes() == b"".join(documents)


# --- DataProcessing ------------------------------------------------------------------------------------


def test_a_csv_join_appends_the_answer_to_the_original_row_and_the_output_filter_picks_columns(
    trained_model_dir: Path, flat_texts: list[str], expected: list[tuple[str, float]], tmp_path: Path
) -> None:
    rows = [[f"id-{i}", text, "extra"] for i, text in enumerate(flat_texts[:20])]
    write(tmp_path / "in/rows.csv", csv_lines(rows))

    transform(
        trained_model_dir,
        tmp_path / "in",
        tmp_path / "out",
        split_type="Line",
        assemble_with="Line",
        input_filter="$[1]",
        join_source="Input",
        output_filter="$[0,-2]",
    )

    lines = (tmp_path / "out/rows.csv.out").read_text().splitlines()
    assert lines == [f"id-{i},{label}" for i, (label, _) in enumerate(expected[:20])]


def test_a_json_lines_join_adds_sagemaker_output_to_each_object_and_filters_select_fields(
    trained_model_dir: Path, flat_texts: list[str], expected: list[tuple[str, float]], tmp_path: Path
) -> None:
    items = [{"id": i, "review_body": text, "stars": 5} for i, text in enumerate(flat_texts[:10])]
    write(tmp_path / "in/rows.jsonl", jsonl_lines(items))

    transform(
        trained_model_dir,
        tmp_path / "in",
        tmp_path / "out",
        content_type="application/jsonlines",
        split_type="Line",
        assemble_with="Line",
        input_filter="$.review_body",
        join_source="Input",
        output_filter="$['id','SageMakerOutput']",
    )

    joined = [json.loads(line) for line in (tmp_path / "out/rows.jsonl.out").read_text().splitlines()]
    assert [row["id"] for row in joined] == list(range(10))
    assert [row["SageMakerOutput"]["predicted_label"] for row in joined] == [
        label for label, _ in expected[:10]
    ]
    assert all(set(row) == {"id", "SageMakerOutput"} for row in joined)


def test_a_join_on_a_record_that_is_not_an_object_wraps_input_and_output(
    trained_model_dir: Path, flat_texts: list[str], tmp_path: Path
) -> None:
    write(tmp_path / "in/rows.jsonl", jsonl_lines(flat_texts[:2]))

    transform(
        trained_model_dir,
        tmp_path / "in",
        tmp_path / "out",
        content_type="application/jsonlines",
        split_type="Line",
        assemble_with="Line",
        join_source="Input",
    )

    joined = [json.loads(line) for line in (tmp_path / "out/rows.jsonl.out").read_text().splitlines()]
    assert [row["SageMakerInput"] for row in joined] == flat_texts[:2]
    assert all("predicted_label" in row["SageMakerOutput"] for row in joined)


def test_a_csv_header_is_not_a_record(
    trained_model_dir: Path, flat_texts: list[str], expected: list[tuple[str, float]], tmp_path: Path
) -> None:
    write(tmp_path / "in/a.csv", csv_lines([["review_body"], *[[t] for t in flat_texts[:5]]]))

    transform(trained_model_dir, tmp_path / "in", tmp_path / "out", split_type="Line", csv_header=True)

    assert [label for label, _ in parse_csv_answers((tmp_path / "out/a.csv.out").read_bytes())] == [
        label for label, _ in expected[:5]
    ]


def test_gzip_inputs_are_read_decompressed_and_named_like_their_object(
    trained_model_dir: Path, flat_texts: list[str], tmp_path: Path
) -> None:
    plain = csv_lines([[t] for t in flat_texts[:30]])
    write(tmp_path / "plain/a.csv", plain)
    write(tmp_path / "zipped/a.csv.gz", gzip.compress(plain))

    transform(trained_model_dir, tmp_path / "plain", tmp_path / "out-plain", split_type="Line")
    transform(
        trained_model_dir, tmp_path / "zipped", tmp_path / "out-zipped", split_type="Line", compression="Gzip"
    )

    assert (tmp_path / "out-zipped/a.csv.gz.out").read_bytes() == (
        tmp_path / "out-plain/a.csv.out"
    ).read_bytes()


def test_a_manifest_names_the_objects_and_outputs_keep_their_relative_paths(
    trained_model_dir: Path, flat_texts: list[str], tmp_path: Path
) -> None:
    for name in ("a.csv", "deep/b.csv", "unlisted.csv"):
        write(tmp_path / "in" / name, csv_lines([[t] for t in flat_texts[:3]]))
    manifest = write(
        tmp_path / "manifest.json",
        json.dumps([{"prefix": f"{tmp_path}/in/"}, "deep/b.csv", "a.csv"]).encode(),
    )

    transform(trained_model_dir, manifest, tmp_path / "out", input_type="manifest", split_type="Line")

    assert sorted(outputs(tmp_path / "out")) == ["a.csv.out", "deep/b.csv.out"]


# --- errors ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1 << 20, 3 << 20], ids=["just-over", "read-in-pieces"])
def test_a_record_over_the_payload_limit_fails_its_file_naming_the_record_and_spares_the_others(
    trained_model_dir: Path, flat_texts: list[str], tmp_path: Path, size: int
) -> None:
    huge = "x" * size
    write(tmp_path / "in/big.csv", csv_lines([[flat_texts[0]], [huge], [flat_texts[1]]]))
    write(tmp_path / "in/good.csv", csv_lines([[t] for t in flat_texts[:5]]))

    summary = transform(
        trained_model_dir, tmp_path / "in", tmp_path / "out", split_type="Line", max_payload_mb=1
    )

    assert not summary.succeeded
    assert [f.input for f in summary.failed] == [str(tmp_path / "in/big.csv")]
    assert sorted(outputs(tmp_path / "out")) == ["big.csv.out.errors.jsonl", "good.csv.out"]
    (error,) = errors_of(tmp_path / "out/big.csv.out.errors.jsonl")
    offset = len(csv_lines([[flat_texts[0]]]))
    assert error == {
        "record": 1,
        "offset": offset,
        "status": 413,
        "reason": f"the record is {len(huge):,} bytes, over MaxPayloadInMB (1 MB)",
    }
    assert summary_of(tmp_path / "out")["status"] == "failed"


def test_bad_records_within_the_budget_answer_a_placeholder_in_place_and_are_listed_with_their_offsets(
    trained_model_dir: Path, flat_texts: list[str], tmp_path: Path
) -> None:
    lines = [
        json.dumps({"review_body": flat_texts[0]}).encode(),
        json.dumps({"review_body": 5}).encode(),
        json.dumps({"review_body": flat_texts[1]}).encode(),
        b'{"review_body": "broken',
        b'{"review_body": "caf\xe9"}',
        json.dumps({"review_body": flat_texts[2]}).encode(),
    ]
    write(tmp_path / "in/a.jsonl", b"\n".join(lines) + b"\n")

    summary = transform(
        trained_model_dir,
        tmp_path / "in",
        tmp_path / "out",
        content_type="application/jsonlines",
        split_type="Line",
        max_record_errors="3",
    )

    assert summary.succeeded and summary.files[0].errors == 3
    answers = [json.loads(line) for line in (tmp_path / "out/a.jsonl.out").read_text().splitlines()]
    assert [("error" in answer) for answer in answers] == [False, True, False, True, True, False]
    errors = errors_of(tmp_path / "out/a.jsonl.out.errors.jsonl")
    offsets = [sum(len(line) + 1 for line in lines[:i]) for i in (1, 3, 4)]
    assert [(e["record"], e["offset"], e["status"]) for e in errors] == [
        (1, offsets[0], 422),
        (3, offsets[1], 400),
        (4, offsets[2], 400),
    ]
    assert "UTF-8" in errors[2]["reason"] and not errors[0]["reason"].startswith("record ")
    assert [answer["error"] for answer in answers if "error" in answer] == [e["reason"] for e in errors]


def test_a_csv_placeholder_is_error_on_the_line_of_the_bad_record(
    trained_model_dir: Path, flat_texts: list[str], tmp_path: Path
) -> None:
    write(tmp_path / "in/a.csv", csv_lines([[flat_texts[0]], ["a", "b", "too many"], [flat_texts[1]]]))

    transform(
        trained_model_dir, tmp_path / "in", tmp_path / "out", split_type="Line", max_record_errors="50%"
    )

    lines = (tmp_path / "out/a.csv.out").read_text().splitlines()
    assert len(lines) == 3 and lines[1] == "ERROR" and lines[0] != "ERROR" != lines[2]


@pytest.mark.parametrize("budget", ["0", "1", "10%"])
def test_more_bad_records_than_the_budget_fail_the_file_but_list_them(
    trained_model_dir: Path, flat_texts: list[str], tmp_path: Path, budget: str
) -> None:
    items: list[object] = [{"review_body": text} for text in flat_texts[:10]]
    items[2] = items[7] = {"review_body": ["not", "text"]}
    write(tmp_path / "in/a.jsonl", jsonl_lines(items))

    summary = transform(
        trained_model_dir,
        tmp_path / "in",
        tmp_path / "out",
        content_type="application/jsonlines",
        split_type="Line",
        max_record_errors=budget,
    )

    assert not summary.succeeded and not (tmp_path / "out/a.jsonl.out").exists()
    listed = [e["record"] for e in errors_of(tmp_path / "out/a.jsonl.out.errors.jsonl")]
    if budget == "0":  # the first bad record stops the file
        assert listed == [2] and summary.failed[0].reason.startswith("record 2 (byte ")
    else:
        assert listed == [2, 7] and "bad record" in summary.failed[0].reason


def test_a_finished_job_summary_counts_records_errors_and_the_settings_applied(
    trained_model_dir: Path, flat_texts: list[str], tmp_path: Path
) -> None:
    write(tmp_path / "in/a.csv", csv_lines([[t] for t in flat_texts[:10]]))

    transform(trained_model_dir, tmp_path / "in", tmp_path / "out", split_type="Line", workers=2)

    summary = summary_of(tmp_path / "out")
    assert summary["status"] == "succeeded" and summary["engine"] == "in-process"
    assert summary["totals"] == {"files": 1, "failed": 0, "records": 10, "errors": 0}
    assert summary["settings"] == {"BatchStrategy": "MultiRecord", "MaxPayloadInMB": 6, "Workers": 2}
    assert summary["files"][0]["status"] == "done" and summary["files"][0]["seconds"] >= 0


# --- the command line ----------------------------------------------------------------------------------


def test_the_command_exits_1_naming_each_failed_file_and_keeps_the_finished_ones(
    trained_model_dir: Path,
    flat_texts: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write(tmp_path / "in/bad.csv", csv_lines([["a", "b", "c"]]))
    write(tmp_path / "in/good.csv", csv_lines([[flat_texts[0]]]))
    args = [
        "transform",
        "--model",
        str(trained_model_dir),
        "--input",
        f"{tmp_path}/in",
        "--output",
        f"{tmp_path}/out",
    ]

    code, out, err = run_cli([*args, "--split-type", "Line", "--workers", "1"], monkeypatch, capsys)

    assert code == 1
    assert out.startswith("transform failed: 2 file(s), 2 record(s), 1 bad record(s)")
    failed = [line for line in err.splitlines() if line.startswith("tripod: failed: ")]
    assert len(failed) == 1 and failed[0].startswith(f"tripod: failed: {tmp_path}/in/bad.csv: ")
    assert (tmp_path / "out/good.csv.out").exists() and not (tmp_path / "out/bad.csv.out").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--split-type", "Lines"], "--split-type: Input should be 'None' or 'Line'"),
        (["--input-filter", "$..a"], "InputFilter: JSONPath '$..a': '..' (deep scan) is not supported"),
        (["--max-payload-mb", "500"], "--max-payload-mb: Input should be less than or equal to 100"),
    ],
)
def test_a_bad_option_is_one_error_line_and_exit_2_before_anything_is_written(
    trained_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    write(tmp_path / "in/a.csv", b"x\n")
    args = [
        "transform",
        "--model",
        str(trained_model_dir),
        "--input",
        f"{tmp_path}/in",
        "--output",
        f"{tmp_path}/out",
    ]

    code, _, err = run_cli([*args, *extra], monkeypatch, capsys)

    assert code == 2 and message in error_line(err)
    assert not (tmp_path / "out").exists()


def test_a_manifest_pointing_at_missing_keys_names_them_and_writes_nothing(
    trained_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write(tmp_path / "in/a.csv", b"x\n")
    manifest = write(
        tmp_path / "m.json", json.dumps([{"prefix": f"{tmp_path}/in/"}, "a.csv", "gone.csv"]).encode()
    )
    args = [
        "transform",
        "--model",
        str(trained_model_dir),
        "--input",
        str(manifest),
        "--input-type",
        "manifest",
    ]

    code, _, err = run_cli([*args, "--output", f"{tmp_path}/out"], monkeypatch, capsys)

    assert code == 2 and "gone.csv" in error_line(err)
    assert not (tmp_path / "out").exists()


def test_an_output_location_that_cannot_be_written_is_one_error_line(
    trained_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write(tmp_path / "in/a.csv", b"x\n")
    write(tmp_path / "blocker", b"a file where the output folder should be")
    args = ["transform", "--model", str(trained_model_dir), "--input", f"{tmp_path}/in"]

    code, _, err = run_cli(
        [*args, "--output", f"{tmp_path}/blocker/out", "--workers", "1"], monkeypatch, capsys
    )

    assert code in (1, 2) and f"{tmp_path}/blocker/out" in err and "Traceback" not in err
    assert (tmp_path / "blocker").read_bytes() == b"a file where the output folder should be"


def test_an_unreadable_object_fails_its_file_and_the_others_finish(
    trained_model_dir: Path, flat_texts: list[str], tmp_path: Path
) -> None:
    write(tmp_path / "in/good.csv", csv_lines([[flat_texts[0]]]))
    write(tmp_path / "in/vanishing.csv", csv_lines([[flat_texts[1]]]))
    inputs = storage.list_inputs(str(tmp_path / "in"))
    (tmp_path / "in/vanishing.csv").unlink()  # gone between listing and reading, as on a shared bucket

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(storage, "list_inputs", lambda *_: inputs)
        summary = transform(trained_model_dir, tmp_path / "in", tmp_path / "out", split_type="Line")

    assert [f.input for f in summary.failed] == [str(tmp_path / "in/vanishing.csv")]
    assert "vanishing.csv" in summary.failed[0].reason
    assert sorted(outputs(tmp_path / "out")) == ["good.csv.out"]


@pytest.mark.parametrize(
    "line",
    [
        b"[" * 5000 + b"]" * 5000,
        b'{"review_body": 1e999}',
        b'{"review_body": 123456789012345678901234567890123456789}',
        b'{"review_body": null}',
        b'"\\ud800"',
        b'{"review_body": "nul \\u0000 inside"}',
        b"\xff\xfe\x00",
        b'{"review_body": "' + b"long " * 40_000 + b'"}',
    ],
    ids=["deep", "inf", "huge-int", "null", "lone-surrogate", "nul", "not-utf8", "long-text"],
)
def test_a_hostile_record_is_answered_or_listed_and_its_neighbours_are_answered(
    trained_model_dir: Path, flat_texts: list[str], tmp_path: Path, line: bytes
) -> None:
    good = [json.dumps({"review_body": text}).encode() for text in flat_texts[:2]]
    write(tmp_path / "in/a.jsonl", b"\n".join([good[0], line, good[1]]) + b"\n")

    summary = transform(
        trained_model_dir,
        tmp_path / "in",
        tmp_path / "out",
        content_type="application/jsonlines",
        split_type="Line",
        max_record_errors="1",
    )

    assert summary.succeeded
    answers = [json.loads(a) for a in (tmp_path / "out/a.jsonl.out").read_text().splitlines()]
    assert len(answers) == 3 and "predicted_label" in answers[0] and "predicted_label" in answers[2]
    if "error" in answers[1]:
        (error,) = errors_of(tmp_path / "out/a.jsonl.out.errors.jsonl")
        assert error["record"] == 1 and 400 <= error["status"] < 500 and "\n" not in error["reason"]


@pytest.mark.parametrize("split_type", ["None", "Line"])
def test_an_empty_object_gives_an_empty_output(
    trained_model_dir: Path, tmp_path: Path, split_type: str
) -> None:
    write(tmp_path / "in/empty.csv", b"")

    summary = transform(trained_model_dir, tmp_path / "in", tmp_path / "out", split_type=split_type)

    assert summary.succeeded and summary.files[0].records == 0
    assert (tmp_path / "out/empty.csv.out").read_bytes() == b""


def test_a_record_the_input_filter_cannot_apply_to_keeps_its_line_with_a_placeholder(
    trained_model_dir: Path, flat_texts: list[str], tmp_path: Path
) -> None:
    items = [{"id": 0, "review_body": flat_texts[0]}, {"id": 1}, {"id": 2, "review_body": flat_texts[1]}]
    write(tmp_path / "in/a.jsonl", jsonl_lines(items))

    summary = transform(
        trained_model_dir,
        tmp_path / "in",
        tmp_path / "out",
        content_type="application/jsonlines",
        split_type="Line",
        input_filter="$.review_body",
        max_record_errors="1",
    )

    assert summary.succeeded
    answers = [json.loads(line) for line in (tmp_path / "out/a.jsonl.out").read_text().splitlines()]
    assert ["error" in answer for answer in answers] == [False, True, False]
    (error,) = errors_of(tmp_path / "out/a.jsonl.out.errors.jsonl")
    assert (error["record"], error["status"]) == (1, 400) and "review_body" in error["reason"]


@pytest.mark.parametrize(
    ("bad", "words"),
    [({"review_body": "fine", "SageMakerOutput": 1}, "SageMakerOutput"), ({"review_body": "no id"}, "id")],
    ids=["join-clash", "output-filter-miss"],
)
def test_a_record_the_join_or_output_filter_cannot_handle_is_listed_not_the_whole_file(
    trained_model_dir: Path, flat_texts: list[str], tmp_path: Path, bad: dict[str, object], words: str
) -> None:
    items = [{"id": 0, "review_body": flat_texts[0]}, bad, {"id": 2, "review_body": flat_texts[1]}]
    write(tmp_path / "in/a.jsonl", jsonl_lines(items))

    summary = transform(
        trained_model_dir,
        tmp_path / "in",
        tmp_path / "out",
        content_type="application/jsonlines",
        split_type="Line",
        assemble_with="Line",
        input_filter="$.review_body",
        join_source="Input",
        output_filter="$['id','SageMakerOutput']",
        max_record_errors="1",
    )

    assert summary.succeeded
    lines = [json.loads(line) for line in (tmp_path / "out/a.jsonl.out").read_text().splitlines()]
    assert [line.get("id") for line in lines] == [0, None, 2] and "error" in lines[1]
    (error,) = errors_of(tmp_path / "out/a.jsonl.out.errors.jsonl")
    assert error["record"] == 1 and words in error["reason"]


def copy_model(source: Path, destination: Path) -> Path:
    import shutil

    return Path(shutil.copytree(source, destination))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda model: (model / "manifest.sha256").unlink(), "manifest.sha256 is missing"),
        (lambda model: (model / "classifier.onnx").write_bytes(b"tampered"), "classifier.onnx"),
    ],
    ids=["no-manifest-digest", "tampered-graph"],
)
def test_a_damaged_model_is_one_error_line_and_exit_2_before_any_worker_starts(
    trained_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    damage: Any,
    message: str,
) -> None:
    model = copy_model(trained_model_dir, tmp_path / "model")
    damage(model)
    write(tmp_path / "in/a.csv", b"lovely\n")
    args = ["transform", "--model", str(model), "--input", f"{tmp_path}/in", "--output", f"{tmp_path}/out"]

    code, _, err = run_cli(args, monkeypatch, capsys)

    assert code == 2 and message in error_line(err) and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_a_bad_serving_variable_is_one_error_line_naming_it(
    trained_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TRIPOD_MAX_TEXT_CHARS", "lots")
    write(tmp_path / "in/a.csv", b"lovely\n")
    args = [
        "transform",
        "--model",
        str(trained_model_dir),
        "--input",
        f"{tmp_path}/in",
        "--output",
        f"{tmp_path}/out",
    ]

    code, _, err = run_cli(args, monkeypatch, capsys)

    assert code == 2 and error_line(err).startswith("tripod: error: TRIPOD_MAX_TEXT_CHARS: ")


def test_an_output_that_cannot_be_written_for_one_file_fails_that_file_and_keeps_the_others(
    trained_model_dir: Path, flat_texts: list[str], tmp_path: Path
) -> None:
    write(tmp_path / "in/a.csv", csv_lines([[flat_texts[0]]]))
    write(tmp_path / "in/b.csv", csv_lines([[flat_texts[1]]]))
    write(tmp_path / "in/c.csv", csv_lines([[flat_texts[2]]]))
    (tmp_path / "out/b.csv.out").mkdir(parents=True)  # a directory where b's output must go

    summary = transform(trained_model_dir, tmp_path / "in", tmp_path / "out", split_type="Line")

    assert [(Path(f.input).name, f.status) for f in summary.files] == [
        ("a.csv", "done"),
        ("b.csv", "failed"),
        ("c.csv", "done"),
    ]
    assert summary.failed[0].reason.startswith(f"cannot write {tmp_path}/out/b.csv.out")
    assert (tmp_path / "out/a.csv.out").is_file() and (tmp_path / "out/c.csv.out").is_file()

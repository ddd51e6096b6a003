"""A transform job's options: each mistake is one line naming the option, SageMaker's forbidden combinations
are refused with the reason, and shard defaults come from a Kubernetes Indexed Job's environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.batch.options import TransformOptions
from services.errors import InvalidInput

BASE: dict[str, object] = {"model": Path("/models/m"), "input": "/in", "output": "/out"}


def build(**changes: object) -> TransformOptions:
    return TransformOptions.build(**{**BASE, **changes})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"endpoint": "http://127.0.0.1:1"}, "^options: give exactly one of --model and --endpoint$"),
        ({"model": None}, "^options: give exactly one of --model and --endpoint$"),
        ({"max_payload_mb": 101}, "^--max-payload-mb: Input should be less than or equal to 100$"),
        ({"max_payload_mb": 0}, "^--max-payload-mb: "),
        ({"split_type": "RecordIO"}, "^--split-type: Input should be 'None' or 'Line'$"),
        ({"content_type": "text/plain"}, "^--content-type: 'text/plain' is not one of "),
        ({"max_record_errors": "ten"}, "^--max-record-errors: expected N or P%, got 'ten'$"),
        ({"max_record_errors": "150%"}, "^--max-record-errors: expected a whole N >= 0 or 0-100%"),
        ({"max_record_errors": "1.5"}, "^--max-record-errors: expected a whole N >= 0 or 0-100%"),
        ({"shard_index": 2, "shard_count": 2}, "^options: --shard-index 2 is not below --shard-count 2$"),
        ({"join_source": "Input"}, "need --split-type Line and --assemble-with Line"),
        ({"output_filter": "$[0]", "split_type": "Line"}, "need --split-type Line and --assemble-with Line"),
        (
            {
                "join_source": "Input",
                "split_type": "Line",
                "assemble_with": "Line",
                "accept": "application/json",
            },
            "application/json answer to several records",
        ),
        (
            {"content_type": "application/json", "split_type": "Line"},
            "line-split application/json records cannot be sent several to a request",
        ),
        ({"csv_header": True}, "^options: --csv-header needs --split-type Line"),
        (
            {"csv_header": True, "content_type": "application/jsonlines"},
            "^options: --csv-header applies to text/csv",
        ),
        ({"colour": "red"}, "^--colour: Extra inputs are not permitted$"),
        ({"max_concurrent_transforms": 4}, "^options: --max-concurrent-transforms applies to --endpoint"),
        (
            {"model": None, "endpoint": "http://127.0.0.1:1", "workers": 2},
            "^options: --workers applies to --model",
        ),
        (
            {"output": "/in/out"},
            "^options: --output /in/out is inside --input /in: a rerun would read the outputs",
        ),
        (
            {"input": "s3://b/in", "output": "s3://b/in-out/"},
            "^options: --output s3://b/in-out/ is inside --input",
        ),
        (
            {"content_type": "text/csv; charset=latin-1"},
            "^--content-type: 'text/csv; charset=latin-1': records are",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) and not value.startswith("^") else None,
)
def test_a_bad_option_is_one_line_naming_it(changes: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as caught:
        build(**changes)
    assert "\n" not in str(caught.value)


def test_content_types_are_normalised_and_accept_defaults_to_the_content_type() -> None:
    options = build(content_type="Application/JSONLines; charset=utf-8")

    assert options.content_type == "application/jsonlines"
    assert options.answer_type == "application/jsonlines"


def test_a_json_join_is_allowed_one_record_per_request() -> None:
    options = build(
        join_source="Input",
        split_type="Line",
        assemble_with="Line",
        accept="application/json",
        batch_strategy="SingleRecord",
    )

    assert options.needs_records and options.strategy == "SingleRecord"


@pytest.mark.parametrize(
    ("budget", "records", "allowed"), [("0", 100, 0), ("3", 100, 3), ("5%", 100, 5), ("5%", 39, 1)]
)
def test_the_error_budget_is_a_count_or_a_share_of_the_file(budget: str, records: int, allowed: int) -> None:
    assert build(max_record_errors=budget).error_budget(records) == allowed


def test_shards_default_from_a_kubernetes_indexed_job(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "3")
    monkeypatch.setenv("TRIPOD_SHARD_COUNT", "4")

    options = build()
    assert (options.shard_index, options.shard_count) == (3, 4)
    assert build(shard_index=0, shard_count=1).shard_index == 0  # the command line wins


def test_a_bad_shard_variable_names_the_option(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "first")

    with pytest.raises(InvalidInput, match=r"^--shard-index: Input should be a valid integer"):
        build()


def test_an_output_beside_the_input_or_for_a_manifest_is_allowed() -> None:
    assert build(output="/input-out").output == "/input-out"
    assert build(input="/in/manifest.json", input_type="manifest", output="/in/out").output == "/in/out"


def test_local_locations_become_absolute_and_s3_ones_stay_as_given(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)

    options = build(input="data", output="file://results")
    assert (options.input, options.output) == (str(tmp_path / "data"), str(tmp_path / "results"))
    assert build(input="s3://bucket/in/", output="s3://bucket/out").input == "s3://bucket/in/"

"""``tripod monitor baseline`` and ``tripod monitor run`` through the real entry point: Model Monitor's files,
the report, the Prometheus textfile, exit status 0 / 1 / 2, capture on S3 (moto), and every user mistake as one
line with exit status 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.capture_files import JSON, Exchange, write_capture
from tests.cli import error_line, run_cli
from tests.conftest import TEXT_COLUMN
from tests.monitor_scenarios import START, capture_texts, foreign_reviews, held_out_rows, training_rows

MONITOR_FILES = {
    "constraint_violations.json",
    "statistics.json",
    "report.json",
    "report.html",
    "metrics.prom",
}


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def baseline_dir(
    trained_model_dir: Path, prepared_reviews: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The baseline, written by the CLI from the model's training rows."""
    folder = tmp_path_factory.mktemp("monitor")
    table = folder / "train.parquet"
    training_rows(prepared_reviews).to_parquet(table, index=False)
    from tripod import cli

    args = ["monitor", "baseline", "--model", str(trained_model_dir), "--data", str(table)]
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*args, "--out", str(folder / "baseline")])
    assert exit_info.value.code == 0
    return folder / "baseline"


@pytest.fixture(scope="module")
def held_out_capture(
    trained_model_dir: Path, prepared_reviews: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    root = tmp_path_factory.mktemp("capture")
    texts = held_out_rows(prepared_reviews, 400, seed=11)[TEXT_COLUMN].tolist()
    capture_texts(root, trained_model_dir, texts, extra_lines=["{broken", '{"eventVersion": "0"}'])
    return root


def test_baseline_writes_model_monitor_files(baseline_dir: Path) -> None:
    statistics, constraints = (
        _json(baseline_dir / "statistics.json"),
        _json(baseline_dir / "constraints.json"),
    )
    assert {"version", "dataset", "features", "predictions", "model"} <= set(statistics)
    feature = statistics["features"][0]
    assert {"name", "inferred_type", "string_statistics", "text_statistics"} <= set(feature)
    assert set(constraints) == {"version", "features", "monitoring_config"}
    assert set(constraints["features"][0]) == {"name", "inferred_type", "completeness"}
    assert sum(1 for _ in (baseline_dir / "reference_sample.jsonl").open()) == 2000


def test_held_out_traffic_passes_and_malformed_lines_are_reported(
    baseline_dir: Path,
    held_out_capture: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["monitor", "run", "--baseline", str(baseline_dir), "--capture", str(held_out_capture)]
    code, out, err = run_cli([*args, "--out", str(tmp_path)], monkeypatch, capsys)
    assert code == 0, out + err
    assert out.strip().endswith(
        "400 records from 4 file(s), 2 malformed line(s) skipped; 0 violation(s), 8 check(s) passed, 0 skipped"
    )
    assert {p.name for p in tmp_path.iterdir()} == MONITOR_FILES
    assert _json(tmp_path / "constraint_violations.json") == {"violations": []}
    report = _json(tmp_path / "report.json")
    assert report["read"]["malformed_lines"] == 2 and len(report["read"]["malformed_examples"]) == 2
    assert report["read"]["exchanges_by_variant"] == {"reviews/AllTraffic": 400}
    statistics = _json(tmp_path / "statistics.json")
    assert statistics["dataset"]["item_count"] == 400 and statistics["features"][0]["name"] == TEXT_COLUMN
    families = {f.name: f for f in text_string_to_metric_families((tmp_path / "metrics.prom").read_text())}
    violations = {
        (s.labels["check"], s.labels["feature"]): s.value
        for s in families["tripod_monitor_violation"].samples
    }
    assert violations[("domain_classifier_check", TEXT_COLUMN)] == 0 and set(violations.values()) == {0.0}
    assert families["tripod_monitor_records"].samples[0].value == 400
    assert families["tripod_monitor_malformed_lines"].samples[0].value == 2
    assert 0.3 < families["tripod_monitor_domain_auc"].samples[0].value < 0.6
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "No violation" in page and page.count('src="data:image/png;base64,') >= 4


def test_foreign_language_traffic_exits_1_and_names_the_checks(
    baseline_dir: Path,
    trained_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    capture = tmp_path / "capture"
    capture_texts(capture, trained_model_dir, foreign_reviews() * 4)
    hostile = '<script>alert("x")</script>'
    odd = [
        Exchange(
            JSON,
            json.dumps({"records": [{TEXT_COLUMN: "Une robe", hostile: 1}]}).encode(),
            JSON,
            b"[]",
            START,
        )
        for _ in range(10)
    ]
    write_capture(capture, odd, endpoint="reviews", variant="Canary")
    args = [
        "monitor",
        "run",
        "--baseline",
        str(baseline_dir),
        "--capture",
        str(capture),
        "--out",
        str(tmp_path / "out"),
    ]
    code, out, err = run_cli(args, monkeypatch, capsys)
    assert code == 1, err
    fired = {line.split(":")[1].strip() for line in out.splitlines() if line.startswith("violation: ")}
    assert {
        "oov_rate_check on review_body",
        "domain_classifier_check on review_body",
        "text_length_drift_check on review_body",
        f"extra_column_check on {hostile}",
    } <= fired
    violations = _json(tmp_path / "out" / "constraint_violations.json")["violations"]
    assert all(set(v) == {"feature_name", "constraint_check_type", "description"} for v in violations)
    assert {v["constraint_check_type"] for v in violations} >= {"oov_rate_check", "extra_column_check"}
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert hostile not in page and "&lt;script&gt;" in page
    report = _json(tmp_path / "out" / "report.json")
    assert report["read"]["exchanges_by_variant"] == {"reviews/AllTraffic": 320, "reviews/Canary": 10}
    assert report["domain_tests"][TEXT_COLUMN]["top_tokens_current"][0]["token"]


def test_capture_on_s3_reads_like_local(
    baseline_dir: Path,
    held_out_capture: Path,
    s3_bucket: str,
    s3_client: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bucket = s3_bucket.removeprefix("s3://")
    for path in held_out_capture.rglob("*.jsonl"):
        s3_client.upload_file(str(path), bucket, f"capture/{path.relative_to(held_out_capture).as_posix()}")
    s3_client.put_object(
        Bucket=bucket, Key="capture-old/reviews/AllTraffic/2026/12/02/10/x.jsonl", Body=b"{}\n"
    )
    args = ["monitor", "run", "--baseline", str(baseline_dir), "--capture", f"{s3_bucket}/capture"]
    code, _, err = run_cli(
        [*args, "--out", str(tmp_path), "--until", "2026-12-02T12:00:00Z"], monkeypatch, capsys
    )
    assert code == 0, err
    report = _json(tmp_path / "report.json")
    assert (
        report["read"]["records"] == 240
    )  # 10:00 up to 12:00, one every 30 s; capture-old/ is not under capture/
    assert report["read"]["malformed_lines"] == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--baseline", "{tmp}/nowhere", "--capture", "{capture}"], "no baseline at "),
        (["--baseline", "{baseline}", "--capture", "{tmp}/nothing-here"], "cannot read capture under "),
        (["--baseline", "{baseline}", "--capture", "{tmp}"], "no capture files"),
        (
            ["--baseline", "{baseline}", "--capture", "{capture}", "--since", "yesterday"],
            "--since must be an ISO-8601",
        ),
        (
            [
                "--baseline",
                "{baseline}",
                "--capture",
                "{capture}",
                "--since",
                "2026-12-02T12:00Z",
                "--until",
                "2026-12-02",
            ],
            "is not before --until",
        ),
        (
            ["--baseline", "{baseline}", "--capture", "{capture}", "--threshold", "domain_auc=2"],
            "--threshold: domain_auc",
        ),
        (
            ["--baseline", "{baseline}", "--capture", "{capture}", "--ground-truth", "{tmp}/gt.csv"],
            "needs the columns inferenceId and label",
        ),
        (
            ["--baseline", "{baseline}", "--capture", "{capture}", "--ground-truth", "{tmp}/none.csv"],
            "cannot read ground truth",
        ),
    ],
    ids=[
        "no-baseline",
        "missing-prefix",
        "no-capture-files",
        "bad-since",
        "empty-window",
        "bad-threshold",
        "gt-columns",
        "gt-missing",
    ],
)
def test_run_mistakes_are_one_line_and_exit_2(
    args: list[str],
    message: str,
    baseline_dir: Path,
    held_out_capture: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "gt.csv").write_text("id,truth\n1,positive\n", encoding="utf-8")
    filled = [a.format(tmp=tmp_path, baseline=baseline_dir, capture=held_out_capture) for a in args]
    code, _, err = run_cli(["monitor", "run", *filled, "--out", str(tmp_path / "out")], monkeypatch, capsys)
    assert code == 2
    assert message in error_line(err)


def test_baseline_mistakes_are_one_line_and_exit_2(
    trained_model_dir: Path,
    prepared_reviews: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    table = tmp_path / "table.csv"
    prepared_reviews.head(20).drop(columns=[TEXT_COLUMN]).to_csv(table, index=False)
    code, _, err = run_cli(
        ["monitor", "baseline", "--model", str(trained_model_dir), "--data", str(table)], monkeypatch, capsys
    )
    assert code == 2 and "column(s) 'review_body' not found" in error_line(err)
    broken = tmp_path / "model"
    shutil.copytree(trained_model_dir, broken)
    (broken / "classifier.onnx").write_bytes(b"tampered")
    code, _, err = run_cli(
        ["monitor", "baseline", "--model", str(broken), "--data", str(table)], monkeypatch, capsys
    )
    assert code == 2 and "classifier.onnx" in error_line(err)
    code, _, err = run_cli(["monitor", "baseline", "--model", str(trained_model_dir)], monkeypatch, capsys)
    assert code == 2 and "--data FILE" in error_line(err)


def test_a_model_directory_carries_its_own_hashed_baseline_and_monitor_run_verifies_it(
    trained_model_dir: Path,
    held_out_capture: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from services.artifacts import ModelArtifact

    manifest = _json(trained_model_dir / "manifest.json")
    files = {f"monitoring/{name}" for name in ("statistics.json", "constraints.json", "vocabulary.json")}
    assert files | {"monitoring/reference_sample.jsonl"} <= set(manifest["files"])
    args = ["monitor", "run", "--baseline", str(trained_model_dir), "--capture", str(held_out_capture)]
    code, out, err = run_cli([*args, "--out", str(tmp_path / "run")], monkeypatch, capsys)
    assert code == 0 and "0 violation(s)" in out, out + err
    artifact = ModelArtifact.from_directory(trained_model_dir)
    assert _json(tmp_path / "run" / "report.json")["model"] == {
        "name": manifest["name"],
        "version": manifest["version"],
        "manifest_sha256": artifact.manifest_digest,
    }

    tampered = tmp_path / "tampered"
    shutil.copytree(trained_model_dir, tampered)
    constraints = tampered / "monitoring" / "constraints.json"
    constraints.write_text(constraints.read_text().replace('"completeness": 1.0', '"completeness": 0.5'))
    args = ["monitor", "run", "--baseline", str(tampered), "--capture", str(held_out_capture)]
    code, _, err = run_cli([*args, "--out", str(tmp_path / "refused")], monkeypatch, capsys)
    assert code == 2 and "monitoring/constraints.json" in error_line(err), err

"""The model lifecycle on a local registry: ``tripod models list|show|promote|rollback`` read the versions and move
the ``latest`` link only to a version that verifies completely, recording each move in ``history.jsonl``; two
promotions at once take turns (the S3 registry is in tests/batch/test_registry_s3.py)."""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from harness.models import model_version_copy
from services.artifacts import MANIFEST_NAME, ModelArtifact, point_latest, read_manifest, write_manifest
from services.registry import HISTORY_NAME, LOCK_NAME, HistoryEntry, Registry, parse_history, previous_version
from tests.cli import error_line, run_cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def registry(trained_model_dir: Path, tmp_path: Path) -> Path:
    """``registry/reviews/{v1,v2}`` with ``latest -> v1``, as two runs of ``tripod train`` leave it after a
    promotion back to v1."""
    root = tmp_path / "registry"
    folder = root / "reviews"
    for version in ("v1", "v2"):
        model_version_copy(trained_model_dir, folder, version)
    point_latest(folder, folder / "v1")
    return root


def latest(registry: Path, name: str = "reviews") -> str:
    return os.readlink(registry / name / "latest")


def history_lines(registry: Path, name: str = "reviews") -> list[dict[str, object]]:
    path = registry / name / HISTORY_NAME
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def models(registry: Path, *args: str) -> list[str]:
    return ["models", *args, "--registry", str(registry)]


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


# --- list and show --------------------------------------------------------------------------------------------


def test_list_gives_every_version_with_its_manifest_summary_and_marks_the_current_one(
    registry: Path,
    trained_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model_version_copy(trained_model_dir, registry / "churn", "v1")  # no latest: listed, nothing current
    (registry / "README.md").write_text("not a model")
    (registry / ".cache").mkdir()

    code, out, err = run_cli(models(registry, "list", "--json"), monkeypatch, capsys)

    assert code == 0, err
    listing = json.loads(out)
    assert listing["registry"] == str(registry)
    assert [(m["name"], m["current"]) for m in listing["models"]] == [("churn", None), ("reviews", "v1")]
    reviews = listing["models"][1]["versions"]
    assert [(v["version"], v["current"]) for v in reviews] == [("v1", True), ("v2", False)]
    manifest = read_manifest(registry / "reviews" / "v2")
    artifact = ModelArtifact.from_directory(registry / "reviews" / "v2")
    assert reviews[1] == {
        "version": "v2",
        "current": False,
        "created_at": manifest.created_at,
        "problem_type": "multiclass",
        "family": "tfidf_linear",
        "metrics": {"accuracy": manifest.metrics["accuracy"], "macro_f1": manifest.metrics["macro_f1"]},
        "parity_passed": True,
        "explainer": True,
        "size": sum(
            (artifact.directory / name).stat().st_size
            for name in [*manifest.files, MANIFEST_NAME, "manifest.sha256"]
        ),
        "manifest_sha256": artifact.manifest_digest,
        "error": None,
    }

    code, out, err = run_cli(models(registry, "list", "--name", "reviews"), monkeypatch, capsys)

    assert code == 0, err
    header, *rows = out.splitlines()
    assert header.split() == [
        "NAME", "VERSION", "LATEST", "CREATED", "FAMILY", "METRICS", "PARITY", "EXPLAINER", "SIZE",
    ]  # fmt: skip
    assert [row.split()[:3] for row in rows] == [
        ["reviews", "v1", "*"],
        ["reviews", "v2", manifest.created_at],
    ]
    accuracy = f"accuracy={manifest.metrics['accuracy']:.4f}"
    assert all(f" {accuracy} macro_f1=" in row and "  passed  yes  " in row for row in rows), out


def test_list_shows_an_unreadable_manifest_in_its_row_and_the_others_as_usual(
    registry: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (registry / "reviews" / "v2" / MANIFEST_NAME).write_text("{}")

    code, out, err = run_cli(models(registry, "list"), monkeypatch, capsys)

    assert code == 0, err
    rows = out.splitlines()[1:]
    assert "passed" in rows[0]
    assert rows[1].split()[:4] == ["reviews", "v2", "-", "-"]
    assert rows[1].endswith(
        "unreadable: manifest.json does not match manifest.sha256: the manifest was modified after export"
    )


def test_show_summarises_the_current_version_by_default_and_gives_the_whole_manifest_as_json(
    registry: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(models(registry, "show", "--name", "reviews"), monkeypatch, capsys)

    assert code == 0, err
    manifest = read_manifest(registry / "reviews" / "v1")
    lines = out.splitlines()
    assert lines[0] == f"reviews v1 (current) at {registry / 'reviews' / 'v1'}"
    fields = {line[:12].strip(): line[13:] for line in lines[1:] if line[:12].strip()}
    assert fields["inputs"] == "review_body (string, text)"
    assert fields["labels"] == ", ".join(manifest.labels)
    assert fields["stages"] == "transformer transformer.onnx: review_body -> features"
    assert fields["metrics"].startswith(f"accuracy {manifest.metrics['accuracy']:.4f}, macro_f1 ")
    assert fields["parity"].startswith(f"passed: {manifest.parity.rows} rows, agreement ")
    assert fields["explainer"].startswith("linear (explainer.onnx), check passed on ")
    assert fields["data"] == manifest.data_fingerprint
    assert fields["candidate"].startswith("tfidf_linear {")
    assert f"onnxruntime {manifest.libraries['onnxruntime']}" in fields["libraries"]
    assert fields["manifest"].startswith(
        f"sha256 {ModelArtifact.from_directory(registry / 'reviews' / 'v1').manifest_digest}, {len(manifest.files) + 2} files, "
    )
    assert fields["history"] == "none"

    run_cli(models(registry, "promote", "--name", "reviews", "--version", "v2"), monkeypatch, capsys)
    code, out, err = run_cli(
        models(registry, "show", "--name", "reviews", "--version", "1", "--json"), monkeypatch, capsys
    )

    assert code == 0, err
    shown = json.loads(out)
    assert (shown["version"], shown["current"]) == ("v1", False)
    assert shown["manifest"] == json.loads((registry / "reviews" / "v1" / MANIFEST_NAME).read_text())
    assert [(entry["action"], entry["from"], entry["to"]) for entry in shown["history"]] == [
        ("promote", "v1", "v2")
    ]


# --- promote and rollback -------------------------------------------------------------------------------------


def test_promote_verifies_moves_the_link_and_records_who_when_and_why(
    registry: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TRIPOD_USER", "alice")
    before = datetime.now(UTC).replace(microsecond=0)

    code, out, err = run_cli(
        models(registry, "promote", "--name", "reviews", "--version", "v2", "--reason", "better macro-F1"),
        monkeypatch,
        capsys,
    )

    assert code == 0, err
    digest = ModelArtifact.from_directory(registry / "reviews" / "v2").manifest_digest
    files = sum(1 for path in (registry / "reviews" / "v2").rglob("*") if path.is_file())
    assert out.startswith(f"promoted reviews v2 (was v1): verified {files} files, ")
    assert out.endswith(f"manifest sha256 {digest[:12]}; recorded in {registry / 'reviews' / HISTORY_NAME}\n")
    assert latest(registry) == "v2"  # still a relative link, which the server follows
    assert ModelArtifact.from_directory(registry / "reviews" / "latest").manifest.version == "v2"
    (entry,) = history_lines(registry)
    assert list(entry) == ["time", "action", "from", "to", "who", "host", "reason"]
    assert entry | {"time": None} == {
        "time": None,
        "action": "promote",
        "from": "v1",
        "to": "v2",
        "who": "alice",
        "host": socket.gethostname(),
        "reason": "better macro-F1",
    }
    when = datetime.fromisoformat(str(entry["time"]))
    assert when.utcoffset() is not None and when.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert before <= when <= datetime.now(UTC)


def test_promoting_the_current_version_moves_and_records_nothing(
    registry: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(
        models(registry, "promote", "--name", "reviews", "--version", "v1"), monkeypatch, capsys
    )

    assert code == 0, err
    assert out == "reviews v1 is already the current version: nothing to promote\n"
    assert latest(registry) == "v1"
    assert history_lines(registry) == []


def test_rollback_goes_back_along_the_promotions_and_to_a_named_version(
    registry: Path,
    trained_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model_version_copy(trained_model_dir, registry / "reviews", "v3")
    for version in ("v2", "v3"):
        assert (
            run_cli(
                models(registry, "promote", "--name", "reviews", "--version", version), monkeypatch, capsys
            )[0]
            == 0
        )

    code, out, err = run_cli(
        models(registry, "rollback", "--name", "reviews", "--reason", "errors up"), monkeypatch, capsys
    )

    assert code == 0, err
    files = sum(1 for path in (registry / "reviews" / "v2").rglob("*") if path.is_file())
    assert out.startswith(f"rolled reviews back to v2 (was v3): verified {files} files, ")
    assert latest(registry) == "v2"
    code, _, err = run_cli(models(registry, "rollback", "--name", "reviews"), monkeypatch, capsys)
    assert code == 0, err
    assert latest(registry) == "v1"  # the promotion that led to v2 came from v1
    code, _, err = run_cli(
        models(registry, "rollback", "--name", "reviews", "--to", "v3"), monkeypatch, capsys
    )
    assert code == 0, err
    assert latest(registry) == "v3"
    assert [(e["action"], e["from"], e["to"], e["reason"]) for e in history_lines(registry)] == [
        ("promote", "v1", "v2", None),
        ("promote", "v2", "v3", None),
        ("rollback", "v3", "v2", "errors up"),
        ("rollback", "v2", "v1", None),
        ("rollback", "v1", "v3", None),
    ]


def test_rollback_after_an_export_moved_the_link_goes_to_the_version_before_it(
    registry: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    point_latest(registry / "reviews", registry / "reviews" / "v2")  # what tripod train does: no history line

    code, _, err = run_cli(models(registry, "rollback", "--name", "reviews"), monkeypatch, capsys)

    assert code == 0, err
    assert latest(registry) == "v1"
    assert [(e["from"], e["to"]) for e in history_lines(registry)] == [("v2", "v1")]


@pytest.mark.parametrize(
    ("history", "current", "expected"),
    [
        ([], "v3", "v2"),
        ([], "v1", None),
        ([("promote", "v1", "v3")], "v3", "v1"),
        ([("promote", "v1", "v3"), ("promote", "v3", "v2")], "v2", "v3"),
        ([("promote", "v1", "v2"), ("promote", "v2", "v3"), ("rollback", "v3", "v2")], "v2", "v1"),
        ([("promote", "v2", "v1")], "v3", "v2"),
        ([("promote", None, "v1")], "v1", None),
        ([("promote", "v1", "v3")], "../elsewhere", None),
    ],
    ids=[
        "no-history-newest-older",
        "no-history-oldest",
        "last-promotion",
        "promoted-back-to-an-older-one",
        "rollback-lines-are-skipped",
        "exported-after-the-history",
        "first-promotion-had-no-pointer",
        "foreign-link",
    ],
)
def test_previous_version(
    history: list[tuple[str, str | None, str]], current: str, expected: str | None
) -> None:
    entries = [
        HistoryEntry(time="t", action=action, from_=before, to=after, who="w", host="h")
        for action, before, after in history
    ]

    assert previous_version(entries, current, ["v1", "v2", "v3"]) == expected


# --- refusals ---------------------------------------------------------------------------------------------------


def _flip_classifier(version: Path) -> str:
    flip_a_byte(version / "classifier.onnx")
    return "classifier.onnx does not match its sha256 in the manifest: the model directory was modified after export"


def _edit_manifest(version: Path) -> str:
    path = version / MANIFEST_NAME
    document = json.loads(path.read_text())
    document["labels"].reverse()
    path.write_text(json.dumps(document, indent=2) + "\n")
    return "manifest.json does not match manifest.sha256: the manifest was modified after export"


def _resign_reversed_labels(version: Path) -> str:
    """A manifest edited and re-signed: every digest holds, only the graphs tell."""
    manifest = read_manifest(version)
    write_manifest(version, manifest.model_copy(update={"labels": manifest.labels[::-1]}))
    return f"inverse_label.onnx maps class indices 0..2 to {manifest.labels}, but the manifest's labels are {manifest.labels[::-1]}"


@pytest.mark.parametrize(
    "tamper",
    [_flip_classifier, _edit_manifest, _resign_reversed_labels],
    ids=["onnx-byte", "manifest", "graphs"],
)
@pytest.mark.parametrize("verb", ["promote", "rollback"])
def test_a_tampered_version_is_refused_in_one_line_and_the_link_stays(
    registry: Path,
    verb: str,
    tamper: object,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert callable(tamper)
    reason = tamper(registry / "reviews" / "v2")
    args = ["--version", "v2"] if verb == "promote" else ["--to", "v2"]

    code, _, err = run_cli(models(registry, verb, "--name", "reviews", *args), monkeypatch, capsys)

    assert code == 2
    assert error_line(err) == f"tripod: error: refusing to {verb} reviews v2: {reason}"
    assert "Traceback" not in err
    assert latest(registry) == "v1"
    assert not (registry / "reviews" / HISTORY_NAME).exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["list", "--name", "nope"], "no model named nope in {registry} (models: reviews)"),
        (["show", "--name", "nope"], "no model named nope in {registry} (models: reviews)"),
        (
            ["show", "--name", "reviews", "--version", "v9"],
            "reviews has no version v9 in {registry} (versions: v1, v2)",
        ),
        (
            ["promote", "--name", "reviews", "--version", "v9"],
            "reviews has no version v9 in {registry} (versions: v1, v2)",
        ),
        (
            ["promote", "--name", "reviews", "--version", "latest"],
            "'latest' is not a version: versions are v1, v2, …",
        ),
        (["promote", "--name", "../reviews", "--version", "v2"], "'../reviews' is not a model name"),
        (["promote", "--name", "reviews"], "Missing option '--version'."),
        (
            ["rollback", "--name", "reviews", "--to", "v1"],
            "reviews v1 is already the current version: nothing to roll back to",
        ),
        (
            ["rollback", "--name", "reviews", "--to", "v7"],
            "reviews has no version v7 in {registry} (versions: v1, v2)",
        ),
        (
            ["rollback", "--name", "reviews"],
            "no version of reviews before v1 in its history or its versions: name one with --to",
        ),
    ],
    ids=[
        "list-unknown-name",
        "show-unknown-name",
        "show-unknown-version",
        "promote-unknown-version",
        "promote-not-a-version",
        "promote-path-as-name",
        "promote-no-version",
        "rollback-to-current",
        "rollback-unknown-version",
        "rollback-nothing-before",
    ],
)
def test_a_mistake_is_one_line_and_exit_2_and_nothing_moves(
    registry: Path,
    args: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run_cli(models(registry, *args), monkeypatch, capsys)

    assert code == 2
    assert error_line(err) == f"tripod: error: {message.format(registry=registry)}"
    assert out == ""
    assert latest(registry) == "v1"
    assert not (registry / "reviews" / HISTORY_NAME).exists()


@pytest.mark.parametrize("verb", ["list", "show", "promote", "rollback"])
def test_a_missing_registry_is_one_line(
    tmp_path: Path, verb: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere"
    extra = {
        "list": [],
        "show": ["--name", "r"],
        "promote": ["--name", "r", "--version", "v1"],
        "rollback": ["--name", "r"],
    }

    code, _, err = run_cli(models(missing, verb, *extra[verb]), monkeypatch, capsys)

    assert code == 2
    assert error_line(err) == f"tripod: error: registry {missing} does not exist"
    assert not missing.exists()


def test_an_empty_registry_lists_no_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(models(tmp_path, "list"), monkeypatch, capsys)[:2] == (0, f"no models in {tmp_path}\n")
    code, out, _ = run_cli(models(tmp_path, "list", "--json"), monkeypatch, capsys)
    assert (code, json.loads(out)) == (0, {"registry": str(tmp_path), "models": []})


# --- the history and the lock ---------------------------------------------------------------------------------


def test_a_history_line_cut_short_is_skipped_and_the_next_one_starts_on_its_own_line(registry: Path) -> None:
    path = registry / "reviews" / HISTORY_NAME
    path.write_text(
        '{"time":"2026-01-01T00:00:00+00:00","action":"promote","from":"v2","to":"v1","who":"a","host":"h","reason":null}\n{"time":"2026-'
    )

    Registry(str(registry)).promote("reviews", "v2", who="bob")

    assert [(e.from_, e.to, e.who) for e in parse_history(path.read_bytes())] == [
        ("v2", "v1", "a"),
        ("v1", "v2", "bob"),
    ]
    assert path.read_text().splitlines()[1] == '{"time":"2026-'


def test_a_promotion_waits_for_the_lock_of_one_in_progress(registry: Path) -> None:
    held = (registry / "reviews" / LOCK_NAME).open("a+b")
    fcntl.flock(held, fcntl.LOCK_EX)
    promotion = threading.Thread(target=Registry(str(registry)).promote, args=("reviews", "v2"))
    promotion.start()
    try:
        time.sleep(0.5)
        assert promotion.is_alive() and latest(registry) == "v1"
    finally:
        held.close()
    promotion.join(timeout=60)
    assert not promotion.is_alive()
    assert latest(registry) == "v2"


_PROMOTE_IN_TURN = """
import sys
from services.registry import Registry
registry = Registry(sys.argv[1])
for version in sys.argv[3:]:
    registry.promote("reviews", version, who=sys.argv[2])
"""


def test_two_processes_promoting_at_once_leave_one_consistent_history_and_link(
    registry: Path, trained_model_dir: Path
) -> None:
    model_version_copy(trained_model_dir, registry / "reviews", "v3")
    orders = {"alice": ["v2", "v3", "v1", "v2"], "bob": ["v3", "v1", "v2", "v3"]}
    processes = [
        subprocess.Popen([sys.executable, "-c", _PROMOTE_IN_TURN, str(registry), who, *order], cwd=ROOT)
        for who, order in orders.items()
    ]
    assert [process.wait(timeout=120) for process in processes] == [0, 0]

    entries = parse_history((registry / "reviews" / HISTORY_NAME).read_bytes())
    assert len(entries) == len(
        (registry / "reviews" / HISTORY_NAME).read_text().splitlines()
    )  # every line whole
    assert entries[0].from_ == "v1"
    assert all(entry.from_ == before.to for before, entry in itertools.pairwise(entries))
    assert all(entry.from_ != entry.to for entry in entries)
    assert latest(registry) == entries[-1].to
    assert ModelArtifact.from_directory(registry / "reviews" / "latest").manifest.version == entries[-1].to

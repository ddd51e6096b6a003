"""One file, every path, one answer: ``/predict``, ``/invocations`` (CSV, JSON, JSON Lines), ``/v2`` infer,
``tripod predict`` and the in-process pipeline give identical labels and probabilities for the same records —
a review past the length cut, emoji, right-to-left scripts, combining marks, and CSV quoting with embedded
newlines included."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np

from harness.server import RunningServer
from services.runtime.pipeline import Pipeline
from services.runtime.schema import Records

REVIEWS = [
    "Awful cheap fabric, ripped after one wash. " * 500
    + " Love it, perfect fit!" * 300,  # 25,000+ characters
    "Love it 😍👗🔥 — the colour is 💯",
    "فستان جميل جدا والمقاس ممتاز",  # Arabic, right to left
    "שמלה יפה אבל הבד דק",  # Hebrew
    "Cafe\u0301 cre\u0300me, déjà vu: fits\u0327 well",  # combining marks (decomposed accents)
    'He said "wow",\nthen\r\nleft, "twice" — returned it',  # quotes, commas, LF and CRLF inside a field
    "",
    "Runs small; order a size up.",
]


def _as_float32(rows: list[list[float]]) -> np.ndarray:
    return np.asarray(rows, dtype=np.float64).astype(np.float32)


def _csv(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue()


def test_every_path_gives_the_same_labels_and_probabilities(
    server: RunningServer, pipeline: Pipeline, column: str, trained_model_dir: Path, tmp_path: Path
) -> None:
    assert len(REVIEWS[0]) > 25_000
    labels = list(pipeline.class_names)
    expected = pipeline.predict(Records([{column: text} for text in REVIEWS]))
    assert expected.labels is not None and expected.probabilities is not None
    want = (expected.labels.tolist(), expected.probabilities.astype(np.float32))
    answers: dict[str, tuple[list[str], np.ndarray]] = {}
    with httpx.Client(base_url=server.url, timeout=60) as client:
        rows = client.post("/predict", json={"records": [{column: t} for t in REVIEWS]}).json()
        answers["/predict"] = (
            [r["predicted_label"] for r in rows],
            _as_float32([[r["probabilities"][label] for label in labels] for r in rows]),
        )
        bodies = {
            "text/csv": _csv([[text] for text in REVIEWS]),
            "application/json": json.dumps({"instances": [{column: t} for t in REVIEWS]}),
            "application/jsonlines": "".join(json.dumps({column: t}) + "\n" for t in REVIEWS),
        }
        for content_type, body in bodies.items():
            response = client.post(
                "/invocations?keys=predicted_label,probabilities",
                content=body.encode(),
                headers={"content-type": content_type, "accept": "application/json"},
            )
            assert response.status_code == 200, (content_type, response.text)
            rows = response.json()["predictions"]
            answers[content_type] = (
                [r["predicted_label"] for r in rows],
                _as_float32([r["probabilities"] for r in rows]),
            )
        infer = {
            "inputs": [{"name": column, "shape": [len(REVIEWS), 1], "datatype": "BYTES", "data": REVIEWS}]
        }
        outputs = {
            o["name"]: o
            for o in client.post(f"/v2/models/{pipeline.manifest.name}/infer", json=infer).json()["outputs"]
        }
        answers["/v2"] = (
            outputs["predicted_label"]["data"],
            np.asarray(outputs["probabilities"]["data"], dtype=np.float32).reshape(len(REVIEWS), -1),
        )
    for suffix, content in {
        ".csv": _csv([["id", column], *([str(i), text] for i, text in enumerate(REVIEWS))]),
        ".jsonl": "".join(json.dumps({"id": i, column: t}) + "\n" for i, t in enumerate(REVIEWS)),
    }.items():
        source, destination = tmp_path / f"reviews{suffix}", tmp_path / f"answers{suffix}.jsonl"
        source.write_text(content, encoding="utf-8", newline="")
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "tripod.cli",
                "predict",
                "--model",
                str(trained_model_dir),
                "--input",
                str(source),
                "--output",
                str(destination),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        rows = [json.loads(line) for line in destination.read_text().splitlines()]
        answers[f"tripod predict {suffix}"] = (
            [r["predicted_label"] for r in rows],
            _as_float32([[r["probabilities"][label] for label in labels] for r in rows]),
        )
    for path, (got_labels, got_probabilities) in answers.items():
        assert got_labels == want[0], path
        np.testing.assert_array_equal(got_probabilities, want[1], err_msg=path)

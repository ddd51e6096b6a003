"""The Open Inference Protocol v2 over real HTTP, proven with the official ``tritonclient[http]`` client."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlparse

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from harness.server import RunningServer
from services.runtime.pipeline import Pipeline
from services.runtime.schema import Records

TEXTS = [
    "I love this dress, it fits perfectly.",
    "Cheap material, the zipper broke.",
    "It's fine.",
    "",
    "Très jolie 😍",
]


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(urlparse(server.url).netloc, network_timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def model_name(pipeline: Pipeline) -> str:
    assert pipeline.manifest is not None
    return pipeline.manifest.name


def _input(
    column: str, texts: list[str], *, binary: bool, shape: tuple[int, ...] | None = None
) -> triton.InferInput:
    data = np.array(texts, dtype=object).reshape(shape or (len(texts),))
    tensor = triton.InferInput(column, list(data.shape), "BYTES")
    tensor.set_data_from_numpy(data, binary_data=binary)
    return tensor


def test_health_and_metadata_through_tritonclient(
    client: triton.InferenceServerClient, pipeline: Pipeline, model_name: str, column: str
) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(model_name)
    assert pipeline.manifest is not None
    assert client.is_model_ready(model_name, model_version=pipeline.manifest.version)
    assert not client.is_model_ready("no-such-model")
    server = client.get_server_metadata()
    assert server["name"] == "tripod" and "binary_tensor_data" in server["extensions"]
    metadata = client.get_model_metadata(model_name)
    assert metadata["versions"] == [pipeline.manifest.version]
    assert metadata["inputs"] == [{"name": column, "datatype": "BYTES", "shape": [-1]}]
    assert metadata["outputs"] == [
        {"name": "predicted_label", "datatype": "BYTES", "shape": [-1]},
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(pipeline.class_names)]},
    ]
    with pytest.raises(InferenceServerException, match="no model 'no-such-model'") as caught:
        client.get_model_metadata("no-such-model")
    assert caught.value.status() == "404"


@pytest.mark.parametrize(
    ("binary_in", "binary_out", "shape"),
    [
        (True, None, None),
        (False, None, None),
        (False, False, None),
        (True, True, (5, 1)),
        (False, True, (5, 1)),
    ],
    ids=["client-defaults-binary", "json-in-binary-out", "all-json", "binary-n-by-1", "json-in-n-by-1"],
)
def test_tritonclient_infer_equals_the_in_process_runtime(
    client: triton.InferenceServerClient,
    pipeline: Pipeline,
    model_name: str,
    column: str,
    binary_in: bool,
    binary_out: bool | None,
    shape: tuple[int, ...] | None,
) -> None:
    outputs = (
        None
        if binary_out is None
        else [
            triton.InferRequestedOutput("predicted_label", binary_data=binary_out),
            triton.InferRequestedOutput("probabilities", binary_data=binary_out),
        ]
    )
    result = client.infer(
        model_name,
        [_input(column, TEXTS, binary=binary_in, shape=shape)],
        outputs=outputs,
        request_id="req-7",
    )
    expected = pipeline.predict(Records([[t] for t in TEXTS]))
    assert expected.labels is not None and expected.probabilities is not None
    assert result.get_response()["id"] == "req-7"
    labels = [
        label.decode() if isinstance(label, bytes) else label for label in result.as_numpy("predicted_label")
    ]
    assert labels == list(expected.labels)
    probabilities = result.as_numpy("probabilities")
    assert probabilities.dtype == np.float32 and probabilities.shape == (
        len(TEXTS),
        len(pipeline.class_names),
    )
    np.testing.assert_allclose(probabilities, expected.probabilities, atol=1e-6)


def test_only_the_requested_outputs_come_back(
    client: triton.InferenceServerClient, model_name: str, column: str
) -> None:
    result = client.infer(
        model_name,
        [_input(column, TEXTS[:2], binary=True)],
        outputs=[triton.InferRequestedOutput("probabilities", binary_data=False)],
    )
    assert [output["name"] for output in result.get_response()["outputs"]] == ["probabilities"]
    assert result.as_numpy("predicted_label") is None


def test_tritonclient_sees_schema_errors_as_422(
    client: triton.InferenceServerClient, model_name: str
) -> None:
    wrong = triton.InferInput("title", [1], "BYTES")
    wrong.set_data_from_numpy(np.array(["x"], dtype=object))
    with pytest.raises(InferenceServerException, match=r"unknown input\(s\) \['title'\]") as caught:
        client.infer(model_name, [wrong])
    assert caught.value.status() == "422"


BAD = [
    pytest.param(b"not json", {}, 400, "Invalid JSON", id="not-json"),
    pytest.param(b'{"inputs": "x"}', {}, 400, "inputs", id="inputs-not-a-list"),
    pytest.param(
        b'{"inputs": [{"name": "{col}", "datatype": "BYTES", "data": ["a"]}]}',
        {},
        400,
        "shape",
        id="shape-missing",
    ),
    pytest.param(
        b"{}",
        {"Inference-Header-Content-Length": "99"},
        400,
        "Inference-Header-Content-Length",
        id="header-length-past-the-body",
    ),
    pytest.param(
        b'{"inputs": [{"name": "{col}", "shape": [1], "datatype": "BYTES", '
        b'"parameters": {"binary_data_size": 9}}]}',
        {},
        400,
        "does not fit the binary data",
        id="binary-size-past-the-body",
    ),
    pytest.param(
        b'{"inputs": [{"name": "{col}", "shape": [1], "datatype": "BYTES", "data": ["a"]}], '
        b'"outputs": [{"name": "logits"}]}',
        {},
        400,
        "unknown output 'logits'",
        id="unknown-output",
    ),
    pytest.param(b'{"inputs": []}', {}, 422, "input '{col}' is required", id="no-inputs"),
    pytest.param(
        b'{"inputs": [{"name": "{col}", "shape": [1], "datatype": "FP32", "data": [1.0]}]}',
        {},
        422,
        "must be BYTES",
        id="wrong-datatype",
    ),
    pytest.param(
        b'{"inputs": [{"name": "{col}", "shape": [2], "datatype": "BYTES", "data": ["a"]}]}',
        {},
        422,
        "has shape [2] but 1 element(s)",
        id="shape-mismatch",
    ),
    pytest.param(
        b'{"inputs": [{"name": "{col}", "shape": [1, 2], "datatype": "BYTES", "data": ["a", "b"]}]}',
        {},
        422,
        "must have shape [n] or [n, 1]",
        id="two-columns",
    ),
    pytest.param(
        b'{"inputs": [{"name": "{col}", "shape": [2], "datatype": "BYTES", "data": ["a", 3]}]}',
        {},
        422,
        "record 1: input '{col}' must be a string, got int",
        id="element-not-a-string",
    ),
    pytest.param(
        b'{"inputs": [{"name": "{col}", "shape": [0], "datatype": "BYTES", "data": []}]}',
        {},
        422,
        "holds no records",
        id="zero-records",
    ),
]


@pytest.mark.parametrize(("body", "headers", "status", "message"), BAD)
def test_bad_infer_requests_get_a_json_error_and_the_server_stays_healthy(
    server: RunningServer,
    model_name: str,
    column: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    message: str,
) -> None:
    url = f"{server.url}/v2/models/{model_name}/infer"
    response = httpx.post(url, content=body.replace(b"{col}", column.encode()), headers=headers, timeout=30)
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"}
    assert message.replace("{col}", column) in response.json()["error"]
    good = {"inputs": [{"name": column, "shape": [1], "datatype": "BYTES", "data": ["great"]}]}
    assert httpx.post(url, json=good, timeout=30).status_code == 200


def test_binary_bytes_that_are_not_utf8_are_a_400(
    server: RunningServer, model_name: str, column: str
) -> None:
    header = (
        b'{"inputs": [{"name": "' + column.encode() + b'", "shape": [1], "datatype": "BYTES", '
        b'"parameters": {"binary_data_size": 6}}]}'
    )
    body = header + (2).to_bytes(4, "little") + b"\xff\xfe"
    response = httpx.post(
        f"{server.url}/v2/models/{model_name}/infer",
        content=body,
        headers={"Inference-Header-Content-Length": str(len(header))},
        timeout=30,
    )
    assert response.status_code == 400
    assert "record 0: input" in response.json()["error"] and "not UTF-8" in response.json()["error"]


@pytest.mark.parametrize(
    "path", ["/v2/models/nope", "/v2/models/nope/ready", "/v2/models/{name}/versions/v999"]
)
def test_unknown_models_and_versions_are_404_json(server: RunningServer, model_name: str, path: str) -> None:
    response = httpx.get(server.url + path.replace("{name}", model_name), timeout=10)
    assert response.status_code == 404
    assert "no model" in response.json()["error"]


def test_config_repository_index_and_statistics_answer_tritonclient(
    client: triton.InferenceServerClient, pipeline: Pipeline, model_name: str, column: str
) -> None:
    config = client.get_model_config(model_name)
    assert config["name"] == model_name and config["platform"] == "onnxruntime_onnx"
    assert config["input"] == [{"name": column, "data_type": "TYPE_STRING", "dims": [-1]}]
    assert [o["name"] for o in config["output"]] == ["predicted_label", "probabilities"]
    index = client.get_model_repository_index()
    assert index == [
        {"name": model_name, "version": pipeline.manifest.version, "state": "READY", "reason": ""}
    ]
    before = client.get_inference_statistics(model_name)["model_stats"][0]
    client.infer(model_name, [_input(column, TEXTS, binary=True)])
    after = client.get_inference_statistics(model_name)["model_stats"][0]
    assert after["name"] == model_name and after["version"] == pipeline.manifest.version
    assert after["execution_count"] == before["execution_count"] + 1
    assert after["inference_count"] == before["inference_count"] + len(TEXTS)
    assert after["inference_stats"]["compute_infer"]["ns"] > before["inference_stats"]["compute_infer"]["ns"]
    assert client.get_inference_statistics()["model_stats"][0]["name"] == model_name
    with pytest.raises(InferenceServerException, match="no model 'other'") as caught:
        client.get_model_config("other")
    assert caught.value.status() == "404"


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests_from_tritonclient_get_the_same_answers(
    client: triton.InferenceServerClient, model_name: str, column: str, algorithm: str
) -> None:
    plain = client.infer(model_name, [_input(column, TEXTS, binary=True)])
    packed = client.infer(
        model_name,
        [_input(column, TEXTS, binary=True)],
        request_compression_algorithm=algorithm,
        response_compression_algorithm=algorithm,
    )
    assert packed.as_numpy("predicted_label").tolist() == plain.as_numpy("predicted_label").tolist()
    np.testing.assert_array_equal(packed.as_numpy("probabilities"), plain.as_numpy("probabilities"))

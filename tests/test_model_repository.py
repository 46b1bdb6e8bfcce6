"""Triton config.pbtxt parsing and the KServe v2 binary tensor codec."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from oncoflow_inference.binary_tensors import TensorError, decode_request, encode_response
from oncoflow_inference.model_repository import ModelConfigError, load_model_config, parse_pbtxt

from oncoflow.config import REPO_ROOT


def test_shipped_demo_config_parses() -> None:
    config = load_model_config(REPO_ROOT / "inference" / "model_repository" / "nnunet_demo")
    assert config.name == "nnunet_demo" and config.backend == "python" and config.version == "1"
    assert [(t.name, t.datatype, t.dims) for t in config.inputs] == [
        ("IMAGE", "FP32", (-1, -1, -1)), ("SPACING_MM", "FP32", (3,))]
    assert [t.name for t in config.outputs] == ["MASK", "PROBABILITY"]
    assert config.parameters["expert"] == "nnunet" and config.parameters["use_mirroring"] == "false"


def test_comments_repeated_blocks_and_list_forms() -> None:
    fields = parse_pbtxt(
        '# heading\nname: "m" # trailing\nparameters { key: "a" value: { string_value: "1" } }\n'
        'parameters: { key: "b", value { string_value: "x \\"y\\"" } }\ninput [ { name: "I" dims: [1, -1] } ]'
    )
    assert [p["key"] for p in fields["parameters"]] == [["a"], ["b"]]
    assert fields["parameters"][1]["value"][0]["string_value"] == ['x "y"']
    assert fields["input"][0]["dims"] == [1, -1]


@pytest.mark.parametrize("text", ['name: "m" input [ { name: "I" ', "parameters {", 'name: "m" }'])
def test_malformed_configs_are_refused(text: str, tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.pbtxt").write_text(text)
    with pytest.raises(ModelConfigError, match="config.pbtxt"):
        load_model_config(tmp_path / "m")


def _binary_request(image: np.ndarray, declared_size: int | None = None) -> tuple[bytes, int]:
    raw = image.tobytes()
    header = json.dumps({"inputs": [{"name": "IMAGE", "datatype": "FP32", "shape": list(image.shape),
                                     "parameters": {"binary_data_size": declared_size or len(raw)}}],
                         "outputs": [{"name": "MASK", "parameters": {"binary_data": True}}]}).encode()
    return header + raw, len(header)


def test_binary_request_and_response_round_trip() -> None:
    image = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    body, length = _binary_request(image)
    request = decode_request(body, length)
    np.testing.assert_array_equal(request.inputs["IMAGE"], image)
    assert request.requested_outputs == {"MASK": True}
    mask = (image > 10).astype(np.uint8)
    payload, json_length = encode_response("m", "1", {"MASK": mask}, {"MASK": True}, parameters={"inference_s": 1})
    header = json.loads(payload[:json_length])
    assert header["outputs"][0]["parameters"]["binary_data_size"] == mask.nbytes
    np.testing.assert_array_equal(np.frombuffer(payload[json_length:], np.uint8).reshape(2, 3, 4), mask)


def test_size_mismatch_and_trailing_bytes_are_errors() -> None:
    image = np.zeros((2, 2, 2), np.float32)
    body, length = _binary_request(image, declared_size=16)
    with pytest.raises(TensorError, match="binary_data_size 16"):
        decode_request(body, length)
    body, length = _binary_request(image)
    with pytest.raises(TensorError, match="unexpected bytes"):
        decode_request(body + b"xx", length)
    with pytest.raises(TensorError, match="exceeds the body"):
        decode_request(body, len(body) + 1)

"""Triton config.pbtxt parsing, the repository layout, the expert registry and the KServe v2 binary tensor codec."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from oncoflow_inference.binary_tensors import (
    DATATYPES,
    TensorError,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)
from oncoflow_inference.expert_registry import build_models
from oncoflow_inference.experts.nnunet_expert import NnUNetExpert
from oncoflow_inference.model_repository import ModelConfigError, load_model_config, parse_pbtxt, scan_repository

from oncoflow.core.config import REPO_ROOT, Settings, load_settings

DEMO = REPO_ROOT / "inference" / "model_repository" / "nnunet_demo"


def test_shipped_demo_config_parses() -> None:
    config = load_model_config(DEMO)
    assert config.name == "nnunet_demo" and config.backend == "python" and config.max_batch_size == 0
    assert config.version == "1" and config.version_dir == DEMO / "1"
    assert [(t.name, t.datatype, t.dims) for t in config.inputs] == [
        ("IMAGE", "FP32", (-1, -1, -1)), ("SPACING_MM", "FP32", (3,))]
    assert [(t.name, t.datatype, t.dims) for t in config.outputs] == [
        ("MASK", "UINT8", (-1, -1, -1)), ("PROBABILITY", "FP16", (-1, -1, -1))]
    assert config.parameters == {"expert": "nnunet", "model_folder": "nnunet", "fold": "0", "use_mirroring": "false",
                                 "input_channels": "t1c", "skull_stripped": "true"}


def test_comments_repeated_blocks_and_list_forms() -> None:
    fields = parse_pbtxt(
        '# heading\nname: "m" # trailing "quoted" {comment}\n'
        'parameters { key: "a" value: { string_value: "1" } }\n'
        'parameters: { key: "b", value { string_value: "x \\"y\\" # not a comment" } };\n'
        "parameters [ { key: 'c' value: { string_value: \"\" } }, { key: \"d\" value: { string_value: \"4\" } } ]\n"
        "input [ { name: \"I\" dims: [1, -1] } ]\n\tinput {name:\"J\" data_type:TYPE_STRING dims:[ ]}\n"
        "instance_group [ { kind: KIND_CPU, count: 1 } ]"
    )
    assert [p["key"] for p in fields["parameters"]] == [["a"], ["b"], ["c"], ["d"]]
    assert fields["parameters"][1]["value"][0]["string_value"] == ['x "y" # not a comment']
    assert fields["input"][0]["dims"] == [1, -1] and fields["input"][1]["data_type"] == ["TYPE_STRING"]
    assert "dims" not in fields["input"][1] or fields["input"][1]["dims"] == []
    assert fields["instance_group"][0]["count"] == [1]


def _model(tmp_path: Path, text: str, name: str = "m", versions: tuple[str, ...] = ("1",)) -> Path:
    (tmp_path / name).mkdir()
    (tmp_path / name / "config.pbtxt").write_text(text)
    for version in versions:
        (tmp_path / name / version).mkdir()
    return tmp_path / name


def test_highest_numeric_version_and_all_parameters(tmp_path: Path) -> None:
    model = _model(tmp_path, 'name: "m" backend: "python"\n'
                             'parameters [ { key: "a" value: { string_value: "1" } },'
                             ' { key: "b" value: { string_value: "2" } } ]\n'
                             'parameters { key: "a" value: { string_value: "3" } }',
                   versions=("2", "10", "notes", "9"))
    config = load_model_config(model)
    assert config.version == "10" and config.parameters == {"a": "3", "b": "2"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('name: "m" input [ { name: "I" ', "'{' at line 1, column 19 is never closed"),
        ("parameters {", "'{' at line 1, column 12 is never closed"),
        ('name: "m" }', "line 1, column 11: expected a field name, found '}'"),
        ('name: "m"\ninput [ { name: "I" dims: [ 1 2 ] } ]',
         "line 2, column 31: expected ',' or ']' in the list dims, found '2'"),
        ('name: "m\n"', "line 1, column 7: unexpected character"),
        ('name "m"', "expected ':' between name and its value"),
        ('name: "other"', "name 'other' differs from the model directory 'm'"),
        ('input [ { name: "I" data_type: FP32 } ]', "input I: data_type must be TYPE_*"),
        ('input [ { name: "I" data_type: TYPE_COMPLEX } ]', "unsupported data_type TYPE_COMPLEX"),
        ('input [ { name: "I" data_type: TYPE_FP32 dims: [ 0 ] } ]', "dims must be positive integers or -1"),
        ("input: 3", "input must be a message"),
        ('parameters { key: "k" value: "v" }', "value must be a message"),
        ('parameters { key: "k" }', "parameter 'k' needs value"),
        ("max_batch_size: -2", "max_batch_size must be a non-negative integer"),
    ],
)
def test_malformed_configs_are_refused(tmp_path: Path, text: str, message: str) -> None:
    model = _model(tmp_path, text)
    with pytest.raises(ModelConfigError, match="config.pbtxt") as info:
        load_model_config(model)
    assert message in str(info.value)


def test_repository_keeps_broken_models_with_their_reason(tmp_path: Path) -> None:
    _model(tmp_path, 'name: "good" backend: "python"', name="good")
    _model(tmp_path, 'name: "broken" {', name="broken")
    _model(tmp_path, 'name: "unversioned"', name="unversioned", versions=())
    (tmp_path / "not_a_model").mkdir()
    configs, errors = scan_repository(tmp_path)
    assert [c.name for c in configs] == ["good"]
    assert set(errors) == {"broken", "unversioned"}
    assert "no numeric version directory" in errors["unversioned"]


def _settings(repository: Path, **env: str) -> Settings:
    return load_settings({"ONCOFLOW_MODEL_REPOSITORY": str(repository), "ONCOFLOW_HOME": str(repository), **env})


def _expert_config(name: str, extra: str = "") -> str:
    return (f'name: "{name}" backend: "python"\n'
            'parameters { key: "expert" value: { string_value: "nnunet" } }\n' + extra)


def test_registry_builds_experts_from_parameters(tmp_path: Path) -> None:
    _model(tmp_path, _expert_config("seg", 'parameters { key: "fold" value: { string_value: "all" } }\n'
                                           'parameters { key: "use_mirroring" value: { string_value: "TRUE" } }\n'
                                           'parameters { key: "tumour_labels" value: { string_value: "2, 3" } }'),
           name="seg")
    _model(tmp_path, _expert_config("other", 'parameters { key: "model_folder" value: { string_value: "w" } }'),
           name="other")
    _model(tmp_path, _expert_config("bad", 'parameters { key: "tumour_labels" value: { string_value: "x" } }'),
           name="bad")
    _model(tmp_path, 'name: "onnx" backend: "onnxruntime"', name="onnx")
    _model(tmp_path, 'name: "broken" [', name="broken")
    models = build_models(_settings(tmp_path, ONCOFLOW_MODEL_WEIGHTS="seg=/opt/brats"))
    seg, other = models["seg"].expert, models["other"].expert
    assert isinstance(seg, NnUNetExpert) and isinstance(other, NnUNetExpert)
    assert seg.model_folder == Path("/opt/brats")  # the override applies to the model it names only
    assert (seg.fold, seg.use_mirroring, seg.tumour_labels) == ("all", True, (2, 3))
    assert other.model_folder == tmp_path / "other" / "1" / "w" and other.fold == 0 and not other.use_mirroring
    assert not models["seg"].ready and models["seg"].reason == "not loaded yet"
    assert models["bad"].expert is None and "tumour_labels='x' must be comma-separated integers" in str(
        models["bad"].reason)
    assert "backend 'onnxruntime' is not served here" in str(models["onnx"].reason)
    assert models["broken"].config is None and "config.pbtxt" in str(models["broken"].reason)


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
    assert request.inputs["IMAGE"].flags.writeable and request.requested_outputs == {"MASK": True}
    mask = (image > 10).astype(np.uint8)
    payload, json_length = encode_response("m", "1", {"MASK": mask}, {"MASK": True}, parameters={"inference_s": 1})
    assert json_length is not None
    header = json.loads(payload[:json_length])
    assert header["outputs"][0]["parameters"]["binary_data_size"] == mask.nbytes
    assert header["parameters"] == {"inference_s": 1}
    np.testing.assert_array_equal(np.frombuffer(payload[json_length:], np.uint8).reshape(2, 3, 4), mask)


@pytest.mark.parametrize("datatype", sorted(DATATYPES))
def test_every_datatype_round_trips_binary_and_json(datatype: str) -> None:
    if datatype == "BYTES":  # JSON carries BYTES as UTF-8 text; binary carries any bytes (checked below)
        array = np.array([[b"tumour", b""], [b"\x00", "é".encode()]], dtype=np.object_)
        raw = np.array([b"\xff\x00", b"x"], dtype=np.object_)
        body, length = encode_request({"R": raw})
        np.testing.assert_array_equal(decode_request(body, length).inputs["R"], raw)
    else:
        array = (np.arange(6) % 2 == 0) if datatype == "BOOL" else np.arange(6)
        array = array.astype(DATATYPES[datatype]).reshape(2, 3)
    body, length = encode_request({"T": array, "U": array[:1]})
    decoded = decode_request(body, length).inputs
    assert decoded["T"].dtype == DATATYPES[datatype] and decoded["T"].shape == array.shape
    np.testing.assert_array_equal(decoded["T"], array)
    np.testing.assert_array_equal(decoded["U"], array[:1])
    for binary in (True, False):
        payload, json_length = encode_response("m", "1", {"T": array}, {"T": binary})
        header, outputs = decode_response(payload, json_length)
        assert header["outputs"][0]["datatype"] == datatype
        np.testing.assert_array_equal(outputs["T"], array)


def test_json_inputs_and_default_binary_output() -> None:
    body = json.dumps({"id": "q", "parameters": {"binary_data_output": True},
                       "inputs": [{"name": "SPACING_MM", "datatype": "FP32", "shape": [3], "data": [3, 1.5, 1.5]},
                                  {"name": "N", "datatype": "INT32", "shape": [2, 2], "data": [[1, 2], [3, 4]]}]})
    request = decode_request(body.encode(), None)
    assert request.inputs["SPACING_MM"].dtype == np.float32 and request.inputs["N"].shape == (2, 2)
    assert request.requested_outputs == {} and request.binary_data_output and request.request_id == "q"
    big_endian = np.arange(3, dtype=">f4")  # sent little-endian on the wire whatever the host order
    body2, length2 = encode_request({"X": big_endian})
    np.testing.assert_array_equal(decode_request(body2, length2).inputs["X"], [0, 1, 2])


def test_size_mismatch_and_malformed_bodies_are_clear_errors() -> None:
    image = np.zeros((2, 2, 2), np.float32)
    body, length = _binary_request(image, declared_size=16)
    with pytest.raises(TensorError, match="binary_data_size 16 but shape \\[2, 2, 2\\] of FP32 needs 32 bytes"):
        decode_request(body, length)
    body, length = _binary_request(image)
    with pytest.raises(TensorError, match="2 bytes follow the declared inputs"):
        decode_request(body + b"xx", length)
    with pytest.raises(TensorError, match="only 30 bytes remain"):
        decode_request(body[:-2], length)
    with pytest.raises(TensorError, match="outside the body"):
        decode_request(body, len(body) + 1)
    with pytest.raises(TensorError, match="request JSON is invalid"):
        decode_request(body, length - 1)
    cases = [
        ({"inputs": [{"name": "A", "datatype": "FP32", "shape": [2], "data": [1, 2, 3]}]}, "holds 3 values"),
        ({"inputs": [{"name": "A", "datatype": "FP32", "shape": [2], "data": ["a", "b"]}]}, "not a list of FP32"),
        ({"inputs": [{"name": "A", "datatype": "FP31", "shape": [2], "data": [1, 2]}]}, "datatype 'FP31'"),
        ({"inputs": [{"name": "A", "datatype": "FP32", "shape": [-1], "data": [1]}]}, "non-negative integers"),
        ({"inputs": [{"name": "A", "datatype": "FP32", "shape": [1]}]}, "neither 'data' nor"),
        ({"inputs": [{"name": "A", "datatype": "FP32", "shape": [1], "data": [1]}] * 2}, "given twice"),
        ({"inputs": {}}, "'inputs' list"),
    ]
    for header, message in cases:
        with pytest.raises(TensorError, match=message):
            decode_request(json.dumps(header).encode(), None)
    bytes_header = json.dumps({"inputs": [{"name": "S", "datatype": "BYTES", "shape": [2],
                                           "parameters": {"binary_data_size": 9}}]}).encode()
    one_element = (5).to_bytes(4, "little") + b"hello"
    with pytest.raises(TensorError, match="holds 1 elements, its shape needs 2"):
        decode_request(bytes_header + one_element, len(bytes_header))

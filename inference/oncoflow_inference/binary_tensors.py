"""KServe v2 tensors: datatypes, and the binary tensor data extension (Triton's wire format).

A request or response body is a JSON header followed by raw tensor buffers, in the
order of the tensors that declare ``parameters.binary_data_size``. The JSON length
travels in the ``Inference-Header-Content-Length`` HTTP header.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

HEADER_LENGTH = "Inference-Header-Content-Length"

DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
}
_NAMES = {dtype: name for name, dtype in DATATYPES.items()}


class TensorError(ValueError):
    """The request's tensors are malformed; answered with HTTP 400."""


def datatype_of(array: np.ndarray) -> str:
    try:
        return _NAMES[array.dtype]
    except KeyError as exc:
        raise TensorError(f"unsupported dtype {array.dtype}") from exc


@dataclass(frozen=True)
class InferRequest:
    inputs: dict[str, np.ndarray]
    requested_outputs: dict[str, bool]  # name -> wants binary data; empty means "all, as JSON"
    request_id: str
    parameters: dict[str, Any]


def decode_request(body: bytes, header_length: int | None) -> InferRequest:
    """Parse an infer request body (JSON alone, or JSON + binary buffers)."""
    json_end = len(body) if header_length is None else header_length
    if json_end > len(body):
        raise TensorError(f"{HEADER_LENGTH} {json_end} exceeds the body of {len(body)} bytes")
    try:
        header = json.loads(body[:json_end])
    except ValueError as exc:
        raise TensorError(f"request JSON is invalid: {exc}") from exc
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
        raise TensorError("request JSON must be an object with an 'inputs' list")

    offset = json_end
    inputs: dict[str, np.ndarray] = {}
    for spec in header["inputs"]:
        name, datatype, shape = spec.get("name"), spec.get("datatype"), spec.get("shape")
        if not isinstance(name, str) or datatype not in DATATYPES or not isinstance(shape, list):
            raise TensorError(f"input {name!r}: needs a name, a supported datatype and a shape (got {datatype!r})")
        if any(not isinstance(d, int) or d < 0 for d in shape):
            raise TensorError(f"input {name}: invalid shape {shape}")
        dtype = DATATYPES[datatype]
        expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        size = (spec.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            if size != expected:
                raise TensorError(
                    f"input {name}: binary_data_size {size} but shape {shape} {datatype} needs {expected}"
                )
            if offset + size > len(body):
                raise TensorError(f"input {name}: body ends before its {size} bytes")
            array = np.frombuffer(body, dtype=dtype, count=int(np.prod(shape)), offset=offset).reshape(shape)
            offset += size
        elif "data" in spec:
            array = np.asarray(spec["data"], dtype=dtype).reshape(shape)
        else:
            raise TensorError(f"input {name}: neither binary data nor 'data'")
        inputs[name] = array
    if offset != len(body):
        raise TensorError(f"{len(body) - offset} unexpected bytes after the declared inputs")

    default_binary = bool((header.get("parameters") or {}).get("binary_data_output", False))
    requested = {
        o["name"]: bool((o.get("parameters") or {}).get("binary_data", default_binary))
        for o in header.get("outputs") or []
    }
    return InferRequest(inputs, requested, str(header.get("id", "")), header.get("parameters") or {})


def encode_response(
    model_name: str,
    model_version: str,
    outputs: dict[str, np.ndarray],
    binary: dict[str, bool],
    request_id: str = "",
    parameters: dict[str, Any] | None = None,
) -> tuple[bytes, int | None]:
    """Build the response body; returns it and the JSON length (``None`` when all JSON)."""
    specs, buffers = [], []
    for name, array in outputs.items():
        spec: dict[str, Any] = {"name": name, "datatype": datatype_of(array), "shape": list(array.shape)}
        if binary.get(name, False):
            raw = np.ascontiguousarray(array).tobytes()
            spec["parameters"] = {"binary_data_size": len(raw)}
            buffers.append(raw)
        else:
            spec["data"] = array.reshape(-1).tolist()
        specs.append(spec)
    header: dict[str, Any] = {"model_name": model_name, "model_version": model_version, "outputs": specs}
    if request_id:
        header["id"] = request_id
    if parameters:
        header["parameters"] = parameters
    head = json.dumps(header).encode()
    if not buffers:
        return head, None
    return head + b"".join(buffers), len(head)

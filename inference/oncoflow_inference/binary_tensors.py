"""KServe v2 tensors: datatypes, and the binary tensor data extension (Triton's wire format).

An infer request or response body is a JSON header, optionally followed by raw
tensor buffers concatenated in the order of the tensors whose ``parameters``
declare ``binary_data_size`` (bytes). The JSON length (bytes) travels in the
``Inference-Header-Content-Length`` HTTP header; without it the whole body is JSON.
Tensors without binary data carry their values in ``data`` (row-major, flat or nested).

Buffers are raw little-endian row-major element bytes; ``BYTES`` elements are each
a 4-byte little-endian length followed by that many bytes.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

HEADER_LENGTH = "Inference-Header-Content-Length"

#: KServe v2 datatype name -> numpy dtype (``BYTES`` is an object array of ``bytes``).
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
    "BYTES": np.dtype(np.object_),
}
_NAMES = {dtype.newbyteorder("<"): name for name, dtype in DATATYPES.items() if name != "BYTES"}


class TensorError(ValueError):
    """The request's tensors are malformed; the server answers HTTP 400 with this message."""


def datatype_of(array: np.ndarray) -> str:
    """The KServe datatype name of ``array`` (object, ``bytes`` or ``str`` arrays are ``BYTES``)."""
    if array.dtype.kind in "OSU":
        return "BYTES"
    try:
        return _NAMES[array.dtype.newbyteorder("<")]
    except KeyError as exc:
        raise TensorError(f"dtype {array.dtype} has no KServe v2 datatype") from exc


def _element_count(shape: list[int]) -> int:
    return int(np.prod(shape, dtype=np.int64))


def _deserialize_bytes(raw: bytes | memoryview, count: int, name: str) -> npt.NDArray[np.object_]:
    """``count`` length-prefixed elements of a BYTES buffer."""
    items: list[bytes] = []
    offset = 0
    view = memoryview(raw)
    while offset < len(view):
        if offset + 4 > len(view):
            raise TensorError(f"input {name}: BYTES buffer ends inside an element length")
        (length,) = struct.unpack_from("<I", view, offset)
        offset += 4
        if offset + length > len(view):
            raise TensorError(f"input {name}: BYTES element of {length} bytes overruns its buffer")
        items.append(bytes(view[offset:offset + length]))
        offset += length
    if len(items) != count:
        raise TensorError(f"input {name}: BYTES buffer holds {len(items)} elements, its shape needs {count}")
    array = np.empty(count, dtype=np.object_)
    array[:] = items
    return array


def _serialize_bytes(array: np.ndarray) -> bytes:
    parts = []
    for item in array.reshape(-1):
        raw = item if isinstance(item, bytes) else str(item).encode("utf-8")
        parts.append(struct.pack("<I", len(raw)) + raw)
    return b"".join(parts)


def tensor_bytes(array: np.ndarray) -> bytes:
    """The binary-extension buffer of ``array`` (little-endian, row-major)."""
    if datatype_of(array) == "BYTES":
        return _serialize_bytes(array)
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


@dataclass(frozen=True)
class InferRequest:
    """A decoded infer request.

    ``requested_outputs`` maps each output named in the request to whether it
    wants binary data; it is empty when the request names none (then every
    output is returned, binary when ``binary_data_output`` is true).
    """

    inputs: dict[str, np.ndarray]
    requested_outputs: dict[str, bool]
    binary_data_output: bool = False
    request_id: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)


def _json_data(spec: Mapping[str, Any], name: str, datatype: str, shape: list[int]) -> np.ndarray:
    data = spec["data"]
    count = _element_count(shape)
    try:
        if datatype == "BYTES":
            flat = np.asarray(data, dtype=np.object_).reshape(-1)
            array = np.empty(flat.size, dtype=np.object_)
            array[:] = [x.encode("utf-8") if isinstance(x, str) else bytes(x) for x in flat]
        else:
            array = np.asarray(data, dtype=DATATYPES[datatype]).reshape(-1)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TensorError(f"input {name}: 'data' is not a list of {datatype} values ({exc})") from exc
    if array.size != count:
        raise TensorError(f"input {name}: 'data' holds {array.size} values, shape {shape} needs {count}")
    return array.reshape(shape)


def decode_request(body: bytes, header_length: int | None) -> InferRequest:
    """Parse an infer request body: JSON alone, or JSON + binary buffers in input order.

    Every binary input must declare ``binary_data_size`` equal to what its shape
    and datatype need (BYTES: the buffer must hold exactly the shape's element
    count), and the buffers must use up the body exactly. Arrays are returned as
    writable copies in native byte order. Raises :class:`TensorError`.
    """
    json_end = len(body) if header_length is None else header_length
    if json_end < 0 or json_end > len(body):
        raise TensorError(f"{HEADER_LENGTH} {json_end} is outside the body of {len(body)} bytes")
    try:
        header = json.loads(body[:json_end])
    except ValueError as exc:
        raise TensorError(f"request JSON is invalid: {exc}") from exc
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
        raise TensorError("request JSON must be an object with an 'inputs' list")
    parameters = header.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise TensorError("request 'parameters' must be an object")

    offset = json_end
    inputs: dict[str, np.ndarray] = {}
    for spec in header["inputs"]:
        if not isinstance(spec, dict):
            raise TensorError("every entry of 'inputs' must be an object")
        name, datatype, shape = spec.get("name"), spec.get("datatype"), spec.get("shape")
        if not isinstance(name, str) or not name:
            raise TensorError("an input has no name")
        if name in inputs:
            raise TensorError(f"input {name} is given twice")
        if datatype not in DATATYPES:
            raise TensorError(f"input {name}: datatype {datatype!r} is not one of {', '.join(DATATYPES)}")
        if not isinstance(shape, list) or any(type(d) is not int or d < 0 for d in shape):
            raise TensorError(f"input {name}: shape must be a list of non-negative integers, got {shape!r}")
        size = (spec.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            if type(size) is not int or size < 0:
                raise TensorError(f"input {name}: binary_data_size must be a non-negative integer, got {size!r}")
            if offset + size > len(body):
                raise TensorError(
                    f"input {name}: binary_data_size {size} but only {len(body) - offset} bytes remain in the body"
                )
            count = _element_count(shape)
            if datatype == "BYTES":
                array = _deserialize_bytes(memoryview(body)[offset:offset + size], count, name).reshape(shape)
            else:
                dtype = DATATYPES[datatype]
                expected = count * dtype.itemsize
                if size != expected:
                    raise TensorError(
                        f"input {name}: binary_data_size {size} but shape {shape} of {datatype} needs {expected} bytes"
                    )
                wire = np.frombuffer(body, dtype=dtype.newbyteorder("<"), count=count, offset=offset)
                array = wire.astype(dtype).reshape(shape)  # a writable, aligned, native copy
            offset += size
        elif "data" in spec:
            array = _json_data(spec, name, datatype, shape)
        else:
            raise TensorError(f"input {name}: has neither 'data' nor parameters.binary_data_size")
        inputs[name] = array
    if offset != len(body):
        raise TensorError(f"{len(body) - offset} bytes follow the declared inputs' binary data")

    binary_default = bool(parameters.get("binary_data_output", False))
    requested: dict[str, bool] = {}
    outputs = header.get("outputs") or []
    if not isinstance(outputs, list):
        raise TensorError("request 'outputs' must be a list")
    for output in outputs:
        if not isinstance(output, dict) or not isinstance(output.get("name"), str):
            raise TensorError("every entry of 'outputs' must be an object with a 'name'")
        output_parameters = output.get("parameters") or {}
        requested[output["name"]] = bool(output_parameters.get("binary_data", binary_default))
    request_id = header.get("id", "")
    return InferRequest(inputs, requested, binary_default, str(request_id), parameters)


def _json_values(array: np.ndarray) -> list[Any]:
    flat = array.reshape(-1)
    if datatype_of(array) == "BYTES":
        return [x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x) for x in flat]
    return flat.tolist()


def encode_response(
    model_name: str,
    model_version: str,
    outputs: Mapping[str, np.ndarray],
    binary: Mapping[str, bool],
    request_id: str = "",
    parameters: Mapping[str, Any] | None = None,
) -> tuple[bytes, int | None]:
    """Build a response body; ``binary[name]`` chooses raw bytes over JSON ``data`` per output.

    Returns the body and the JSON header's length in bytes (for the
    ``Inference-Header-Content-Length`` header), or ``None`` when the body is all JSON.
    """
    specs: list[dict[str, Any]] = []
    buffers: list[bytes] = []
    for name, array in outputs.items():
        spec: dict[str, Any] = {"name": name, "datatype": datatype_of(array), "shape": list(array.shape)}
        if binary.get(name, False):
            raw = tensor_bytes(array)
            spec["parameters"] = {"binary_data_size": len(raw)}
            buffers.append(raw)
        else:
            spec["data"] = _json_values(array)
        specs.append(spec)
    header: dict[str, Any] = {"model_name": model_name, "model_version": model_version, "outputs": specs}
    if request_id:
        header["id"] = request_id
    if parameters:
        header["parameters"] = dict(parameters)
    head = json.dumps(header, separators=(",", ":")).encode()
    if not buffers:
        return head, None
    return head + b"".join(buffers), len(head)


def encode_request(
    inputs: Mapping[str, np.ndarray], outputs: Mapping[str, bool] | None = None, request_id: str = ""
) -> tuple[bytes, int]:
    """Build a binary infer request (all inputs binary); the inverse of :func:`decode_request`.

    For tests and tools; production clients use ``tritonclient``.
    """
    specs, buffers = [], []
    for name, array in inputs.items():
        raw = tensor_bytes(array)
        specs.append({"name": name, "datatype": datatype_of(array), "shape": list(array.shape),
                      "parameters": {"binary_data_size": len(raw)}})
        buffers.append(raw)
    header: dict[str, Any] = {"inputs": specs}
    if outputs is not None:
        header["outputs"] = [{"name": n, "parameters": {"binary_data": b}} for n, b in outputs.items()]
    if request_id:
        header["id"] = request_id
    head = json.dumps(header).encode()
    return head + b"".join(buffers), len(head)


def decode_response(body: bytes, header_length: int | None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Parse a response body into its JSON header and named output arrays (for tests and tools)."""
    json_end = len(body) if header_length is None else header_length
    header = json.loads(body[:json_end])
    offset = json_end
    arrays: dict[str, np.ndarray] = {}
    for spec in header.get("outputs", []):
        shape, datatype = spec["shape"], spec["datatype"]
        size = (spec.get("parameters") or {}).get("binary_data_size")
        if size is None:
            arrays[spec["name"]] = _json_data(spec, spec["name"], datatype, shape)
            continue
        chunk = body[offset:offset + size]
        if datatype == "BYTES":
            arrays[spec["name"]] = _deserialize_bytes(chunk, _element_count(shape), spec["name"]).reshape(shape)
        else:
            dtype = DATATYPES[datatype]
            arrays[spec["name"]] = np.frombuffer(chunk, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(shape)
        offset += size
    return header, arrays

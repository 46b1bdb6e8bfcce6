"""The plugin's only way to the inference worker: NVIDIA's ``tritonclient[http]``, by URL.

The worker (``oncoflow_inference``) and a real Triton server serving the same model
repository speak the same KServe v2 protocol, so swapping one for the other is a
change of ``ONCOFLOW_WORKER_URL`` alone. Tensors travel with the binary extension.

What a model is for is read from its metadata and its configuration (``GET /v2/models/{m}/config``,
whose parameters the worker completes from the loaded model), not configured twice:

* a **segmenter** (nnU-Net) takes ``IMAGE`` FP32 ``(slice, row, column)`` and
  ``SPACING_MM`` FP32 ``(3,)`` and gives ``MASK`` UINT8 (and ``PROBABILITY`` FP16);
* a **promptable** model (SAM2) also takes ``BOXES`` / ``POINTS`` (see
  :mod:`oncoflow.core.prompts`) and gives ``MASK``;
* a **localiser** (MedGemma) gives ``BOXES`` and ``FINDINGS`` (BYTES), no mask;
* a **brain-mask** model (deepbet) also takes ``AFFINE_LPS`` and gives ``BRAIN_MASK``.

Parameters the pipeline reads: ``input_channels`` (the sequences the model takes, in order, e.g.
``"t1,t1c,t2,flair"``; a model that names none takes the study's reference sequence) and
``skull_stripped`` (``"true"``: the model wants the brain alone, everything outside the brain mask zero) and
``output_labels`` (what ``MASK`` holds: ``"1:oedema,2:necrosis,3:enhancing"`` for a compartment map, or the
region of a binary mask, ``"tumour core"`` by default; :mod:`oncoflow.core.tumour_compartments`). A compartment
model's ``PROBABILITY`` is ``(3, slice, row, column)``: P(ET), P(TC), P(WT).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.client import HTTPException
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from oncoflow.core.mr_channels import Channel, parse_channels
from oncoflow.core.prompts import (
    BOXES,
    POINTS,
    SliceBox,
    SlicePoint,
    boxes_from_tensor,
    boxes_to_tensor,
    points_to_tensor,
)
from oncoflow.core.tumour_compartments import Compartment, Region, parse_output_labels
from oncoflow.core.volume import Volume
from oncoflow.dicom.volume_builder import InputError

ModelRole = Literal["segmenter", "promptable", "localiser", "brain-mask", "unknown"]
# What a dropped or refused connection raises under tritonclient's geventhttpclient transport:
# socket errors, and http.client's HTTPException family (geventhttpclient's HTTPConnectionClosed).
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (OSError, ConnectionError, HTTPException)


class WorkerUnavailable(RuntimeError):
    """The worker could not answer now (down, restarting, model still loading): retry later."""


class ModelUnavailable(RuntimeError):
    """The worker is up but reports the model cannot be served; the message gives its reason."""


@dataclass(frozen=True)
class ModelInfo:
    """A model as the worker describes it: its state and its tensors."""

    name: str
    state: Literal["READY", "LOADING", "UNAVAILABLE"]
    reason: str | None  # why it is not READY
    inputs: frozenset[str] = frozenset()
    outputs: frozenset[str] = frozenset()
    parameters: dict[str, str] = field(default_factory=dict)  # the configuration's, as the worker gives them
    image_rank: int = 3  # dimensions of IMAGE: 3 (slice, row, column) or 4 (channel first)

    @property
    def input_channels(self) -> tuple[Channel, ...]:
        """The sequences the model takes, in its channel order; empty: the study's reference sequence."""
        known, _ = parse_channels(c for c in self.parameters.get("input_channels", "").split(",") if c.strip())
        return tuple(known)

    @property
    def compartments(self) -> frozenset[Compartment]:
        """The compartments its ``MASK`` holds (a compartment map); empty for a binary mask."""
        mapping, _, _ = parse_output_labels(self.parameters.get("output_labels", ""))
        return frozenset(mapping.values())

    @property
    def binary_region(self) -> Region | None:
        """The region a binary ``MASK`` is (``TC`` unless the model says otherwise); ``None`` for a compartment map."""
        _, region, _ = parse_output_labels(self.parameters.get("output_labels", ""))
        return None if self.compartments else (region or "TC")

    @property
    def skull_stripped(self) -> bool:
        """The model wants the brain alone (trained on skull-stripped images, as BraTS models are)."""
        return self.parameters.get("skull_stripped", "false").strip().lower() in ("true", "1", "yes")

    @property
    def role(self) -> ModelRole:
        if "BRAIN_MASK" in self.outputs:
            return "brain-mask"
        if BOXES in self.outputs:
            return "localiser"
        if "MASK" in self.outputs and (BOXES in self.inputs or POINTS in self.inputs):
            return "promptable"
        return "segmenter" if "MASK" in self.outputs else "unknown"


@dataclass(frozen=True)
class SegmentationResult:
    mask: npt.NDArray[np.uint8]  # a binary mask or a compartment map, as the model's output_labels say
    probability: npt.NDArray[np.float16] | None  # (slice, row, column), or (3, ...) P(ET), P(TC), P(WT)
    model_name: str
    model_version: str
    inference_s: float  # worker-side model time, from the response parameters when given
    round_trip_s: float  # request sent to response decoded, as the plugin saw it


@dataclass(frozen=True)
class BrainMaskResult:
    mask: npt.NDArray[np.uint8]  # 1 = brain, on the input volume's grid
    model_name: str
    model_version: str
    inference_s: float
    round_trip_s: float


@dataclass(frozen=True)
class LocalisationResult:
    boxes: tuple[SliceBox, ...]
    findings: str
    model_name: str
    model_version: str
    inference_s: float
    round_trip_s: float


class WorkerClient:
    """Calls the models of one KServe v2 server."""

    def __init__(self, url: str, timeout_s: float) -> None:
        self.url = url
        self.timeout_s = timeout_s

    def _client(self) -> triton_http.InferenceServerClient:
        return triton_http.InferenceServerClient(self.url, connection_timeout=10.0, network_timeout=self.timeout_s)

    def describe(self, names: Sequence[str]) -> dict[str, ModelInfo]:
        """State, reason and tensors of each named model; raises :class:`WorkerUnavailable`."""
        client = self._client()
        try:
            index = {str(e.get("name")): e for e in client.get_model_repository_index()}
            described: dict[str, ModelInfo] = {}
            for name in names:
                entry = index.get(name)
                if entry is None:
                    described[name] = ModelInfo(name, "UNAVAILABLE", "not in the worker's model repository")
                    continue
                state = str(entry.get("state") or "UNAVAILABLE").upper()
                if state not in ("READY", "LOADING"):
                    described[name] = ModelInfo(name, "UNAVAILABLE", str(entry.get("reason") or "unavailable"))
                    continue
                metadata = client.get_model_metadata(name)
                ready = state == "READY" and client.is_model_ready(name)
                config = client.get_model_config(name) if ready else {}
                image = next((t for t in metadata.get("inputs", []) if t.get("name") == "IMAGE"), {})
                described[name] = ModelInfo(
                    name,
                    "READY" if ready else "LOADING",
                    None if ready else "loading",
                    frozenset(str(t["name"]) for t in metadata.get("inputs", [])),
                    frozenset(str(t["name"]) for t in metadata.get("outputs", [])),
                    {str(k): str((v or {}).get("string_value", "")) for k, v in
                     (config.get("parameters") or {}).items()},
                    len(image.get("shape", [0, 0, 0])),
                )
            return described
        except InferenceServerException as exc:
            raise WorkerUnavailable(f"worker at {self.url} did not answer: {exc.message()}") from exc
        except TRANSPORT_ERRORS as exc:
            raise WorkerUnavailable(f"worker at {self.url} is unreachable: {type(exc).__name__}: {exc}") from exc
        finally:
            client.close()

    def _infer(
        self, model: str, inputs: list[triton_http.InferInput], outputs: list[str]
    ) -> tuple[triton_http.InferResult, float]:
        requested = [triton_http.InferRequestedOutput(name, binary_data=True) for name in outputs]
        client = self._client()
        started = time.perf_counter()
        try:
            result = client.infer(model, inputs, outputs=requested)
        except InferenceServerException as exc:
            status = str(exc.status() or "")
            if status.startswith("4") and status != "404":
                raise InputError(f"model {model} refused the request: {exc.message()}") from exc
            raise WorkerUnavailable(f"model {model} failed on {self.url}: {exc.message()}") from exc
        except TRANSPORT_ERRORS as exc:
            raise WorkerUnavailable(
                f"worker at {self.url} dropped the request to {model}: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            client.close()
        return result, time.perf_counter() - started

    @staticmethod
    def _tensor(name: str, array: np.ndarray, datatype: str) -> triton_http.InferInput:
        tensor = triton_http.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(np.ascontiguousarray(array), binary_data=True)
        return tensor

    def _image_inputs(self, volume: Volume, image: np.ndarray | None = None) -> list[triton_http.InferInput]:
        return [
            self._tensor("IMAGE", (volume.voxels if image is None else image).astype(np.float32, copy=False), "FP32"),
            self._tensor("SPACING_MM", np.asarray(volume.spacing_mm, dtype=np.float32), "FP32"),
        ]

    @staticmethod
    def _parameters(result: triton_http.InferResult) -> tuple[dict[str, Any], dict[str, Any]]:
        response = result.get_response()
        response = response if isinstance(response, dict) else {}
        return response, response.get("parameters", {}) or {}

    def segment(
        self,
        model: str,
        volume: Volume,
        boxes: Sequence[SliceBox] = (),
        points: Sequence[SlicePoint] = (),
        with_probability: bool = False,
        image: np.ndarray | None = None,
    ) -> SegmentationResult:
        """The model's tumour mask for ``volume``, on its voxel grid; prompts only for promptable models.

        ``image``, when given, is sent as ``IMAGE`` instead of the volume's voxels: the co-registered sequences
        ``(channel, slice, row, column)`` on the volume's grid."""
        inputs = self._image_inputs(volume, image)
        if boxes:
            inputs.append(self._tensor(BOXES, boxes_to_tensor(boxes), "FP32"))
        if points:
            inputs.append(self._tensor(POINTS, points_to_tensor(points), "FP32"))
        wanted = ["MASK", "PROBABILITY"] if with_probability else ["MASK"]
        result, round_trip_s = self._infer(model, inputs, wanted)
        mask = result.as_numpy("MASK")
        if mask is None or mask.shape != volume.shape:
            raise WorkerUnavailable(
                f"model {model} returned a MASK of shape {None if mask is None else mask.shape}, "
                f"expected {volume.shape}"
            )
        probability = result.as_numpy("PROBABILITY") if with_probability else None
        if probability is not None and probability.shape[-3:] != volume.shape:
            probability = None
        response, parameters = self._parameters(result)
        return SegmentationResult(
            mask=mask.astype(np.uint8, copy=False),
            probability=probability,
            model_name=str(response.get("model_name", model)),
            model_version=str(parameters.get("model_version", response.get("model_version", "1"))),
            inference_s=float(parameters.get("inference_s", round_trip_s)),
            round_trip_s=round_trip_s,
        )

    def extract_brain(self, model: str, volume: Volume) -> BrainMaskResult:
        """The brain mask of a T1-weighted head, from a brain-extraction model (``BRAIN_MASK``)."""
        inputs = [*self._image_inputs(volume),
                  self._tensor("AFFINE_LPS", volume.affine_lps().astype(np.float32), "FP32")]
        result, round_trip_s = self._infer(model, inputs, ["BRAIN_MASK"])
        mask = result.as_numpy("BRAIN_MASK")
        if mask is None or mask.shape != volume.shape:
            raise WorkerUnavailable(f"model {model} returned a BRAIN_MASK of shape "
                                    f"{None if mask is None else mask.shape}, expected {volume.shape}")
        response, parameters = self._parameters(result)
        return BrainMaskResult(
            mask=mask.astype(np.uint8, copy=False),
            model_name=str(response.get("model_name", model)),
            model_version=str(parameters.get("model_version", response.get("model_version", "1"))),
            inference_s=float(parameters.get("inference_s", round_trip_s)),
            round_trip_s=round_trip_s,
        )

    def localise(self, model: str, volume: Volume) -> LocalisationResult:
        """The localiser's tumour boxes (voxel indices) and its one sentence of findings."""
        result, round_trip_s = self._infer(model, self._image_inputs(volume), [BOXES, "FINDINGS"])
        raw_boxes = result.as_numpy(BOXES)
        try:
            boxes = boxes_from_tensor(raw_boxes if raw_boxes is not None else np.zeros((0, 5)), volume.shape)
        except ValueError as exc:
            raise WorkerUnavailable(f"model {model} returned unusable boxes: {exc}") from exc
        findings = result.as_numpy("FINDINGS")
        text = ""
        if findings is not None and findings.size:
            first = findings.reshape(-1)[0]
            text = first.decode("utf-8", "replace") if isinstance(first, bytes) else str(first)
        response, parameters = self._parameters(result)
        return LocalisationResult(
            boxes=tuple(boxes),
            findings=text,
            model_name=str(response.get("model_name", model)),
            model_version=str(parameters.get("model_version", response.get("model_version", "1"))),
            inference_s=float(parameters.get("inference_s", round_trip_s)),
            round_trip_s=round_trip_s,
        )

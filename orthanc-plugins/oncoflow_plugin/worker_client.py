"""The plugin's only way to the inference worker: NVIDIA's ``tritonclient[http]``, by URL.

The worker (``oncoflow_inference``) and a real Triton server serving the same model
repository speak the same KServe v2 protocol, so swapping one for the other is a
change of ``ONCOFLOW_WORKER_URL`` alone. Tensors travel with the binary extension.

Model I/O (see ``inference/model_repository/*/config.pbtxt``):
``IMAGE`` FP32 ``(slice, row, column)``, ``SPACING_MM`` FP32 ``(3,)`` in, ``MASK`` UINT8 out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from oncoflow.volume import Volume

from .volume_builder import InputError


class WorkerUnavailable(RuntimeError):
    """The worker could not answer now (down, restarting, model still loading): retry later."""


class ModelUnavailable(RuntimeError):
    """The worker is up but reports the model cannot be served; the message gives its reason."""


@dataclass(frozen=True)
class SegmentationResult:
    mask: npt.NDArray[np.uint8]
    model_name: str
    model_version: str
    inference_s: float  # worker-side model time, from the response parameters when given
    round_trip_s: float  # request sent to response decoded, as the plugin saw it


class WorkerClient:
    """Calls one segmentation model on a KServe v2 server."""

    def __init__(self, url: str, model_name: str, timeout_s: float) -> None:
        self.url = url
        self.model_name = model_name
        self.timeout_s = timeout_s

    def _client(self) -> triton_http.InferenceServerClient:
        return triton_http.InferenceServerClient(
            self.url, connection_timeout=10.0, network_timeout=self.timeout_s
        )

    def _unavailable_reason(self, client: triton_http.InferenceServerClient) -> str | None:
        """The reason the repository index gives for an UNAVAILABLE model, if it says so."""
        try:
            index = client.get_model_repository_index()
        except Exception:
            return None
        for entry in index:
            if entry.get("name") == self.model_name and entry.get("state") == "UNAVAILABLE":
                return str(entry.get("reason") or "model unavailable")
        return None

    def check_ready(self) -> None:
        """Raise :class:`WorkerUnavailable` or :class:`ModelUnavailable` unless the model is ready."""
        client = self._client()
        try:
            if client.is_model_ready(self.model_name):
                return
            reason = self._unavailable_reason(client)
        except InferenceServerException as exc:
            raise WorkerUnavailable(f"worker at {self.url} did not answer: {exc.message()}") from exc
        except (OSError, ConnectionError) as exc:
            raise WorkerUnavailable(f"worker at {self.url} is unreachable: {exc}") from exc
        finally:
            client.close()
        if reason is not None:
            raise ModelUnavailable(f"model '{self.model_name}' is not ready: {reason}")
        raise WorkerUnavailable(f"model '{self.model_name}' is not ready yet on {self.url}")

    def segment(self, volume: Volume) -> SegmentationResult:
        """Send ``volume`` and return the tumour mask in the same voxel order."""
        image = triton_http.InferInput("IMAGE", list(volume.shape), "FP32")
        image.set_data_from_numpy(np.ascontiguousarray(volume.voxels, dtype=np.float32), binary_data=True)
        spacing = triton_http.InferInput("SPACING_MM", [3], "FP32")
        spacing.set_data_from_numpy(np.asarray(volume.spacing_mm, dtype=np.float32), binary_data=True)
        outputs = [triton_http.InferRequestedOutput("MASK", binary_data=True)]
        client = self._client()
        started = time.perf_counter()
        try:
            result = client.infer(self.model_name, [image, spacing], outputs=outputs)
        except InferenceServerException as exc:
            status = str(exc.status() or "")
            if status.startswith("4") and status != "404":
                raise InputError(f"the model refused the volume: {exc.message()}") from exc
            raise WorkerUnavailable(f"inference failed on {self.url}: {exc.message()}") from exc
        except (OSError, ConnectionError) as exc:
            raise WorkerUnavailable(f"worker at {self.url} dropped the request: {exc}") from exc
        finally:
            client.close()
        round_trip_s = time.perf_counter() - started
        mask = result.as_numpy("MASK")
        if mask is None or mask.shape != volume.shape:
            raise WorkerUnavailable(
                f"worker returned a MASK of shape {None if mask is None else mask.shape}, expected {volume.shape}"
            )
        response = result.get_response()
        parameters = response.get("parameters", {}) if isinstance(response, dict) else {}
        return SegmentationResult(
            mask=mask.astype(np.uint8, copy=False),
            model_name=str(response.get("model_name", self.model_name)),
            model_version=str(parameters.get("model_version", response.get("model_version", "1"))),
            inference_s=float(parameters.get("inference_s", round_trip_s)),
            round_trip_s=round_trip_s,
        )

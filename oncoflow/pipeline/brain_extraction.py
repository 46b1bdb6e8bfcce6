"""Brain extraction, the stage before the panel: the reference sequence's brain mask, judged, then applied.

The worker's brain-extraction model (``ONCOFLOW_BRAIN_EXTRACTION``, default ``deepbet``) masks the brain of the
T1-weighted reference on its own grid. The mask is judged (:func:`oncoflow.measure.brain_mask_check.check_brain_mask`):
a mask that is no human brain fails the job with the reason (a knee, a spine, a phantom bottle). The experts
that want a skull-stripped input (``skull_stripped`` parameter) get the volume with everything outside the mask
set to zero, as BraTS prepares its data; every expert's mask is then kept inside the brain.

A missing model is no failure of the study: :class:`BrainMask` then says why there is no mask, and the panel skips
the experts that need one, with that reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from oncoflow.core.config import Settings
from oncoflow.core.volume import Volume
from oncoflow.dicom.volume_builder import InputError
from oncoflow.measure.brain_mask_check import BrainMaskCheck, check_brain_mask
from oncoflow.pipeline.worker_client import WorkerClient, WorkerUnavailable


@dataclass(frozen=True)
class BrainMask:
    """The brain of one volume (``mask`` on its grid, 1 = brain), or why there is none (``unavailable``)."""

    mask: npt.NDArray[np.uint8] | None
    model: str | None
    version: str | None = None
    inference_s: float | None = None
    check: BrainMaskCheck | None = None
    unavailable: str | None = None

    def strip_array(self, image: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """``image`` (``(slice, row, column)`` or channel-first) with every voxel outside the brain set to 0."""
        if self.mask is None:
            return image
        return np.where(self.mask > 0, image, np.float32(0)).astype(np.float32)

    def summary(self) -> dict[str, object]:
        """JSON for the job's outputs (no arrays)."""
        measured = self.check.as_json() if self.check is not None else {}
        return {"model": self.model, "version": self.version, "unavailable": self.unavailable,
                "inference_s": None if self.inference_s is None else round(self.inference_s, 4), **measured}


class BrainExtraction:
    """Calls the worker's brain-extraction model and judges its mask."""

    def __init__(self, settings: Settings, worker: WorkerClient) -> None:
        self.model = settings.brain_extraction
        self.worker = worker

    def run(self, volume: Volume) -> BrainMask:
        """The brain mask of ``volume`` (a T1-weighted head or brain).

        Raises :class:`InputError` when the mask is no human brain, :class:`WorkerUnavailable` while the model
        loads or the worker is away.
        """
        if self.model is None:
            return BrainMask(None, None, unavailable="brain extraction is off (ONCOFLOW_BRAIN_EXTRACTION=off)")
        info = self.worker.describe([self.model])[self.model]
        if info.state == "LOADING":
            raise WorkerUnavailable(f"brain extraction model {self.model} is still loading on {self.worker.url}")
        if info.state != "READY":
            return BrainMask(None, self.model, unavailable=f"brain extraction {self.model} is not ready: "
                                                            f"{info.reason}")
        if info.role != "brain-mask":
            return BrainMask(None, self.model, unavailable=f"model {self.model} gives no BRAIN_MASK")
        result = self.worker.extract_brain(self.model, volume)
        check = check_brain_mask(result.mask, volume)
        if check.refusal is not None:
            raise InputError(check.refusal)
        return BrainMask(result.mask, self.model, result.model_version, result.inference_s, check)

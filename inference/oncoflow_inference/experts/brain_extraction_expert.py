"""Brain extraction with deepbet (Fisch et al., 2024): a T1-weighted head in, the brain mask out.

deepbet (PyPI ``deepbet``) ships its two TorchScript networks in its wheel (``<site-packages>/data/models/``:
``bbox_model.pt`` finds the brain at 128³, ``model.pt`` segments the crop at 256³); ``model_dir`` (or
``ONCOFLOW_MODEL_WEIGHTS``) may point at another copy of both files. deepbet works in RAS: the image goes in
with its patient geometry, as ``AFFINE_LPS`` (the 4 x 4 matrix from ``(slice, row, column)`` indices to LPS
millimetres), and the mask comes back on the input's own grid.

Tensors: inputs ``IMAGE`` FP32 ``(slice, row, column)``, ``SPACING_MM`` FP32 ``(3,)`` and ``AFFINE_LPS`` FP32
``(4, 4)``; output ``BRAIN_MASK`` UINT8 on the ``IMAGE`` grid (1 = brain). deepbet keeps the largest connected
component and fills its holes. It does not refuse what is not a brain (a knee or noise gets a confident mask,
measured): the pipeline judges the mask's size and shape (:mod:`oncoflow.measure.brain_mask_check`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..binary_tensors import TensorError
from ..segmentation_tensors import AFFINE_LPS, BRAIN_MASK, segmentation_inputs
from .base import Expert, ExpertInputError, ExpertNotReady, ExpertOutput, ExpertResult, file_sha256

log = logging.getLogger("oncoflow.worker.deepbet")

MODEL_FILES = ("model.pt", "bbox_model.pt")
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def deepbet_models_dir() -> Path | None:
    """Where the installed deepbet wheel keeps its networks (``None`` when deepbet is not installed)."""
    try:
        from deepbet.utils import DATA_PATH
    except ImportError:
        return None
    return Path(DATA_PATH) / "models"


class BrainExtractionExpert(Expert):
    kind = "deepbet"

    def __init__(self, name: str, model_dir: Path | None, torch_threads: int = 2, threshold: float = 0.5) -> None:
        self.name = name
        self.model_dir = model_dir
        self.torch_threads = torch_threads
        self.threshold = threshold
        self.version = "unloaded"
        self._bet: Any = None

    @property
    def weights_location(self) -> Path:
        return self.model_dir or deepbet_models_dir() or Path("<deepbet not installed>")

    def _missing(self) -> str | None:
        if self.model_dir is None and deepbet_models_dir() is None:
            return "deepbet is not installed (PyPI deepbet, its networks ship in the wheel)"
        missing = [name for name in MODEL_FILES if not (self.weights_location / name).is_file()]
        return f"no {', '.join(missing)} in {self.weights_location}" if missing else None

    def _load(self) -> None:
        import torch
        from deepbet import BrainExtraction

        torch.set_num_threads(self.torch_threads)
        folder = self.weights_location
        self._bet = BrainExtraction(no_gpu=True, model_path=str(folder / "model.pt"),
                                    bbox_model_path=str(folder / "bbox_model.pt"))
        self.version = f"deepbet-{file_sha256(folder / 'model.pt')[:12]}"
        self.not_ready_reason = None
        log.info("deepbet %s loaded from %s (%s)", self.name, folder, self.version)

    def _unload(self) -> None:
        self._bet = None
        self.version = "unloaded"
        self.not_ready_reason = "not loaded yet"

    def predict(self, image: npt.NDArray[np.float32], spacing_mm: tuple[float, float, float],
                with_probability: bool = False) -> ExpertOutput:
        raise ExpertInputError("brain extraction needs the image's patient geometry: send AFFINE_LPS")

    def extract(self, image: npt.NDArray[np.float32], affine_lps: npt.NDArray[np.float64]) -> npt.NDArray[np.uint8]:
        """The brain mask of ``image`` (``(slice, row, column)``) placed in patient space by ``affine_lps``."""
        if self._bet is None:
            raise ExpertNotReady(self.not_ready_reason or "not loaded")
        import nibabel as nib

        head = nib.Nifti1Image(np.ascontiguousarray(image, dtype=np.float32), LPS_TO_RAS @ affine_lps)
        try:
            _, mask_image, _ = self._bet.run(head, threshold=self.threshold, n_dilate=0)
        except (ValueError, AssertionError) as exc:  # deepbet's answer to an empty or constant volume
            raise ExpertInputError(f"brain extraction found no head in the image ({exc})") from exc
        mask = np.asarray(mask_image.dataobj)
        if mask.shape != image.shape:
            raise ExpertInputError(f"deepbet returned a mask of shape {mask.shape} for an image of {image.shape}")
        return mask.astype(np.uint8)

    def infer(self, inputs: Mapping[str, np.ndarray], wanted: Collection[str],
              max_voxels: int | None = None) -> ExpertResult:
        image, _ = segmentation_inputs(inputs, max_voxels)
        affine = inputs.get(AFFINE_LPS)
        if affine is None or affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
            raise TensorError(f"{AFFINE_LPS} must be a finite 4 x 4 matrix (index -> LPS mm)")
        if abs(np.linalg.det(affine[:3, :3].astype(np.float64))) < 1e-9:
            raise TensorError(f"{AFFINE_LPS} is singular: no patient geometry")
        started = time.perf_counter()
        mask = self.extract(image, affine.astype(np.float64))
        return ExpertResult({BRAIN_MASK: mask}, time.perf_counter() - started)


def brain_extraction_expert_from_parameters(name: str, parameters: Mapping[str, str], version_dir: Path,
                                            torch_threads: int, weights: Path | None = None) -> BrainExtractionExpert:
    """``model_dir`` (relative to the version directory, or absolute; empty: the installed wheel's networks) and
    ``threshold`` (0-1, default 0.5) from ``config.pbtxt``; ``weights`` overrides ``model_dir``."""
    configured = parameters.get("model_dir", "").strip()
    folder = weights or ((version_dir / configured) if configured else None)
    threshold = float(parameters.get("threshold", "0.5"))
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"parameter threshold={threshold} must be between 0 and 1")
    return BrainExtractionExpert(name, folder, torch_threads, threshold)

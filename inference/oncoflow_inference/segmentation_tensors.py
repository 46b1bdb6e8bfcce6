"""The tensors of a segmentation model and their validation, shared by the worker and Triton's ``model.py``.

Inputs: ``IMAGE`` FP32 ``(slice, row, column)`` and ``SPACING_MM`` FP32 ``(3,)``, the
voxel spacing ``(slice, row, column)`` in millimetres. Outputs: ``MASK`` UINT8 on the
image grid (1 = tumour) and ``PROBABILITY`` FP16, the tumour probability, computed
only when requested.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from .binary_tensors import TensorError, datatype_of
from .model_repository import TensorSpec

IMAGE = "IMAGE"
SPACING_MM = "SPACING_MM"
MASK = "MASK"
PROBABILITY = "PROBABILITY"
OUTPUTS = (MASK, PROBABILITY)


def check_against_specs(inputs: Mapping[str, np.ndarray], specs: Sequence[TensorSpec]) -> None:
    """Each declared input present (unless optional) with its datatype and dims (-1 matches any size),
    nothing undeclared."""
    declared = {spec.name: spec for spec in specs}
    unknown = sorted(set(inputs) - set(declared))
    if unknown:
        raise TensorError(f"unexpected inputs {unknown}; the model takes {sorted(declared)}")
    for spec in specs:
        array = inputs.get(spec.name)
        if array is None and spec.optional:
            continue
        if array is None:
            raise TensorError(f"input {spec.name} is missing; the model takes {sorted(declared)}")
        if datatype_of(array) != spec.datatype:
            raise TensorError(f"input {spec.name} must be {spec.datatype}, got {datatype_of(array)}")
        if len(array.shape) != len(spec.dims) or any(d not in (-1, n) for d, n in zip(spec.dims, array.shape,
                                                                                      strict=True)):
            raise TensorError(f"input {spec.name} must have shape {list(spec.dims)}, got {list(array.shape)}")


def segmentation_inputs(
    inputs: Mapping[str, np.ndarray], max_voxels: int | None = None
) -> tuple[npt.NDArray[np.float32], tuple[float, float, float]]:
    """Validate ``IMAGE`` and ``SPACING_MM``; returns the image and the spacing in mm.

    Raises :class:`TensorError` with a message a user can act on.
    """
    image, spacing = inputs.get(IMAGE), inputs.get(SPACING_MM)
    if image is None or spacing is None:
        raise TensorError(f"inputs {IMAGE} and {SPACING_MM} are required, got {sorted(inputs)}")
    if image.ndim != 3 or min(image.shape) < 1:
        raise TensorError(f"{IMAGE} must be 3-D (slice, row, column) and non-empty, got shape {list(image.shape)}")
    if max_voxels is not None and image.size > max_voxels:
        raise TensorError(f"{IMAGE} has {image.size} voxels, more than the {max_voxels} this worker accepts")
    if spacing.shape != (3,) or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise TensorError(
            f"{SPACING_MM} must be 3 positive finite numbers (slice, row, column) in mm, got {spacing.tolist()}"
        )
    if image.dtype.kind != "f":
        raise TensorError(f"{IMAGE} must hold floating-point values, got {image.dtype}")
    if not np.all(np.isfinite(image)):
        raise TensorError(f"{IMAGE} holds NaN or infinite values")
    return image.astype(np.float32, copy=False), (float(spacing[0]), float(spacing[1]), float(spacing[2]))

"""The tensors of a segmentation model and their validation, shared by the worker and Triton's ``model.py``.

Inputs: ``IMAGE`` FP32 ``(slice, row, column)`` (a model of several input channels takes
``(channel, slice, row, column)``, co-registered sequences in the order of its ``input_channels``
parameter) and ``SPACING_MM`` FP32 ``(3,)``, the voxel spacing ``(slice, row, column)`` in
millimetres. Outputs: ``MASK`` UINT8 on the image grid (1 = tumour) and ``PROBABILITY`` FP16,
the tumour probability, computed only when requested. Brain extraction takes ``AFFINE_LPS`` FP32
``(4, 4)`` too (indices to LPS millimetres) and gives ``BRAIN_MASK`` UINT8.
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
AFFINE_LPS = "AFFINE_LPS"
BRAIN_MASK = "BRAIN_MASK"
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
    inputs: Mapping[str, np.ndarray], max_voxels: int | None = None, multi_channel: bool = False
) -> tuple[npt.NDArray[np.float32], tuple[float, float, float]]:
    """Validate ``IMAGE`` and ``SPACING_MM``; returns the image and the spacing in mm.

    With ``multi_channel``, ``IMAGE`` may also be ``(channel, slice, row, column)``; ``max_voxels`` bounds the
    voxels of one channel. Raises :class:`TensorError` with a message a user can act on.
    """
    image, spacing = inputs.get(IMAGE), inputs.get(SPACING_MM)
    if image is None or spacing is None:
        raise TensorError(f"inputs {IMAGE} and {SPACING_MM} are required, got {sorted(inputs)}")
    dims = (3, 4) if multi_channel else (3,)
    if image.ndim not in dims or min(image.shape) < 1:
        wanted = ("(slice, row, column) or (channel, slice, row, column)" if multi_channel
                  else "3-D (slice, row, column)")
        raise TensorError(f"{IMAGE} must be {wanted} and non-empty, got shape {list(image.shape)}")
    channel_voxels = int(np.prod(image.shape[-3:]))
    if max_voxels is not None and channel_voxels > max_voxels:
        raise TensorError(f"{IMAGE} has {channel_voxels} voxels per channel, more than the {max_voxels} this "
                          "worker accepts")
    if spacing.shape != (3,) or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise TensorError(
            f"{SPACING_MM} must be 3 positive finite numbers (slice, row, column) in mm, got {spacing.tolist()}"
        )
    if image.dtype.kind != "f":
        raise TensorError(f"{IMAGE} must hold floating-point values, got {image.dtype}")
    if not np.all(np.isfinite(image)):
        raise TensorError(f"{IMAGE} holds NaN or infinite values")
    return image.astype(np.float32, copy=False), (float(spacing[0]), float(spacing[1]), float(spacing[2]))

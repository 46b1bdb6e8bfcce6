"""Resampling of a follow-up image or mask onto the baseline grid through a registration transform.

``transform`` follows the ITK convention of :mod:`oncoflow_registration.affine_registration`: it maps
a point of the reference (baseline) grid, LPS mm, to the moving (follow-up) image. Identity
(``None``) when both are already in the same patient frame.

Masks are resampled ONLY with nearest neighbour (values stay the moving mask's labels, never blended);
images with linear interpolation. Points mapped outside the moving image get 0.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from oncoflow.core.volume import Volume

from .sitk_volume import array_to_sitk, mask_to_sitk, to_sitk


def interpolator_for(*, is_mask: bool) -> int:
    """``sitk.sitkNearestNeighbor`` for masks, ``sitk.sitkLinear`` for images."""
    return sitk.sitkNearestNeighbor if is_mask else sitk.sitkLinear


def resample_to(
    reference: Volume,
    moving_image: sitk.Image | Volume,
    transform: sitk.Transform | None = None,
    *,
    is_mask: bool,
) -> npt.NDArray[np.uint8] | npt.NDArray[np.float32]:
    """``moving_image`` on ``reference``'s ``(slice, row, column)`` grid.

    Args:
        reference: the baseline volume; only its grid is used.
        moving_image: the follow-up image or mask (a Volume's voxels are taken as a mask when ``is_mask``).
        transform: reference (baseline) LPS mm -> moving (follow-up) LPS mm; ``None`` for identity.
        is_mask: nearest-neighbour and a uint8 result when true, linear and float32 otherwise.

    Returns:
        An array of ``reference.shape``: uint8 for masks, float32 for images.
    """
    interpolator = interpolator_for(is_mask=is_mask)
    if is_mask:
        assert interpolator == sitk.sitkNearestNeighbor, "masks are resampled with nearest neighbour only"
    if isinstance(moving_image, Volume):
        moving = mask_to_sitk(moving_image.voxels, moving_image) if is_mask else to_sitk(moving_image)
    else:
        moving = sitk.Cast(moving_image, sitk.sitkUInt8) if is_mask else sitk.Cast(moving_image, sitk.sitkFloat32)
    grid = array_to_sitk(np.zeros(reference.shape, dtype=np.uint8), reference)
    output_type = sitk.sitkUInt8 if is_mask else sitk.sitkFloat32
    warped = sitk.Resample(moving, grid, transform or sitk.Transform(), interpolator, 0.0, output_type)
    array = sitk.GetArrayFromImage(warped)
    return array.astype(np.uint8, copy=False) if is_mask else array.astype(np.float32, copy=False)

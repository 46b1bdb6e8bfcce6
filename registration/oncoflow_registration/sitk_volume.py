"""Exact conversion between OncoFlow's :class:`~oncoflow.core.volume.Volume` and SimpleITK images.

Conventions (both sides use LPS millimetres, so no sign flips are needed):

* the Volume array is ``(slice, row, column)``; SimpleITK indexes ``(x, y, z) = (column, row, slice)``,
  which is exactly what :func:`SimpleITK.GetImageFromArray` does with a C-ordered numpy array;
* ``Spacing = (spacing_mm[2], spacing_mm[1], spacing_mm[0])`` = (between columns, between rows, between slices);
* ``Origin = origin_mm`` (centre of voxel ``[0, 0, 0]`` in both);
* ``Direction`` is a 3x3 matrix, stored row-major by SimpleITK, whose *columns* are
  ``row_direction`` (x: column index increases), ``column_direction`` (y: row index increases) and
  ``slice_direction`` (z). A left-handed stack (``slice_direction = -(row x column)``) gives a
  direction matrix with determinant -1, which ITK accepts.

Hence ``image.TransformContinuousIndexToPhysicalPoint((c, r, s)) == volume.affine_lps() @ (s, r, c, 1)``.

Pixel types: float32 voxels become ``sitkFloat32``; uint8 / bool masks become ``sitkUInt8``
(:func:`mask_to_sitk`); other dtypes are kept as SimpleITK maps them.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from oncoflow.core.volume import Vector3, Volume

GEOMETRY_TOLERANCE_MM = 1e-4


def _vector(values: npt.ArrayLike) -> Vector3:
    x, y, z = (float(v) for v in np.asarray(values, dtype=np.float64).reshape(3))
    return (x, y, z)


def direction_matrix(volume: Volume) -> npt.NDArray[np.float64]:
    """The 3x3 ITK direction matrix of ``volume``: columns row, column and slice direction."""
    return np.column_stack([volume.row_direction, volume.column_direction, volume.slice_direction]).astype(np.float64)


def array_to_sitk(array: npt.ArrayLike, like: Volume) -> sitk.Image:
    """A ``(slice, row, column)`` array on the grid of ``like`` as a SimpleITK image.

    bool arrays become uint8. The array shape must equal ``like.shape``.
    """
    data = np.asarray(array)
    if data.shape != like.shape:
        raise ValueError(f"array shape {data.shape} differs from the volume's {like.shape}")
    if data.dtype == np.bool_:
        data = data.astype(np.uint8)
    image = sitk.GetImageFromArray(np.ascontiguousarray(data), isVector=False)
    image.SetSpacing((float(like.spacing_mm[2]), float(like.spacing_mm[1]), float(like.spacing_mm[0])))
    image.SetOrigin(tuple(float(v) for v in like.origin_mm))
    image.SetDirection(tuple(direction_matrix(like).ravel()))
    return image


def to_sitk(volume: Volume) -> sitk.Image:
    """``volume`` as a SimpleITK image with the same voxels and LPS geometry (float32 stays float32)."""
    return array_to_sitk(volume.voxels, volume)


def mask_to_sitk(mask: npt.ArrayLike, like: Volume) -> sitk.Image:
    """A binary / label mask on ``like``'s grid as a ``sitkUInt8`` image."""
    data = np.asarray(mask)
    if data.dtype != np.uint8:
        if np.any((data < 0) | (data > 255)) or np.any(data != np.round(data)):
            raise ValueError("a mask holds integer labels 0..255")
        data = data.astype(np.uint8)
    return array_to_sitk(data, like)


def same_grid(image: sitk.Image, volume: Volume, tolerance_mm: float = GEOMETRY_TOLERANCE_MM) -> bool:
    """Whether ``image`` lies on ``volume``'s voxel grid (size, spacing, origin, direction)."""
    if image.GetDimension() != 3 or tuple(reversed(image.GetSize())) != volume.shape:
        return False
    spacing = np.array(image.GetSpacing())[::-1]
    direction = np.array(image.GetDirection()).reshape(3, 3)
    return bool(
        np.allclose(spacing, volume.spacing_mm, atol=tolerance_mm)
        and np.allclose(image.GetOrigin(), volume.origin_mm, atol=tolerance_mm)
        and np.allclose(direction, direction_matrix(volume), atol=1e-6)
    )


def from_sitk(image: sitk.Image, like: Volume | None = None) -> Volume:
    """A 3-D SimpleITK image as a :class:`Volume`.

    Voxels are float32, except uint8 images (masks), which stay uint8. With ``like``, the image must
    lie on ``like``'s grid (:func:`same_grid`, otherwise ``ValueError``) and the returned Volume copies
    ``like``'s geometry verbatim, so a round trip introduces no floating-point drift.
    """
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError("expected a 3-D scalar image")
    voxels = sitk.GetArrayFromImage(image)
    if voxels.dtype != np.uint8:
        voxels = voxels.astype(np.float32, copy=False)
    if like is not None:
        if not same_grid(image, like):
            raise ValueError("the image does not lie on the grid of `like`")
        return Volume(
            voxels=voxels,
            spacing_mm=like.spacing_mm,
            origin_mm=like.origin_mm,
            row_direction=like.row_direction,
            column_direction=like.column_direction,
            slice_direction=like.slice_direction,
        )
    direction = np.array(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    sx, sy, sz = image.GetSpacing()
    return Volume(
        voxels=voxels,
        spacing_mm=(float(sz), float(sy), float(sx)),
        origin_mm=_vector(image.GetOrigin()),
        row_direction=_vector(direction[:, 0]),
        column_direction=_vector(direction[:, 1]),
        slice_direction=_vector(direction[:, 2]),
    )

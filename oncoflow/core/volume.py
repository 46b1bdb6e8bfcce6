"""A scalar image volume with its patient geometry.

The array axes follow DICOM: ``(slice, row, column)``. Geometry is expressed in
the DICOM patient coordinate system (LPS, millimetres):

* ``origin_mm``  is ImagePositionPatient (0020,0032) of the first slice, i.e. the
  centre of voxel ``[0, 0, 0]``;
* ``row_direction`` is ImageOrientationPatient (0020,0037)[0:3], the direction
  in which the *column index* increases along a row;
* ``column_direction`` is ImageOrientationPatient[3:6], the direction in which the
  *row index* increases down a column;
* ``slice_direction`` is the unit vector in which the slice index increases. It
  equals ``row_direction x column_direction`` or its negation.

``spacing_mm`` is ``(slice, row, column)``: the distance between slice centres,
PixelSpacing[0] (between rows) and PixelSpacing[1] (between columns).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Vector3 = tuple[float, float, float]


@dataclass(frozen=True)
class Volume:
    """A 3-D image in DICOM voxel order with its patient-space geometry."""

    voxels: npt.NDArray[np.float32]
    spacing_mm: Vector3
    origin_mm: Vector3
    row_direction: Vector3
    column_direction: Vector3
    slice_direction: Vector3

    def __post_init__(self) -> None:
        if self.voxels.ndim != 3:
            raise ValueError(f"a Volume is 3-D, got shape {self.voxels.shape}")
        if any(s <= 0 for s in self.spacing_mm):
            raise ValueError(f"spacing must be positive, got {self.spacing_mm}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(slices, rows, columns)``."""
        n_slices, n_rows, n_cols = self.voxels.shape
        return n_slices, n_rows, n_cols

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(self.spacing_mm))

    def affine_lps(self) -> npt.NDArray[np.float64]:
        """4x4 matrix mapping ``(slice, row, column, 1)`` indices to LPS millimetres."""
        affine = np.eye(4)
        affine[:3, 0] = np.asarray(self.slice_direction) * self.spacing_mm[0]
        affine[:3, 1] = np.asarray(self.column_direction) * self.spacing_mm[1]
        affine[:3, 2] = np.asarray(self.row_direction) * self.spacing_mm[2]
        affine[:3, 3] = self.origin_mm
        return affine

    def slice_position_mm(self, index: int) -> Vector3:
        """ImagePositionPatient of slice ``index``."""
        p = np.asarray(self.origin_mm) + index * self.spacing_mm[0] * np.asarray(self.slice_direction)
        return (float(p[0]), float(p[1]), float(p[2]))

    def image_orientation_patient(self) -> list[float]:
        """ImageOrientationPatient (0020,0037) as six floats."""
        return [*map(float, self.row_direction), *map(float, self.column_direction)]

    def voxel_index(self, point_mm: Vector3) -> Vector3:
        """Continuous ``(slice, row, column)`` index of an LPS point in millimetres (inverse of ``affine_lps``)."""
        index = np.linalg.solve(self.affine_lps(), np.array([*point_mm, 1.0]))
        return (float(index[0]), float(index[1]), float(index[2]))

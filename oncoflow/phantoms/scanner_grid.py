"""Where a scanner puts its voxels: orientations, random head rotations, a field of view around the head.

Shared by every phantom generator (the tumour phantoms, the longitudinal patients, the training and the
evaluation generators): geometry only, no anatomy and no intensity model.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from oncoflow.core.volume import Volume

# Base orientations (row direction, column direction) in LPS; the slice normal is their cross product.
BASE_ORIENTATIONS = {
    "axial": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    "coronal": ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),
    "sagittal": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),
}


def random_rotation(rng: np.random.Generator, max_deg: float) -> npt.NDArray[np.float64]:
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.deg2rad(rng.uniform(-max_deg, max_deg))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def scanner_grid(
    rng: np.random.Generator,
    brain_points: npt.NDArray[np.float64],
    row: npt.NDArray[np.float64],
    col: npt.NDArray[np.float64],
    shape: tuple[int, int, int] | None,
    spacing_mm: tuple[float, float, float] | None,
    in_plane_range_mm: tuple[float, float],
    slice_range_mm: tuple[float, float],
    margin_mm: float = 50.0,
) -> tuple[tuple[int, int, int], Volume]:
    """A grid with row / column directions ``row``, ``col`` covering ``brain_points`` (LPS mm) plus
    ``margin_mm`` (the deep points are 12 mm inside the brain: 50 mm covers the brain, 100 mm the head).

    Unspecified spacing is drawn (in-plane from ``in_plane_range_mm``, then the slice distance from
    ``slice_range_mm``), or covers the head with ``shape``; the head is placed off-centre by a few mm.
    Returns the shape and an empty Volume carrying the geometry.
    """
    normal = np.cross(row, col)
    axes = np.stack([normal, col, row])  # (slice, row, column) directions

    centre = brain_points.mean(axis=0)
    extent = brain_points - centre
    fov_mm = 2.0 * np.abs(extent @ axes.T).max(axis=0) + margin_mm

    if spacing_mm is None:
        if shape is not None:
            spacing = fov_mm / np.asarray(shape)
        else:
            in_plane = rng.uniform(*in_plane_range_mm)
            spacing = np.array([rng.uniform(*slice_range_mm), in_plane, in_plane])
    else:
        spacing = np.asarray(spacing_mm, dtype=np.float64)
    if shape is None:
        shape = tuple(int(n) for n in np.maximum(np.ceil(fov_mm / spacing), 8))  # type: ignore[assignment]
    assert shape is not None
    centre = centre + rng.normal(scale=4.0, size=3)  # the head is never perfectly centred
    half = (np.asarray(shape) - 1) / 2.0 * spacing
    origin = centre - (axes * half[:, None]).sum(axis=0)
    empty = np.zeros((1, 1, 1), np.float32)
    volume = Volume(
        empty, tuple(map(float, spacing)), tuple(map(float, origin)), tuple(map(float, row)),  # type: ignore[arg-type]
        tuple(map(float, col)), tuple(map(float, normal)),  # type: ignore[arg-type]
    )
    return shape, volume


def world_points(volume: Volume, shape: tuple[int, int, int]) -> npt.NDArray[np.float64]:
    """LPS coordinates of every voxel centre, shape ``(3, *shape)``."""
    k, i, j = (np.arange(n, dtype=np.float64) for n in shape)
    affine = volume.affine_lps()
    return (
        affine[:3, 0, None, None, None] * k[None, :, None, None]
        + affine[:3, 1, None, None, None] * i[None, None, :, None]
        + affine[:3, 2, None, None, None] * j[None, None, None, :]
        + affine[:3, 3, None, None, None]
    )

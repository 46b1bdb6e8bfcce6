"""Target registration error (TRE) at landmark points, and reproducible brain landmarks.

``target_registration_error_mm`` maps each landmark (fixed / baseline LPS mm) through the estimated
and the true transform (both fixed -> moving, the ITK convention) and returns the Euclidean distance
between the two images of each point, in millimetres.

``brain_landmarks_mm`` is deterministic and atlas-free: the brain (head) mask is
:func:`~oncoflow_registration.preprocess.head_mask` of the image, eroded by ``margin_mm`` so that
points sit well inside the brain; candidate points form a regular 5 x 5 x 5 grid spanning the middle
80 % of the eroded mask's bounding box (in the image's index axes); the candidates inside the
eroded mask are kept and ``count`` of them (default 20) chosen evenly spaced in grid order.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from oncoflow.core.volume import Volume

from .preprocess import head_mask
from .sitk_volume import to_sitk

GRID_POINTS_PER_AXIS = 5
BOX_FRACTION = 0.8


def target_registration_error_mm(
    transform_estimated: sitk.Transform, transform_true: sitk.Transform, points_mm: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """``|estimated(p) - true(p)|`` in mm for each row ``p`` of the ``(N, 3)`` LPS points."""
    points = np.asarray(points_mm, dtype=np.float64).reshape(-1, 3)
    estimated = np.array([transform_estimated.TransformPoint(tuple(map(float, p))) for p in points]).reshape(-1, 3)
    true = np.array([transform_true.TransformPoint(tuple(map(float, p))) for p in points]).reshape(-1, 3)
    return np.linalg.norm(estimated - true, axis=1)


def brain_landmarks_mm(image: Volume | sitk.Image, count: int = 20, margin_mm: float = 5.0) -> npt.NDArray[np.float64]:
    """``(count, 3)`` LPS points inside the brain, the same for the same image (fewer if the brain is tiny)."""
    sitk_image = to_sitk(image) if isinstance(image, Volume) else image
    mask = head_mask(sitk_image)
    radius = [max(1, round(margin_mm / s)) for s in sitk_image.GetSpacing()]
    eroded = sitk.BinaryErode(mask, radius)
    inside = sitk.GetArrayViewFromImage(eroded) > 0  # (z, y, x)
    if not inside.any():
        inside = sitk.GetArrayViewFromImage(mask) > 0
    if not inside.any():
        raise ValueError("no brain found in the image")
    indices = np.argwhere(inside)
    low, high = indices.min(axis=0).astype(float), indices.max(axis=0).astype(float)
    middle, half = (low + high) / 2, (high - low) / 2 * BOX_FRACTION
    axis = np.linspace(-1.0, 1.0, GRID_POINTS_PER_AXIS)
    candidates = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3) * half + middle
    rounded = np.round(candidates).astype(int)
    candidates = candidates[inside[rounded[:, 0], rounded[:, 1], rounded[:, 2]]]
    if len(candidates) > count:
        candidates = candidates[np.round(np.linspace(0, len(candidates) - 1, count)).astype(int)]
    return np.array(
        [sitk_image.TransformContinuousIndexToPhysicalPoint(tuple(map(float, zyx[::-1]))) for zyx in candidates],
        dtype=np.float64,
    ).reshape(-1, 3)

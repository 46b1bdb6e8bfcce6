"""Overlap and size of binary masks on one voxel grid.

Conventions: two empty masks agree perfectly (Dice and IoU 1.0), an empty and a
non-empty mask not at all (0.0). Volumes are in cm³ from the voxel volume in mm³.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Mask = npt.NDArray[np.integer] | npt.NDArray[np.bool_]


def _pair(a: Mask, b: Mask) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    if a.shape != b.shape:
        raise ValueError(f"masks differ in shape: {a.shape} and {b.shape}")
    return np.asarray(a).astype(bool, copy=False), np.asarray(b).astype(bool, copy=False)


def dice(a: Mask, b: Mask) -> float:
    """Sørensen–Dice coefficient 2|A∩B| / (|A| + |B|); 1.0 for two empty masks."""
    a, b = _pair(a, b)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def iou(a: Mask, b: Mask) -> float:
    """Jaccard index |A∩B| / |A∪B|; 1.0 for two empty masks."""
    a, b = _pair(a, b)
    union = int(np.logical_or(a, b).sum())
    return 1.0 if union == 0 else int(np.logical_and(a, b).sum()) / union


def volume_cm3(mask: Mask, voxel_volume_mm3: float) -> float:
    """Volume of the mask's voxels in cm³."""
    return int(np.count_nonzero(mask)) * voxel_volume_mm3 / 1000.0

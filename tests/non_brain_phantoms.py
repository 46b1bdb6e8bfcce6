"""MR volumes that are not heads, made by the tests alone (no OncoFlow code): the brain-mask check's refusals."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def knee_voxels(shape: tuple[int, int, int] = (50, 96, 96), spacing_mm: tuple[float, float, float] = (3.0, 2.0, 2.0),
                seed: int = 3) -> npt.NDArray[np.float32]:
    """A knee-like limb along the slice axis: skin, subcutaneous fat, muscle, femur and fibula shafts with
    marrow (T1-like intensities, Rician-free Gaussian noise)."""
    rng = np.random.default_rng(seed)
    k, i, j = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    y = (i - shape[1] / 2) * spacing_mm[1]
    x = (j - shape[2] / 2) * spacing_mm[2]
    radius = np.hypot(y / 1.1, x)
    image = np.where(radius < 70, 500.0, 0.0)  # skin
    image = np.where(radius < 67, 1100.0, image)  # subcutaneous fat
    image = np.where(radius < 55, 420.0, image)  # muscle
    for centre_x in (-12.0, 14.0):
        shaft = np.hypot(y + 5.0, x - centre_x)
        image = np.where(shaft < 13, 60.0, image)  # cortical bone
        image = np.where(shaft < 10, 950.0, image)  # marrow
    image = image * (1.0 + 0.05 * np.sin(k * spacing_mm[0] / 27.0))
    return np.abs(image + rng.normal(scale=25.0, size=image.shape)).astype(np.float32)

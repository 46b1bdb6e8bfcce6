"""Is a brain mask a human brain? Size, shape and edge of the mask that brain extraction gave.

deepbet gives a confident mask for anything with signal (a knee, a sphere, noise: measured), so the mask is
judged before anything is segmented inside it. A human brain mask, measured on full heads and skull-stripped
brains (Colin27, MNI152; deepbet includes some CSF, so adult volumes run 1,100-2,000 cm³):

* volume between :data:`MIN_VOLUME_CM3` and :data:`MAX_VOLUME_CM3`; the upper bound leaves room for thick
  slices, whose partial volumes deepbet counts as brain (measured: a 1,898 cm³ Colin27 brain gave 2,479 cm³ at
  10 x 5 x 5 mm, 2,116 cm³ at 8 x 4 x 4 mm);
* extent in patient space (LPS millimetres, whatever the acquisition plane): left-right 100-175 mm,
  anterior-posterior 130-210 mm, superior-inferior 70-190 mm (a thick-slab study may cover less height);
* longer front to back than side to side: anterior-posterior ÷ left-right 1.05-1.5;
* a real edge: the mean intensity in a 2 mm shell inside the mask exceeds that in a 2 mm shell outside by at
  least 0.15 of the intensity spread inside (a mask drawn in noise or in a uniform object has no such edge).
  Measured: human heads 0.28-1.6 (the lowest a thick-slice Colin27 follow-up whose mask took in some skull),
  the knee-like limb 0.007, noise -0.008; the threshold sits between them with room on both sides.

The thresholds were calibrated on synthetic non-brains (a knee-like cylinder, a chest, noise, a sphere, a
macaque brain, a partial-coverage EPI volume), all refused, and every human head accepted; real knee, spine or
chest series would calibrate them better.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from oncoflow.core.volume import Volume

MIN_VOLUME_CM3 = 800.0
MAX_VOLUME_CM3 = 2700.0
EXTENT_RANGES_MM = {"left-right": (100.0, 175.0), "anterior-posterior": (130.0, 210.0),
                    "superior-inferior": (70.0, 190.0)}
AP_TO_LR = (1.05, 1.5)
MIN_EDGE_CONTRAST = 0.15
SHELL_MM = 2.0
MAX_POINTS = 200_000  # mask voxels sampled to measure the extent


@dataclass(frozen=True)
class BrainMaskCheck:
    """What was measured, and why the mask is not a human brain (``None`` when it is)."""

    volume_cm3: float
    extent_mm: dict[str, float]  # left-right, anterior-posterior, superior-inferior
    edge_contrast: float
    refusal: str | None

    def as_json(self) -> dict[str, object]:
        return {"volume_cm3": round(self.volume_cm3, 1), "extent_mm": {k: round(v, 1) for k, v in
                                                                       self.extent_mm.items()},
                "edge_contrast": round(self.edge_contrast, 3), "refusal": self.refusal}


def _extent_mm(mask: npt.NDArray[np.bool_], volume: Volume) -> dict[str, float]:
    """Extent of the mask along L-R, A-P and S-I in millimetres (voxel centres, plus one voxel)."""
    indices = np.argwhere(mask)
    if len(indices) > MAX_POINTS:
        indices = indices[:: len(indices) // MAX_POINTS + 1]
    points = volume.affine_lps()[:3, :3] @ indices.T.astype(np.float64)
    voxel = float(min(volume.spacing_mm))
    spans = points.max(axis=1) - points.min(axis=1) + voxel
    return {"left-right": float(spans[0]), "anterior-posterior": float(spans[1]),
            "superior-inferior": float(spans[2])}


def _edge_contrast(mask: npt.NDArray[np.bool_], volume: Volume) -> float:
    """(mean inside shell - mean outside shell) / spread inside, on the intensities of the image."""
    voxels = volume.voxels.astype(np.float32, copy=False)
    iterations = [max(1, round(SHELL_MM / s)) for s in volume.spacing_mm]
    structure = np.zeros((3, 3, 3), bool)
    inner, outer = mask.copy(), mask.copy()
    for axis, n in enumerate(iterations):  # anisotropic: as many steps along each axis as make 2 mm there
        line = structure.copy()
        line[tuple(slice(None) if a == axis else 1 for a in range(3))] = True
        inner = ndimage.binary_erosion(inner, line, iterations=n)
        outer = ndimage.binary_dilation(outer, line, iterations=n)
    inside_shell, outside_shell = mask & ~inner, outer & ~mask
    if not inside_shell.any() or not outside_shell.any():
        return 0.0
    spread = float(np.std(voxels[mask]))
    if spread <= 0:
        return 0.0
    return (float(voxels[inside_shell].mean()) - float(voxels[outside_shell].mean())) / spread


def check_brain_mask(mask: npt.NDArray[np.integer], volume: Volume) -> BrainMaskCheck:
    """Judge the brain mask of ``volume`` (same grid)."""
    brain = np.asarray(mask) > 0
    volume_cm3 = float(brain.sum()) * volume.voxel_volume_mm3 / 1000.0
    if not brain.any():
        return BrainMaskCheck(0.0, {}, 0.0, "brain extraction found no brain")
    extent = _extent_mm(brain, volume)
    contrast = _edge_contrast(brain, volume)
    problems = []
    if not MIN_VOLUME_CM3 <= volume_cm3 <= MAX_VOLUME_CM3:
        problems.append(f"brain volume {volume_cm3:.0f} cm³ outside {MIN_VOLUME_CM3:.0f}-{MAX_VOLUME_CM3:.0f}")
    for axis, (low, high) in EXTENT_RANGES_MM.items():
        if not low <= extent[axis] <= high:
            problems.append(f"{axis} extent {extent[axis]:.0f} mm outside {low:.0f}-{high:.0f}")
    ratio = extent["anterior-posterior"] / max(extent["left-right"], 1e-6)
    if not AP_TO_LR[0] <= ratio <= AP_TO_LR[1]:
        problems.append(f"front-back / side-side {ratio:.2f} outside {AP_TO_LR[0]}-{AP_TO_LR[1]}")
    if contrast < MIN_EDGE_CONTRAST:
        problems.append(f"no brain edge (contrast {contrast:.2f} < {MIN_EDGE_CONTRAST})")
    return BrainMaskCheck(volume_cm3, extent, contrast,
                          ("not a human brain MR: " + "; ".join(problems)) if problems else None)

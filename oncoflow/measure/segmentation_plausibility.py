"""Is the fused tumour segmentation plausible? A guard that asks for review, never one that hides a result.

A model that has never seen this scanner, contrast or anatomy (or a hospital's own model dropped in untrained)
can give a confident mask that is no tumour: scattered specks, half the head, or the scalp. The study is still
processed and stored; its job, SR, report and viewer panel then say "segmentation implausible: review" with the
reasons, so nobody reads a volume off a mask that does not deserve it.

Checks (each a reason when it fails), on the fused mask of the whole tumour (the largest region fused):

* **outside the brain**: before the panel cut its masks to the brain, the experts that ran put more than
  :data:`MAX_OUTSIDE_BRAIN_FRACTION` of their tumour outside the brain mask (median over experts);
* **too large**: the tumour fills more than :data:`MAX_BRAIN_FRACTION` of the brain (the largest glioblastomas
  occupy some 15-25 % of the intracranial volume);
* **scattered**: more than :data:`MAX_PIECES` separate pieces of at least :data:`MIN_PIECE_CM3` each
  (multifocal gliomas show a few foci, not dozens).

An empty mask is plausible: no tumour seen is a finding, reported as such.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

MAX_OUTSIDE_BRAIN_FRACTION = 0.25
MAX_BRAIN_FRACTION = 0.35
MAX_PIECES = 6
MIN_PIECE_CM3 = 0.1
REVIEW = "segmentation implausible: review"


@dataclass(frozen=True)
class Plausibility:
    """What was measured on the fused mask, and the reasons to review it (none: plausible)."""

    tumour_cm3: float
    brain_fraction: float | None  # tumour / brain volume; None without a brain mask
    outside_brain_fraction: float | None  # median over the experts, before the cut to the brain
    pieces: int  # connected pieces (26-connected) of at least MIN_PIECE_CM3
    reasons: tuple[str, ...]

    @property
    def review(self) -> bool:
        return bool(self.reasons)

    @property
    def verdict(self) -> str:
        """``"plausible"``, or ``"segmentation implausible: review (reason; reason)"``."""
        return f"{REVIEW} ({'; '.join(self.reasons)})" if self.reasons else "plausible"

    def as_json(self) -> dict[str, object]:
        return {"review": self.review, "verdict": self.verdict, "reasons": list(self.reasons),
                "tumour_cm3": round(self.tumour_cm3, 3),
                "brain_fraction": None if self.brain_fraction is None else round(self.brain_fraction, 4),
                "outside_brain_fraction": None if self.outside_brain_fraction is None
                else round(self.outside_brain_fraction, 4),
                "pieces": self.pieces}


def count_pieces(mask: npt.NDArray[np.bool_], voxel_volume_mm3: float, min_piece_cm3: float = MIN_PIECE_CM3) -> int:
    """Connected pieces (26-connectivity) of ``mask`` of at least ``min_piece_cm3``."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    if count == 0:
        return 0
    sizes_cm3 = np.bincount(labels.ravel())[1:] * voxel_volume_mm3 / 1000.0
    return int(np.count_nonzero(sizes_cm3 >= min_piece_cm3))


def assess_plausibility(
    tumour_mask: npt.NDArray[np.integer] | npt.NDArray[np.bool_],
    voxel_volume_mm3: float,
    brain_mask: npt.NDArray[np.integer] | None = None,
    expert_volumes_cm3: Mapping[str, tuple[float, float]] | None = None,
) -> Plausibility:
    """Judge the fused ``tumour_mask`` (non-zero = tumour).

    Args:
        tumour_mask: the fused whole-tumour mask on the study's grid (after the cut to the brain).
        voxel_volume_mm3: the volume of one voxel, mm³.
        brain_mask: the brain mask on the same grid, if brain extraction ran.
        expert_volumes_cm3: per expert that ran, ``(inside_brain_cm3, cut_off_outside_brain_cm3)``.
    """
    tumour = np.asarray(tumour_mask) > 0
    tumour_cm3 = float(np.count_nonzero(tumour)) * voxel_volume_mm3 / 1000.0
    reasons: list[str] = []
    outside_fraction = None
    fractions = [outside / (inside + outside) for inside, outside in (expert_volumes_cm3 or {}).values()
                 if inside + outside > 0]
    if fractions:
        outside_fraction = float(np.median(fractions))
        if outside_fraction > MAX_OUTSIDE_BRAIN_FRACTION:
            reasons.append(f"the experts put {100 * outside_fraction:.0f}% of the tumour outside the brain "
                           f"(> {100 * MAX_OUTSIDE_BRAIN_FRACTION:.0f}%)")
    brain_fraction = None
    if brain_mask is not None:
        brain_cm3 = float(np.count_nonzero(np.asarray(brain_mask) > 0)) * voxel_volume_mm3 / 1000.0
        if brain_cm3 > 0:
            brain_fraction = tumour_cm3 / brain_cm3
            if brain_fraction > MAX_BRAIN_FRACTION:
                reasons.append(f"tumour {tumour_cm3:.0f} cm³ fills {100 * brain_fraction:.0f}% of the brain "
                               f"(> {100 * MAX_BRAIN_FRACTION:.0f}%)")
    pieces = count_pieces(tumour, voxel_volume_mm3) if tumour_cm3 else 0
    if pieces > MAX_PIECES:
        reasons.append(f"scattered: {pieces} separate pieces of {MIN_PIECE_CM3} cm³ or more (> {MAX_PIECES})")
    return Plausibility(tumour_cm3, brain_fraction, outside_fraction, pieces, tuple(reasons))

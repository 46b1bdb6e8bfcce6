"""The plausibility guard: masks built here by construction (a ball, specks on a lattice, a tumour filling the
brain), so what each should be called is known without the guard's code."""

from __future__ import annotations

import numpy as np
import pytest

from oncoflow.measure.segmentation_plausibility import REVIEW, assess_plausibility

SHAPE = (60, 80, 80)
VOXEL_MM3 = 8.0  # 2 mm isotropic


def ball(centre: tuple[int, int, int], radius_vox: float) -> np.ndarray:
    k, i, j = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    return ((k - centre[0]) ** 2 + (i - centre[1]) ** 2 + (j - centre[2]) ** 2) <= radius_vox**2


BRAIN = ball((30, 40, 40), 28)  # about 92 cm³ at 2 mm: a small brain, enough for the fractions


def test_a_compact_tumour_inside_the_brain_is_plausible() -> None:
    tumour = ball((30, 45, 40), 6)  # about 7 cm³
    result = assess_plausibility(tumour, VOXEL_MM3, BRAIN.astype(np.uint8), {"a": (7.2, 0.0), "b": (6.8, 0.1)})
    assert not result.review and result.verdict == "plausible", result.as_json()
    assert result.pieces == 1
    assert result.tumour_cm3 == pytest.approx(tumour.sum() * VOXEL_MM3 / 1000)


def test_no_tumour_is_a_finding_not_a_failure() -> None:
    result = assess_plausibility(np.zeros(SHAPE, np.uint8), VOXEL_MM3, BRAIN.astype(np.uint8), {})
    assert not result.review and result.pieces == 0 and result.tumour_cm3 == 0.0


def test_specks_all_over_are_scattered() -> None:
    tumour = np.zeros(SHAPE, bool)
    for k in range(10, 50, 10):
        for i in range(15, 65, 15):
            tumour[k : k + 3, i : i + 3, 38:41] = True  # 16 cubes of 27 voxels = 0.216 cm³, 7+ voxels apart
    result = assess_plausibility(tumour, VOXEL_MM3, BRAIN.astype(np.uint8))
    assert result.pieces == 16
    assert result.review and result.verdict.startswith(REVIEW) and "scattered: 16 separate pieces" in result.verdict


def test_a_tumour_filling_the_brain_is_too_large() -> None:
    tumour = ball((30, 40, 40), 24)  # (24/28)^3 = 63% of the brain
    result = assess_plausibility(tumour, VOXEL_MM3, BRAIN.astype(np.uint8))
    assert result.review and "fills 63% of the brain" in result.verdict, result.as_json()


def test_experts_that_segmented_the_scalp_are_caught_after_the_cut() -> None:
    """The panel cut the masks to the brain, so the fused mask looks tidy: the cut-off volumes tell."""
    tumour = ball((30, 40, 66), 2)  # the little that was left inside
    result = assess_plausibility(tumour, VOXEL_MM3, BRAIN.astype(np.uint8),
                                 {"a": (0.3, 9.0), "b": (0.2, 12.0), "c": (5.0, 0.0)})
    assert result.outside_brain_fraction == pytest.approx(9.0 / 9.3)  # median of 0.968, 0.984, 0.0
    assert result.review and "outside the brain" in result.verdict

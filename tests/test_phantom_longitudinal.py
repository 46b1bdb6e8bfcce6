"""Longitudinal phantoms: reproducibility, volume truth, motion truth, category balance."""

from __future__ import annotations

import numpy as np
import pytest

from oncoflow.core.change_thresholds import ChangeThresholds
from oncoflow.phantoms.longitudinal_phantom import (
    CATEGORIES,
    LongitudinalCase,
    landmarks_mm,
    make_longitudinal_case,
    make_validation_set,
    study_info_kwargs,
)
from oncoflow.phantoms.phantom_dicom import StudyInfo

SMALL = (40, 48, 48)


def _apply(matrix: np.ndarray, point: np.ndarray) -> np.ndarray:
    return matrix[:3, :3] @ point + matrix[:3, 3]


def _rotation_deg(matrix: np.ndarray) -> float:
    u, _, vt = np.linalg.svd(matrix[:3, :3])  # closest rotation (polar decomposition)
    rotation = u @ vt
    return float(np.rad2deg(np.arccos(np.clip((np.trace(rotation) - 1.0) / 2.0, -1.0, 1.0))))


def test_same_seed_same_case() -> None:
    a = make_longitudinal_case(11, 3, shape=SMALL)
    b = make_longitudinal_case(11, 3, shape=SMALL)
    assert a.anatomy == b.anatomy and a.patient_id == b.patient_id
    for ta, tb in zip(a.time_points, b.time_points, strict=True):
        np.testing.assert_array_equal(ta.phantom.volume.voxels, tb.phantom.volume.voxels)
        np.testing.assert_array_equal(ta.phantom.tumour_mask, tb.phantom.tumour_mask)
        np.testing.assert_array_equal(ta.motion_to_baseline, tb.motion_to_baseline)
        assert ta.phantom.volume.origin_mm == tb.phantom.volume.origin_mm
        assert (ta.study_date, ta.true_volume_cm3, ta.volume_factor) == (tb.study_date, tb.true_volume_cm3,
                                                                          tb.volume_factor)
    other = make_longitudinal_case(12, 3, shape=SMALL)
    assert not np.array_equal(other.time_points[1].motion_to_baseline, a.time_points[1].motion_to_baseline)


def test_baseline_and_dates() -> None:
    case = make_longitudinal_case(4, 3, shape=SMALL)
    base = case.time_points[0]
    np.testing.assert_array_equal(base.motion_to_baseline, np.eye(4))
    assert base.volume_factor == 1.0
    for earlier, later in zip(case.time_points, case.time_points[1:], strict=False):
        assert 60 <= (later.study_date - earlier.study_date).days <= 120
    info = StudyInfo(**study_info_kwargs(case, 1))
    assert info.patient_id == case.patient_id
    assert info.study_date == case.time_points[1].study_date.strftime("%Y%m%d")
    assert info.accession_number != StudyInfo(**study_info_kwargs(case, 0)).accession_number


def test_analytic_volume_matches_fine_grid() -> None:
    lesion = make_longitudinal_case(3, shape=SMALL).lesion
    for factor in (1.0, 0.45):
        extent = lesion.max_extent_mm(factor) + 1.0
        h = 0.4
        axes = [np.arange(c - extent, c + extent, h) for c in lesion.centre_mm]
        inside = lesion.distance(np.stack(np.meshgrid(*axes, indexing="ij")), factor) < 1.0
        assert not inside[0].any() and not inside[-1].any()  # the bound really bounds
        assert inside.sum() * h**3 / 1000.0 == pytest.approx(lesion.volume_cm3(factor), rel=0.005)


@pytest.mark.parametrize(
    ("seed", "spacing"),
    [(1, (2.0, 1.5, 1.5)), (2, (1.5, 2.0, 2.0)), (6, (2.0, 1.2, 1.2))],
)
def test_voxelised_truth_volume_close_to_true_volume(seed: int, spacing: tuple[float, float, float]) -> None:
    case = make_longitudinal_case(seed, 2, spacing_mm=spacing, volume_factors=[1.0, 1.4])
    for tp in case.time_points:
        assert tp.true_volume_cm3 >= 2.0
        voxelised = tp.phantom.tumour_mask.sum() * tp.phantom.volume.voxel_volume_mm3 / 1000.0
        assert voxelised == pytest.approx(tp.true_volume_cm3, rel=0.04)


def test_scaled_motion_apparent_volume() -> None:
    case = make_longitudinal_case(9, 2, spacing_mm=(1.5, 1.5, 1.5), max_scale_fraction=0.02)
    follow_up = case.time_points[1]
    singular = np.linalg.svd(follow_up.motion_to_baseline[:3, :3], compute_uv=False)
    assert np.all((singular >= 1 / 1.02 - 1e-12) & (singular <= 1 / 0.98 + 1e-12))
    voxelised = follow_up.phantom.tumour_mask.sum() * follow_up.phantom.volume.voxel_volume_mm3 / 1000.0
    assert voxelised == pytest.approx(follow_up.apparent_volume_cm3, rel=0.04)


def test_percent_change_matches_factors() -> None:
    case = make_longitudinal_case(5, 3, shape=SMALL, volume_factors=[1.0, 1.6, 0.8])
    assert case.true_percent_change(0, 1) == pytest.approx(60.0)
    assert case.true_percent_change(1, 2) == pytest.approx(-50.0)
    assert case.true_percent_change(0, 2) == pytest.approx(-20.0)
    assert [case.true_category(0, 1), case.true_category(1, 2), case.true_category(0, 2)] == [
        "progression", "response", "minor change"]
    follow_ups = make_longitudinal_case(5, 2, shape=SMALL, volume_factors=[1.03])
    assert follow_ups.true_percent_change(0, 1) == pytest.approx(3.0)
    assert follow_ups.true_category(0, 1) == "stable"
    assert follow_ups.true_category(0, 1, ChangeThresholds(stable_percent=2.0)) == "minor change"


def test_thresholds() -> None:
    t = ChangeThresholds()
    assert [t.category(x) for x in (25.01, 25.0, -25.0, -24.9, 5.0, -5.0, 5.1, -5.1)] == [
        "progression", "minor change", "response", "minor change", "stable", "stable", "minor change", "minor change"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lesion_centre_moves_with_the_head(seed: int) -> None:
    case = make_longitudinal_case(seed, 3, shape=(48, 64, 64), volume_factors=[1.0, 0.5, 2.0])
    for tp in case.time_points:
        point = _apply(np.linalg.inv(tp.motion_to_baseline), case.lesion.centre_mm)
        index = np.rint(tp.phantom.volume.voxel_index(tuple(point))).astype(int)
        assert tp.phantom.tumour_mask[tuple(index)] == 1
        # and the mask's centroid is where the lesion centre went (lobes shift it a little)
        centroid_index = np.argwhere(tp.phantom.tumour_mask).mean(axis=0)
        centroid = _apply(tp.phantom.volume.affine_lps(), centroid_index)
        assert np.linalg.norm(centroid - point) < 0.35 * tp.true_volume_cm3 ** (1 / 3) * 10.0


def test_motion_within_limits() -> None:
    for seed in range(6):
        case = make_longitudinal_case(seed, 3, shape=(24, 24, 24))
        centre = case.head_centre_mm
        for tp in case.time_points[1:]:
            to_follow_up = np.linalg.inv(tp.motion_to_baseline)
            assert _rotation_deg(tp.motion_to_baseline) <= 10.0 + 1e-6
            assert _rotation_deg(tp.motion_to_baseline) == pytest.approx(tp.rotation_deg, abs=1e-6)
            shift = np.linalg.norm(_apply(to_follow_up, centre) - centre)
            assert shift <= 15.0 + 1e-6
            assert shift == pytest.approx(tp.translation_mm, abs=1e-6)
            assert np.linalg.det(tp.motion_to_baseline[:3, :3]) == pytest.approx(1.0)
    small = make_longitudinal_case(3, 2, shape=(24, 24, 24), max_rotation_deg=2.0, max_translation_mm=3.0)
    assert small.time_points[1].rotation_deg <= 2.0 and small.time_points[1].translation_mm <= 3.0


def test_orientation_and_spacing_per_visit() -> None:
    case = make_longitudinal_case(
        8, 2, spacing_mm=[(3.0, 2.0, 2.0), (2.0, 2.5, 2.5)], orientations=["axial", "coronal"])
    base, follow = (tp.phantom.volume for tp in case.time_points)
    assert base.spacing_mm == (3.0, 2.0, 2.0) and follow.spacing_mm == (2.0, 2.5, 2.5)
    np.testing.assert_allclose(np.abs(base.slice_direction), [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(np.abs(follow.slice_direction), [0, 1, 0], atol=1e-12)


def _check_landmarks(case: LongitudinalCase) -> None:
    points = landmarks_mm(case)
    assert points.shape == (20, 3)
    np.testing.assert_array_equal(points, landmarks_mm(case))
    gaps = np.linalg.norm(points[:, None] - points[None], axis=2) + np.eye(20) * 1e9
    assert gaps.min() > 10.0  # spread out
    base = case.time_points[0].phantom.volume
    for p in points:  # inside the head on the baseline image
        index = np.rint(base.voxel_index(tuple(p))).astype(int)
        assert np.all(index >= 0) and np.all(index < np.asarray(base.shape))


def test_validation_set_balanced() -> None:
    cases = make_validation_set(8, start_seed=100, shape=(32, 40, 40))
    assert len(cases) == 8
    assert {c.anatomy for c in cases} == {"colin27", "mni152"}
    assert [c.true_category(0, 1) for c in cases] == [*CATEGORIES, *CATEGORIES]
    changes = [c.true_percent_change(0, 1) for c in cases]
    assert min(changes) >= -60.0 - 1e-9 and max(changes) <= 150.0 + 1e-9
    assert len({c.seed for c in cases}) == 8
    _check_landmarks(cases[0])
    _check_landmarks(cases[4])

"""A follow-up compared with its baseline on longitudinal phantoms, with the truth masks as the panel's masks.

This isolates registration, warping, measurement and flagging from segmentation error:
the % change must match the phantom's true change within the voxelisation error.
"""

from __future__ import annotations

import numpy as np
import pytest

from oncoflow.core.change_thresholds import ChangeThresholds
from oncoflow.measure.longitudinal_comparison import ComparisonError, TimePointData, affine_matrix, compare
from oncoflow.phantoms.longitudinal_phantom import LongitudinalCase, make_longitudinal_case


def time_point(case: LongitudinalCase, i: int, expert_noise: tuple[float, ...] = (0.0,),
               with_brain: bool = False) -> TimePointData:
    """The visit with the truth as its fused mask; ``expert_noise``: one voter each, the fused volume without it
    off by that fraction (one voter: no leave-one-out volumes)."""
    visit = case.time_points[i]
    mask = visit.phantom.tumour_mask
    volume_cm3 = float(mask.sum()) * visit.phantom.volume.voxel_volume_mm3 / 1000
    names = tuple(f"e{k}" for k in range(len(expert_noise)))
    return TimePointData(
        study_instance_uid=f"2.25.{case.seed}{i}", study_date=visit.study_date, volume=visit.phantom.volume,
        fused_mask=mask, expert_volumes_cm3={n: volume_cm3 for n in names},
        brain_mask=visit.phantom.brain_mask if with_brain else None,
        leave_one_out_volumes_cm3={} if len(names) < 2 else
        {n: volume_cm3 * (1 + e) for n, e in zip(names, expert_noise, strict=True)},
        voters=names,
    )


@pytest.fixture(scope="module")
def progression() -> LongitudinalCase:
    return make_longitudinal_case(11, categories=["progression"], spacing_mm=(2.0, 2.0, 2.0))


def test_change_matches_the_truth(progression: LongitudinalCase) -> None:
    case = progression
    result = compare(time_point(case, 0), time_point(case, 1), ChangeThresholds(), "sitk")
    truth = case.true_percent_change(0, 1)  # from the phantom's own lesion masks, not from the code under test
    assert truth > 25.0 + 4.0  # clearly above the documented progression threshold (+25 %), error margin included
    assert result.percent_change == pytest.approx(truth, abs=4.0)
    assert result.flag == "progression"
    assert result.registration_ncc_after > result.registration_ncc_before and result.registration_ncc_after > 0.8
    assert result.dice > 0.6  # a grown lesion overlaps its baseline
    days = (case.time_points[1].study_date - case.time_points[0].study_date).days
    assert result.days_between == days
    assert result.growth_rate_cm3_per_day == pytest.approx(result.delta_cm3 / days)
    assert result.hd95_mm is not None and result.hd95_mm > 0
    # the stored matrix takes the follow-up back to the baseline: compare with the phantom's known motion
    motion = case.time_points[1].motion_to_baseline
    point = np.array([*case.lesion.centre_mm, 1.0])
    follow_up_point = np.linalg.inv(motion) @ point
    assert np.linalg.norm(result.follow_up_to_baseline_lps @ follow_up_point - point) < 2.0
    assert result.percent_change_ci95 is None  # one expert: no jackknife


def test_full_heads_register_on_their_brains(progression: LongitudinalCase) -> None:
    """With both visits' brain masks (the phantom's anatomy here; deepbet's in the pipeline) the registration
    leaves scalp and neck out and still takes the lesion centre back to within 2 mm of the known motion."""
    case = progression
    assert case.time_points[0].phantom.brain_mask is not None  # full heads by default
    result = compare(time_point(case, 0, with_brain=True), time_point(case, 1, with_brain=True),
                     ChangeThresholds(), "sitk")
    assert result.registered_on == "brains" and result.as_json()["registration"]["registered_on"] == "brains"
    point = np.array([*case.lesion.centre_mm, 1.0])
    follow_up_point = np.linalg.inv(case.time_points[1].motion_to_baseline) @ point
    assert np.linalg.norm(result.follow_up_to_baseline_lps @ follow_up_point - point) < 2.0
    assert result.percent_change == pytest.approx(case.true_percent_change(0, 1), abs=4.0)
    one_brain = compare(time_point(case, 0, with_brain=True), time_point(case, 1), ChangeThresholds(), "sitk")
    assert one_brain.registered_on == "heads"  # never a brain against a head


def test_expert_disagreement_flags_high_uncertainty(progression: LongitudinalCase) -> None:
    case = progression
    baseline = time_point(case, 0, expert_noise=(0.0, 0.0, 0.0))
    follow_up = time_point(case, 1, expert_noise=(-0.4, 0.0, 0.6))
    result = compare(baseline, follow_up, ChangeThresholds(), "sitk")
    assert result.percent_change_ci95 is not None and result.flag == "high uncertainty"
    assert "experts disagree" in result.flag_reason
    # the interval is around the reported change (the fused masks'), from the same voter left out at both visits
    bl = float(baseline.fused_mask.sum()) * baseline.volume.voxel_volume_mm3 / 1000
    fu = float(follow_up.fused_mask.sum()) * follow_up.volume.voxel_volume_mm3 / 1000
    estimate = 100 * (fu - bl) / bl
    replicates = [100 * (fu * (1 + e) - bl) / bl for e in (-0.4, 0.0, 0.6)]
    mean = sum(replicates) / 3
    half = 4.302652729911275 * (2 / 3 * sum((r - mean) ** 2 for r in replicates)) ** 0.5
    assert result.percent_change == pytest.approx(estimate)
    assert result.percent_change_ci95 == pytest.approx((estimate - half, estimate + half))


def test_poor_registration_resegments_and_flags(progression: LongitudinalCase) -> None:
    case = progression
    calls = []

    def resegment(volume):
        calls.append(volume.shape)
        return np.zeros(volume.shape, np.uint8)

    result = compare(time_point(case, 0), time_point(case, 1), ChangeThresholds(min_registration_ncc=0.999),
                     "sitk", resegment)
    assert calls == [case.time_points[0].phantom.volume.shape]  # on the baseline grid
    assert result.resegmented and result.flag == "poor registration" and result.dice == 0.0
    # the flag follows the measured NCC and the threshold, both named in its reason: the same pair under the
    # default threshold (0.5) is aligned well, not flagged, not re-segmented
    ncc = result.registration_ncc_after
    assert ncc is not None and 0.5 < ncc < 0.999
    assert f"{ncc:.2f} < 1.00" in result.flag_reason
    default = compare(time_point(case, 0), time_point(case, 1), ChangeThresholds(), "sitk", resegment)
    assert not default.resegmented and default.flag == "progression" and len(calls) == 1


def test_affine_matrix_matches_the_transform() -> None:
    import SimpleITK as sitk

    transform = sitk.AffineTransform(3)
    transform.SetMatrix([1.0, 0.1, 0.0, 0.0, 0.9, 0.0, 0.05, 0.0, 1.1])
    transform.SetCenter((10.0, -5.0, 3.0))
    transform.SetTranslation((1.0, 2.0, -3.0))
    point = (4.0, 7.0, -2.0)
    assert affine_matrix(transform) @ np.array([*point, 1.0]) == pytest.approx([*transform.TransformPoint(point), 1.0])


def test_a_mask_that_does_not_fit_its_volume_is_refused(progression: LongitudinalCase) -> None:
    visit = progression.time_points[0]
    with pytest.raises(ComparisonError, match="does not fit"):
        TimePointData("1.2", visit.study_date, visit.phantom.volume, np.zeros((2, 2, 2), np.uint8), {})


def test_a_follow_up_without_overlap_is_refused(progression: LongitudinalCase) -> None:
    from oncoflow.core.volume import Volume

    visit = progression.time_points[1]
    volume = visit.phantom.volume
    slab = Volume(volume.voxels[:4].copy(), volume.spacing_mm, volume.origin_mm, volume.row_direction,
                  volume.column_direction, volume.slice_direction)  # four edge slices: hardly any head
    follow_up = TimePointData("2.25.9", visit.study_date, slab, visit.phantom.tumour_mask[:4].copy(), {})
    with pytest.raises(ComparisonError, match="overlap|registration of"):
        compare(time_point(progression, 0), follow_up, ChangeThresholds(), "sitk")

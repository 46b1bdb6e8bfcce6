"""One comparison: a follow-up time point against its baseline, in physical units.

Data flow: both volumes are prepared for registration (LPS, 1 mm isotropic, N4,
z-score; :mod:`oncoflow_registration`), the follow-up is registered to the baseline
(rigid then affine), and the follow-up's fused mask is warped onto the baseline grid
with nearest-neighbour interpolation. Volumes and diameters are measured on each
scan's native grid; Dice and HD95 on the baseline grid. When the registration's NCC
is below ``ONCOFLOW_MIN_REGISTRATION_NCC`` the warped mask is not trusted: the
follow-up image, resampled onto the baseline grid, is segmented again by the panel
(``resegment``) and that mask is used, and the comparison is flagged.

The transform is kept as a 4x4 matrix mapping follow-up LPS mm to baseline LPS mm, so
the comparison can be reproduced from the stored objects.

The 95 % intervals of the % change and of the difference are for the reported numbers, the change between the
two fused volumes: a jackknife whose replicates leave the same voter out of both visits' fusions
(:func:`oncoflow.measure.lesion_metrics.change_ci95`, from the leave-one-out volumes each job stored; for a
benchmark holding the experts' masks, :func:`change_ci95_from_masks`). docs/uncertainty.md gives the method.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from oncoflow.core.change_thresholds import ChangeThresholds
from oncoflow.core.tumour_compartments import Region
from oncoflow.core.volume import Volume
from oncoflow.measure.change_flags import change_flag
from oncoflow.measure.fusion import FusionStrategy
from oncoflow.measure.lesion_metrics import (
    FusedVolume,
    JackknifeCI,
    LesionMeasurements,
    Statistic,
    change_ci95,
    growth_rate_cm3_per_day,
    hd95_mm,
    measure_lesion,
    volume_change,
)
from oncoflow.measure.mask_metrics import dice, volume_cm3
from oncoflow.measure.region_fusion import ExpertOutputRegions, fuse_regions

MIN_HEAD_OVERLAP = 0.5  # fraction of the baseline head the registered follow-up must cover to be compared


class ComparisonError(ValueError):
    """The two time points cannot be compared (reason in the message)."""


@dataclass(frozen=True)
class TimePointData:
    """What a comparison needs of one processed study."""

    study_instance_uid: str
    study_date: date
    volume: Volume  # the input series
    fused_mask: npt.NDArray[np.uint8]  # the ensemble SEG's mask on the volume's grid
    expert_volumes_cm3: Mapping[str, float]  # each expert that ran: its tumour volume
    brain_mask: npt.NDArray[np.uint8] | None = None  # the brain extraction's mask on the volume's grid, if any
    # the job's fusion re-run with each voter left out: voter -> fused volume (cm³) of the driving region; {} with
    # fewer than two voters, None when the job did not store them (made before they were)
    leave_one_out_volumes_cm3: Mapping[str, float] | None = None
    voters: tuple[str, ...] | None = None  # the experts that voted in the fusion (None: leave_one_out's keys)
    measurements: LesionMeasurements = field(init=False)

    def __post_init__(self) -> None:
        if self.fused_mask.shape != self.volume.shape:
            raise ComparisonError(
                f"study {self.study_instance_uid}: mask {self.fused_mask.shape} does not fit volume {self.volume.shape}"
            )
        object.__setattr__(
            self, "measurements",
            measure_lesion(self.fused_mask, self.volume.affine_lps(), self.volume.voxel_volume_mm3),
        )

    @property
    def fused_volume(self) -> FusedVolume:
        """The reported volume (the fused mask's) with its leave-one-out re-fusions, for the intervals."""
        return FusedVolume(self.measurements.volume_cm3, self.leave_one_out_volumes_cm3, self.voters)

    @property
    def experts_mean_volume_cm3(self) -> float | None:
        """The mean volume of the experts that voted (all that ran when unknown); ``None`` for fewer than two."""
        voting = self.fused_volume.voting
        values = [v for n, v in self.expert_volumes_cm3.items() if voting is None or n in voting]
        return float(np.mean(values)) if len(values) > 1 else None


@dataclass(frozen=True)
class Comparison:
    baseline_uid: str
    follow_up_uid: str
    baseline_date: date
    days_between: float
    baseline: LesionMeasurements
    follow_up: LesionMeasurements
    delta_cm3: float
    percent_change: float | None
    percent_change_ci95: tuple[float, float] | None
    delta_ci95_cm3: tuple[float, float] | None
    dice: float
    hd95_mm: float | None
    growth_rate_cm3_per_day: float | None
    registration_method: str
    registration_ncc_before: float
    registration_ncc_after: float
    registration_s: float
    resegmented: bool  # the follow-up was segmented again on the baseline grid (poor registration)
    flag: str
    flag_reason: str
    follow_up_to_baseline_lps: npt.NDArray[np.float64]  # 4x4, follow-up LPS mm -> baseline LPS mm
    registered_on: str = "heads"  # "brains": both visits' brain masks, skull and scalp left out

    def as_json(self) -> dict[str, object]:
        return {
            "baseline_study_instance_uid": self.baseline_uid,
            "follow_up_study_instance_uid": self.follow_up_uid,
            "days_between": self.days_between,
            "volume_baseline_cm3": round(self.baseline.volume_cm3, 3),
            "volume_follow_up_cm3": round(self.follow_up.volume_cm3, 3),
            "delta_cm3": round(self.delta_cm3, 3),
            "percent_change": None if self.percent_change is None else round(self.percent_change, 2),
            "percent_change_ci95": None if self.percent_change_ci95 is None
            else [round(v, 2) for v in self.percent_change_ci95],
            "delta_ci95_cm3": None if self.delta_ci95_cm3 is None else [round(v, 3) for v in self.delta_ci95_cm3],
            "dice": round(self.dice, 4),
            "hd95_mm": None if self.hd95_mm is None else round(self.hd95_mm, 2),
            "growth_rate_cm3_per_day": None if self.growth_rate_cm3_per_day is None
            else round(self.growth_rate_cm3_per_day, 5),
            "longest_axial_diameter_mm": [round(self.baseline.longest_axial_diameter_mm, 1),
                                          round(self.follow_up.longest_axial_diameter_mm, 1)],
            "max_caliper_mm": [round(self.baseline.max_caliper_mm, 1), round(self.follow_up.max_caliper_mm, 1)],
            "registration": {
                "method": self.registration_method, "ncc_before": round(self.registration_ncc_before, 4),
                "ncc_after": round(self.registration_ncc_after, 4), "seconds": round(self.registration_s, 3),
                "resegmented": self.resegmented, "registered_on": self.registered_on,
            },
            "flag": self.flag,
            "flag_reason": self.flag_reason,
            "follow_up_to_baseline_lps": [round(float(v), 6) for v in self.follow_up_to_baseline_lps.reshape(-1)],
        }


def affine_matrix(transform: sitk.AffineTransform) -> npt.NDArray[np.float64]:
    """4x4 homogeneous matrix of a SimpleITK affine transform (LPS mm to LPS mm): y = A (x - c) + c + t."""
    matrix = np.asarray(transform.GetMatrix(), dtype=np.float64).reshape(3, 3)
    centre = np.asarray(transform.GetCenter(), dtype=np.float64)
    translation = np.asarray(transform.GetTranslation(), dtype=np.float64)
    out = np.eye(4)
    out[:3, :3] = matrix
    out[:3, 3] = translation + centre - matrix @ centre
    return out


def head_coverage(baseline: Volume, follow_up: Volume, transform: sitk.Transform) -> float:
    """Fraction of the baseline's head voxels (> 10 % of the 99th percentile) inside the follow-up's field of view."""
    from oncoflow_registration import resample_to

    field = replace(follow_up, voxels=np.ones(follow_up.shape, np.float32))
    inside = resample_to(baseline, field, transform, is_mask=True).astype(bool)
    head = baseline.voxels > 0.1 * float(np.percentile(baseline.voxels, 99))
    return float((inside & head).sum()) / max(int(head.sum()), 1)


def _brain_image(time_point: TimePointData) -> sitk.Image:
    """The time point's brain mask as a SimpleITK image on its volume's grid."""
    from oncoflow_registration.sitk_volume import array_to_sitk

    assert time_point.brain_mask is not None
    return array_to_sitk(time_point.brain_mask.astype(np.uint8), time_point.volume)


def compare(
    baseline: TimePointData,
    follow_up: TimePointData,
    thresholds: ChangeThresholds,
    registration_method: str = "elastix",
    resegment: Callable[[Volume], npt.NDArray[np.uint8]] | None = None,
) -> Comparison:
    """Register, warp, measure and flag ``follow_up`` against ``baseline``; raises :class:`ComparisonError`."""
    from oncoflow_registration import prepare_for_registration, register_affine, resample_to

    days = float((follow_up.study_date - baseline.study_date).days)
    started = time.perf_counter()
    # on the brains when both visits have one: scalp, fat and neck move and change between visits, the brain less
    brains = baseline.brain_mask is not None and follow_up.brain_mask is not None
    try:
        fixed = prepare_for_registration(baseline.volume, brain_mask=_brain_image(baseline) if brains else None)
        moving = prepare_for_registration(follow_up.volume, brain_mask=_brain_image(follow_up) if brains else None)
        registration = register_affine(fixed, moving, registration_method)  # type: ignore[arg-type]
    except (RuntimeError, ValueError) as exc:  # ITK raises RuntimeError, e.g. when too few samples overlap
        raise ComparisonError(f"registration of {follow_up.study_instance_uid} to {baseline.study_instance_uid} "
                              f"failed: {str(exc).strip().splitlines()[-1][:300]}") from exc
    registration_s = time.perf_counter() - started
    if not np.isfinite(registration.ncc_after):
        raise ComparisonError("registration left no overlap between the follow-up and the baseline")

    covered = head_coverage(baseline.volume, follow_up.volume, registration.transform)
    if covered < MIN_HEAD_OVERLAP:
        raise ComparisonError(
            f"after registration the follow-up {follow_up.study_instance_uid} covers {covered:.0%} of the baseline's "
            f"head (< {MIN_HEAD_OVERLAP:.0%}): no usable overlap to compare"
        )
    follow_up_mask = replace(follow_up.volume, voxels=follow_up.fused_mask.astype(np.float32))
    warped = resample_to(baseline.volume, follow_up_mask, registration.transform, is_mask=True)
    resegmented = False
    if registration.ncc_after < thresholds.min_registration_ncc and resegment is not None:
        image = resample_to(baseline.volume, follow_up.volume, registration.transform, is_mask=False)
        warped = resegment(replace(baseline.volume, voxels=image.astype(np.float32)))
        resegmented = True

    a, b = baseline.measurements, follow_up.measurements
    delta_cm3, percent = volume_change(a.volume_cm3, b.volume_cm3)
    percent_ci = change_ci95(baseline.fused_volume, follow_up.fused_volume, "percent_change")
    delta_ci = change_ci95(baseline.fused_volume, follow_up.fused_volume, "delta_cm3")
    ci95 = None if percent_ci is None else (percent_ci.low, percent_ci.high)
    flag, reason = change_flag(a.volume_cm3, b.volume_cm3, ci95, registration.ncc_after, thresholds)
    if resegmented:
        reason += "; the follow-up was re-segmented on the baseline grid"
    to_baseline = np.linalg.inv(affine_matrix(registration.transform))
    return Comparison(
        baseline_uid=baseline.study_instance_uid,
        follow_up_uid=follow_up.study_instance_uid,
        baseline_date=baseline.study_date,
        days_between=days,
        baseline=a,
        follow_up=b,
        delta_cm3=delta_cm3,
        percent_change=percent,
        percent_change_ci95=ci95,
        delta_ci95_cm3=None if delta_ci is None else (delta_ci.low, delta_ci.high),
        dice=dice(baseline.fused_mask, warped),
        hd95_mm=hd95_mm(baseline.fused_mask, warped, baseline.volume.spacing_mm),
        growth_rate_cm3_per_day=growth_rate_cm3_per_day(a.volume_cm3, b.volume_cm3, days),
        registration_method=registration.method,
        registration_ncc_before=registration.ncc_before,
        registration_ncc_after=registration.ncc_after,
        registration_s=registration_s,
        resegmented=resegmented,
        flag=flag,
        flag_reason=reason,
        follow_up_to_baseline_lps=to_baseline,
        registered_on="brains" if brains else "heads",
    )


def change_ci95_from_masks(
    baseline_masks: Mapping[str, npt.NDArray[np.integer] | ExpertOutputRegions],
    follow_up_masks: Mapping[str, npt.NDArray[np.integer] | ExpertOutputRegions],
    baseline_voxel_volume_mm3: float,
    follow_up_voxel_volume_mm3: float,
    strategy: FusionStrategy = "majority",
    weights: Mapping[str, float] | None = None,
    driving_region: Region = "TC",
    derived_from: Mapping[str, str] | None = None,
    statistic: Statistic = "percent_change",
) -> JackknifeCI | None:
    """The 95 % interval the pipeline reports for a pair of visits, from each visit's expert masks (for benchmarks).

    Each visit is fused as a job fuses it (:func:`oncoflow.measure.region_fusion.fuse_regions` with ``strategy``,
    ``weights``, ``driving_region`` and ``derived_from``), with its leave-one-out re-fusions; the interval is
    :func:`oncoflow.measure.lesion_metrics.change_ci95` of the driving region's fused volumes. A plain array is a
    binary mask of ``driving_region``; an :class:`ExpertOutputRegions` may be a compartment map. Volumes are
    measured on each visit's own grid (``*_voxel_volume_mm3``), as the reported change is. ``JackknifeCI.estimate``
    is the reported change; ``None`` when there is no interval (fewer than two voters, a zero baseline).
    """

    def visit(masks: Mapping[str, npt.NDArray[np.integer] | ExpertOutputRegions], voxel_mm3: float) -> FusedVolume:
        outputs = {n: m if isinstance(m, ExpertOutputRegions)
                   else ExpertOutputRegions(np.asarray(m).astype(bool).astype(np.uint8), frozenset(), driving_region)
                   for n, m in masks.items()}
        fused = fuse_regions(outputs, voxel_mm3, strategy, weights, None, driving_region, derived_from)
        return FusedVolume(volume_cm3(fused.driving.mask, voxel_mm3), fused.leave_one_out_cm3, fused.driving.voters)

    return change_ci95(visit(baseline_masks, baseline_voxel_volume_mm3),
                       visit(follow_up_masks, follow_up_voxel_volume_mm3), statistic)

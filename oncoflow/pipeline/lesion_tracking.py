"""A patient's lesions, one by one, across visits: found at each time point, tracked from the visit before, and the
response they give (RANO 2.0 or RANO-BM, ``ONCOFLOW_RESPONSE_CRITERIA``).

* **Lesions** of a visit: :func:`oncoflow.measure.lesion_instances.find_lesions` on the fused mask of the region
  that drives the change (fragments closer than ``ONCOFLOW_LESION_JOIN_MM`` joined), measured on the visit's own
  grid (volume, RANO's two perpendicular diameters on the axial plane of the largest cross-section, calliper,
  measurability with the visit's slice thickness).
* **Tracking**: the first visit's lesions are "Lesion 1", "Lesion 2" ... by size. Each later visit's lesion label
  image is resampled (nearest neighbour) onto the previous visit's grid with the registration between the two,
  its centroids mapped exactly, and :func:`oncoflow.measure.lesion_matching.match_lesions` pairs the lesions
  (optimal overlap, centroid distance for those that no longer overlap); identifiers are carried on, merges
  and splits recorded, and a new lesion takes the next number never used in this patient.
* **Response**: every visit's lesions by identifier, in the criteria's measure, through
  :func:`oncoflow.measure.rano_response.assess_time_points`, with the first visit as baseline.

The per-lesion rows are JSON (stored with the time point, served by the timeline route, read again when a later
visit is tracked), so tracking never depends on a previous run's objects in memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from oncoflow.core.volume import Volume
from oncoflow.measure.lesion_instances import LesionInstance, LesionSet, find_lesions
from oncoflow.measure.lesion_matching import (
    TimePointLesions,
    TrackingUpdate,
    carry_identifiers,
    initial_identifiers,
    match_lesions,
)
from oncoflow.measure.rano_response import (
    ClinicalState,
    LesionValue,
    Response,
    ResponseCriteria,
    assess_time_points,
    choose_targets,
    combine_enhancing_and_non_enhancing,
)
from oncoflow.measure.rano_response import TimePointLesions as ResponseTimePoint

LESION_PREFIX = "Lesion "


@dataclass(frozen=True)
class TrackedVisit:
    """One visit's lesions (on its own grid) and their tracking identifiers."""

    lesions: LesionSet
    tracking_ids: Mapping[int, str]  # label -> "Lesion k"
    statuses: Mapping[int, str]  # label -> "baseline", "continued", "merged", "split" or "new"
    merged_ids: Mapping[int, tuple[str, ...]]  # label -> identifiers merged into it
    split_from: Mapping[int, str]  # label -> the identifier it split from
    ended_ids: tuple[str, ...]  # identifiers of the previous visit carried on by no lesion


def lesions_of(mask: npt.NDArray[np.uint8], volume: Volume, join_distance_mm: float) -> LesionSet:
    """The lesions of one visit's mask on its own grid; measurability uses the grid's slice spacing (mm) as the
    slice thickness (RANO: twice the thickness for thick slices)."""
    return find_lesions(mask.astype(bool), volume.affine_lps(), join_distance_mm=join_distance_mm,
                        slice_thickness_mm=float(volume.spacing_mm[0]))


def first_visit(lesions: LesionSet) -> TrackedVisit:
    ids = initial_identifiers([lesion.label for lesion in lesions.lesions], LESION_PREFIX)
    return TrackedVisit(lesions, ids, dict.fromkeys(ids, "baseline"), {}, {}, ())


def _previous_to_current(follow_up_to_previous_lps: npt.NDArray[np.float64]) -> sitk.AffineTransform:
    """The SimpleITK transform from the previous visit's LPS mm to this visit's (ITK maps fixed -> moving)."""
    inverse = np.linalg.inv(np.asarray(follow_up_to_previous_lps, dtype=np.float64))
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(inverse[:3, :3].ravel().tolist())
    transform.SetTranslation(inverse[:3, 3].tolist())
    return transform


def follow_visit(previous: TrackedVisit, previous_volume: Volume, current: LesionSet, current_volume: Volume,
                 follow_up_to_previous_lps: npt.NDArray[np.float64], used_ids: Sequence[str]) -> TrackedVisit:
    """Track ``current`` (a later visit's lesions) from ``previous``: ``follow_up_to_previous_lps`` is the 4x4
    registration from this visit's LPS mm to the previous visit's; ``used_ids`` every identifier given so far."""
    from oncoflow_registration import resample_to

    matrix = np.asarray(follow_up_to_previous_lps, dtype=np.float64)
    warped = resample_to(previous_volume, replace(current_volume, voxels=current.labels.astype(np.float32)),
                         _previous_to_current(matrix), is_mask=True)
    centroids = {lesion.label: tuple(float(v) for v in matrix[:3, :3] @ np.asarray(lesion.centroid_lps_mm)
                                     + matrix[:3, 3]) for lesion in current.lesions}
    volumes = {lesion.label: lesion.volume_cm3 for lesion in current.lesions}
    correspondence = match_lesions(TimePointLesions.from_lesion_set(previous.lesions),
                                   TimePointLesions(centroids, volumes, warped))  # type: ignore[arg-type]
    update: TrackingUpdate = carry_identifiers(correspondence, previous.tracking_ids, used_ids=used_ids,
                                               prefix=LESION_PREFIX)
    return TrackedVisit(
        lesions=current,
        tracking_ids=update.ids,
        statuses={t.followup: t.status for t in update.lesions},
        merged_ids={t.followup: t.merged_ids for t in update.lesions if t.merged_ids},
        split_from={t.followup: t.split_from for t in update.lesions if t.split_from},
        ended_ids=update.ended_ids,
    )


def tracked_from_rows(lesions: LesionSet, rows: Sequence[Mapping[str, Any]]) -> TrackedVisit:
    """A visit tracked earlier, rebuilt from its stored lesion rows (labels are stable: the same mask gives the
    same labels, largest first)."""
    by_label = {int(row["label"]): row for row in rows}
    if set(by_label) != {lesion.label for lesion in lesions.lesions}:
        raise ValueError("the stored lesions no longer fit the visit's mask")
    return TrackedVisit(lesions, {k: str(r["tracking_id"]) for k, r in by_label.items()},
                        {k: str(r["status"]) for k, r in by_label.items()},
                        {k: tuple(r.get("merged_ids", ())) for k, r in by_label.items() if r.get("merged_ids")},
                        {k: str(r["split_from"]) for k, r in by_label.items() if r.get("split_from")}, ())


def _point_pair(points: Any) -> list[list[float]] | None:
    return None if points is None else [[round(float(v), 2) for v in p] for p in points]


def lesion_row(tracked: TrackedVisit, lesion: LesionInstance, target: bool) -> dict[str, Any]:
    """One lesion of a visit as JSON: its identity, its measurements (mm, mm², cm³, LPS mm), its measurability."""
    label = lesion.label
    two_d = lesion.bidimensional
    return {
        "label": label,
        "tracking_id": tracked.tracking_ids[label],
        "status": tracked.statuses[label],
        "merged_ids": list(tracked.merged_ids.get(label, ())),
        "split_from": tracked.split_from.get(label),
        "target": target,
        "volume_cm3": round(lesion.volume_cm3, 3),
        "longest_diameter_mm": round(lesion.longest_diameter_mm, 1),
        "perpendicular_diameter_mm": round(lesion.perpendicular_diameter_mm, 1),
        "product_mm2": round(lesion.product_mm2, 1),
        "max_caliper_mm": round(lesion.max_caliper_mm, 1),
        "measurable": lesion.measurable,
        "not_measurable": list(lesion.measurability.reasons),
        "centroid_lps_mm": [round(v, 2) for v in lesion.centroid_lps_mm],
        "long_axis_lps_mm": _point_pair(two_d.longest_endpoints_lps_mm),
        "perpendicular_axis_lps_mm": _point_pair(two_d.perpendicular_endpoints_lps_mm),
    }


def response_time_point(study_date: date, rows: Sequence[Mapping[str, Any]], criteria: ResponseCriteria,
                        clinical: ClinicalState | None = None) -> ResponseTimePoint:
    """A visit's stored lesion rows as the response rules read them (in ``criteria``'s measure). A part split off
    a lesion counts towards the lesion it split from (a target that breaks in two while it shrinks is still one
    target, not a new lesion); only a lesion tracked as ``new`` is new."""
    key = criteria.measure  # the row's field of the same name
    values: dict[str, LesionValue] = {}
    for row in sorted(rows, key=lambda r: r.get("split_from") is not None):  # whole lesions first
        name = str(row.get("split_from") or row["tracking_id"])
        value, measurable = float(row[key]), bool(row["measurable"])
        if name in values:
            value, measurable = value + values[name].value, measurable or values[name].measurable
        values[name] = LesionValue(value, measurable)
    return ResponseTimePoint(
        study_date=study_date,
        lesions=values,
        new_lesions=tuple(str(r["tracking_id"]) for r in rows if r["status"] == "new"),
        clinical=clinical or ClinicalState(),
    )


def response_json(response: Response, criteria: ResponseCriteria) -> dict[str, Any]:
    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 2)

    return {"criteria": criteria.name, "category": response.category, "confirmation": response.confirmation,
            "label": response.label, "targets": list(response.targets), "unit": criteria.unit,
            "target_sum": rounded(response.target_sum), "baseline_sum": rounded(response.baseline_sum),
            "nadir_sum": rounded(response.nadir_sum),
            "change_from_baseline_percent": rounded(response.change_from_baseline_percent),
            "change_from_nadir_percent": rounded(response.change_from_nadir_percent),
            "reasons": list(response.reasons)}


def current_response(visits: Sequence[ResponseTimePoint], criteria: ResponseCriteria) -> Response | None:
    """The last visit's response against the first (``None`` for a single visit)."""
    responses = assess_time_points(visits, criteria)
    return responses[-1] if responses else None


def assess_last_visit(visits: Sequence[tuple[date, Sequence[Mapping[str, Any]], ClinicalState]],
                      criteria: ResponseCriteria) -> tuple[tuple[str, ...], dict[str, Any] | None]:
    """The target lesions and the response (as :func:`response_json`; ``None`` for a single visit) of the last of
    ``visits``: each its study date, its lesion rows (:func:`lesion_row`) and what the clinician entered."""
    time_points = [response_time_point(day, rows, criteria, clinical) for day, rows, clinical in visits]
    response = current_response(time_points, criteria)
    if response is None:
        return choose_targets(time_points[0], criteria), None
    return response.targets, response_json(response, criteria)


def combined_response(enhancing: dict[str, Any] | None, non_enhancing: dict[str, Any] | None) -> dict[str, Any] | None:
    """The response of a mixed tumour (RANO 2.0, docs/response-criteria.md section 6): the enhancing and the
    non-enhancing (T2/FLAIR) disease assessed in parallel, each as :func:`response_json`, and their categories
    combined. The sums and targets stay the enhancing ones; both categories and all reasons are kept. Either
    ``None`` (a first visit, or no T2/FLAIR region): the enhancing response as it is."""
    if enhancing is None or non_enhancing is None:
        return enhancing
    category = combine_enhancing_and_non_enhancing(enhancing["category"], non_enhancing["category"])
    decided_by = enhancing if category == enhancing["category"] else non_enhancing
    confirmation = decided_by["confirmation"]
    return {
        **enhancing,
        "category": category,
        "confirmation": confirmation,
        "label": category if confirmation == "not needed" else f"{category} ({confirmation})",
        "reasons": [*(f"enhancing: {r}" for r in enhancing["reasons"]),
                    *(f"non-enhancing (T2/FLAIR): {r}" for r in non_enhancing["reasons"]),
                    f"mixed tumour: enhancing {enhancing['category']} with non-enhancing {non_enhancing['category']} "
                    f"is {category}"],
        "enhancing": {k: enhancing[k] for k in ("category", "confirmation", "label", "criteria")},
        "non_enhancing": non_enhancing,
    }

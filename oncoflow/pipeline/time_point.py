"""A time point of the patient's timeline: a study's date, input series, fused mask, ensemble SEG, brain mask,
experts' volumes and leave-one-expert-out fused volumes, as the longitudinal comparison reads them."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydicom.dataset import Dataset

from oncoflow.dicom.volume_builder import SortedSeries
from oncoflow.measure.longitudinal_comparison import ComparisonError, TimePointData

LoadedTimePoint = tuple[TimePointData, SortedSeries, Dataset]  # the comparison data, its series, its ensemble SEG


def loaded_time_point(study_tags: dict[str, str], stack: SortedSeries, fused_mask: Any, seg: Dataset,
                      outputs: dict[str, Any], brain_mask: Any = None) -> LoadedTimePoint:
    """A time point from a study's tags, its input series, its fused mask and SEG, its job outputs and its brain
    mask (``None`` when brain extraction did not run)."""
    experts = {
        name: float(entry["volume_cm3"])
        for name, entry in outputs.get("experts", {}).items()
        if entry.get("status") == "ran" and entry.get("volume_cm3") is not None
    }
    data = TimePointData(str(study_tags["StudyInstanceUID"]), study_date(study_tags), stack.volume, fused_mask,
                         experts, brain_mask, *leave_one_out(outputs))
    return data, stack, seg


def leave_one_out(outputs: dict[str, Any]) -> tuple[dict[str, float] | None, tuple[str, ...] | None]:
    """The job's leave-one-expert-out fused volumes of the driving region and the experts that voted, as
    :func:`oncoflow.measure.region_fusion.fuse_regions` stored them; ``(None, None)`` for a job made before they
    were stored (its change then has no interval until the study is analysed again)."""
    volumes, voters = outputs.get("leave_one_out_volumes_cm3"), outputs.get("voting_experts")
    if volumes is None or voters is None:
        return None, None
    return {str(n): float(v) for n, v in volumes.items()}, tuple(str(n) for n in voters)


def study_date(tags: dict[str, str]) -> date:
    """StudyDate (0008,0020) of a study's main tags; :class:`ComparisonError` when it is not a DICOM date."""
    raw = tags.get("StudyDate", "")
    try:
        return datetime.strptime(raw[:8], "%Y%m%d").date()
    except ValueError as exc:
        raise ComparisonError(f"StudyDate {raw!r} is not a DICOM date (YYYYMMDD)") from exc

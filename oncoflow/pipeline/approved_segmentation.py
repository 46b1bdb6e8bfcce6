"""The radiologist's word wins: a SEG approved as a study's tumour segmentation, measured instead of the ensemble.

``POST /oncoflow/studies/{StudyInstanceUID}/approved-seg`` with JSON::

    {"sop_instance_uid": "<SEG SOPInstanceUID>", "segment_numbers": [1]}

approves a SEG of the study that a radiologist made: a refined SEG (``POST .../refine``) or one stored from OHIF's
segmentation tools (STOW-RS). It must be a SEG of that study whose frames reference the study's input series (the
series its job used), and not one of the pipeline's automatic SEGs (those are what is measured without an
approval, and a re-analysis replaces them). Its tumour is ``segment_numbers`` when given, else the segments of
the job's driving region by their codes and labels (OncoFlow's own SEGs, refined ones included), else its one
segment that is not the brain; several segments and none named is a 422 that lists them. Who approved and when
is stored (:meth:`oncoflow.pipeline.job_store.JobStore.approve_segmentation`); ``DELETE`` withdraws it.

While an approval is in force, the patient's timeline (:meth:`oncoflow.pipeline.patient_timeline.PatientTimeline.
_time_point`) measures the approved SEG's mask instead of the ensemble's: volumes, lesions, the response, the SR
(whose referenced SEG is the approved one, with a text item saying who approved it and when) and the report. A
re-analysis (or new images) stores a new ensemble SEG but never replaces the approval: the job says that an
approval is in force, and how far the new automatic result is from it (:meth:`ApprovedSegmentation.
around_timeline`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from oncoflow.dicom.derived_object import MANUFACTURER
from oncoflow.dicom.seg_writer import REFINED_DESCRIPTION_PREFIX, read_source_mask, region_segment_numbers
from oncoflow.dicom.stored_seg import (
    SegmentInfo,
    StoredSegError,
    is_segmentation,
    mask_on_sources,
    referenced_instances,
    referenced_series,
    segments_of,
    tumour_segments,
)
from oncoflow.dicom.volume_builder import InputError, SortedSeries
from oncoflow.measure.mask_metrics import dice, volume_cm3
from oncoflow.pacs.orthanc_rest import OrthancRest
from oncoflow.pipeline.job_store import Job, JobStore
from oncoflow.pipeline.request_refusal import RequestRefused, json_object
from oncoflow.pipeline.study_input import StudyInput

# the new automatic result "differs a lot" from the approved segmentation below this Dice, or past this volume change
ENSEMBLE_DIFFERS_DICE = 0.7
ENSEMBLE_DIFFERS_VOLUME_PERCENT = 25.0
MAX_SEGMENT_NUMBERS = 64
# job outputs about the panel's spread (experts' volumes, leave-one-out re-fusions): not used for an approved mask
PANEL_SPREAD_OUTPUTS = frozenset({"experts", "leave_one_out_volumes_cm3", "voting_experts"})

TimelineUpdate = Callable[[str, Job, Any], dict[str, Any]]


def segments_json(segments: list[SegmentInfo]) -> dict[str, object]:
    """The SEG's segments as a refusal lists them, so the client can name the tumour's: number, label, meaning."""
    return {"segments": [{"number": s.number, "label": s.label, "meaning": s.property_type[2] or s.property_type[1]}
                         for s in segments]}


@dataclass(frozen=True)
class ApprovalRequest:
    sop_instance_uid: str
    segment_numbers: tuple[int, ...] | None  # None: the tumour segment is found from the SEG's codes

    @classmethod
    def parse(cls, body: bytes | str) -> ApprovalRequest:
        data = json_object(body)
        uid = data.get("sop_instance_uid")
        if not isinstance(uid, str) or not 0 < len(uid) <= 64 or not all(c.isdigit() or c == "." for c in uid):
            raise RequestRefused(400, 'the body must be {"sop_instance_uid": "<the SEG\'s SOPInstanceUID>", '
                                     '"segment_numbers": [1] (optional)}')
        numbers = data.get("segment_numbers")
        if numbers is None:
            return cls(uid, None)
        if (not isinstance(numbers, list) or not numbers or len(numbers) > MAX_SEGMENT_NUMBERS
                or not all(isinstance(n, int) and not isinstance(n, bool) and 0 < n < 65536 for n in numbers)):
            raise RequestRefused(400, "segment_numbers must be a non-empty list of segment numbers (1..65535)")
        return cls(uid, tuple(sorted(set(numbers))))


def approval_time(approval: Mapping[str, Any]) -> str:
    """When it was approved, as a reader writes it: ``2026-03-01 10:15 UTC``."""
    return datetime.fromtimestamp(float(approval["approved_at"]), UTC).strftime("%Y-%m-%d %H:%M UTC")


def describe(approval: Mapping[str, Any]) -> str:
    """Who approved it and when: ``approved by radiologist alice, 2026-03-01 10:15 UTC`` (login off: by an anonymous
    user)."""
    role, user = str(approval["approved_role"]), str(approval["approved_by"])
    who = "an anonymous user (login off)" if role == "anonymous" else f"{role} {user}"
    return f"approved by {who}, {approval_time(approval)}"


def report_note(approval: Mapping[str, Any]) -> str:
    """What the report says about the segmentation it measured."""
    return (f"The measurements come from the approved segmentation: {approval['source']} (SEG "
            f"{approval['sop_instance_uid']}, segments {', '.join(str(n) for n in approval['segment_numbers'])}), "
            f"{describe(approval)}; not from the panel's automatic segmentation, whose regions and experts are shown "
            "for reference.")


def _percent(now: float, then: float) -> float | None:
    return None if then == 0 else 100.0 * (now - then) / then


def summary(approval: Mapping[str, Any], approved: npt.NDArray[np.uint8] | None = None,
            automatic: npt.NDArray[np.uint8] | None = None, voxel_volume_mm3: float = 0.0,
            error: str | None = None) -> dict[str, Any]:
    """The approval in force as a job's outputs and the routes show it: who approved which SEG and when, and, given
    both masks on one grid, how far the automatic result is from it (``automatic_differs``: Dice below
    :data:`ENSEMBLE_DIFFERS_DICE` or a volume change past :data:`ENSEMBLE_DIFFERS_VOLUME_PERCENT`); ``note``: the
    same in words (a job's event)."""
    result: dict[str, Any] = {
        "sop_instance_uid": approval["sop_instance_uid"], "segment_numbers": approval["segment_numbers"],
        "source": approval["source"], "approved_by": approval["approved_by"],
        "approved_role": approval["approved_role"], "approved_at": approval["approved_at"],
        "statement": describe(approval), "volume_cm3": approval["volume_cm3"],
        "automatic_volume_cm3": None, "dice_vs_automatic": None, "volume_change_percent": None,
        "automatic_differs": None,
    }
    note = (f"approved segmentation in force ({approval['source']}, SEG {approval['sop_instance_uid']}, "
            f"{describe(approval)}): the timeline measures it, not the automatic result")
    if error is not None:
        result["error"] = error
        note += f"; {error}"
    elif approved is not None and automatic is not None:
        approved_cm3 = volume_cm3(approved, voxel_volume_mm3)
        automatic_cm3 = volume_cm3(automatic, voxel_volume_mm3)
        overlap = dice(approved, automatic)
        change = _percent(automatic_cm3, approved_cm3)
        differs = overlap < ENSEMBLE_DIFFERS_DICE or (
            change is not None and abs(change) > ENSEMBLE_DIFFERS_VOLUME_PERCENT)
        result.update(volume_cm3=round(approved_cm3, 3), automatic_volume_cm3=round(automatic_cm3, 3),
                      dice_vs_automatic=round(overlap, 4),
                      volume_change_percent=None if change is None or not math.isfinite(change) else round(change, 1),
                      automatic_differs=differs)
        note += (f"; the automatic result {'DIFFERS A LOT' if differs else 'agrees'}: Dice {overlap:.2f}, "
                 f"{automatic_cm3:.2f} cm3 against the approved {approved_cm3:.2f} cm3"
                 + ("; review the approval" if differs else ""))
    result["note"] = note
    return result


class ApprovedSegmentation:
    """Approves, withdraws and reads the approved SEG of a study; wraps the timeline so a job keeps measuring it."""

    def __init__(self, rest: OrthancRest, store: JobStore, study_input: StudyInput) -> None:
        self.rest = rest
        self.store = store
        self.input = study_input

    # -- reading ---------------------------------------------------------------------------------

    def mask(self, approval: Mapping[str, Any], stack: SortedSeries) -> tuple[Dataset, npt.NDArray[np.uint8]]:
        """The approved SEG and its tumour mask on ``stack`` (the study's input); :class:`RequestRefused` (409) when
        the SEG is no longer in the PACS or no longer fits the input."""
        seg = self.rest.instance_dataset(str(approval["sop_instance_uid"]))
        if seg is None:
            raise RequestRefused(409, f"the approved SEG {approval['sop_instance_uid']} is no longer in the PACS: "
                                      "withdraw the approval (DELETE .../approved-seg) to measure the automatic result")
        try:
            mask = mask_on_sources(seg, stack.datasets, [int(n) for n in approval["segment_numbers"]])
        except StoredSegError as exc:
            raise RequestRefused(409, f"the approved SEG {approval['sop_instance_uid']} no longer fits the study's "
                                      f"input series: {exc}") from exc
        return seg, mask

    def _stack(self, study_id: str, job: Job) -> SortedSeries:
        timings: dict[str, float] = {}
        try:
            selection, instance_ids = self.input.select(study_id, timings)
            if job.input_series_instance_uid and \
                    selection.candidate.series_instance_uid != job.input_series_instance_uid:
                raise RequestRefused(409, f"the study's input is now series {selection.candidate.series_instance_uid}, "
                                          f"its last job used {job.input_series_instance_uid}: approve after its "
                                          "next job")
            return self.input.build(instance_ids, timings, selection.candidate.stack_id)
        except InputError as exc:
            raise RequestRefused(422, f"the study's input series cannot be read: {exc}") from exc

    def _ensemble_mask(self, job: Job, stack: SortedSeries) -> npt.NDArray[np.uint8] | None:
        uid = job.outputs.get("ensemble_seg_sop_instance_uid")
        seg = self.rest.instance_dataset(uid) if uid else None
        if seg is None:
            return None
        region = job.outputs.get("driving_region", "TC")
        try:
            return read_source_mask(seg, stack.datasets, region_segment_numbers(seg, region) or [1])
        except (ValueError, KeyError, RuntimeError):
            return None

    # -- the routes' work ------------------------------------------------------------------------

    def current(self, study_uid: str) -> dict[str, Any]:
        """The approval in force (``None``: the automatic result is measured), the SEG measured, and the history."""
        study_id = self.rest.lookup_study(study_uid)
        if study_id is None:
            raise RequestRefused(404, f"no study {study_uid}")
        approval = self.store.segmentation_approval(study_uid)
        job = self.store.latest_done(study_id)
        automatic = None if job is None else job.outputs.get("ensemble_seg_sop_instance_uid")
        return {"study_instance_uid": study_uid, "approval": approval,
                "statement": None if approval is None else describe(approval),
                "measured_seg_sop_instance_uid": approval["sop_instance_uid"] if approval else automatic,
                "automatic_seg_sop_instance_uid": automatic,
                "history": self.store.segmentation_approvals(study_uid)}

    def approve(self, study_uid: str, body: bytes | str, approver: str, role: str) -> dict[str, Any]:
        """Check the SEG (see the module's docstring) and record the approval; returns it with the approved mask's
        volume and its agreement with the study's automatic result. Raises :class:`RequestRefused`."""
        request = ApprovalRequest.parse(body)
        study_id = self.rest.lookup_study(study_uid)
        if study_id is None:
            raise RequestRefused(404, f"no study {study_uid}")
        job = self.store.latest_done(study_id)
        if job is None or not job.input_series_instance_uid:
            raise RequestRefused(409, "the study has no finished OncoFlow job: approve a segmentation once it is "
                                      "processed")
        seg = self.rest.instance_dataset(request.sop_instance_uid)
        if seg is None:
            raise RequestRefused(404, f"no instance {request.sop_instance_uid} in the PACS")
        if not is_segmentation(seg):
            raise RequestRefused(422, f"instance {request.sop_instance_uid} is not a SEG (Modality "
                                      f"{seg.get('Modality', '?')})")
        if str(seg.get("StudyInstanceUID", "")) != study_uid:
            raise RequestRefused(422, f"SEG {request.sop_instance_uid} belongs to another study")
        description = str(seg.get("SeriesDescription", ""))
        automatic = request.sop_instance_uid in job.outputs.get("seg_sop_instance_uids", []) or (
            str(seg.get("Manufacturer", "")) == MANUFACTURER and not description.startswith(REFINED_DESCRIPTION_PREFIX))
        if automatic:
            raise RequestRefused(422, f"SEG {request.sop_instance_uid} is one of OncoFlow's automatic SEGs: it is what "
                                      "is measured without an approval (and a re-analysis replaces it); approve a "
                                      "refined SEG or one edited in the viewer")
        input_series = job.input_series_instance_uid
        if input_series not in referenced_series(seg):
            named = ", ".join(sorted(referenced_series(seg))) or "none"
            raise RequestRefused(422, f"SEG {request.sop_instance_uid} references series {named}, not the study's "
                                      f"input series {input_series} (the series its job segmented)")
        region = str(job.outputs.get("driving_region", "TC"))
        try:
            numbers = tumour_segments(seg, region, request.segment_numbers)  # type: ignore[arg-type]
        except StoredSegError as exc:  # the user chooses among the SEG's segments
            raise RequestRefused(422, str(exc), segments_json(segments_of(seg))) from exc
        stack = self._stack(study_id, job)
        if not referenced_instances(seg) & {str(ds.SOPInstanceUID) for ds in stack.datasets}:
            raise RequestRefused(422, f"SEG {request.sop_instance_uid}'s frames reference none of the input series' "
                                      "images")
        try:
            mask = mask_on_sources(seg, stack.datasets, numbers)
        except StoredSegError as exc:
            raise RequestRefused(422, f"SEG {request.sop_instance_uid} cannot be read on the input series: {exc}") \
                from exc
        if not mask.any():
            raise RequestRefused(422, f"segments {numbers} of SEG {request.sop_instance_uid} are empty on the input "
                                      "series: nothing to measure")
        approved_cm3 = round(volume_cm3(mask, stack.volume.voxel_volume_mm3), 3)
        refined = next((r for r in self.store.refinements(study_uid)
                        if r["sop_instance_uid"] == request.sop_instance_uid), None)
        source = (f"refined SEG v{refined['version']}" if refined is not None else
                  f"SEG stored by {seg.get('Manufacturer') or 'an unnamed application'}"
                  + (f" ('{description}')" if description else ""))[:200]
        approval = self.store.approve_segmentation(
            study_uid, request.sop_instance_uid, str(seg.get("SeriesInstanceUID", "")) or None, numbers, source,
            input_series, approved_cm3, approver, role)
        ensemble = self._ensemble_mask(job, stack)
        return {"approval": approval, "statement": describe(approval),
                "automatic_seg_sop_instance_uid": job.outputs.get("ensemble_seg_sop_instance_uid"),
                "in_force": summary(approval, mask, ensemble, stack.volume.voxel_volume_mm3)}

    def withdraw(self, study_uid: str, by: str) -> dict[str, Any]:
        """Withdraw the study's approval in force; :class:`RequestRefused` 404 when there is none."""
        if self.rest.lookup_study(study_uid) is None:
            raise RequestRefused(404, f"no study {study_uid}")
        withdrawn = self.store.withdraw_segmentation_approval(study_uid, by)
        if withdrawn is None:
            raise RequestRefused(404, f"no approved segmentation in force for study {study_uid}: the automatic result "
                                      "is measured")
        return withdrawn

    # -- a job's timeline ------------------------------------------------------------------------

    def in_force(self, approval: Mapping[str, Any], loaded: Any) -> dict[str, Any]:
        """What a job says when it finds an approval in force: who approved what, and how far the job's new
        automatic mask (``loaded``: its time point, ``None`` when it has none) is from the approved one."""
        if loaded is None:
            return summary(approval)
        current, stack = loaded[0], loaded[1]
        try:
            _, approved = self.mask(approval, stack)
        except RequestRefused as exc:
            return summary(approval, error=exc.message)
        return summary(approval, approved, current.fused_mask, stack.volume.voxel_volume_mm3)

    def around_timeline(self, update: TimelineUpdate) -> TimelineUpdate:
        """``update`` (the timeline's, called by the pipeline with a finished job and its loaded time point) that
        keeps measuring the study's approved SEG: with an approval in force the loaded time point (the new ensemble's
        mask) is not used, the job gets an event and its ``longitudinal`` outcome an ``approved_segmentation``
        entry saying so."""

        def run(study_id: str, job: Job, loaded: Any = None) -> dict[str, Any]:
            approval = self.store.segmentation_approval(job.study_instance_uid) if job.study_instance_uid else None
            if approval is None:
                return update(study_id, job, loaded)
            found = self.in_force(approval, loaded)
            self.store.add_event(job.id, found["note"][:1000])
            outcome = update(study_id, job, None)  # read again: the timeline then measures the approved SEG
            outcome["approved_segmentation"] = found
            return outcome

        return run

"""A patient's timeline: every processed study in date order, each compared with its baseline.

After a study's SEGs are stored, :meth:`PatientTimeline.update` gathers the patient's
processed studies (same PatientID, identity checked on name, birth date and sex),
orders them by StudyDate/StudyTime, and recomputes the comparisons from the updated
study's position onwards, so a baseline arriving after its follow-up re-measures the
follow-up. The baseline of time point *i* is, by ``ONCOFLOW_BASELINE``, the previous
time point, the first, or the nadir (smallest fused volume before *i*).

Each recomputed time point gets a DICOM-SR (TID 1500, :mod:`oncoflow.dicom.sr_writer`) that replaces
its earlier one; a comparison that fails (no overlap, baseline SEG missing) is recorded
on that time point with the reason, and the other time points keep their results.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from oncoflow.core.config import Settings
from oncoflow.dicom.derived_object import derived_uid
from oncoflow.dicom.registration_writer import write_spatial_registration
from oncoflow.dicom.seg_writer import read_source_mask, region_segment_numbers
from oncoflow.dicom.sr_writer import (
    LesionAtTimePoint,
    LongitudinalChange,
    ResponseAssessment,
    write_measurement_report,
)
from oncoflow.dicom.volume_builder import InputError, SortedSeries
from oncoflow.measure.lesion_metrics import volume_ci95
from oncoflow.measure.longitudinal_comparison import Comparison, ComparisonError, TimePointData, compare
from oncoflow.measure.rano_response import CRITERIA, RANO2_NON_ENHANCING, ClinicalState, ResponseCriteria
from oncoflow.pacs.orthanc_http import OrthancUnavailable
from oncoflow.pacs.orthanc_rest import OrthancRest
from oncoflow.pipeline.approved_segmentation import PANEL_SPREAD_OUTPUTS, ApprovedSegmentation
from oncoflow.pipeline.approved_segmentation import describe as describe_approval
from oncoflow.pipeline.brain_extraction import BrainExtraction
from oncoflow.pipeline.clinical_state import clinical_state_of
from oncoflow.pipeline.expert_panel import ExpertPanel
from oncoflow.pipeline.job_store import Job, JobStore
from oncoflow.pipeline.lesion_tracking import (
    LESION_PREFIX,
    TrackedVisit,
    assess_last_visit,
    combined_response,
    first_visit,
    follow_visit,
    lesion_row,
    lesions_of,
)
from oncoflow.pipeline.measurement_basis import MeasurementBasis, comparability
from oncoflow.pipeline.report_stage import ClinicalReportWriter, ReportError, ReportInputs
from oncoflow.pipeline.request_refusal import RequestRefused
from oncoflow.pipeline.study_input import StudyInput
from oncoflow.pipeline.time_point import LoadedTimePoint, loaded_time_point, study_date

log = logging.getLogger("oncoflow.timeline")

IDENTITY_TAGS = ("PatientName", "PatientBirthDate", "PatientSex")


class PatientTimeline:
    def __init__(self, settings: Settings, rest: OrthancRest, store: JobStore, study_input: StudyInput,
                 brain: BrainExtraction, panel: ExpertPanel, report: ClinicalReportWriter | None = None) -> None:
        self.settings = settings
        self.rest = rest
        self.store = store
        self.input = study_input
        self.brain = brain
        self.panel = panel  # re-segments a registered follow-up when the registration is poor
        self.report = report  # makes each recomputed time point's signed PDF report

    # -- gathering -----------------------------------------------------------------------------

    def _time_point(self, study_id: str, job: Job) -> LoadedTimePoint:
        """The study's input volume, its ensemble SEG's mask, its brain SEG's mask and its experts' volumes.

        With a radiologist's approved segmentation in force (:mod:`.approved_segmentation`), its SEG and mask
        instead of the ensemble's, and no panel volumes (the experts' spread says nothing about a radiologist's
        mask); an approved SEG gone from the PACS, or no longer fitting the input, is a :class:`ComparisonError`
        (never silently the automatic result)."""
        study = self.rest.get_json(f"/studies/{study_id}")
        uid = str(study["MainDicomTags"]["StudyInstanceUID"])
        timings: dict[str, float] = {}
        try:
            selection, instance_ids = self.input.select(study_id, timings)
            stack = self.input.build(instance_ids, timings, selection.candidate.stack_id)
        except InputError as exc:
            raise ComparisonError(f"study {uid}: its input series cannot be read again: {exc}") from exc
        brain_uid = (job.outputs.get("brain_extraction") or {}).get("seg_sop_instance_uid")
        approval = self.store.segmentation_approval(uid)
        if approval is not None:
            try:
                approved_seg, approved = ApprovedSegmentation(self.rest, self.store, self.input).mask(approval, stack)
            except RequestRefused as exc:
                raise ComparisonError(f"study {uid}: {exc.message}") from exc
            brain_seg = self.rest.instance_dataset(brain_uid) if brain_uid else None
            brain = read_source_mask(brain_seg, stack.datasets) if brain_seg is not None else None
            outputs = {k: v for k, v in job.outputs.items() if k not in PANEL_SPREAD_OUTPUTS}
            return loaded_time_point(study["MainDicomTags"], stack, approved, approved_seg, outputs, brain)
        seg_uid = job.outputs.get("ensemble_seg_sop_instance_uid")
        seg = self.rest.instance_dataset(seg_uid) if seg_uid else None
        if seg is None:
            raise ComparisonError(f"study {uid} has no ensemble SEG in the PACS (deleted?); it cannot be compared")
        # the region the change follows, as that study's job fused it (an older job: its one tumour segment)
        region = job.outputs.get("driving_region", "TC")
        mask = read_source_mask(seg, stack.datasets, region_segment_numbers(seg, region) or [1])
        brain_seg = self.rest.instance_dataset(brain_uid) if brain_uid else None
        brain = read_source_mask(brain_seg, stack.datasets) if brain_seg is not None else None
        return loaded_time_point(study["MainDicomTags"], stack, mask, seg, job.outputs, brain)

    def _processed_studies(
        self, study_id: str, current: Job
    ) -> tuple[str, list[tuple[date, str, str, Job]], list[str]]:
        """The patient's processed studies that are the same person as ``study_id``, in date order.

        Returns (PatientID, [(date, time, orthanc study id, done job)], conflicts): studies filed
        under the same PatientID whose name, birth date or sex differ are someone else; they are
        left out and described in ``conflicts``. ``current`` is the finishing job of ``study_id``.
        """
        study = self.rest.get_json(f"/studies/{study_id}")
        patient = self.rest.get_json(f"/patients/{study['ParentPatient']}")
        patient_id = str(patient["MainDicomTags"].get("PatientID", ""))
        identity = {k: study.get("PatientMainDicomTags", {}).get(k, "") for k in IDENTITY_TAGS}
        studies, conflicts = [], []
        for other_id in patient["Studies"]:
            job = current if other_id == study_id else self.store.latest_done(other_id)
            if job is None:
                continue
            other = self.rest.get_json(f"/studies/{other_id}")
            other_identity = {k: other.get("PatientMainDicomTags", {}).get(k, "") for k in IDENTITY_TAGS}
            differ = [k for k in IDENTITY_TAGS if identity[k] and other_identity[k] not in ("", identity[k])]
            tags = other["MainDicomTags"]
            if differ:
                conflicts.append(f"study {tags.get('StudyInstanceUID')} ({', '.join(differ)} differ)")
                continue
            studies.append((study_date(tags), str(tags.get("StudyTime", "")), other_id, job))
        studies.sort(key=lambda s: (s[0], s[1], s[2]))
        return patient_id, studies, conflicts

    # -- updating ------------------------------------------------------------------------------

    def _baseline_index(self, index: int, volumes_cm3: list[float | None]) -> int:
        """The earlier time point ``index`` is compared with (``ONCOFLOW_BASELINE_RULE``). The nadir is the smallest
        measured volume before ``index`` (the latest of equals); a time point without one is never the nadir."""
        if self.settings.baseline_rule == "first":
            return 0
        if self.settings.baseline_rule == "nadir":
            measured = [k for k in range(index) if volumes_cm3[k] is not None]
            return min(measured, key=lambda k: (volumes_cm3[k], -k)) if measured else 0
        return index - 1

    def update(self, study_id: str, current: Job, loaded: LoadedTimePoint | None = None) -> dict[str, Any]:
        """Recompute the patient's timeline from ``study_id`` (whose finishing job is ``current``) on.

        ``loaded``: the study's volume, fused mask and SEG as the pipeline already holds them
        (saves reading them back from Orthanc). Returns what happened to ``study_id``: its
        comparison and SR, or the error.
        """
        started = time.perf_counter()
        try:
            patient_id, studies, conflicts = self._processed_studies(study_id, current)
        except ComparisonError as exc:
            self.store.save_time_point(study_id, None, None, None, None, None, str(exc))
            return {"error": str(exc)}
        position = next((i for i, s in enumerate(studies) if s[2] == study_id), None)
        if position is None:
            return {"error": "the study has no finished OncoFlow job"}
        if conflicts and len(studies) == 1:
            error = (f"PatientID {patient_id} names another patient in {'; '.join(conflicts)}: "
                     "not compared with those studies")
            self.store.save_time_point(study_id, patient_id, None, None, None, None, error)
            return {"error": error, "comparison": None}
        cache: dict[str, LoadedTimePoint] = {} if loaded is None else {study_id: loaded}

        def load(index: int) -> LoadedTimePoint:
            orthanc_id, job = studies[index][2], studies[index][3]
            if orthanc_id not in cache:
                cache[orthanc_id] = self._time_point(orthanc_id, job)
            return cache[orthanc_id]

        volumes = [_volume_or_none(s[3].outputs.get("tumour_volume_cm3")) for s in studies]
        to_previous: dict[int, np.ndarray] = {}  # follow-up index -> 4x4 LPS registration to the visit before

        def tracker(mask_of: Callable[[int], np.ndarray]) -> Callable[[int], TrackedVisit]:
            """Lesion tracking over the visits of one region's masks (``mask_of(index)``)."""
            tracked: dict[int, TrackedVisit] = {}

            def track(index: int) -> TrackedVisit:
                if index not in tracked:
                    volume = load(index)[0].volume
                    lesions = lesions_of(mask_of(index), volume, self.settings.lesion_join_distance_mm)
                    if index == 0:
                        tracked[index] = first_visit(lesions)
                    else:
                        previous = track(index - 1)
                        used = sorted({i for k in range(index) for i in (*track(k).tracking_ids.values(),
                                                                            *track(k).ended_ids)})
                        tracked[index] = follow_visit(previous, load(index - 1)[0].volume, lesions, volume,
                                                      self._to_previous(studies, index, load, to_previous), used)
                return tracked[index]

            return track

        track = Tracks(tracker(lambda k: load(k)[0].fused_mask),
                       tracker(lambda k: _region_mask(load(k), NON_ENHANCING_REGION)),
                       lambda k: bool(region_segment_numbers(load(k)[2], NON_ENHANCING_REGION)))

        outcome: dict[str, Any] = {}
        for index in range(position, len(studies)):
            orthanc_id = studies[index][2]
            try:
                result = self._update_time_point(patient_id, studies, index, load, volumes, track, to_previous)
            except (ComparisonError, InputError, ValueError) as exc:
                log.warning("timeline of %s: study %s not compared: %s", patient_id, orthanc_id, exc)
                self.store.save_time_point(orthanc_id, patient_id, None, None, None, None, str(exc))
                result = {"error": str(exc)}
            if orthanc_id == study_id:
                outcome = result
        if conflicts:
            outcome["left_out"] = [f"PatientID {patient_id} names another patient in {c}" for c in conflicts]
        outcome["timeline_s"] = round(time.perf_counter() - started, 3)
        return outcome

    def _to_previous(self, studies: list[tuple[date, str, str, Job]], index: int, load: Any,
                     known: dict[int, np.ndarray]) -> np.ndarray:
        """The registration (4x4, LPS mm) of visit ``index`` to the visit before it: from this update, else as stored
        with the time point, else registered now."""
        if index not in known:
            row = self.store.time_point(studies[index][2]) or {}
            stored = row.get("tracking_to_previous_lps")
            if stored is not None:
                known[index] = np.asarray(stored, dtype=np.float64).reshape(4, 4)
            else:
                known[index] = compare(load(index - 1)[0], load(index)[0], self.settings.change_thresholds,
                                       self.settings.registration_method).follow_up_to_baseline_lps
        return known[index]

    def _lesions_and_response(self, studies: list[tuple[date, str, str, Job]], index: int, track: Tracks) -> tuple[
            list[dict[str, Any]], dict[str, Any] | None, list[dict[str, Any]] | None]:
        """The lesions of visit ``index`` (rows), its response against the first visit (``None`` for the first) and,
        for a mixed tumour, its non-enhancing (T2/FLAIR) lesions (``None`` when that disease is not assessed: an
        enhancing presentation, other criteria, or a visit whose SEG has no whole-tumour region)."""
        alike = [k for k in range(index) if not _refusal(studies, 0, k)]  # a visit refused against the first: left out
        with_non_enhancing = self._assesses_non_enhancing() and all(track.has_non_enhancing(k) for k in (*alike, index))
        return self._assess([
            VisitRows(studies[k][0], [lesion_row(track.enhancing(k), lesion, target=False)
                                      for lesion in track.enhancing(k).lesions.lesions],
                      [lesion_row(track.non_enhancing(k), lesion, target=False)
                       for lesion in track.non_enhancing(k).lesions.lesions] if with_non_enhancing else None,
                      self._clinical(studies[k][3]))
            for k in (*alike, index)])

    def _assess(self, visits: list[VisitRows]) -> tuple[list[dict[str, Any]], dict[str, Any] | None,
                                                         list[dict[str, Any]] | None]:
        """The last visit's lesion rows (targets marked), its response, and its non-enhancing rows (``None`` unless
        every visit has them): the enhancing disease by the configured criteria, the non-enhancing one in parallel
        by RANO 2.0's non-enhancing criteria, the two categories combined."""

        def assess(rows: list[list[dict[str, Any]]], criteria: ResponseCriteria) -> tuple[
                list[dict[str, Any]], dict[str, Any] | None]:
            targets, response = assess_last_visit(
                [(v.study_date, visit_rows, v.clinical) for v, visit_rows in zip(visits, rows, strict=True)], criteria)
            return [{**row, "target": row["tracking_id"] in targets} for row in rows[-1]], response

        lesions, response = assess([v.lesions for v in visits], CRITERIA[self.settings.response_criteria])
        non_enhancing_rows = [v.non_enhancing_lesions for v in visits]
        if not self._assesses_non_enhancing() or any(rows is None for rows in non_enhancing_rows):
            return lesions, response, None
        non_enhancing_lesions, non_enhancing = assess(non_enhancing_rows, RANO2_NON_ENHANCING)  # type: ignore[arg-type]
        return lesions, combined_response(response, non_enhancing), non_enhancing_lesions

    def _assesses_non_enhancing(self) -> bool:
        """RANO 2.0 for a mixed tumour: the T2/FLAIR disease in parallel with the enhancing disease."""
        return self.settings.tumour_presentation == "mixed" and self.settings.response_criteria in (
            "rano2-volumetric", "rano2-bidimensional")

    def _clinical(self, job: Job) -> ClinicalState:
        """What the clinician entered for the study of ``job`` (nothing entered: not known)."""
        return clinical_state_of(self.store.clinical_state(job.study_instance_uid) if job.study_instance_uid
                                 else None)

    def reassess(self, study_id: str) -> dict[str, Any]:
        """The responses of the patient's time points from ``study_id`` on, again from their stored lesion rows
        and the clinical states entered now (no image is read; the SRs and reports follow in a queued job).
        Returns the response of ``study_id`` (``None`` for a first visit). Raises ``KeyError`` when the study has
        no time point with lesions."""
        row = self.store.time_point(study_id)
        if row is None or row.get("error") or row.get("lesions") is None:
            raise KeyError("the study has no assessed time point"
                           + (f" ({row['error']})" if row and row.get("error") else ""))
        points = [p for p in self.store.timeline(str(row["patient_id"])) if not p.get("error")
                  and p.get("lesions") is not None]
        position = next(i for i, p in enumerate(points) if p["orthanc_study_id"] == study_id)
        visits = [VisitRows(date.fromisoformat(str(p["study_date"])), p["lesions"], p.get("non_enhancing_lesions"),
                            clinical_state_of(self.store.clinical_state(str(p["study_instance_uid"]))))
                  for p in points]
        outcome = None
        for index in range(position, len(points)):
            lesions, response, non_enhancing_lesions = self._assess(visits[:index + 1])
            self.store.update_time_point(points[index]["orthanc_study_id"], lesions=lesions, response=response,
                                         non_enhancing_lesions=non_enhancing_lesions,
                                         clinical=self.store.clinical_state(str(points[index]["study_instance_uid"])))
            if index == position:
                outcome = response
        return {"response": outcome}

    def _update_time_point(self, patient_id: str, studies: list[tuple[date, str, str, Job]], index: int,
                           load: Any, volumes: list[float | None], track: Any,
                           to_previous: dict[int, np.ndarray]) -> dict[str, Any]:
        current, stack, seg = load(index)
        orthanc_id, job = studies[index][2], studies[index][3]
        comparison: Comparison | None = None
        prior_sr: Dataset | None = None
        baseline_uid: str | None = None
        baseline: TimePointData | None = None
        differences: tuple[str, ...] = ()
        if index > 0:
            baseline_index = self._baseline_index(index, volumes)
            differences = _like_with_like(studies, baseline_index, index)
            baseline, baseline_stack, _ = load(baseline_index)
            baseline_uid = baseline.study_instance_uid
            comparison = compare(
                baseline, current, self.settings.change_thresholds, self.settings.registration_method,
                resegment=lambda registered: self.panel.run(registered, self.brain.run(registered)).fusion.mask,
            )
            if baseline_index == index - 1:
                to_previous[index] = comparison.follow_up_to_baseline_lps
            prior_row = self.store.time_point(studies[baseline_index][2])
            if prior_row and prior_row.get("sr_sop_instance_uid"):
                prior_sr = self.rest.instance_dataset(prior_row["sr_sop_instance_uid"])
        lesions, response, non_enhancing_lesions = self._lesions_and_response(studies, index, track)
        sr = self._write_sr(patient_id, current, stack, seg, job, comparison, prior_sr, lesions, response)
        reg_uid = None
        if comparison is not None:
            reg = write_spatial_registration(
                baseline_stack.datasets, stack.datasets, comparison.follow_up_to_baseline_lps,
                comparison.registration_method, f"{job.fingerprint}|{comparison.baseline_uid}",
            )
            self.rest.store_replacing(reg)
            reg_uid = str(reg.SOPInstanceUID)
        # around the reported (fused) volume, from the job's leave-one-expert-out re-fusions (docs/uncertainty.md)
        volume_ci = volume_ci95(current.measurements.volume_cm3, current.leave_one_out_volumes_cm3)
        experts_mean = current.experts_mean_volume_cm3
        measurements = {
            "volume_cm3": round(current.measurements.volume_cm3, 3),
            "volume_ci95_cm3": None if volume_ci is None else [round(volume_ci.low, 3), round(volume_ci.high, 3)],
            "volume_ci95_experts": None if volume_ci is None else volume_ci.n_experts,
            "experts_mean_volume_cm3": None if experts_mean is None else round(experts_mean, 3),
            "longest_axial_diameter_mm": round(current.measurements.longest_axial_diameter_mm, 1),
            "max_caliper_mm": round(current.measurements.max_caliper_mm, 1),
        }
        comparison_json = None if comparison is None else {**comparison.as_json(), "like_with_like": list(differences)}
        row: dict[str, Any] = {
            "measurements": measurements, "comparison": comparison_json,
            "lesions": lesions, "response": response, "clinical": _clinical_json(self.store, job),
            "non_enhancing_lesions": non_enhancing_lesions,
            "tracking_to_previous_lps": None if index == 0 else
            [round(float(v), 8) for v in np.asarray(to_previous[index]).reshape(-1)],
            "seg_sop_instance_uid": str(seg.SOPInstanceUID), "sr_sop_instance_uid": str(sr.SOPInstanceUID),
            "reg_sop_instance_uid": reg_uid, "report_sop_instance_uid": None, "report_error": None,
        }
        # saved before the report: the report reads the timeline, this time point included
        self.store.save_time_point(orthanc_id, patient_id, current.study_instance_uid,
                                   current.study_date.isoformat(), baseline_uid, row, None)
        outcome = {"sr_sop_instance_uid": str(sr.SOPInstanceUID), "baseline_study_instance_uid": baseline_uid,
                   "comparison": comparison_json, "lesions": lesions, "response": response}
        if self.report is not None:
            try:
                outcome["report"] = self.report.write(ReportInputs(patient_id, orthanc_id, job, current,
                                                                   stack.datasets[0], seg, sr, baseline))
            except OrthancUnavailable:
                raise  # Orthanc restarting (a pipeline worker's HTTP): the whole job is retried, idempotently
            except (ReportError, OSError, ValueError, RuntimeError) as exc:
                log.warning("report of study %s not made: %s", current.study_instance_uid, exc)
                outcome["report"] = {"error": f"report not made: {exc}"}
            self.store.update_time_point(orthanc_id, report_sop_instance_uid=outcome["report"].get(
                "report_sop_instance_uid"), report_error=outcome["report"].get("error"))
        return outcome

    def report_again(self, study_id: str) -> dict[str, Any]:
        """Make the study's report again from its stored time point (e.g. after new notes were uploaded).

        Raises :class:`ReportError` when the study has no compared time point to report on.
        """
        if self.report is None:
            raise ReportError("reports are not enabled")
        job = self.store.latest_done(study_id)
        row = self.store.time_point(study_id)
        if job is None or row is None or row.get("error") or not row.get("sr_sop_instance_uid"):
            raise ReportError("the study has no finished OncoFlow time point"
                              + (f" ({row['error']})" if row and row.get("error") else ""))
        try:
            current, stack, seg = self._time_point(study_id, job)
            baseline = None
            if row.get("baseline_study_instance_uid"):
                baseline_id = self.rest.lookup_study(row["baseline_study_instance_uid"])
                baseline_job = self.store.latest_done(baseline_id) if baseline_id else None
                if baseline_id is None or baseline_job is None:
                    raise ReportError("the baseline study is no longer processed in the PACS")
                baseline = self._time_point(baseline_id, baseline_job)[0]
        except ComparisonError as exc:
            raise ReportError(str(exc)) from exc
        sr = self.rest.instance_dataset(row["sr_sop_instance_uid"])
        if sr is None:
            raise ReportError("the study's SR is no longer in the PACS")
        outcome = self.report.write(ReportInputs(str(row["patient_id"]), study_id, job, current, stack.datasets[0],
                                                 seg, sr, baseline))
        self.store.update_time_point(study_id, report_sop_instance_uid=outcome["report_sop_instance_uid"],
                                     report_error=None)
        return outcome

    def _write_sr(self, patient_id: str, current: TimePointData, stack: SortedSeries, seg: Dataset, job: Job,
                  comparison: Comparison | None, prior_sr: Dataset | None, lesion_rows: list[dict[str, Any]],
                  response: dict[str, Any] | None) -> Dataset:
        """The time point's SR: one measurement group per lesion (largest first; the change against the baseline,
        of the whole tumour, in the first), and the response when there is one. When ``seg`` is the radiologist's
        approved SEG (:meth:`_time_point`), the groups reference it and say who approved it and when, and the
        panel's own region volumes and plausibility verdict (of the automatic mask) are left out."""
        region = str(job.outputs.get("driving_region", "TC"))
        approval = self.store.segmentation_approval(current.study_instance_uid)
        if approval is not None and approval["sop_instance_uid"] != str(seg.SOPInstanceUID):
            approval = None
        common = {
            "region": region,
            "segment_number": (region_segment_numbers(seg, region) or [1])[0] if approval is None
            else int(approval["segment_numbers"][0]),
            "region_volumes_cm3": {} if approval is not None else {
                r: float(v["volume_cm3"]) for r, v in job.outputs.get("regions", {}).items()
                if v.get("volume_cm3") is not None},
            "plausibility": None if approval is not None else job.outputs.get("plausibility", {}).get("verdict"),
        }
        note = None if approval is None else (
            f"{describe_approval(approval)}: {approval['source']}, SEG {approval['sop_instance_uid']} segment"
            f"{'s' if len(approval['segment_numbers']) > 1 else ''} "
            f"{', '.join(str(n) for n in approval['segment_numbers'])}")
        # the whole tumour's region volumes and plausibility verdict once, in the first (largest) lesion's group,
        # which also holds the change of the whole tumour; the other groups hold their lesion's own measurements
        per_lesion = {**common, "region_volumes_cm3": {}, "plausibility": None}
        lesions = [_sr_lesion(patient_id, row, common if number == 0 else per_lesion)
                   for number, row in enumerate(lesion_rows)] or [LesionAtTimePoint(
            tracking_id="Lesion 1", tracking_uid=derived_uid("lesion-tracking", patient_id, "1"),
            volume_cm3=current.measurements.volume_cm3,
            longest_axial_diameter_mm=current.measurements.longest_axial_diameter_mm,
            max_caliper_mm=current.measurements.max_caliper_mm, **common)]  # no tumour: one empty group
        change = None
        if comparison is not None:
            change = LongitudinalChange(
                prior_study_instance_uid=comparison.baseline_uid,
                prior_study_date=comparison.baseline_date,
                prior_sr=prior_sr,
                days_between=comparison.days_between,
                volume_prior_cm3=comparison.baseline.volume_cm3,
                volume_current_cm3=comparison.follow_up.volume_cm3,
                delta_cm3=comparison.delta_cm3,
                percent_change=comparison.percent_change,
                percent_change_ci95=comparison.percent_change_ci95,
                dice=comparison.dice,
                hd95_mm=comparison.hd95_mm,
                growth_rate_cm3_per_day=comparison.growth_rate_cm3_per_day,
                registration_method=comparison.registration_method,
                registration_ncc_before=comparison.registration_ncc_before,
                registration_ncc_after=comparison.registration_ncc_after,
                flag=comparison.flag,
                flag_reason=comparison.flag_reason,
                transform_lps=comparison.follow_up_to_baseline_lps,
            )
        panel = job.outputs.get("panel", {})
        key = "|".join([str(job.fingerprint), str(comparison.as_json() if comparison else None),
                        str(prior_sr.SOPInstanceUID) if prior_sr is not None else ""])
        key += f"|{lesion_rows}|{response}"
        sr = write_measurement_report(
            stack.datasets, seg, None, change, list(panel.get("ran", [])), dict(panel.get("skipped", {})), key,
            lesions=lesions, response=None if response is None else _sr_response(response), segmentation_note=note,
        )
        self.rest.store_replacing(sr)
        return sr


@dataclass(frozen=True)
class VisitRows:
    """One visit as the response reads it: its date, its lesion rows (enhancing; non-enhancing or ``None``) and
    the clinical state entered for it."""

    study_date: date
    lesions: list[dict[str, Any]]
    non_enhancing_lesions: list[dict[str, Any]] | None
    clinical: ClinicalState


NON_ENHANCING_REGION = "WT"  # the T2/FLAIR abnormality: enhancing tumour, necrosis and oedema


@dataclass(frozen=True)
class Tracks:
    """A patient's lesion tracking, per visit index: of the enhancing (driving) region, of the non-enhancing
    (T2/FLAIR, whole-tumour) region, and whether a visit's SEG has that region at all."""

    enhancing: Callable[[int], TrackedVisit]
    non_enhancing: Callable[[int], TrackedVisit]
    has_non_enhancing: Callable[[int], bool]


def _region_mask(loaded: LoadedTimePoint, region: str) -> np.ndarray:
    """One region's mask of a loaded time point, read from its SEG on its input series."""
    _, stack, seg = loaded
    return read_source_mask(seg, stack.datasets, region_segment_numbers(seg, region))


def _refusal(studies: list[tuple[date, str, str, Job]], earlier: int, later: int) -> str | None:
    """Why visit ``later`` may not be compared with visit ``earlier`` (another sequence or region), or ``None``."""
    return comparability(MeasurementBasis.of(studies[earlier][3].outputs),
                         MeasurementBasis.of(studies[later][3].outputs)).refused


def _like_with_like(studies: list[tuple[date, str, str, Job]], baseline: int, index: int) -> tuple[str, ...]:
    """The differences of visit ``index`` from its ``baseline`` that leave the comparison standing; raises
    :class:`ComparisonError` when it is not like with like, with the baseline or with the first visit (the
    response's reference)."""
    found = comparability(MeasurementBasis.of(studies[baseline][3].outputs),
                          MeasurementBasis.of(studies[index][3].outputs))
    refused = found.refused or (_refusal(studies, 0, index) if baseline != 0 else None)
    if refused:
        raise ComparisonError(refused)
    return found.differences


def _clinical_json(store: JobStore, job: Job) -> dict[str, Any] | None:
    """The clinical state entered for the study of ``job`` as the timeline row shows it, or ``None``."""
    return store.clinical_state(job.study_instance_uid) if job.study_instance_uid else None


def _volume_or_none(value: Any) -> float | None:
    """A job's ``tumour_volume_cm3`` as a number, or ``None`` when the job measured none (never 0: a missing
    volume taken as 0 became the nadir and pinned every later visit to "progression")."""
    return None if value is None else float(value)


_SR_STATUS = {"baseline": "tracked", "continued": "tracked", "merged": "merged", "split": "split", "new": "new"}
_TARGET_RESPONSE = {"CR": "CR", "PR": "PR", "SD": "SD", "PD": "PD"}  # MR has no target-lesion code (CID 6144)


def _sr_lesion(patient_id: str, row: dict[str, Any], common: dict[str, Any]) -> LesionAtTimePoint:
    """A lesion row of :mod:`oncoflow.pipeline.lesion_tracking` as the SR writer takes it; its tracking UID derives
    from the patient and the number of its identifier, so it is the same at every visit."""
    number = str(row["tracking_id"]).removeprefix(LESION_PREFIX)

    def axis(name: str) -> tuple[tuple[float, float, float], tuple[float, float, float]] | None:
        points = row.get(name)
        return None if not points else (tuple(points[0]), tuple(points[1]))  # type: ignore[return-value]

    return LesionAtTimePoint(
        tracking_id=str(row["tracking_id"]), tracking_uid=derived_uid("lesion-tracking", patient_id, number),
        volume_cm3=float(row["volume_cm3"]), longest_axial_diameter_mm=float(row["longest_diameter_mm"]),
        max_caliper_mm=float(row["max_caliper_mm"]), perpendicular_diameter_mm=float(row["perpendicular_diameter_mm"]),
        product_mm2=float(row["product_mm2"]), long_axis_lps_mm=axis("long_axis_lps_mm"),
        perpendicular_axis_lps_mm=axis("perpendicular_axis_lps_mm"), measurable=bool(row["measurable"]),
        target=bool(row["target"]), status=_SR_STATUS[str(row["status"])], **common)


def _sr_response(response: dict[str, Any]) -> ResponseAssessment:
    return ResponseAssessment(
        category=response["category"], confirmation=response["confirmation"], method=response["criteria"],
        target_response=_TARGET_RESPONSE.get(response["category"]) if response["targets"] else None,
        reasons=tuple(response["reasons"]), baseline_sum=response["baseline_sum"], nadir_sum=response["nadir_sum"],
        current_sum=response["target_sum"], sum_unit=response["unit"])

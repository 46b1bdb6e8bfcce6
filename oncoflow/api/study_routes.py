"""OncoFlow's study, patient and panel routes, as :class:`~oncoflow.api.answer.Answer` (JSON unless said).

* ``health()``: 200 when OncoFlow can work; 503 when the disk under ``ONCOFLOW_HOME`` is below
  ``ONCOFLOW_MIN_FREE_MB`` or the job database cannot be read;
* ``study_status(uid)``: the study's latest job (state, error, stage timings in seconds, output SOP Instance
  UIDs, experts run and skipped, fusion and agreement, events), its job history, its refinements and the
  radiologist's approved segmentation in force (``approved_segmentation``, ``null``: the automatic one is measured);
* ``timeline(patient)``: every time point of the patient with its volumes, comparison, flag, SEG and SR UIDs;
* ``refine(uid, body)``: clicks in patient mm -> a refined SEG version by SAM2;
* ``report_pdf(sop_uid)``: a stored report's signed PDF (``application/pdf``);
* ``reanalyse(uid)``: queue the study again, run in full even when its input is unchanged (202; 409 when a
  job is already queued);
* ``report_again(uid)``: make the study's report again (new notes);
* ``clinical_state(uid, method, body)``: the clinical status and steroid dose of the study's time point (GET), or
  record them (PUT): the responses from that visit on are reassessed at once, and a queued job rewrites their SRs
  and reports;
* ``approved_seg(uid, method, body)``: the radiologist's approved segmentation of the study (GET), approve a SEG
  (POST ``{"sop_instance_uid", "segment_numbers"?}``) or withdraw the approval (DELETE); after a change the
  patient's timeline is recomputed from the study on at once (its SRs and reports), and the answer says so;
* ``panel()``: the panel's experts as the worker reports them;
* ``model_stats(png)``: mean Dice / IoU per expert across studies, as JSON or a bar chart.

Actions on a study (refine, re-analyse, report reads, approvals) are audited with the caller of the request.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from oncoflow import __version__
from oncoflow.api.answer import Answer, json_answer
from oncoflow.dicom.encapsulated_pdf_writer import NotAnEncapsulatedPdf, read_encapsulated_pdf
from oncoflow.pipeline.approved_segmentation import ApprovedSegmentation, describe
from oncoflow.pipeline.clinical_state import ClinicalEntry, ClinicalEntryError
from oncoflow.pipeline.job_runner import JobRunner
from oncoflow.pipeline.pipeline_assembly import PipelineParts
from oncoflow.pipeline.refinement import Refinement
from oncoflow.pipeline.report_stage import ReportError
from oncoflow.pipeline.request_refusal import RequestRefused
from oncoflow.pipeline.study_pipeline import REANALYSE_TRIGGER, REASSESS_TRIGGER
from oncoflow.pipeline.worker_client import WorkerUnavailable
from oncoflow.report.model_stats_chart import render_model_stats_png
from oncoflow.security.access_audit import actor_and_role, outcome_of
from oncoflow.security.access_policy import may_approve_segmentation


class StudyRoutes:
    """The routes over one assembled pipeline, its queue consumer and its refinement."""

    def __init__(self, parts: PipelineParts, runner: JobRunner, refinement: Refinement) -> None:
        self.parts = parts
        self.runner = runner
        self.refinement = refinement

    def health(self) -> Answer:
        space = self.parts.home_disk_space()
        try:
            jobs: dict[str, int] | str = self.parts.store.counts()
        except Exception as exc:  # noqa: BLE001 (the job database unreadable: say so, with 503)
            jobs = f"job database unreadable: {exc}"
        ok = space.ok and isinstance(jobs, dict)
        payload = {"status": "ok" if ok else "degraded", "version": __version__, "jobs": jobs,
                   "storage": space.as_json()}
        if not space.ok:
            payload["error"] = f"not enough free disk space: {space.describe()}"
        return json_answer(200 if ok else 503, payload)

    def study_status(self, study_uid: str) -> Answer:
        store = self.parts.store
        study_id = self.parts.rest.lookup_study(study_uid)
        job = store.latest(study_id) if study_id else None
        if job is None:
            return json_answer(404, {"error": f"no OncoFlow job for study {study_uid}"})
        payload = job.as_json()
        payload["history"] = [
            {"job_id": j.id, "state": j.state, "error": j.error, "trigger": j.trigger, "created_at": j.created_at}
            for j in store.history(study_id)
        ]
        payload["refinements"] = store.refinements(study_uid)
        approval = store.segmentation_approval(study_uid)
        payload["approved_segmentation"] = None if approval is None else {**approval, "statement": describe(approval)}
        return json_answer(200, payload)

    def timeline(self, raw_patient_id: str) -> Answer:
        patient_id = urllib.parse.unquote(raw_patient_id)
        points = self.parts.store.timeline(patient_id)
        if not points:
            return json_answer(404, {"error": f"no OncoFlow time point for patient {patient_id}"})
        return json_answer(200, {"patient_id": patient_id, "baseline_rule": self.parts.settings.baseline_rule,
                                 "time_points": points})

    def refine(self, study_uid: str, body: bytes | str) -> Answer:
        audit = self.parts.audit
        try:
            answer = json_answer(200, self.refinement.refine(study_uid, body))
        except RequestRefused as exc:
            audit.record("study.analyse", study_uid, outcome_of(exc.status), f"refine: {exc.status}")
            return json_answer(exc.status, exc.as_json())
        audit.record("study.analyse", study_uid, "success", "refine")
        self._route(study_uid)
        return answer

    def _route(self, study_uid: str) -> None:
        """Send the study's new results on to the hospital's PACS, when one is configured (``ONCOFLOW_ROUTE_TO``)."""
        study_id = self.parts.rest.lookup_study(study_uid) if self.parts.routing is not None else None
        if self.parts.routing is not None and study_id is not None:
            self.parts.routing.submit(study_id)

    def report_pdf(self, sop_instance_uid: str) -> Answer:
        audit = self.parts.audit
        dataset = self.parts.rest.instance_dataset(sop_instance_uid)
        try:
            pdf = None if dataset is None else read_encapsulated_pdf(dataset)
        except NotAnEncapsulatedPdf as exc:
            return json_answer(404, {"error": str(exc)})
        if pdf is None:
            audit.record("report.read", sop_instance_uid, "refused", "404 no such report")
            return json_answer(404, {"error": f"no instance {sop_instance_uid}"})
        audit.record("report.read", sop_instance_uid, "success")
        return Answer(200, pdf, "application/pdf",
                      {"Content-Disposition": f'inline; filename="oncoflow-report-{sop_instance_uid}.pdf"'})

    def reanalyse(self, study_uid: str) -> Answer:
        audit = self.parts.audit
        study_id = self.parts.rest.lookup_study(study_uid)
        if study_id is None:
            return json_answer(404, {"error": f"no study {study_uid}"})
        job_id = self.runner.enqueue(study_id, REANALYSE_TRIGGER)
        if job_id is None:
            audit.record("study.analyse", study_uid, "refused", "reanalyse: 409 already queued")
            return json_answer(409, {"error": "a job of this study is already queued"})
        audit.record("study.analyse", study_uid, "success", f"reanalyse queued as job-{job_id}")
        return json_answer(202, {"job_id": job_id, "state": "queued"})

    def report_again(self, study_uid: str) -> Answer:
        study_id = self.parts.rest.lookup_study(study_uid)
        if study_id is None:
            return json_answer(404, {"error": f"no study {study_uid}"})
        try:
            answer = json_answer(200, self.parts.timeline.report_again(study_id))
            self._route(study_uid)
            return answer
        except ReportError as exc:
            return json_answer(409, {"error": str(exc)})

    def clinical_state(self, study_uid: str, method: str, body: bytes | str = b"") -> Answer:
        """GET: the study's entered clinical state (fields ``None`` when nothing was entered). PUT
        ``{"status": ..., "steroid_mg_per_day": ...}``: record it (400 when it is not valid, 404 without the study,
        409 when the study has no assessed time point yet), reassess the responses, queue the SRs and reports."""
        store, audit = self.parts.store, self.parts.audit
        study_id = self.parts.rest.lookup_study(study_uid)
        if study_id is None:
            return json_answer(404, {"error": f"no study {study_uid}"})
        if method == "GET":
            stored = store.clinical_state(study_uid) or {"study_instance_uid": study_uid, "status": None,
                                                          "steroid_mg_per_day": None, "entered_by": None,
                                                          "entered_at": None}
            return json_answer(200, stored)
        try:
            entry = ClinicalEntry.parse(body)
        except ClinicalEntryError as exc:
            audit.record("study.clinical", study_uid, "refused", f"400 {exc}")
            return json_answer(400, {"error": str(exc)})
        row = store.time_point(study_id)
        if row is None or row.get("error") or row.get("lesions") is None:
            audit.record("study.clinical", study_uid, "refused", "409 no assessed time point")
            return json_answer(409, {"error": "the study has no assessed time point yet: enter the clinical state "
                                              "once its OncoFlow job is done"})
        actor, _ = actor_and_role(audit.current_caller())
        stored = store.set_clinical_state(study_uid, entry.status, entry.steroid_mg_per_day, actor)
        response = self.parts.timeline.reassess(study_id)["response"]
        job_id = self.runner.enqueue(study_id, REASSESS_TRIGGER)
        audit.record("study.clinical", study_uid, "success",
                     f"status {entry.status or 'not known'}, steroids {entry.steroid_mg_per_day} mg/day"
                     + (f"; SR and report queued as job-{job_id}" if job_id is not None else ""))
        return json_answer(200, {**stored, "response": response,
                                 "sr_update": f"queued as job-{job_id}" if job_id is not None else
                                 "a job of this study is already queued: its SR and report follow it"})

    def approved_seg(self, study_uid: str, method: str, body: bytes | str = b"") -> Answer:
        """GET: the approval in force (``approval`` ``null``: the automatic SEG is measured), the SEG measured and
        every approval of the study. POST ``{"sop_instance_uid": ..., "segment_numbers": [..]}``: approve that SEG
        (400 bad body, 403 not a radiologist, 404 no such study or instance, 409 the study has no finished job,
        422 a SEG that cannot be the study's tumour: another study, another series, an automatic SEG, several
        segments and none named, empty). DELETE: withdraw it (404 when none is in force). After a POST or DELETE
        the patient's timeline is recomputed from the study on (SR and report): ``timeline`` in the answer."""
        approvals = ApprovedSegmentation(self.parts.rest, self.parts.store, self.parts.study_input)
        audit = self.parts.audit
        if method == "GET":
            try:
                return json_answer(200, approvals.current(study_uid))
            except RequestRefused as exc:
                return json_answer(exc.status, exc.as_json())
        action = "segmentation.approve" if method == "POST" else "segmentation.withdraw"
        caller = audit.current_caller()
        actor, role = actor_and_role(caller)
        if caller is not None and not may_approve_segmentation(caller.roles):  # login off: no caller, no roles
            audit.record(action, study_uid, "refused", f"403 role {role} may not approve a segmentation")
            return json_answer(403, {"error": "only a radiologist may approve a segmentation or withdraw an "
                                              "approval"})
        try:
            if method == "POST":
                result = approvals.approve(study_uid, body, actor, role)
                approval = result["approval"]
                detail = (f"SEG {approval['sop_instance_uid']} segments "
                          f"{','.join(str(n) for n in approval['segment_numbers'])}")
                event = f"segmentation approved: {result['in_force']['note']}"
            else:
                approval = approvals.withdraw(study_uid, actor)
                result = {"withdrawn": approval}
                detail = f"SEG {approval['sop_instance_uid']} withdrawn"
                event = (f"approval of SEG {approval['sop_instance_uid']} withdrawn by {role} {actor}: the automatic "
                         "result is measured again")
        except RequestRefused as exc:
            audit.record(action, study_uid, outcome_of(exc.status), f"{method}: {exc.status}")
            return json_answer(exc.status, exc.as_json())
        audit.record(action, study_uid, "success", detail[:200])
        result["timeline"] = self._timeline_again(study_uid, event, result.get("in_force"))
        self._route(study_uid)
        return json_answer(200, result)

    def _timeline_again(self, study_uid: str, event: str, in_force: dict[str, Any] | None) -> dict[str, Any]:
        """Recompute the patient's timeline from the study on (its SR and report, and those after it), now; the
        study's finished job records the outcome and ``event``, as after a pipeline run."""
        store = self.parts.store
        study_id = self.parts.rest.lookup_study(study_uid)
        job = store.latest_done(study_id) if study_id else None
        if study_id is None or job is None:
            return {"error": "the study has no finished OncoFlow job: nothing to recompute"}
        outcome = self.parts.timeline.update(study_id, job)
        if in_force is not None:
            outcome["approved_segmentation"] = in_force
        store.update(job.id, outputs={**job.outputs, "longitudinal": outcome})
        store.add_event(job.id, event[:1000])
        return outcome

    def panel(self) -> Answer:
        settings = self.parts.settings
        try:
            models = self.parts.worker.describe(settings.panel)
        except WorkerUnavailable as exc:
            return json_answer(503, {"error": str(exc)})
        return json_answer(200, {
            "fusion": settings.fusion,
            "fusion_weights": settings.fusion_weights,
            "experts": [{"name": m.name, "state": m.state, "role": m.role, "reason": m.reason}
                        for m in models.values()],
        })

    def model_stats(self, as_png: bool) -> Answer:
        stats = self.parts.store.model_stats()
        if as_png:
            return Answer(200, render_model_stats_png(stats), "image/png")
        return json_answer(200, {"experts": stats})

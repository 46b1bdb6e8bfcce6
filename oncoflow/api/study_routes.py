"""OncoFlow's study, patient and panel routes, as :class:`~oncoflow.api.answer.Answer` (JSON unless said).

* ``health()``: 200 when OncoFlow can work; 503 when the disk under ``ONCOFLOW_HOME`` is below
  ``ONCOFLOW_MIN_FREE_MB`` or the job database cannot be read;
* ``study_status(uid)``: the study's latest job (state, error, stage timings in seconds, output SOP Instance
  UIDs, experts run and skipped, fusion and agreement, events), its job history and its refinements;
* ``timeline(patient)``: every time point of the patient with its volumes, comparison, flag, SEG and SR UIDs;
* ``refine(uid, body)``: clicks in patient mm -> a refined SEG version by SAM2;
* ``report_pdf(sop_uid)``: a stored report's signed PDF (``application/pdf``);
* ``reanalyse(uid)``: queue the study again, run in full even when its input is unchanged (202; 409 when a
  job is already queued);
* ``report_again(uid)``: make the study's report again (new notes);
* ``panel()``: the panel's experts as the worker reports them;
* ``model_stats(png)``: mean Dice / IoU per expert across studies, as JSON or a bar chart.

Actions on a study (refine, re-analyse, report reads) are audited with the caller of the request.
"""

from __future__ import annotations

import urllib.parse

from oncoflow import __version__
from oncoflow.api.answer import Answer, json_answer
from oncoflow.dicom.encapsulated_pdf_writer import NotAnEncapsulatedPdf, read_encapsulated_pdf
from oncoflow.pipeline.job_runner import JobRunner
from oncoflow.pipeline.pipeline_assembly import PipelineParts
from oncoflow.pipeline.refinement import RefineError, Refinement
from oncoflow.pipeline.report_stage import ReportError
from oncoflow.pipeline.study_pipeline import REANALYSE_TRIGGER
from oncoflow.pipeline.worker_client import WorkerUnavailable
from oncoflow.report.model_stats_chart import render_model_stats_png
from oncoflow.security.access_audit import outcome_of


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
        except RefineError as exc:
            audit.record("study.analyse", study_uid, outcome_of(exc.status), f"refine: {exc.status}")
            return json_answer(exc.status, {"error": exc.message})
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

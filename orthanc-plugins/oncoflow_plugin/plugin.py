"""Wiring of OncoFlow into Orthanc: the change callback, the job thread and the REST routes.

Routes (JSON):

* ``GET /oncoflow/health``: plugin up, job counts by state;
* ``GET /oncoflow/studies/{StudyInstanceUID}``: the study's latest job (state, error,
  stage timings in seconds, output SOP Instance UIDs, experts run and skipped, fusion
  and agreement, events), its job history and its refinements;
* ``POST /oncoflow/studies/{StudyInstanceUID}/refine``: clicks in patient mm -> a
  refined SEG version by SAM2 (:mod:`.refinement`);
* ``GET /oncoflow/patients/{PatientID}/timeline``: every time point of the patient with its
  volumes, comparison with its baseline, flag, and its SEG and SR UIDs (:mod:`.patient_timeline`);
* ``POST /oncoflow/patients/{PatientID}/documents``: upload a clinical note (PDF or TXT, raw
  body, its name in Content-Disposition); ``GET``: the patient's documents; ``DELETE``: erase them and their vectors;
  ``GET .../documents/search?q=TEXT&k=N``: the passages retrieved for a query (:mod:`.clinical_notes_routes`);
* ``GET /oncoflow/reports/{SOPInstanceUID}.pdf``: a stored report's signed PDF;
  ``POST /oncoflow/studies/{StudyInstanceUID}/report``: make the study's report again (new notes);
* ``POST /oncoflow/studies/{StudyInstanceUID}/reanalyse``: queue the study again, run in full even
  when its input is unchanged (202 with the job id; 409 when a job is already queued);
* ``GET /ohif/...``: the OHIF viewer with the OncoFlow extension and mode; ``GET
  /oncoflow/dicom-web/...``: QIDO for it (:mod:`.viewer_routes`);
* ``GET /oncoflow/panel``: the panel's experts as the worker reports them;
* ``GET /oncoflow/audit?since_id=&limit=&action=``: the PHI-free, hash-chained audit log (:mod:`.access_audit`);
* ``PUT /oncoflow/assignments``: set the patients a user may see (:mod:`.patient_assignments`);
* ``GET /oncoflow/model-stats``: mean Dice / IoU per expert across studies;
  ``GET /oncoflow/model-stats.png``: the same as a bar chart.

With login on (``ONCOFLOW_AUTH=on``, the default) every request first passes the request filter of
:mod:`.http_access_filter`: a valid Keycloak token whose roles and assigned patients allow it.
"""

from __future__ import annotations

import logging
import threading
import urllib.parse
from typing import Any

from oncoflow import __version__
from oncoflow.access_tokens import TokenValidator
from oncoflow.config import load_settings

from .access_audit import outcome_of
from .clinical_notes_routes import ClinicalNotesRoutes
from .clinical_report import ReportError
from .encapsulated_pdf_writer import NotAnEncapsulatedPdf, read_encapsulated_pdf
from .http_access_filter import HttpAccessFilter
from .http_answers import answer_json, only
from .model_stats_chart import render_model_stats_png
from .notes_service import NotesService
from .orthanc_rest import OrthancRest
from .patient_assignments import PatientAssignments
from .patient_resolver import PatientResolver
from .pipeline_assembly import assemble_pipeline, consumer_name
from .refinement import RefineError, Refinement
from .study_pipeline import REANALYSE_TRIGGER
from .upload_guard import register_upload_guard
from .viewer_routes import register_viewer_routes
from .worker_client import WorkerUnavailable


class _OrthancLogHandler(logging.Handler):
    def __init__(self, orthanc: Any) -> None:
        super().__init__()
        self.orthanc = orthanc

    def emit(self, record: logging.LogRecord) -> None:
        message = self.format(record)
        if record.levelno >= logging.ERROR:
            self.orthanc.LogError(message)
        elif record.levelno >= logging.WARNING:
            self.orthanc.LogWarning(message)
        else:
            self.orthanc.LogInfo(message)


def _warm_up_elastix() -> None:
    from oncoflow_registration.affine_registration import elastix_available

    available, reason = elastix_available()
    logging.getLogger("oncoflow").info("itk-elastix %s", "ready" if available else f"not available: {reason}")


def _warm_up_notes(notes: NotesService) -> None:
    try:
        notes.load()
        logging.getLogger("oncoflow").info("clinical notes store ready")
    except Exception as exc:  # noqa: BLE001 (a warm-up: the first real use reports the same error)
        logging.getLogger("oncoflow").warning("clinical notes store not ready: %s", exc)


def register(orthanc: Any) -> None:
    """Register OncoFlow's callbacks with the running Orthanc (called by the entry script)."""
    logger = logging.getLogger("oncoflow")
    logger.setLevel(logging.INFO)
    handler = _OrthancLogHandler(orthanc)
    handler.setFormatter(logging.Formatter("OncoFlow %(name)s: %(message)s"))
    logger.addHandler(handler)

    settings = load_settings()
    rest = OrthancRest(orthanc)
    parts = assemble_pipeline(settings, rest)
    store, worker, pipeline, notes, audit = parts.store, parts.worker, parts.pipeline, parts.notes, parts.audit
    guard_stored_instance = register_upload_guard(orthanc, audit)  # polyglot / deeply nested uploads: audited
    access_filter: HttpAccessFilter | None = None
    if settings.auth is not None:
        validator = TokenValidator(settings.auth.issuer, settings.auth.audience, settings.auth.jwks_url,
                                   leeway_s=settings.auth.leeway_s)
        access_filter = HttpAccessFilter(validator, PatientResolver(rest), audit)
        audit.current_caller = access_filter.current_caller
        orthanc.RegisterIncomingHttpRequestFilter(access_filter)
        logger.info("login on: every HTTP request needs a token of %s for audience %s", settings.auth.issuer,
                    settings.auth.audience)
    else:
        logger.warning("LOGIN IS OFF (ONCOFLOW_AUTH=off): anyone who reaches port %d reads every patient's "
                       "images, results and reports. Development only.", settings.http_port)
    assignments = PatientAssignments(settings.auth, settings.assignments_client_path, audit)
    patient_timeline = parts.timeline
    notes_routes = ClinicalNotesRoutes(settings, rest, notes, audit)
    home_disk_space = parts.home_disk_space
    # a consumer of the queue unless ONCOFLOW_JOB_CONSUMER=off (then pipeline workers run the jobs)
    runner = parts.job_runner(consumer_name("orthanc", settings.http_port), consume=settings.job_consumer)
    if store.shared:
        logger.info("job queue in PostgreSQL (shared); this Orthanc %s jobs", "runs" if settings.job_consumer
                    else "only queues")
    refinement = Refinement(rest, store, pipeline, worker)

    def on_change(change_type: int, level: int, resource_id: str) -> None:
        if change_type == orthanc.ChangeType.NEW_INSTANCE:
            guard_stored_instance(resource_id)  # a hostile C-STORE / STOW-RS instance is deleted at once
        elif change_type == orthanc.ChangeType.STABLE_STUDY:
            runner.enqueue(resource_id, "stable-study")
        elif change_type == orthanc.ChangeType.ORTHANC_STARTED:
            runner.start()
            if settings.registration_method == "elastix":  # the first `import itk` takes ~8 s: not in a job
                threading.Thread(target=_warm_up_elastix, name="oncoflow-itk-import", daemon=True).start()
            # the notes store loads its embedding model (seconds): before the first upload or report needs it
            threading.Thread(target=_warm_up_notes, args=(notes,), name="oncoflow-notes-load", daemon=True).start()
        elif change_type == orthanc.ChangeType.ORTHANC_STOPPED:
            runner.stop()
            parts.close()

    @only("GET")
    def health(output: Any, uri: str, **request: Any) -> None:
        """200 when OncoFlow can work; 503 when the disk under ONCOFLOW_HOME is below ONCOFLOW_MIN_FREE_MB."""
        space = home_disk_space()
        try:
            jobs: dict[str, int] | str = store.counts()
        except Exception as exc:  # noqa: BLE001 (the job database unreadable: say so, with 503)
            jobs = f"job database unreadable: {exc}"
        ok = space.ok and isinstance(jobs, dict)
        payload = {"status": "ok" if ok else "degraded", "version": __version__, "jobs": jobs,
                   "storage": space.as_json()}
        if not space.ok:
            payload["error"] = f"not enough free disk space: {space.describe()}"
        answer_json(output, payload, 200 if ok else 503)

    @only("GET")
    def study_status(output: Any, uri: str, **request: Any) -> None:
        study_uid = request["groups"][0]
        study_id = rest.lookup_study(study_uid)
        job = store.latest(study_id) if study_id else None
        if job is None:
            answer_json(output, {"error": f"no OncoFlow job for study {study_uid}"}, 404)
            return
        payload = job.as_json()
        payload["history"] = [
            {"job_id": j.id, "state": j.state, "error": j.error, "trigger": j.trigger, "created_at": j.created_at}
            for j in store.history(study_id)
        ]
        payload["refinements"] = store.refinements(study_uid)
        answer_json(output, payload)

    @only("GET")
    def timeline(output: Any, uri: str, **request: Any) -> None:
        patient_id = urllib.parse.unquote(request["groups"][0])
        points = store.timeline(patient_id)
        if not points:
            answer_json(output, {"error": f"no OncoFlow time point for patient {patient_id}"}, 404)
            return
        answer_json(output, {"patient_id": patient_id, "baseline_rule": settings.baseline_rule,
                              "time_points": points})

    @only("POST")
    def refine(output: Any, uri: str, **request: Any) -> None:
        try:
            answer_json(output, refinement.refine(request["groups"][0], request.get("body", b"")))
            audit.record("study.analyse", request["groups"][0], "success", "refine")
        except RefineError as exc:
            answer_json(output, {"error": exc.message}, exc.status)
            audit.record("study.analyse", request["groups"][0], outcome_of(exc.status), f"refine: {exc.status}")

    @only("GET")
    def report_pdf(output: Any, uri: str, **request: Any) -> None:
        sop_instance_uid = request["groups"][0]
        dataset = rest.instance_dataset(sop_instance_uid)
        try:
            pdf = None if dataset is None else read_encapsulated_pdf(dataset)
        except NotAnEncapsulatedPdf as exc:
            answer_json(output, {"error": str(exc)}, 404)
            return
        if pdf is None:
            answer_json(output, {"error": f"no instance {sop_instance_uid}"}, 404)
            audit.record("report.read", sop_instance_uid, "refused", "404 no such report")
            return
        audit.record("report.read", sop_instance_uid, "success")
        output.SetHttpHeader("Content-Disposition", f'inline; filename="oncoflow-report-{sop_instance_uid}.pdf"')
        output.AnswerBuffer(pdf, "application/pdf")

    def study_or_404(output: Any, study_uid: str) -> str | None:
        """Orthanc's ID of the study, or ``None`` after answering 404."""
        study_id = rest.lookup_study(study_uid)
        if study_id is None:
            answer_json(output, {"error": f"no study {study_uid}"}, 404)
        return study_id

    @only("POST")
    def reanalyse(output: Any, uri: str, **request: Any) -> None:
        study_uid = request["groups"][0]
        if (study_id := study_or_404(output, study_uid)) is None:
            return
        job_id = runner.enqueue(study_id, REANALYSE_TRIGGER)
        if job_id is None:
            answer_json(output, {"error": "a job of this study is already queued"}, 409)
            audit.record("study.analyse", study_uid, "refused", "reanalyse: 409 already queued")
            return
        audit.record("study.analyse", study_uid, "success", f"reanalyse queued as job-{job_id}")
        answer_json(output, {"job_id": job_id, "state": "queued"}, 202)

    @only("POST")
    def report_again(output: Any, uri: str, **request: Any) -> None:
        if (study_id := study_or_404(output, request["groups"][0])) is None:
            return
        try:
            answer_json(output, patient_timeline.report_again(study_id))
        except ReportError as exc:
            answer_json(output, {"error": str(exc)}, 409)

    @only("GET")
    def panel(output: Any, uri: str, **request: Any) -> None:
        try:
            models = worker.describe(settings.panel)
        except WorkerUnavailable as exc:
            answer_json(output, {"error": str(exc)}, 503)
            return
        answer_json(output, {
            "fusion": settings.fusion,
            "fusion_weights": settings.fusion_weights,
            "experts": [{"name": m.name, "state": m.state, "role": m.role, "reason": m.reason}
                        for m in models.values()],
        })

    @only("GET")
    def model_stats(output: Any, uri: str, **request: Any) -> None:
        stats = store.model_stats()
        if uri.endswith(".png"):
            output.AnswerBuffer(render_model_stats_png(stats), "image/png")
        else:
            answer_json(output, {"experts": stats})

    orthanc.RegisterOnChangeCallback(on_change)
    orthanc.RegisterRestCallback("/oncoflow/health", health)
    orthanc.RegisterRestCallback("/oncoflow/studies/([0-9.]{1,64})", study_status)
    orthanc.RegisterRestCallback("/oncoflow/studies/([0-9.]{1,64})/refine", refine)
    orthanc.RegisterRestCallback("/oncoflow/patients/([^/]{1,200})/timeline", timeline)
    orthanc.RegisterRestCallback("/oncoflow/studies/([0-9.]{1,64})/report", report_again)
    orthanc.RegisterRestCallback("/oncoflow/studies/([0-9.]{1,64})/reanalyse", reanalyse)
    orthanc.RegisterRestCallback("/oncoflow/reports/([0-9.]{1,64})\\.pdf", report_pdf)
    orthanc.RegisterRestCallback("/oncoflow/patients/([^/]{1,200})/documents", notes_routes.documents)
    orthanc.RegisterRestCallback("/oncoflow/patients/([^/]{1,200})/documents/search", notes_routes.search)
    orthanc.RegisterRestCallback("/oncoflow/panel", panel)
    orthanc.RegisterRestCallback("/oncoflow/audit", audit.route)
    orthanc.RegisterRestCallback("/oncoflow/assignments", assignments.route)
    # /ohif/ (OHIF viewer) and /oncoflow/dicom-web/ (QIDO, trimmed to the caller's patients when login is on)
    register_viewer_routes(orthanc, settings, access_filter.may_see_patient if access_filter else None)
    orthanc.RegisterRestCallback("/oncoflow/model-stats", model_stats)
    orthanc.RegisterRestCallback("/oncoflow/model-stats.png", model_stats)
    logger.info("OncoFlow %s plugin registered (worker %s, panel %s, fusion %s)", __version__, settings.worker_url,
                ",".join(settings.panel), settings.fusion)

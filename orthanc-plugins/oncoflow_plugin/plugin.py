"""Wiring of OncoFlow into Orthanc: the change callback, the request filter, the job thread and the REST routes.

Each route parses Orthanc's request, calls the domain (:mod:`oncoflow.api`) and sends its answer:

* ``GET /oncoflow/health``, ``GET /oncoflow/studies/{StudyInstanceUID}``, ``POST .../refine``,
  ``POST .../reanalyse``, ``POST .../report``, ``GET``/``PUT .../clinical-state``,
  ``GET``/``POST``/``DELETE .../approved-seg``,
  ``GET /oncoflow/patients/{PatientID}/timeline``,
  ``GET /oncoflow/reports/{SOPInstanceUID}.pdf``, ``GET /oncoflow/panel``, ``GET /oncoflow/model-stats[.png]``
  (:mod:`oncoflow.api.study_routes`);
* ``POST``, ``GET``, ``DELETE /oncoflow/patients/{PatientID}/documents`` and ``GET .../documents/search``
  (:mod:`oncoflow.api.notes_routes`);
* ``GET /oncoflow/audit`` (:mod:`oncoflow.api.audit_routes`), ``PUT /oncoflow/assignments``
  (:mod:`oncoflow.api.assignment_routes`);
* ``/ohif/...`` and ``/oncoflow/dicom-web/...`` (:mod:`.viewer_routes`), ``/instances`` (:mod:`.upload_routes`).

With login on (``ONCOFLOW_AUTH=on``, the default) every request first passes the request filter of
:mod:`.http_access_filter`: a valid Keycloak token whose roles and assigned patients allow it.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from oncoflow import __version__
from oncoflow.api.assignment_routes import PatientAssignments
from oncoflow.api.audit_routes import read_audit
from oncoflow.api.notes_routes import ClinicalNotesRoutes
from oncoflow.api.stow_uploads import StowUploads
from oncoflow.api.study_routes import StudyRoutes
from oncoflow.core.config import load_settings
from oncoflow.pacs.orthanc_rest import OrthancRest
from oncoflow.pipeline.notes_service import NotesService
from oncoflow.pipeline.pipeline_assembly import assemble_pipeline, consumer_name
from oncoflow.security.access_tokens import TokenValidator
from oncoflow.security.derived_objects import DerivedObjects
from oncoflow.security.dicom_refusals import DicomRefusalAudit
from oncoflow.security.keycloak_admin import AdminClient
from oncoflow.security.login_refusals import LoginRefusals
from oncoflow.security.login_refusals import follow as follow_login_refusals
from oncoflow.security.patient_resolver import PatientResolver
from oncoflow.security.request_access import RequestAccess
from oncoflow.security.resent_instances import ResentInstances
from oncoflow.security.upload_guard import UploadGuard

from .http_access_filter import HttpAccessFilter
from .http_answers import only, send_answer
from .upload_routes import internal_stow, register_upload_routes
from .viewer_routes import register_viewer_routes


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
    audit = parts.audit
    access: RequestAccess | None = None
    if settings.auth is not None:
        validator = TokenValidator(settings.auth.issuer, settings.auth.audience, settings.auth.jwks_url,
                                   leeway_s=settings.auth.leeway_s)
        destination = settings.route_to.modality_id if settings.route_to is not None else None
        access = RequestAccess(validator, PatientResolver(rest), audit, DerivedObjects(rest), settings.auth.otp_roles,
                               route_destination=destination)
        audit.current_caller = access.current_caller
        logger.info("login on: every HTTP request needs a token of %s for audience %s", settings.auth.issuer,
                    settings.auth.audience)
    else:
        logger.warning("LOGIN IS OFF (ONCOFLOW_AUTH=off): anyone who reaches port %d reads every patient's "
                       "images, results and reports. Development only.", settings.http_port)
    guard = UploadGuard(audit)
    guard_stored_instance = register_upload_routes(orthanc, guard, access)  # hostile uploads: audited
    orthanc.RegisterIncomingHttpRequestFilter(HttpAccessFilter(access))  # with login off: no direct STOW-RS only
    stow = StowUploads(guard, ResentInstances(rest), access.may_upload if access else lambda patient_id: None,
                       internal_stow(orthanc, settings.http_port))
    # a consumer of the queue unless ONCOFLOW_JOB_CONSUMER=off (then pipeline workers run the jobs)
    runner = parts.job_runner(consumer_name("orthanc", settings.http_port), consume=settings.job_consumer)
    if parts.store.shared:
        logger.info("job queue in PostgreSQL (shared); this Orthanc %s jobs", "runs" if settings.job_consumer
                    else "only queues")
    dicom_refusals = DicomRefusalAudit(settings.orthanc_log_path, audit)  # refused peers and commands, audited
    login_refusals: LoginRefusals | None = None  # refused Keycloak logins (wrong password or code), audited
    stop_pulling = threading.Event()
    if settings.auth is not None:
        auth = settings.auth
        login_refusals = LoginRefusals(
            lambda: AdminClient.from_secret_file(auth.keycloak_url, auth.realm, settings.assignments_client_path),
            audit, settings.run_dir / "keycloak-login-events.json")
    studies = StudyRoutes(parts, runner, parts.refinement())
    notes = ClinicalNotesRoutes(settings, rest, parts.notes, audit)
    assignments = PatientAssignments(settings.auth, settings.assignments_client_path, audit)

    def on_change(change_type: int, level: int, resource_id: str) -> None:
        if change_type == orthanc.ChangeType.NEW_INSTANCE:
            guard_stored_instance(resource_id)  # a hostile C-STORE / STOW-RS instance is deleted at once
        elif change_type == orthanc.ChangeType.STABLE_STUDY:
            runner.enqueue(resource_id, "stable-study")
        elif change_type == orthanc.ChangeType.ORTHANC_STARTED:
            runner.start()
            if parts.routing is not None:  # ONCOFLOW_ROUTE_TO: studies left pending by the last run go first
                parts.routing.start()
            dicom_refusals.start()
            if login_refusals is not None:
                threading.Thread(target=follow_login_refusals, args=(login_refusals, stop_pulling),
                                 name="oncoflow-login-refusals", daemon=True).start()
            if settings.registration_method == "elastix":  # the first `import itk` takes ~8 s: not in a job
                threading.Thread(target=_warm_up_elastix, name="oncoflow-itk-import", daemon=True).start()
            # the notes store loads its embedding model (seconds): before the first upload or report needs it
            threading.Thread(target=_warm_up_notes, args=(parts.notes,), name="oncoflow-notes-load",
                             daemon=True).start()
        elif change_type == orthanc.ChangeType.ORTHANC_STOPPED:
            runner.stop()
            dicom_refusals.stop()
            stop_pulling.set()
            parts.close()

    @only("GET")
    def health(output: Any, uri: str, **request: Any) -> None:
        send_answer(output, studies.health())

    @only("GET")
    def study_status(output: Any, uri: str, **request: Any) -> None:
        send_answer(output, studies.study_status(request["groups"][0]))

    @only("GET")
    def timeline(output: Any, uri: str, **request: Any) -> None:
        send_answer(output, studies.timeline(request["groups"][0]))

    @only("POST")
    def refine(output: Any, uri: str, **request: Any) -> None:
        send_answer(output, studies.refine(request["groups"][0], request.get("body", b"")))

    @only("GET")
    def report_pdf(output: Any, uri: str, **request: Any) -> None:
        send_answer(output, studies.report_pdf(request["groups"][0]))

    @only("POST")
    def reanalyse(output: Any, uri: str, **request: Any) -> None:
        send_answer(output, studies.reanalyse(request["groups"][0]))

    @only("POST")
    def report_again(output: Any, uri: str, **request: Any) -> None:
        send_answer(output, studies.report_again(request["groups"][0]))

    def clinical_state(output: Any, uri: str, **request: Any) -> None:
        if request["method"] not in ("GET", "PUT"):
            output.SendMethodNotAllowed("GET,PUT")
            return
        send_answer(output, studies.clinical_state(request["groups"][0], request["method"],
                                                   bytes(request.get("body", b""))))

    def approved_seg(output: Any, uri: str, **request: Any) -> None:
        if request["method"] not in ("GET", "POST", "DELETE"):
            output.SendMethodNotAllowed("GET,POST,DELETE")
            return
        send_answer(output, studies.approved_seg(request["groups"][0], request["method"],
                                                 bytes(request.get("body", b""))))

    @only("GET")
    def panel(output: Any, uri: str, **request: Any) -> None:
        send_answer(output, studies.panel())

    @only("GET")
    def model_stats(output: Any, uri: str, **request: Any) -> None:
        send_answer(output, studies.model_stats(as_png=uri.endswith(".png")))

    def documents(output: Any, uri: str, **request: Any) -> None:
        if request["method"] not in ("GET", "POST", "DELETE"):
            output.SendMethodNotAllowed("GET,POST,DELETE")
            return
        send_answer(output, notes.documents(request["method"], request["groups"][0], request.get("headers", {}),
                                            bytes(request.get("body", b""))))

    @only("GET")
    def documents_search(output: Any, uri: str, **request: Any) -> None:
        send_answer(output, notes.search(request["groups"][0], request.get("get", {})))

    @only("GET")
    def audit_records(output: Any, uri: str, **request: Any) -> None:
        send_answer(output, read_audit(audit, request.get("get", {}), login_refusals.pull if login_refusals else None))

    @only("PUT")
    def assign(output: Any, uri: str, **request: Any) -> None:
        send_answer(output, assignments.change(bytes(request.get("body", b""))))

    orthanc.RegisterOnChangeCallback(on_change)
    orthanc.RegisterRestCallback("/oncoflow/health", health)
    orthanc.RegisterRestCallback("/oncoflow/studies/([0-9.]{1,64})", study_status)
    orthanc.RegisterRestCallback("/oncoflow/studies/([0-9.]{1,64})/refine", refine)
    orthanc.RegisterRestCallback("/oncoflow/patients/([^/]{1,200})/timeline", timeline)
    orthanc.RegisterRestCallback("/oncoflow/studies/([0-9.]{1,64})/report", report_again)
    orthanc.RegisterRestCallback("/oncoflow/studies/([0-9.]{1,64})/reanalyse", reanalyse)
    orthanc.RegisterRestCallback("/oncoflow/studies/([0-9.]{1,64})/clinical-state", clinical_state)
    orthanc.RegisterRestCallback("/oncoflow/studies/([0-9.]{1,64})/approved-seg", approved_seg)
    orthanc.RegisterRestCallback("/oncoflow/reports/([0-9.]{1,64})\\.pdf", report_pdf)
    orthanc.RegisterRestCallback("/oncoflow/patients/([^/]{1,200})/documents", documents)
    orthanc.RegisterRestCallback("/oncoflow/patients/([^/]{1,200})/documents/search", documents_search)
    orthanc.RegisterRestCallback("/oncoflow/panel", panel)
    orthanc.RegisterRestCallback("/oncoflow/audit", audit_records)
    orthanc.RegisterRestCallback("/oncoflow/assignments", assign)
    # /ohif/ (OHIF viewer) and /oncoflow/dicom-web/ (QIDO, trimmed to the caller's patients when login is on)
    register_viewer_routes(orthanc, settings, stow, access.may_see_patient if access else None)
    orthanc.RegisterRestCallback("/oncoflow/model-stats", model_stats)
    orthanc.RegisterRestCallback("/oncoflow/model-stats.png", model_stats)
    logger.info("OncoFlow %s plugin registered (worker %s, panel %s, fusion %s)", __version__, settings.worker_url,
                ",".join(settings.panel), settings.fusion)

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
* ``GET /oncoflow/panel``: the panel's experts as the worker reports them;
* ``GET /oncoflow/model-stats``: mean Dice / IoU per expert across studies;
  ``GET /oncoflow/model-stats.png``: the same as a bar chart.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.parse
from typing import Any

from oncoflow import __version__
from oncoflow.config import load_settings

from .expert_panel import ExpertPanel
from .job_runner import JobRunner
from .job_store import JobStore
from .model_stats_chart import render_model_stats_png
from .orthanc_rest import OrthancRest
from .patient_timeline import PatientTimeline
from .refinement import RefineError, Refinement
from .study_pipeline import StudyPipeline
from .worker_client import WorkerClient, WorkerUnavailable


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


def _answer_json(output: Any, payload: Any, status: int = 200) -> None:
    body = json.dumps(payload, indent=1)
    if status == 200:
        output.AnswerBuffer(body, "application/json")
    else:
        output.SendHttpStatus(status, body, len(body))


def _warm_up_elastix() -> None:
    from oncoflow_registration.affine_registration import elastix_available

    available, reason = elastix_available()
    logging.getLogger("oncoflow").info("itk-elastix %s", "ready" if available else f"not available: {reason}")


def register(orthanc: Any) -> None:
    """Register OncoFlow's callbacks with the running Orthanc (called by the entry script)."""
    logger = logging.getLogger("oncoflow")
    logger.setLevel(logging.INFO)
    handler = _OrthancLogHandler(orthanc)
    handler.setFormatter(logging.Formatter("OncoFlow %(name)s: %(message)s"))
    logger.addHandler(handler)

    settings = load_settings()
    rest = OrthancRest(orthanc)
    store = JobStore(settings.job_db_path)
    worker = WorkerClient(settings.worker_url, settings.worker_timeout_s)
    pipeline = StudyPipeline(settings, rest, store, ExpertPanel(settings, worker))
    pipeline.timeline = PatientTimeline(settings, rest, store, pipeline).update
    runner = JobRunner(store, pipeline, rest, settings.job_max_attempts)
    refinement = Refinement(rest, store, pipeline, worker)

    def on_change(change_type: int, level: int, resource_id: str) -> None:
        if change_type == orthanc.ChangeType.STABLE_STUDY:
            runner.enqueue(resource_id, "stable-study")
        elif change_type == orthanc.ChangeType.ORTHANC_STARTED:
            runner.start()
            if settings.registration_method == "elastix":  # the first `import itk` takes ~8 s: not in a job
                threading.Thread(target=_warm_up_elastix, name="oncoflow-itk-import", daemon=True).start()
        elif change_type == orthanc.ChangeType.ORTHANC_STOPPED:
            runner.stop()
            store.close()

    def health(output: Any, uri: str, **request: Any) -> None:
        if request["method"] != "GET":
            output.SendMethodNotAllowed("GET")
            return
        _answer_json(output, {"status": "ok", "version": __version__, "jobs": store.counts()})

    def study_status(output: Any, uri: str, **request: Any) -> None:
        if request["method"] != "GET":
            output.SendMethodNotAllowed("GET")
            return
        study_uid = request["groups"][0]
        study_id = rest.lookup_study(study_uid)
        job = store.latest(study_id) if study_id else None
        if job is None:
            _answer_json(output, {"error": f"no OncoFlow job for study {study_uid}"}, 404)
            return
        payload = job.as_json()
        payload["history"] = [
            {"job_id": j.id, "state": j.state, "error": j.error, "trigger": j.trigger, "created_at": j.created_at}
            for j in store.history(study_id)
        ]
        payload["refinements"] = store.refinements(study_uid)
        _answer_json(output, payload)

    def timeline(output: Any, uri: str, **request: Any) -> None:
        if request["method"] != "GET":
            output.SendMethodNotAllowed("GET")
            return
        patient_id = urllib.parse.unquote(request["groups"][0])
        points = store.timeline(patient_id)
        if not points:
            _answer_json(output, {"error": f"no OncoFlow time point for patient {patient_id}"}, 404)
            return
        _answer_json(output, {"patient_id": patient_id, "baseline_rule": settings.baseline_rule,
                              "time_points": points})

    def refine(output: Any, uri: str, **request: Any) -> None:
        if request["method"] != "POST":
            output.SendMethodNotAllowed("POST")
            return
        try:
            _answer_json(output, refinement.refine(request["groups"][0], request.get("body", b"")))
        except RefineError as exc:
            _answer_json(output, {"error": exc.message}, exc.status)

    def panel(output: Any, uri: str, **request: Any) -> None:
        if request["method"] != "GET":
            output.SendMethodNotAllowed("GET")
            return
        try:
            models = worker.describe(settings.panel)
        except WorkerUnavailable as exc:
            _answer_json(output, {"error": str(exc)}, 503)
            return
        _answer_json(output, {
            "fusion": settings.fusion,
            "fusion_weights": settings.fusion_weights,
            "experts": [{"name": m.name, "state": m.state, "role": m.role, "reason": m.reason}
                        for m in models.values()],
        })

    def model_stats(output: Any, uri: str, **request: Any) -> None:
        if request["method"] != "GET":
            output.SendMethodNotAllowed("GET")
            return
        stats = store.model_stats()
        if uri.endswith(".png"):
            output.AnswerBuffer(render_model_stats_png(stats), "image/png")
        else:
            _answer_json(output, {"experts": stats})

    orthanc.RegisterOnChangeCallback(on_change)
    orthanc.RegisterRestCallback("/oncoflow/health", health)
    orthanc.RegisterRestCallback("/oncoflow/studies/([0-9.]{1,64})", study_status)
    orthanc.RegisterRestCallback("/oncoflow/studies/([0-9.]{1,64})/refine", refine)
    orthanc.RegisterRestCallback("/oncoflow/patients/([^/]{1,200})/timeline", timeline)
    orthanc.RegisterRestCallback("/oncoflow/panel", panel)
    orthanc.RegisterRestCallback("/oncoflow/model-stats", model_stats)
    orthanc.RegisterRestCallback("/oncoflow/model-stats.png", model_stats)
    logger.info("OncoFlow %s plugin registered (worker %s, panel %s, fusion %s)", __version__, settings.worker_url,
                ",".join(settings.panel), settings.fusion)

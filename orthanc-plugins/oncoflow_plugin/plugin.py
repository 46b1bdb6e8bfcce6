"""Wiring of OncoFlow into Orthanc: the change callback, the job thread and the REST routes.

Routes (JSON):

* ``GET /oncoflow/health``: plugin up, job counts by state;
* ``GET /oncoflow/studies/{StudyInstanceUID}``: the study's latest job (state, error,
  stage timings in seconds, output SOP Instance UIDs, events) and its job history.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from oncoflow import __version__
from oncoflow.config import load_settings

from .job_runner import JobRunner
from .job_store import JobStore
from .orthanc_rest import OrthancRest
from .study_pipeline import StudyPipeline
from .worker_client import WorkerClient


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
    worker = WorkerClient(settings.worker_url, settings.segmentation_model, settings.worker_timeout_s)
    runner = JobRunner(store, StudyPipeline(settings, rest, store, worker), rest, settings.job_max_attempts)

    def on_change(change_type: int, level: int, resource_id: str) -> None:
        if change_type == orthanc.ChangeType.STABLE_STUDY:
            runner.enqueue(resource_id, "stable-study")
        elif change_type == orthanc.ChangeType.ORTHANC_STARTED:
            runner.start()
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
        _answer_json(output, payload)

    orthanc.RegisterOnChangeCallback(on_change)
    orthanc.RegisterRestCallback("/oncoflow/health", health)
    orthanc.RegisterRestCallback("/oncoflow/studies/([0-9.]{1,64})", study_status)
    logger.info("OncoFlow %s plugin registered (worker %s, model %s)", __version__, settings.worker_url,
                settings.segmentation_model)

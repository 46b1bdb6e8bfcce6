"""The plugin's own worker thread: catches up on missed studies, then runs queued jobs.

Orthanc's change callback only inserts a row and wakes this thread, so it never
waits. Failures are classified:

* :class:`InputError` and :class:`ModelUnavailable`: the job fails with the reason;
* :class:`WorkerUnavailable`: the job is re-queued with back-off, until
  ``ONCOFLOW_JOB_MAX_ATTEMPTS`` is reached;
* anything else: the job fails as an internal error, the traceback goes to the log,
  and the thread carries on with the next job.
"""

from __future__ import annotations

import logging
import threading

from .job_store import Job, JobStore
from .orthanc_rest import OrthancRest
from .study_pipeline import StudyPipeline
from .volume_builder import InputError
from .worker_client import ModelUnavailable, WorkerUnavailable

log = logging.getLogger("oncoflow.runner")

CHANGES_SEQ_KEY = "orthanc_changes_seq"
# Changes that mean "this study may hold work for us" (the study-level ones carry the study ID).
_STUDY_CHANGES = {"StableStudy", "NewStudy"}
_SERIES_CHANGES = {"StableSeries"}
MAX_BACKOFF_S = 15.0


class JobRunner:
    def __init__(self, store: JobStore, pipeline: StudyPipeline, rest: OrthancRest, max_attempts: int) -> None:
        self.store = store
        self.pipeline = pipeline
        self.rest = rest
        self.max_attempts = max_attempts
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="oncoflow-jobs", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def enqueue(self, orthanc_study_id: str, trigger: str) -> None:
        """Called from Orthanc's change callback: one SQLite insert, then return."""
        self.store.enqueue(orthanc_study_id, trigger)
        self._wake.set()

    def catch_up(self) -> int:
        """Queue studies changed since the stored ``/changes`` sequence number; returns how many."""
        since = int(self.store.get_state(CHANGES_SEQ_KEY, "0") or 0)
        queued: set[str] = set()
        while True:
            page = self.rest.get_json(f"/changes?since={since}&limit=500")
            for change in page.get("Changes", []):
                kind, resource = change.get("ChangeType"), change.get("ID")
                if kind in _STUDY_CHANGES:
                    queued.add(resource)
                elif kind in _SERIES_CHANGES:
                    try:
                        queued.add(self.rest.get_json(f"/series/{resource}")["ParentStudy"])
                    except Exception:  # the series was deleted since
                        continue
            since = int(page.get("Last", since))
            if page.get("Done", True):
                break
        for study_id in sorted(queued):
            try:
                self.rest.get_json(f"/studies/{study_id}")
            except Exception:
                continue  # deleted since
            self.store.enqueue(study_id, "catch-up")
        self.store.set_state(CHANGES_SEQ_KEY, str(since))
        return len(queued)

    def _loop(self) -> None:
        recovered = self.store.recover()
        if recovered:
            log.warning("re-queued %d job(s) interrupted by a restart", recovered)
        try:
            caught = self.catch_up()
            if caught:
                log.warning("catch-up queued %d study(ies) changed while OncoFlow was not listening", caught)
        except Exception:
            log.exception("catch-up from /changes failed")
        while not self._stop.is_set():
            job = self.store.claim_next()
            if job is None:
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            self._run_one(job)

    def _run_one(self, job: Job) -> None:
        try:
            self.pipeline.run(job)
        except (InputError, ModelUnavailable) as exc:
            log.warning("study %s failed: %s", job.orthanc_study_id, exc)
            self.store.finish(job.id, "failed", str(exc))
        except WorkerUnavailable as exc:
            if job.attempts >= self.max_attempts:
                self.store.finish(job.id, "failed", f"gave up after {job.attempts} attempts: {exc}")
            else:
                self.store.retry_later(job.id, min(2.0 ** (job.attempts - 1), MAX_BACKOFF_S), str(exc))
        except Exception as exc:
            log.exception("internal error on study %s", job.orthanc_study_id)
            self.store.finish(job.id, "failed", f"internal error: {type(exc).__name__}: {exc}")

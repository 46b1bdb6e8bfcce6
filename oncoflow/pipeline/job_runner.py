"""A job consumer: catches up on missed studies, then runs queued jobs, one at a time.

It runs as Orthanc's plugin thread (``ONCOFLOW_JOB_CONSUMER=on``) and as each pipeline worker process
(:mod:`.pipeline_worker`), all on one queue when it is PostgreSQL. Orthanc's change callback only inserts a
row and wakes this thread, so it never waits; when the database cannot be reached the study is kept in
memory and queued as soon as it answers again (and the catch-up from Orthanc's ``/changes`` covers a
restart meanwhile). Each claimed job holds a lease of ``lease_s`` seconds, renewed every third of it while
the job runs; a consumer that dies loses its jobs to the next one when the lease expires.

Failures are classified:

* :class:`InputError` and :class:`ModelUnavailable`: the job fails with the reason;
* :class:`WorkerUnavailable`, and :class:`oncoflow.pacs.orthanc_http.OrthancUnavailable` for a pipeline worker whose
  Orthanc is restarting: the job is re-queued with back-off, until
  ``ONCOFLOW_JOB_MAX_ATTEMPTS`` is reached;
* too little free disk space under ``ONCOFLOW_HOME`` (:mod:`oncoflow.core.disk_space`): the job is not started
  but re-queued every :data:`DISK_WAIT_S` with the numbers in its events, and fails with them after
  ``ONCOFLOW_JOB_MAX_ATTEMPTS`` (a store halfway would fail anyway, leaving less for everything else);
* anything else: the job fails as an internal error, the traceback goes to the log,
  and the thread carries on with the next job. An error of the job store itself (a full disk refuses
  SQLite's writes) is logged and the loop goes on after a pause: the thread never dies.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from oncoflow.core.disk_space import DiskSpace
from oncoflow.dicom.volume_builder import InputError
from oncoflow.pacs.orthanc_http import OrthancUnavailable
from oncoflow.pacs.orthanc_rest import OrthancRest
from oncoflow.pipeline.job_store import Job, JobStore
from oncoflow.pipeline.sql_database import DatabaseUnavailable
from oncoflow.pipeline.study_pipeline import StudyPipeline
from oncoflow.pipeline.worker_client import ModelUnavailable, WorkerUnavailable
from oncoflow.security.audit_log import AuditLog

log = logging.getLogger("oncoflow.runner")

CHANGES_SEQ_KEY = "orthanc_changes_seq"
# Changes that may mean new input for a study, and how to reach the study from the changed resource.
_STUDY_OF_CHANGE = {
    "NewStudy": "/studies/{}",
    "StableStudy": "/studies/{}",
    "NewSeries": "/series/{}/study",
    "StableSeries": "/series/{}/study",
    "NewInstance": "/instances/{}/study",
}
MAX_BACKOFF_S = 15.0
CATCH_UP_LOCK = "oncoflow-catch-up"  # one Orthanc of an installation reads /changes at a time
DISK_WAIT_S = 30.0
LOOP_ERROR_PAUSE_S = 5.0


def _change_epoch_s(change: dict[str, Any]) -> float:
    """Orthanc's change ``Date`` (UTC, ``YYYYMMDDTHHMMSS``) as seconds since the epoch."""
    try:
        return datetime.strptime(change["Date"], "%Y%m%dT%H%M%S").replace(tzinfo=UTC).timestamp()
    except (KeyError, ValueError):
        return float("inf")  # unknown date: assume the study may need work


class JobRunner:
    def __init__(self, store: JobStore, pipeline: StudyPipeline, rest: OrthancRest | None, max_attempts: int,
                 audit: AuditLog | None = None, disk_space: Callable[[], DiskSpace] | None = None,
                 consumer: str = "", lease_s: float = 60.0, consume: bool = True) -> None:
        self.store = store
        self.consumer = consumer  # recorded on each claim: which Orthanc or worker ran the job
        self.lease_s = lease_s
        self.consume = consume  # False: only catch up and queue (dedicated pipeline workers run the jobs)
        self._unqueued: dict[str, str] = {}  # study -> trigger, while the database could not take them
        self._unqueued_lock = threading.Lock()
        self.disk_space = disk_space  # checked before each job
        self.audit = audit  # each finished analysis: job-<id>, success or failed
        self.pipeline = pipeline
        self.rest = rest  # for the catch-up from Orthanc's /changes; None: no catch-up (a pipeline worker)
        self.max_attempts = max_attempts
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="oncoflow-jobs", daemon=True)
        # Orthanc's newest change when it started: later ones reach the change callback, so the catch-up
        # stops here (None: unknown, it reads to the end)
        self._catch_up_until_seq: int | None = None

    def start(self) -> None:
        """Start the thread; call it once Orthanc has started (``ORTHANC_STARTED``).

        The newest change is read here, before the thread's start-up waits on the database: a study stored
        after this point is queued by its STABLE_STUDY, never by the catch-up while it is still arriving.
        """
        if self.rest is not None:
            try:
                self._catch_up_until_seq = int(self.rest.get_json("/changes?last")["Last"])
            except Exception:  # noqa: BLE001 (no bound: the catch-up reads every change since its last run)
                log.exception("could not read Orthanc's newest change; the catch-up reads to the end")
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def enqueue(self, orthanc_study_id: str, trigger: str) -> int | None:
        """One SQLite insert, then return (called from Orthanc's change callback and the re-analyse route).

        Returns the new job's id, or ``None`` when a job of the study is already queued. When the database
        does not answer, the study is kept and queued by the thread once it does (also ``None``).
        """
        try:
            job_id = self.store.enqueue(orthanc_study_id, trigger)
        except Exception as exc:  # noqa: BLE001 (the queue is down: never lose the trigger, never block Orthanc)
            log.error("study %s not queued yet (%s): kept until the job database answers", orthanc_study_id, exc)
            with self._unqueued_lock:
                self._unqueued.setdefault(orthanc_study_id, trigger)
            job_id = None
        self._wake.set()
        return job_id

    def _queue_kept(self) -> None:
        """Queue the studies kept while the database did not answer (raises while it still does not)."""
        with self._unqueued_lock:
            kept = list(self._unqueued.items())
        for study_id, trigger in kept:
            self.store.enqueue(study_id, trigger)
            with self._unqueued_lock:
                self._unqueued.pop(study_id, None)
            log.warning("study %s queued after the job database came back", study_id)

    def catch_up(self) -> int:
        """Queue studies changed since the stored ``/changes`` sequence number; returns how many.

        A study is queued when its newest change is later than its newest job: that covers a
        study whose STABLE_STUDY never fired because Orthanc stopped within StableAge of the
        last C-STORE. Only changes up to the newest one when Orthanc started are read (see :meth:`start`):
        a study that arrives later is the change callback's. Studies deleted since are skipped. On a shared
        queue, one Orthanc catches up at a time (an advisory lock) and the sequence number is shared, so
        Orthancs on one index queue each missed study once.
        """
        with self.store.exclusive(CATCH_UP_LOCK):
            return self._catch_up()

    def _catch_up(self) -> int:
        assert self.rest is not None, "catch-up needs Orthanc's REST API"
        since = int(self.store.get_state(CHANGES_SEQ_KEY, "0") or 0)
        until = float("inf") if self._catch_up_until_seq is None else self._catch_up_until_seq
        changed_at: dict[str, float] = {}
        study_of: dict[str, str | None] = {}
        while since < until:
            page = self.rest.get_json(f"/changes?since={since}&limit=1000")
            for change in page.get("Changes", []):
                if int(change.get("Seq", 0)) > until:
                    break  # heard by the change callback
                route = _STUDY_OF_CHANGE.get(change.get("ChangeType", ""))
                if route is None:
                    continue
                uri = route.format(change["ID"])
                if uri not in study_of:
                    try:
                        study_of[uri] = str(self.rest.get_json(uri)["ID"])
                    except Exception:  # deleted since
                        study_of[uri] = None
                study_id = study_of[uri]
                if study_id is not None:
                    changed_at[study_id] = max(changed_at.get(study_id, 0.0), _change_epoch_s(change))
            since = int(min(int(page.get("Last", since)), until))
            if page.get("Done", True):
                break
        queued = 0
        for study_id, when in sorted(changed_at.items()):
            latest = self.store.latest(study_id)
            if latest is None or latest.created_at < when - 1.0:  # Orthanc's dates have 1 s resolution
                self.store.enqueue(study_id, "catch-up")
                queued += 1
        self.store.set_state(CHANGES_SEQ_KEY, str(since))
        return queued

    def _start_up(self) -> bool:
        """Recover and catch up (Orthanc only: ``rest`` set); False when the database did not answer."""
        try:
            recovered = self.store.recover()
            if recovered:
                log.warning("re-queued %d job(s) interrupted by a restart", recovered)
        except Exception:  # noqa: BLE001 (the database is down: try again after the pause)
            log.exception("job recovery failed; retrying in %.0f s", LOOP_ERROR_PAUSE_S)
            return False
        if self.rest is not None:
            try:
                caught = self.catch_up()
                if caught:
                    log.warning("catch-up queued %d study(ies) changed while OncoFlow was not listening", caught)
            except Exception:
                log.exception("catch-up from /changes failed")
        return True

    def _loop(self) -> None:
        while not self._start_up():
            if self._stop.wait(LOOP_ERROR_PAUSE_S):
                return
        while not self._stop.is_set():
            try:
                self._queue_kept()
                job = self.store.claim_next(self.consumer, self.lease_s) if self.consume else None
                if job is None:
                    self._wake.wait(0.5)
                    self._wake.clear()
                    continue
                with self._lease_renewed(job):
                    self._run_one(job)
            except Exception:  # noqa: BLE001 (the job store failed, e.g. a full disk: keep the thread alive)
                log.exception("job loop error; retrying in %.0f s", LOOP_ERROR_PAUSE_S)
                self._stop.wait(LOOP_ERROR_PAUSE_S)

    def run_forever(self) -> None:
        """Run the loop in the calling thread until :meth:`stop` (a pipeline worker's main thread)."""
        self._loop()

    @contextmanager
    def _lease_renewed(self, job: Job) -> Iterator[None]:
        """Renew the job's lease every third of it while the body runs."""
        done = threading.Event()

        def renew() -> None:
            while not done.wait(self.lease_s / 3):
                try:
                    if not self.store.renew(job, self.lease_s):
                        log.warning("job %d was redelivered to another consumer; this run will not acknowledge it",
                                    job.id)
                        return
                except Exception as exc:  # noqa: BLE001 (database down: the lease may lapse; the job is redelivered)
                    log.warning("job %d: lease not renewed: %s", job.id, exc)

        thread = threading.Thread(target=renew, name=f"oncoflow-lease-{job.id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join(5)

    def _enough_disk(self, job: Job) -> bool:
        """False (and the job re-queued, or failed after the last attempt) when the disk is too full."""
        space = self.disk_space() if self.disk_space is not None else None
        if space is None or space.ok:
            return True
        reason = f"not enough free disk space: {space.describe()}"
        log.error("study %s held back: %s", job.orthanc_study_id, reason)
        self._retry_or_give_up(job, DISK_WAIT_S, reason, "disk full")
        return False

    def _retry_or_give_up(self, job: Job, delay_s: float, reason: str, audit_reason: str) -> None:
        """Re-queue a job hit by a transient cause after ``delay_s``; fail it with the reason at the last attempt."""
        if job.attempts >= self.max_attempts:
            if self.store.finish(job.id, "failed", f"gave up after {job.attempts} attempts: {reason}", job.attempts):
                self._audit(job, "failed", f"{job.trigger}: {audit_reason}")
        else:
            self.store.retry_later(job.id, delay_s, reason, job.attempts)

    def _run_one(self, job: Job) -> None:
        if not self._enough_disk(job):
            return
        try:
            self.pipeline.run(job)
            # None: a redundant trigger, discarded (nothing analysed); another attempt: redelivered meanwhile
            current = self.store.get(job.id)
            if current is not None and current.state == "done" and current.attempts == job.attempts:
                self._audit(job, "success", job.trigger)
        except (InputError, ModelUnavailable) as exc:
            log.warning("study %s failed: %s", job.orthanc_study_id, exc)
            if self.store.finish(job.id, "failed", str(exc), job.attempts):
                self._audit(job, "failed", f"{job.trigger}: {type(exc).__name__}")
        except (WorkerUnavailable, OrthancUnavailable) as exc:
            what = "worker unavailable" if isinstance(exc, WorkerUnavailable) else "Orthanc unavailable"
            self._retry_or_give_up(job, min(2.0 ** (job.attempts - 1), MAX_BACKOFF_S), str(exc), what)
        except DatabaseUnavailable:
            raise  # the job stays claimed; its lease lapses and it is redelivered once the database is back
        except Exception as exc:
            log.exception("internal error on study %s", job.orthanc_study_id)
            if self.store.finish(job.id, "failed", f"internal error: {type(exc).__name__}: {exc}", job.attempts):
                self._audit(job, "failed", f"{job.trigger}: internal error")

    def _audit(self, job: Job, outcome: str, detail: str) -> None:
        """One PHI-free record per finished analysis (the job id, never the study's identity)."""
        if self.audit is not None:
            self.audit.append("oncoflow", "system", "study.analyse", f"job-{job.id}", outcome, detail[:200])

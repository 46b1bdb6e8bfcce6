"""The study pipeline and its collaborators, built once for Orthanc's plugin and for a pipeline worker.

Both run the same objects (DICOM in -> volume -> panel -> SEG, then the timeline, the SR and the report);
only the way to Orthanc differs: ``orthanc.RestApi*`` inside Orthanc, HTTP (:class:`.orthanc_http.HttpOrthanc`)
outside it.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from oncoflow.audit_log import AuditLog
from oncoflow.config import Settings
from oncoflow.disk_space import DiskSpace, disk_space
from oncoflow.pseudonyms import pseudonym_key

from .access_audit import AccessAudit
from .clinical_report import ClinicalReportWriter
from .expert_panel import ExpertPanel
from .job_runner import JobRunner
from .job_store import JobStore
from .notes_service import NotesService
from .orthanc_rest import OrthancRest
from .patient_timeline import PatientTimeline
from .study_pipeline import StudyPipeline
from .worker_client import WorkerClient


@dataclass
class PipelineParts:
    settings: Settings
    rest: OrthancRest
    store: JobStore
    worker: WorkerClient
    pipeline: StudyPipeline
    notes: NotesService
    audit_log: AuditLog
    audit: AccessAudit
    pseudonym_key: bytes  # report pseudonyms and audit patient tokens
    reports: ClinicalReportWriter
    timeline: PatientTimeline

    def home_disk_space(self) -> DiskSpace:
        return disk_space(self.settings.home, self.settings.min_free_mb)

    def job_runner(self, consumer: str, consume: bool, catch_up: bool = True) -> JobRunner:
        """A consumer of the job queue named ``consumer`` (recorded on each job it claims); with ``catch_up``
        (Orthanc's plugin) it first queues the studies changed while nobody listened."""
        return JobRunner(self.store, self.pipeline, self.rest if catch_up else None, self.settings.job_max_attempts,
                         self.audit_log,
                         self.home_disk_space, consumer=consumer, lease_s=self.settings.job_lease_s,
                         consume=consume)

    def close(self) -> None:
        self.store.close()
        self.notes.close()
        self.audit_log.close()


def consumer_name(kind: str, detail: str | int) -> str:
    """``kind@host:detail``: e.g. ``orthanc@pacs-1:8042`` or ``worker@gpu-2:4711`` (PID)."""
    return f"{kind}@{socket.gethostname()}:{detail}"


def assemble_pipeline(settings: Settings, rest: OrthancRest) -> PipelineParts:
    """The job store (SQLite or ``ONCOFLOW_DATABASE_URL``), the panel's client and the pipeline's stages."""
    store = JobStore(settings.database_url or settings.job_db_path)
    worker = WorkerClient(settings.worker_url, settings.worker_timeout_s)
    pipeline = StudyPipeline(settings, rest, store, ExpertPanel(settings, worker))
    notes = NotesService(settings.rag_dir)
    audit_log = AuditLog(settings.audit_db_path)
    secret = pseudonym_key(settings.pseudonym_key_path)
    audit = AccessAudit(audit_log, secret)
    reports = ClinicalReportWriter(settings, rest, store, notes, secret, audit)
    timeline = PatientTimeline(settings, rest, store, pipeline, reports)
    pipeline.timeline = timeline.update
    return PipelineParts(settings, rest, store, worker, pipeline, notes, audit_log, audit, secret, reports, timeline)

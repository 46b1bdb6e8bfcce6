"""The study pipeline and its collaborators, built once for Orthanc's plugin and for a pipeline worker.

Both run the same objects (DICOM in -> volume -> panel -> SEG, then the timeline, the SR and the report);
only the way to Orthanc differs: ``orthanc.RestApi*`` inside Orthanc, HTTP
(:class:`oncoflow.pacs.orthanc_http.HttpOrthanc`) outside it.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from oncoflow.core.config import Settings
from oncoflow.core.disk_space import DiskSpace, disk_space
from oncoflow.pacs.orthanc_rest import OrthancRest
from oncoflow.pipeline.approved_segmentation import ApprovedSegmentation
from oncoflow.pipeline.brain_extraction import BrainExtraction
from oncoflow.pipeline.expert_panel import ExpertPanel
from oncoflow.pipeline.job_runner import JobRunner
from oncoflow.pipeline.job_store import JobStore
from oncoflow.pipeline.notes_service import NotesService
from oncoflow.pipeline.patient_timeline import PatientTimeline
from oncoflow.pipeline.refinement import Refinement
from oncoflow.pipeline.report_stage import ClinicalReportWriter
from oncoflow.pipeline.result_routing import ResultRouting
from oncoflow.pipeline.study_input import StudyInput
from oncoflow.pipeline.study_pipeline import StudyPipeline
from oncoflow.pipeline.worker_client import WorkerClient
from oncoflow.security.access_audit import AccessAudit
from oncoflow.security.audit_log import AuditLog
from oncoflow.security.pseudonyms import pseudonym_key


@dataclass
class PipelineParts:
    settings: Settings
    rest: OrthancRest
    store: JobStore
    worker: WorkerClient
    study_input: StudyInput
    pipeline: StudyPipeline
    notes: NotesService
    audit_log: AuditLog
    audit: AccessAudit
    pseudonym_key: bytes  # report pseudonyms and audit patient tokens
    reports: ClinicalReportWriter
    timeline: PatientTimeline
    routing: ResultRouting | None = None  # ONCOFLOW_ROUTE_TO: results sent on to the hospital's PACS

    def home_disk_space(self) -> DiskSpace:
        return disk_space(self.settings.home, self.settings.min_free_mb)

    def job_runner(self, consumer: str, consume: bool, catch_up: bool = True) -> JobRunner:
        """A consumer of the job queue named ``consumer`` (recorded on each job it claims); with ``catch_up``
        (Orthanc's plugin) it first queues the studies changed while nobody listened."""
        return JobRunner(self.store, self.pipeline, self.rest if catch_up else None, self.settings.job_max_attempts,
                         self.audit_log,
                         self.home_disk_space, consumer=consumer, lease_s=self.settings.job_lease_s,
                         consume=consume)

    def refinement(self) -> Refinement:
        """SAM2 refinement of the studies' masks from a radiologist's clicks."""
        return Refinement(self.settings, self.rest, self.store, self.study_input, self.worker)

    def close(self) -> None:
        if self.routing is not None:
            self.routing.stop()
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
    study_input = StudyInput(settings, rest)
    panel = ExpertPanel(settings, worker)
    brain = BrainExtraction(settings, worker)
    pipeline = StudyPipeline(settings, rest, store, study_input, brain, panel)
    notes = NotesService(settings.rag_dir)
    audit_log = AuditLog(settings.audit_db_path)
    secret = pseudonym_key(settings.pseudonym_key_path)
    audit = AccessAudit(audit_log, secret)
    reports = ClinicalReportWriter(settings, rest, store, notes, secret, audit)
    timeline = PatientTimeline(settings, rest, store, study_input, brain, panel, reports)
    # a radiologist's approved SEG stays the one measured when a job re-analyses its study (the job says so)
    pipeline.timeline = ApprovedSegmentation(rest, store, study_input).around_timeline(timeline.update)
    routing = ResultRouting(settings, rest, store, audit_log) if settings.route_to is not None else None
    if routing is not None:
        pipeline.results_done = routing.submit  # on to the hospital's PACS, from the routing's own thread
    return PipelineParts(settings, rest, store, worker, study_input, pipeline, notes, audit_log, audit, secret,
                         reports, timeline, routing)

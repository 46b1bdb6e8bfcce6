"""Result routing: every result object OncoFlow stores goes to the hospital's main PACS (``ONCOFLOW_ROUTE_TO``).

After a study's job has stored its results (and after a refinement or a report made again), the study, and every
other study of its patient (a baseline arriving late re-measures its follow-ups), is reconciled with what the
destination already received:

* OncoFlow's result instances in the study (Manufacturer (0008,0070) ``OncoFlow``: SEG, SR, REG, Encapsulated
  PDF and rejection notes; of the SEGs, the ensemble and refined ones, or all with ``ONCOFLOW_ROUTE_OBJECTS=all``)
  that the destination has not received are sent by C-STORE through Orthanc's job engine
  (``POST /modalities/{id}/store`` with ``"Asynchronous": true``, then ``GET /jobs/{id}`` until it ends);
* instances the destination received that OncoFlow has since deleted (replaced by a re-analysis, a re-measured
  time point, a new report) are withdrawn by an IHE IOCM rejection note (:mod:`oncoflow.dicom.rejection_note`,
  "Rejected for Quality Reasons"), stored in the study and sent with the new objects: C-STORE cannot delete.

Orthanc 1.10 does not retry a failed job, so a failed store job is resubmitted (``POST /jobs/{id}/resubmit``)
after a back-off of 2 s doubling up to :data:`MAX_BACKOFF_S`, until ``ONCOFLOW_ROUTE_RETRY_S`` has passed; then
the routing gives up, and the objects go with the study's next routing. Each outcome is an event of the study's
latest job, a log line and an audit record (``dicom.route``). What the destination received is kept per study in
the job database (``plugin_state``), as are the studies still to route, so a restart resumes them.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass
from io import BytesIO
from typing import Any

from pydicom import dcmread

from oncoflow.core.config import DicomPeer, Settings
from oncoflow.dicom.derived_object import MANUFACTURER
from oncoflow.dicom.rejection_note import WithdrawnInstance, write_rejection_note
from oncoflow.dicom.seg_writer import ENSEMBLE_SERIES_NUMBER, REFINED_DESCRIPTION_PREFIX
from oncoflow.pacs.orthanc_rest import OrthancRest
from oncoflow.pipeline.job_store import JobStore
from oncoflow.security.audit_log import AuditLog

log = logging.getLogger("oncoflow.routing")

FIRST_BACKOFF_S = 2.0
MAX_BACKOFF_S = 20.0
POLL_S = 0.5
ORTHANC_JOB_ENDED = ("Success", "Failure")


@dataclass(frozen=True)
class ResultInstance:
    """One of OncoFlow's result instances as Orthanc holds it."""

    orthanc_id: str
    modality: str  # (0008,0060): SEG, SR, REG, DOC, KO
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str


def is_routed_series(tags: dict[str, Any], objects: str) -> bool:
    """Whether a series (Orthanc's series ``MainDicomTags``) is one of OncoFlow's results the destination gets.

    ``objects`` (``ONCOFLOW_ROUTE_OBJECTS``): ``ensemble``: of the SEGs only the ensemble (SeriesNumber
    (0020,0011) 9001) and the refined ones (SeriesDescription "OncoFlow SEG refined ..."); ``all``: every SEG.
    Every other OncoFlow object (SR, REG, Encapsulated PDF, rejection note) always goes.
    """
    if tags.get("Manufacturer") != MANUFACTURER:
        return False
    if tags.get("Modality") != "SEG" or objects == "all":
        return True
    return str(tags.get("SeriesNumber", "")).strip() == str(ENSEMBLE_SERIES_NUMBER) or str(
        tags.get("SeriesDescription", "")).startswith(REFINED_DESCRIPTION_PREFIX)


class RoutingGaveUp(RuntimeError):
    """The destination did not take the objects within ``ONCOFLOW_ROUTE_RETRY_S``."""


class ResultRouting:
    """Sends a study's results to ``settings.route_to`` from a thread of its own (:meth:`submit`)."""

    def __init__(self, settings: Settings, rest: OrthancRest, store: JobStore, audit: AuditLog | None) -> None:
        if settings.route_to is None:
            raise ValueError("result routing needs ONCOFLOW_ROUTE_TO")
        self.destination: DicomPeer = settings.route_to
        self.objects = settings.route_objects
        self.retry_s = settings.route_retry_s
        self.rest = rest
        self.store = store
        self.audit = audit
        self.label = f"{self.destination.aet}@{self.destination.host}:{self.destination.port}"
        self._pending_key = f"route-pending:{self.destination.aet}"
        self._queue: queue.Queue[str] = queue.Queue()
        self._pending_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the thread --------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the routing thread; studies left pending by the last run are routed first."""
        if self._thread is not None:
            return
        for study_id in self._pending():
            self._queue.put(study_id)
        self._thread = threading.Thread(target=self._loop, name="oncoflow-routing", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._queue.put("")
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout_s)

    def submit(self, orthanc_study_id: str) -> None:
        """Route the study and its patient's other studies (returns at once; the thread does the work)."""
        with self._pending_lock:
            pending = self._pending()
            if orthanc_study_id not in pending:
                self.store.set_state(self._pending_key, json.dumps([*pending, orthanc_study_id]))
        self._queue.put(orthanc_study_id)
        if self._thread is None:
            self.start()

    def _pending(self) -> list[str]:
        return list(json.loads(self.store.get_state(self._pending_key, "[]") or "[]"))

    def _done(self, orthanc_study_id: str) -> None:
        with self._pending_lock:
            pending = self._pending()
            if orthanc_study_id in pending:
                pending.remove(orthanc_study_id)
                self.store.set_state(self._pending_key, json.dumps(pending))

    def _loop(self) -> None:
        while not self._stop.is_set():
            study_id = self._queue.get()
            if not study_id or self._stop.is_set():
                continue
            try:
                for other in self._patient_studies(study_id):
                    try:
                        self.route_study(other)
                    except Exception as exc:  # noqa: BLE001 (Orthanc refused a request: say so, go on)
                        log.exception("routing of study %s to %s failed", other, self.label)
                        self._record(other, "", "failed", f"routing to {self.label} failed: "
                                     f"{type(exc).__name__}: {exc}"[:300])
                self._done(study_id)
            except Exception:  # noqa: BLE001 (the thread must live: the study stays pending for the next start)
                log.exception("routing of study %s to %s failed", study_id, self.label)

    def _patient_studies(self, orthanc_study_id: str) -> list[str]:
        """The study first, then the patient's other studies (their results may have been re-made too)."""
        try:
            studies = self.rest.get_json(f"/studies/{orthanc_study_id}/patient")["Studies"]
        except Exception:  # noqa: BLE001 (the study was deleted since: nothing of it to route)
            return []
        return [orthanc_study_id, *(s for s in studies if s != orthanc_study_id)]

    # -- one study ---------------------------------------------------------------------------------

    def _routed_key(self, orthanc_study_id: str) -> str:
        return f"routed:{self.destination.aet}:{orthanc_study_id}"

    def routed(self, orthanc_study_id: str) -> dict[str, list[str]]:
        """What the destination received of the study: SOPInstanceUID -> [SeriesInstanceUID, SOPClassUID,
        Modality]."""
        return dict(json.loads(self.store.get_state(self._routed_key(orthanc_study_id), "{}") or "{}"))

    def _results(self, orthanc_study_id: str) -> tuple[list[ResultInstance], set[str]]:
        """(the results to route, the SOPInstanceUIDs of all of OncoFlow's objects in the study)."""
        routable: list[ResultInstance] = []
        present: set[str] = set()
        for series in self.rest.get_json(f"/studies/{orthanc_study_id}/series"):
            tags = series.get("MainDicomTags", {})
            if tags.get("Manufacturer") != MANUFACTURER:
                continue
            for instance in self.rest.get_json(f"/series/{series['ID']}/instances"):
                uid = str(instance["MainDicomTags"]["SOPInstanceUID"])
                present.add(uid)
                if is_routed_series(tags, self.objects):
                    sop_class = self.rest.get_bytes(f"/instances/{instance['ID']}/metadata/SopClassUid").decode()
                    routable.append(ResultInstance(instance["ID"], str(tags.get("Modality", "")),
                                                   str(tags.get("SeriesInstanceUID", "")), uid, sop_class.strip()))
        return routable, present

    def route_study(self, orthanc_study_id: str) -> None:
        """Send what the destination lacks of the study, and a rejection note for what it holds that OncoFlow
        deleted; records the outcome (events, audit, log). Gives up after ``ONCOFLOW_ROUTE_RETRY_S``."""
        deadline = time.monotonic() + self.retry_s
        while True:
            try:
                study = self.rest.get_json(f"/studies/{orthanc_study_id}")
            except Exception:  # noqa: BLE001 (deleted since)
                return
            study_uid = str(study["MainDicomTags"].get("StudyInstanceUID", ""))
            routed = self.routed(orthanc_study_id)
            routable, present = self._results(orthanc_study_id)
            withdrawn = {uid: entry for uid, entry in routed.items() if uid not in present}
            if withdrawn:
                note = write_rejection_note(self._study_attributes(orthanc_study_id), [
                    WithdrawnInstance(entry[0], entry[1], uid) for uid, entry in withdrawn.items()])
                self.rest.store(note)
                self._record(orthanc_study_id, study_uid, "success", f"rejection note {note.SOPInstanceUID} "
                             f"withdraws {len(withdrawn)} object(s) routed earlier "
                             f"({self._kinds(e[2] for e in withdrawn.values())}); it goes with the next C-STORE")
                routable, present = self._results(orthanc_study_id)
            # the rejection note after the objects that replace what it withdraws
            unsent = sorted((r for r in routable if r.sop_instance_uid not in routed), key=lambda r: r.modality == "KO")
            if not unsent:
                return
            try:
                outcome = self._send(orthanc_study_id, study_uid, unsent, deadline)
            except RoutingGaveUp as exc:
                self._record(orthanc_study_id, study_uid, "failed", str(exc))
                return
            if outcome is None:
                continue  # an object went away while it was being sent: reconcile again
            for result in unsent:
                routed[result.sop_instance_uid] = [result.series_instance_uid, result.sop_class_uid, result.modality]
            for uid in withdrawn:
                routed.pop(uid, None)
            self.store.set_state(self._routed_key(orthanc_study_id), json.dumps(routed))
            self._record(orthanc_study_id, study_uid, "success", f"routed {len(unsent)} object(s) "
                         f"({self._kinds(r.modality for r in unsent)}) to {self.label} by C-STORE, {outcome}")
            return

    def _study_attributes(self, orthanc_study_id: str) -> Any:
        """Patient and study attributes for a rejection note: the header of one of the study's instances."""
        instance = self.rest.get_json(f"/studies/{orthanc_study_id}/instances")[0]["ID"]
        return dcmread(BytesIO(self.rest.get_bytes(f"/instances/{instance}/file")), stop_before_pixels=True)

    @staticmethod
    def _kinds(modalities: Any) -> str:
        return ", ".join(f"{modality} {count}" for modality, count in sorted(Counter(modalities).items()))

    # -- Orthanc's job engine ----------------------------------------------------------------------

    def _send(self, orthanc_study_id: str, study_uid: str, results: list[ResultInstance],
              deadline: float) -> str | None:
        """C-STORE ``results`` through one Orthanc job, resubmitted with back-off until it succeeds; returns what
        happened (job and attempts), ``None`` when a resource disappeared (the caller reconciles again). Raises
        :class:`RoutingGaveUp` after the deadline."""
        body = json.dumps({"Resources": [r.orthanc_id for r in results], "Asynchronous": True, "Permissive": False})
        started = time.monotonic()
        job_id = str(self.rest.post_json(f"/modalities/{urllib.parse.quote(self.destination.modality_id)}/store",
                                         body)["ID"])
        delay_s = FIRST_BACKOFF_S
        attempt = 1
        while True:
            state, error = self._wait(job_id)
            if state == "Success":
                return f"Orthanc job {job_id}, attempt {attempt}, {time.monotonic() - started:.1f} s"
            if not all(self._exists(r.orthanc_id) for r in results):
                return None
            waited_s = time.monotonic() - started
            if time.monotonic() + delay_s > deadline or self._stop.is_set():
                raise RoutingGaveUp(f"routing to {self.label} gave up after {waited_s:.0f} s and {attempt} C-STORE "
                                    f"attempt(s) of {len(results)} object(s): {error}; they go with the study's next "
                                    "routing")
            message = (f"routing to {self.label}: C-STORE attempt {attempt} failed ({error}); resubmitting Orthanc "
                       f"job {job_id} in {delay_s:.0f} s")
            log.warning("study %s: %s", study_uid, message)
            if attempt & (attempt - 1) == 0:  # attempts 1, 2, 4, 8, ...: the job's events stay readable
                self._event(orthanc_study_id, message)
            if self._stop.wait(delay_s):
                raise RoutingGaveUp(f"routing to {self.label} stopped (OncoFlow shutting down) after {attempt} "
                                    f"attempt(s): {error}")
            try:
                self.rest.post_json(f"/jobs/{job_id}/resubmit", "{}")
            except Exception:  # noqa: BLE001 (the failed job left Orthanc's history: submit it anew)
                job_id = str(self.rest.post_json(
                    f"/modalities/{urllib.parse.quote(self.destination.modality_id)}/store", body)["ID"])
            attempt += 1
            delay_s = min(delay_s * 2, MAX_BACKOFF_S)

    def _wait(self, job_id: str) -> tuple[str, str]:
        """Poll ``GET /jobs/{id}`` until the job ends: (State, the error as Orthanc describes it)."""
        while True:
            job = self.rest.get_json(f"/jobs/{job_id}")
            if job.get("State") in ORTHANC_JOB_ENDED:
                details = job.get("ErrorDetails") or ""
                error = f"{job.get('ErrorDescription', '')}{': ' + details if details else ''}"
                return str(job["State"]), error[:300]
            if self._stop.wait(POLL_S):
                return "Failure", "OncoFlow shutting down"

    def _exists(self, orthanc_id: str) -> bool:
        try:
            self.rest.get_json(f"/instances/{orthanc_id}")
            return True
        except Exception:  # noqa: BLE001 (Orthanc answers 404 for a deleted instance)
            return False

    # -- what happened -----------------------------------------------------------------------------

    def _event(self, orthanc_study_id: str, message: str) -> None:
        """An event of the study's latest done job (the one whose results are routed; a queued re-trigger may be
        discarded with its events), else of its latest job."""
        job = self.store.latest_done(orthanc_study_id) or self.store.latest(orthanc_study_id)
        if job is not None:
            self.store.add_event(job.id, message)

    def _record(self, orthanc_study_id: str, study_uid: str, outcome: str, message: str) -> None:
        """The outcome as an event of the study's latest job, a log line and an audit record."""
        (log.info if outcome == "success" else log.error)("study %s: %s", study_uid, message)
        self._event(orthanc_study_id, message)
        if self.audit is not None:
            detail = "".join(c if " " <= c <= "~" else "?" for c in message)[:200]
            self.audit.append("oncoflow", "system", "dicom.route", study_uid or None, outcome, detail)

"""The routes of a patient's clinical notes (the RAG store of :mod:`oncoflow_rag`), as answers.

* ``POST /oncoflow/patients/{PatientID}/documents``: the raw PDF or TXT as the body, its type in
  ``Content-Type`` (application/pdf or text/plain) and its name in ``Content-Disposition:
  attachment; filename="note.pdf"`` (or ``filename*=UTF-8''...``; Orthanc gives plugins no
  query arguments on POST). 200 with the stored document; 4xx with the reason, and nothing
  stored, for a bad upload (:mod:`oncoflow_rag.document_upload`).
* ``GET`` the same route: the patient's documents. ``DELETE``: erase them and their vectors.
* ``GET .../documents/search?q=TEXT&k=N``: the passages the summary would draw on.

The patient must exist in the PACS (404 otherwise), so notes never pile up for unknown IDs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import urllib.parse
from collections.abc import Mapping

from oncoflow_rag.document_upload import DocumentRejected, read_upload

from oncoflow.api.answer import Answer, json_answer
from oncoflow.core.config import Settings
from oncoflow.pacs.orthanc_rest import OrthancRest
from oncoflow.pipeline.notes_service import NotesService
from oncoflow.security.access_audit import AccessAudit

log = logging.getLogger("oncoflow.notes")
_FILENAME_IN_DISPOSITION = re.compile(r'filename\*?=(?:UTF-8\'\')?"?([^";]+)"?', re.IGNORECASE)
MAX_SEARCH_PASSAGES = 20


def upload_filename(headers: dict[str, str]) -> str:
    """The uploaded file's name from Content-Disposition, as sent ("" without one; checked by read_upload)."""
    match = _FILENAME_IN_DISPOSITION.search(headers.get("content-disposition", ""))
    return urllib.parse.unquote(match.group(1)) if match else ""


class ClinicalNotesRoutes:
    def __init__(self, settings: Settings, rest: OrthancRest, notes: NotesService,
                 audit: AccessAudit | None = None) -> None:
        self.settings = settings
        self.rest = rest
        self.notes = notes
        self.audit = audit

    def _patient_exists(self, patient_id: str) -> bool:
        if not patient_id or len(patient_id) > 64 or any(c in patient_id for c in "*?\\") \
                or not patient_id.isprintable():
            return False
        query = {"Level": "Patient", "Query": {"PatientID": patient_id}}
        return bool(self.rest.post_json("/tools/find", json.dumps(query)))

    def documents(self, method: str, raw_patient_id: str, headers: Mapping[str, str], body: bytes) -> Answer:
        """``GET`` the patient's documents, ``POST`` one (``body``, named by Content-Disposition), ``DELETE`` all.

        ``raw_patient_id`` is the route's segment, still percent-encoded; ``headers`` have lower-case names.
        """
        patient_id = urllib.parse.unquote(raw_patient_id)
        if not self._patient_exists(patient_id):
            return json_answer(404, {"error": "no such patient in the PACS"})
        if method == "GET":
            return json_answer(200, {"documents": [dataclasses.asdict(d) for d in self.notes.documents(patient_id)]})
        if method == "DELETE":
            erased = self.notes.erase(patient_id)
            log.info("clinical notes erased: %d documents", erased)
            self._audit("notes.erase", patient_id, "success", f"{erased} documents")
            return json_answer(200, {"erased_documents": erased})
        try:
            document = read_upload(upload_filename(headers), body, headers.get("content-type"),
                                   self.settings.max_upload_bytes)
        except DocumentRejected as exc:
            self._audit("notes.upload", patient_id, "refused", f"{exc.status}")
            return json_answer(exc.status, {"error": exc.message})
        stored = self.notes.add(patient_id, document)
        self._audit("notes.upload", patient_id, "success", f"document {stored.document_id}")
        return json_answer(200, {"document": dataclasses.asdict(stored)})

    def _audit(self, action: str, patient_id: str, outcome: str, detail: str) -> None:
        if self.audit is not None:
            self.audit.record(action, self.audit.patient(patient_id), outcome, detail)

    def search(self, raw_patient_id: str, query_arguments: Mapping[str, str]) -> Answer:
        """``GET .../documents/search?q=TEXT&k=N``: the passages the summary would draw on."""
        patient_id = urllib.parse.unquote(raw_patient_id)
        query = str(query_arguments.get("q", "")).strip()
        try:
            k = int(query_arguments.get("k", "5"))
        except ValueError:
            k = 0
        if not query or not 1 <= k <= MAX_SEARCH_PASSAGES:
            return json_answer(400, {"error": f"give q=TEXT and k=1..{MAX_SEARCH_PASSAGES}"})
        if not self._patient_exists(patient_id):
            return json_answer(404, {"error": "no such patient in the PACS"})
        passages = self.notes.search(patient_id, query, k)
        return json_answer(200, {"passages": [dataclasses.asdict(p) for p in passages]})

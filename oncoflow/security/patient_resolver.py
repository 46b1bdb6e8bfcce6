"""The PatientID a request touches, from what its URI names (:data:`oncoflow.security.access_policy.PatientReference`).

A StudyInstanceUID or SOPInstanceUID is looked up with ``/tools/lookup``; an Orthanc resource
(``studies/<id>``, ``series/<id>``, ...) asks Orthanc for its patient; a route that names the PatientID
itself (``/oncoflow/patients/<PatientID>/...``) gives it percent-decoded. Found answers are cached for
``ttl_s`` (OHIF fetches hundreds of frames of one study; each would otherwise cost two internal REST
calls); a resource not found is never cached, so a study that arrives later is judged afresh.
"""

from __future__ import annotations

import threading
import time
import urllib.parse

from oncoflow.pacs.orthanc_rest import OrthancRest
from oncoflow.security.access_policy import PatientReference


class PatientResolver:
    """Maps a route's patient reference to the stored PatientID (0010,0020), or ``None`` when not stored."""

    def __init__(self, rest: OrthancRest, ttl_s: float = 60.0, max_entries: int = 4096) -> None:
        self.rest = rest
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._cache: dict[tuple[str, str], tuple[float, str]] = {}
        self._lock = threading.Lock()

    def patient_id(self, reference: PatientReference, value: str | None) -> str | None:
        if reference == "none" or not value:
            return None
        if reference == "patient_id":
            return urllib.parse.unquote(value)
        key = (reference, value)
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and now - cached[0] < self.ttl_s:
            return cached[1]
        try:
            found = self._look_up(reference, value)
        except Exception:  # noqa: BLE001 (orthanc.OrthancException: unknown resource, 404)
            found = None
        if found is not None:
            with self._lock:
                if len(self._cache) >= self.max_entries:
                    self._cache.clear()  # bounded memory; refilled by the next requests
                self._cache[key] = (now, found)
        return found

    def _look_up(self, reference: PatientReference, value: str) -> str | None:
        if reference == "study_uid":
            study = self.rest.lookup(value, "Study")
            return None if study is None else self._main_tag(f"/studies/{study}", "PatientMainDicomTags")
        if reference == "sop_instance_uid":
            instance = self.rest.lookup(value, "Instance")
            return None if instance is None else self._main_tag(f"/instances/{instance}/patient", "MainDicomTags")
        level, _, resource_id = value.partition("/")  # orthanc_id: "<level>/<id>"
        if level == "patients":
            return self._main_tag(f"/patients/{resource_id}", "MainDicomTags")
        return self._main_tag(f"/{level}/{resource_id}/patient", "MainDicomTags")

    def _main_tag(self, uri: str, block: str) -> str | None:
        patient_id = self.rest.get_json(uri).get(block, {}).get("PatientID")
        return patient_id if isinstance(patient_id, str) else None

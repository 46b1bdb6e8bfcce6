"""``PUT /oncoflow/assignments``: which patients a user may see (admins only; every change audited).

Body (JSON)::

    {"username": "doctor.dev", "patient_ids": ["PAT-A", "ONCO-LONG-00001"]}

replaces the user's ``assigned_patients`` attribute in Keycloak, which a protocol mapper copies into the
user's access tokens: the change applies from the user's next token (at most the realm's access-token
lifespan, 5 minutes in ``keycloak/oncoflow-realm.json``). The plugin changes it through the admin API as
the ``oncoflow-assignments`` service account (``realm-management`` user roles only), whose secret
``make up`` writes to ``$ONCOFLOW_HOME/secrets/keycloak-assignments.json``. Answers: 200 with the user's
patients before and after; 400 for a malformed body; 404 for an unknown user; 503 when Keycloak or the
secret is missing. Each patient added or removed is one ``assignment.change`` audit record whose resource
is the patient's keyed token and whose detail names the user (staff, not PHI).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from oncoflow.api.answer import Answer, json_answer
from oncoflow.core.config import AuthSettings
from oncoflow.security.access_audit import AccessAudit
from oncoflow.security.keycloak_admin import AdminClient, KeycloakError

log = logging.getLogger("oncoflow.assignments")
_USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
# the pattern the realm's user profile declares for assigned_patients (keycloak/oncoflow-realm.json)
_PATIENT_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
MAX_PATIENTS_PER_USER = 1000  # tokens grow with the list: beyond this, keep assignments in groups
MAX_BODY_BYTES = 256 * 1024


class AssignmentRejected(ValueError):
    """A malformed assignment request (answered 400)."""


@dataclass(frozen=True)
class Assignment:
    username: str
    patient_ids: tuple[str, ...]


def parse_assignment(body: bytes) -> Assignment:
    """The request body as an :class:`Assignment`, or :class:`AssignmentRejected` with the reason."""
    if len(body) > MAX_BODY_BYTES:
        raise AssignmentRejected(f"body larger than {MAX_BODY_BYTES} bytes")
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise AssignmentRejected(f"body is not JSON: {exc}") from exc
    if not isinstance(document, dict) or set(document) != {"username", "patient_ids"}:
        raise AssignmentRejected('body must be {"username": "...", "patient_ids": ["...", ...]}')
    username, patient_ids = document["username"], document["patient_ids"]
    if not isinstance(username, str) or not _USERNAME.fullmatch(username):
        raise AssignmentRejected("username must be 1-64 characters of A-Z a-z 0-9 . _ @ -")
    if not isinstance(patient_ids, list) or len(patient_ids) > MAX_PATIENTS_PER_USER:
        raise AssignmentRejected(f"patient_ids must be a list of at most {MAX_PATIENTS_PER_USER} PatientIDs")
    for patient_id in patient_ids:
        if not isinstance(patient_id, str) or not _PATIENT_ID.fullmatch(patient_id):
            raise AssignmentRejected("each PatientID must be 1-64 characters of A-Z a-z 0-9 . _ - (the realm's "
                                     "user profile allows no others)")
    return Assignment(username, tuple(dict.fromkeys(patient_ids)))  # duplicates dropped, order kept


class PatientAssignments:
    def __init__(self, auth: AuthSettings | None, secret_path: Path, audit: AccessAudit) -> None:
        self.auth = auth
        self.secret_path = secret_path
        self.audit = audit

    def _admin(self) -> AdminClient:
        if self.auth is None:
            raise KeycloakError("login is off (ONCOFLOW_AUTH=off): there are no users to assign patients to")
        return AdminClient.from_secret_file(self.auth.keycloak_url, self.auth.realm, self.secret_path)

    def change(self, body: bytes) -> Answer:
        """Replace a user's assigned patients from the request ``body``; every change is audited."""
        try:
            assignment = parse_assignment(body)
        except AssignmentRejected as exc:
            self.audit.record("assignment.change", None, "refused", f"400 {str(exc)[:80]}")
            return json_answer(400, {"error": str(exc)})
        try:
            previous = self._admin().set_assigned_patients(assignment.username, assignment.patient_ids)
        except (KeycloakError, OSError) as exc:
            log.error("assignment of %s not changed: %s", assignment.username, exc)
            self.audit.record("assignment.change", None, "failed", f"user {assignment.username}: Keycloak unavailable")
            return json_answer(503, {"error": f"Keycloak unavailable: {exc}"})
        if previous is None:
            self.audit.record("assignment.change", None, "refused", f"user {assignment.username}: unknown user")
            return json_answer(404, {"error": f"no user {assignment.username!r}"})
        for patient_id in set(assignment.patient_ids) - set(previous):
            self.audit.record("assignment.change", self.audit.patient(patient_id), "success",
                              f"assigned to {assignment.username}")
        for patient_id in set(previous) - set(assignment.patient_ids):
            self.audit.record("assignment.change", self.audit.patient(patient_id), "success",
                              f"unassigned from {assignment.username}")
        return json_answer(200, {"username": assignment.username, "previous": previous,
                                 "assigned_patients": list(assignment.patient_ids),
                                 "effective": "from the user's next access token"})

"""What the plugin writes to the audit log (:mod:`oncoflow.security.audit_log`), and how.

Every OncoFlow route that reads results, starts work, makes a report or touches clinical notes
records one PHI-free event: a DICOM UID or a ``job-<id>`` for studies, jobs and reports, and an
HMAC token (``pt-...``) for a patient, never a PatientID or a name. The actor is the caller of
the request being served (its Keycloak username and main role, from the request filter), or
``anonymous`` when login is off; analyses are the ``oncoflow`` system actor.
Auditing never breaks the request it describes: a resource that fails the log's PHI guard
is replaced by ``None`` and the event is still written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from oncoflow.security.access_policy import primary_role
from oncoflow.security.access_tokens import AccessToken
from oncoflow.security.audit_log import AuditLog, AuditRecord, patient_reference

log = logging.getLogger("oncoflow.audit")


def actor_and_role(caller: AccessToken | None) -> tuple[str, str]:
    """The audit actor and role of a request's caller: its Keycloak username and main role, or anonymous."""
    return (caller.username, primary_role(caller.roles)) if caller else ("anonymous", "anonymous")


def outcome_of(status: int) -> str:
    """ATNA-style outcome of an HTTP status: success (2xx/3xx), refused (4xx), failed (5xx)."""
    return "success" if status < 400 else "refused" if status < 500 else "failed"


class AccessAudit:
    def __init__(self, audit: AuditLog, pseudonym_key: bytes) -> None:
        self.audit = audit
        self._key = pseudonym_key
        # the caller of the request this thread serves (set by the request filter when login is on)
        self.current_caller: Callable[[], AccessToken | None] = lambda: None

    def patient(self, patient_id: str) -> str:
        """The patient's audit token (stable, keyed, not the PatientID)."""
        return patient_reference(patient_id, self._key)

    def record(self, action: str, resource_uid: str | None, outcome: str, detail: str | None = None,
               actor: str | None = None, role: str | None = None) -> AuditRecord | None:
        if actor is None:
            actor, role = actor_and_role(self.current_caller())
        role = role or "anonymous"
        try:
            return self.audit.append(actor, role, action, resource_uid, outcome, detail)
        except ValueError:
            try:
                return self.audit.append(actor, role, action, None, outcome, "resource withheld (not an audit-safe id)")
            except ValueError as exc:  # a programming error in the action/role/outcome names
                log.error("audit record refused: %s", exc)
                return None

"""``GET /oncoflow/audit?since_id=N&limit=M&action=A``: the audit log's records, oldest first (admins only when
login is on); the read itself is one more record."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from oncoflow.api.answer import Answer, json_answer
from oncoflow.security.access_audit import AccessAudit

MAX_RECORDS_PER_PAGE = 1000


def read_audit(audit: AccessAudit, arguments: Mapping[str, str], refresh: Callable[[], object] | None = None) -> Answer:
    """One page of records after ``since_id`` (at most ``limit``), of one ``action`` when given. ``refresh`` first
    brings in the records kept elsewhere (Keycloak's refused logins), so a read is up to date."""
    try:
        since_id = int(arguments.get("since_id", "0"))
        limit = int(arguments.get("limit", "100"))
        if since_id < 0 or not 1 <= limit <= MAX_RECORDS_PER_PAGE:
            raise ValueError
    except ValueError:
        return json_answer(400, {"error": f"since_id >= 0 and limit 1..{MAX_RECORDS_PER_PAGE} (integers)"})
    action = arguments.get("action") or None
    if refresh is not None:
        refresh()
    try:
        records = audit.audit.records(since_id=since_id, limit=limit, action=action)
    except ValueError as exc:
        return json_answer(400, {"error": str(exc)})
    audit.record("audit.read", None, "success", f"{len(records)} records since {since_id}")
    return json_answer(200, {"records": [r.as_dict() for r in records]})

"""Refused logins, from Keycloak into OncoFlow's audit log: one ``login.refused`` record per Keycloak event.

Keycloak refuses a wrong password, a wrong or replayed TOTP code, a missing code (the password grant of a user
who must give one) and a user without a second factor, and records each as a ``LOGIN_ERROR`` event of the realm
(``eventsEnabled`` in ``keycloak/oncoflow-realm.json``). OncoFlow copies them into its own hash-chained audit log,
so that one trail shows who was refused where: actor the username (or Keycloak's user id when the event names no
username), role ``anonymous`` (nobody was authenticated), the client, the grant and Keycloak's error in the
detail, with the event's id. Keycloak gives the same error (``invalid_user_credentials``) to a wrong password and
to a wrong, replayed or missing code, so the record cannot tell them apart either.

:meth:`LoginRefusals.pull` reads the newest events and records those newer than the last one copied (its time and
id are kept in a small state file), so each event is recorded once, across restarts.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from oncoflow.security.access_audit import AccessAudit
from oncoflow.security.keycloak_admin import AdminClient, KeycloakError

log = logging.getLogger("oncoflow.login_refusals")
_ACTOR = re.compile(r"[A-Za-z0-9._@:+-]{1,64}")
_TEXT = re.compile(r"[^A-Za-z0-9._@:+/ ()-]")


def refusal_record(event: dict[str, Any]) -> tuple[str, str]:
    """``(actor, detail)`` of a ``LOGIN_ERROR`` event, both audit-safe."""
    details = event.get("details") or {}
    candidates = (str(details.get("username") or ""), str(event.get("userId") or ""))
    actor = next((c for c in candidates if _ACTOR.fullmatch(c)), "unknown-user")
    grant = details.get("grant_type") or ("browser" if details.get("auth_type") == "code" else "other")
    detail = f"{event.get('clientId', '?')} {grant} login: {event.get('error', '?')} (keycloak event {event.get('id')})"
    return actor, _TEXT.sub("?", detail)[:200]


class LoginRefusals:
    """Copies the realm's ``LOGIN_ERROR`` events into the audit log, each once."""

    def __init__(self, admin: Callable[[], AdminClient], audit: AccessAudit, state_path: Path) -> None:
        self.admin = admin
        self.audit = audit
        self.state_path = state_path
        self._last_problem = ""

    def _state(self) -> tuple[int, set[str]]:
        try:
            state = json.loads(self.state_path.read_text())
            return int(state["time_ms"]), set(state["ids"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0, set()

    def pull(self) -> int:
        """Record the events not recorded yet; returns how many. Keycloak unreachable: 0, said in the log."""
        try:
            events = self.admin().login_errors()
        except (KeycloakError, OSError) as exc:
            if str(exc) != self._last_problem:  # said once, not every pull
                log.warning("Keycloak's login events not read: %s", exc)
            self._last_problem = str(exc)
            return 0
        self._last_problem = ""
        last_ms, last_ids = self._state()
        fresh = sorted((e for e in events if int(e.get("time", 0)) > last_ms
                        or (int(e.get("time", 0)) == last_ms and e.get("id") not in last_ids)),
                       key=lambda e: (int(e.get("time", 0)), str(e.get("id"))))
        for event in fresh:
            actor, detail = refusal_record(event)
            self.audit.record("login.refused", None, "refused", detail, actor=actor, role="anonymous")
        if fresh:
            newest = int(fresh[-1].get("time", 0))
            ids = {str(e.get("id")) for e in fresh if int(e.get("time", 0)) == newest}
            if newest == last_ms:
                ids |= last_ids
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            self.state_path.write_text(json.dumps({"time_ms": newest, "ids": sorted(ids)}) + "\n")
        return len(fresh)


def follow(refusals: LoginRefusals, stop: threading.Event, interval_s: float = 30.0) -> None:
    """Pull every ``interval_s`` until ``stop`` is set (a daemon thread's body)."""
    while not stop.wait(interval_s):
        try:
            refusals.pull()
        except Exception:  # noqa: BLE001 (the next pull tries again)
            log.exception("Keycloak's login events: pull failed")

"""Who may make an HTTP request: every request needs a Keycloak token that allows it (login on).

Orthanc's request filter (``oncoflow_plugin.http_access_filter``) hands each request to
:meth:`RequestAccess.judge` before any REST, DICOMweb, WADO or OncoFlow route runs, on the HTTP server's
thread; ``False`` makes Orthanc answer 403. For each request :class:`RequestAccess`

1. finds the route's rule (:func:`oncoflow.security.access_policy.route_rule`; unknown routes are admin-only);
2. validates the bearer token (:class:`oncoflow.security.access_tokens.TokenValidator`: signature against the
   realm's JWKS, issuer, audience, expiry, token type), cached per token until it expires;
3. resolves the patient the URI names (:class:`oncoflow.security.patient_resolver.PatientResolver`) and asks
   :func:`oncoflow.security.access_policy.is_allowed` with the token's roles and assigned patients.

Every refusal is written to the audit log (``http.refused``, with the reason, the caller when known,
and the resource as a DICOM UID or the patient's keyed token: never the URI, which may hold a PatientID).
Allowed reads of patient data are written as ``study.read`` / ``report.read``, once per caller and
resource in ``read_audit_window_s`` (a viewer fetches hundreds of frames of one study: one record
says that the user read that study then). The validated caller is kept for the rest of the request
(Orthanc runs the route on the same HTTP thread, right after the filter) so routes and the audit know who
asks. It is keyed by the OS thread (``threading.get_ident``), not kept in a ``threading.local``:
orthanc-python enters Python with a fresh thread state for each callback, so a ``threading.local`` set in
the filter is gone when the route runs (measured: the route saw no caller).
Anything unexpected inside the filter refuses the request (fail closed).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from oncoflow.security.access_audit import AccessAudit, actor_and_role
from oncoflow.security.access_policy import Permission, RouteRule, is_allowed, primary_role, route_rule
from oncoflow.security.access_tokens import AccessToken, TokenRejected, TokenValidator
from oncoflow.security.derived_objects import DerivedObjects
from oncoflow.security.patient_resolver import PatientResolver

log = logging.getLogger("oncoflow.access")

_READ_ACTIONS = {Permission.READ_RESULTS: "study.read", Permission.READ_REPORT: "report.read"}
_UID_REFERENCES = ("study_uid", "sop_instance_uid")


@dataclass(frozen=True)
class AccessDecision:
    """What the filter decided for one request, and why."""

    allowed: bool
    rule: RouteRule
    caller: AccessToken | None
    patient_id: str | None  # the PatientID the request touches (None: names none, or not stored)
    reason: str  # why it was refused ("" when allowed)


class RequestAccess:
    """``derived``: what a pipeline worker may store and delete (:mod:`oncoflow.security.derived_objects`);
    ``None`` leaves stores and deletions to the role table alone. ``route_destination``: the one modality (its
    ``/modalities/{id}``) a pipeline worker may send results to (``ONCOFLOW_ROUTE_TO``); ``None``: none.
    ``otp_roles``: roles whose tokens must show a second factor (``otp`` in ``amr``), else every request is refused
    ("second factor missing")."""

    def __init__(self, validator: TokenValidator, resolver: PatientResolver, audit: AccessAudit,
                 derived: DerivedObjects | None = None, otp_roles: frozenset[str] = frozenset(),
                 route_destination: str | None = None,
                 read_audit_window_s: float = 300.0, max_cached_tokens: int = 1024) -> None:
        self.validator = validator
        self.resolver = resolver
        self.audit = audit
        self.derived = derived
        self.otp_roles = otp_roles
        self.route_destination = route_destination
        self.read_audit_window_s = read_audit_window_s
        self.max_cached_tokens = max_cached_tokens
        self._tokens: dict[str, AccessToken] = {}
        self._reads: dict[tuple[str, str, str], float] = {}
        self._lock = threading.Lock()
        self._callers: dict[int, AccessToken | None] = {}  # OS thread -> the caller of the request it serves

    # --- the caller of the request being served --------------------------------------------------------

    def current_caller(self) -> AccessToken | None:
        """The validated token of the request this thread is serving (``None``: public route or no token)."""
        return self._callers.get(threading.get_ident())

    def may_see_patient(self, patient_id: str) -> bool:
        """Whether the current caller may see ``patient_id`` (QIDO answers are trimmed with it)."""
        caller = self.current_caller()
        if caller is None:
            return False
        return is_allowed(caller.roles, caller.assigned_patients, RouteRule(Permission.READ_RESULTS, "patient_id"),
                          patient_id)

    # --- the judgement of one request ------------------------------------------------------------------

    def judge(self, method: str, uri: str, headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
        """Whether the request may go on: decided, remembered as this thread's caller, audited; fail closed.

        ``method`` is the HTTP method's name (``GET``, ...), ``headers`` have lower-case names.
        """
        thread = threading.get_ident()
        self._callers[thread] = None
        try:
            decision = self.decide(method, uri, headers, query)
            self._callers[thread] = decision.caller
            self._audit(method, decision)
            return decision.allowed
        except Exception:  # noqa: BLE001 (the filter must answer; an error refuses)
            log.exception("request filter failed; request refused")
            return False

    def decide(self, method: str, uri: str, headers: Mapping[str, str], query: Mapping[str, str]) -> AccessDecision:
        rule = route_rule(method, uri, dict(query))
        if rule.permission is Permission.PUBLIC:
            return AccessDecision(True, rule, None, None, "")
        try:
            caller = self.caller(headers.get("authorization"))
        except TokenRejected as exc:
            return AccessDecision(False, rule, None, None, f"token: {exc.reason}")
        if caller.roles & self.otp_roles and "otp" not in caller.authentication_methods:
            return AccessDecision(False, rule, caller, None, "token: second factor missing (no otp in amr)")
        patient_id = self.resolver.patient_id(rule.patient_from, rule.value)
        if is_allowed(caller.roles, caller.assigned_patients, rule, patient_id):
            refusal = self._derived_only(method, rule, caller) or self._destination_only(method, uri, rule, caller)
            return AccessDecision(refusal is None, rule, caller, patient_id, refusal or "")
        granted = any(is_allowed([role], [], RouteRule(rule.permission), None) for role in caller.roles)
        if not granted:
            reason = f"role {primary_role(caller.roles)} may not {rule.permission.value}"
        elif patient_id is None:
            reason = "resource not found"  # to a caller limited to assigned patients: indistinguishable
        else:
            reason = "patient not assigned"
        return AccessDecision(False, rule, caller, patient_id, reason)

    def _derived_only(self, method: str, rule: RouteRule, caller: AccessToken) -> str | None:
        """A pipeline worker deletes OncoFlow's own series only (the admin role deletes anything)."""
        if (self.derived is None or method != "DELETE" or rule.permission is not Permission.STORE_RESULTS
                or "admin" in caller.roles or not rule.value):
            return None
        reason = self.derived.delete_refusal(rule.value.removeprefix("series/"))
        return None if reason is None else f"not an OncoFlow result: {reason}"

    def _destination_only(self, method: str, uri: str, rule: RouteRule, caller: AccessToken) -> str | None:
        """A pipeline worker sends results to the routing destination only (the admin role to any modality)."""
        if (not uri.startswith("/modalities/") or rule.permission is not Permission.ROUTE_RESULTS
                or "admin" in caller.roles):
            return None
        modality = uri.split("/")[2]  # /modalities/{id}/store
        if self.route_destination is None:
            return "no routing destination is configured (ONCOFLOW_ROUTE_TO)"
        return None if modality == self.route_destination else "not the routing destination"

    def upload_refusal(self, dicom: bytes) -> str | None:
        """Why the current caller may not store ``dicom`` (``POST /instances``), or ``None``.

        The request filter cannot see a body: the upload route asks this once the filter has let the request
        through. A caller without the admin role stores OncoFlow's own derived objects only; the refusal is
        audited like the filter's.
        """
        caller = self.current_caller()
        if self.derived is None or caller is None or "admin" in caller.roles:
            return None
        reason = self.derived.store_refusal(dicom)
        if reason is not None:
            actor, role = actor_and_role(caller)
            self.audit.record("http.refused", None, "refused",
                              f"POST {Permission.STORE_RESULTS.value}: not an OncoFlow result: {reason}"[:200],
                              actor=actor, role=role)
        return reason

    def may_upload(self, patient_id: str) -> str | None:
        """Why the current caller may not upload images of ``patient_id`` (STOW-RS), or ``None`` when it may: an
        admin for any patient, a doctor or radiologist for their assigned ones. A refusal is audited."""
        caller = self.current_caller()
        rule = RouteRule(Permission.UPLOAD_IMAGES, "patient_id", patient_id)
        if caller is not None and is_allowed(caller.roles, caller.assigned_patients, rule, patient_id or None):
            return None
        actor, role = actor_and_role(caller)
        reason = "patient not assigned" if caller is not None else "no caller"
        self.audit.record("http.refused", self.audit.patient(patient_id) if patient_id else None, "refused",
                          f"POST {Permission.UPLOAD_IMAGES.value}: {reason}", actor=actor, role=role)
        return f"{reason}: this user may not upload images of that patient"

    def caller(self, authorization_header: str | None) -> AccessToken:
        """The validated token of an ``Authorization`` header (cached until it expires)."""
        if authorization_header:
            with self._lock:
                cached = self._tokens.get(authorization_header)
            if cached is not None and cached.expires_at > time.time():
                return cached
        token = self.validator.validate(authorization_header)
        with self._lock:
            if len(self._tokens) >= self.max_cached_tokens:
                now = time.time()
                self._tokens = {k: v for k, v in self._tokens.items() if v.expires_at > now}
                if len(self._tokens) >= self.max_cached_tokens:
                    self._tokens.clear()
            self._tokens[authorization_header or ""] = token
        return token

    # --- audit ------------------------------------------------------------------------------------------

    def _resource(self, decision: AccessDecision) -> str | None:
        rule = decision.rule
        if rule.patient_from in _UID_REFERENCES and rule.value:
            return rule.value
        if rule.patient_from == "patient_id" and rule.value:
            return self.audit.patient(decision.patient_id or rule.value)
        return self.audit.patient(decision.patient_id) if decision.patient_id else None

    def _audit(self, method: str, decision: AccessDecision) -> None:
        caller = decision.caller
        actor, role = actor_and_role(caller)
        if not decision.allowed:
            self.audit.record("http.refused", self._resource(decision), "refused",
                              f"{method} {decision.rule.permission.value}: {decision.reason}", actor=actor, role=role)
            return
        action = _READ_ACTIONS.get(decision.rule.permission)
        resource = self._resource(decision)
        if caller is None or action is None or resource is None:
            return
        key, now = (actor, action, resource), time.monotonic()
        with self._lock:
            last = self._reads.get(key)
            if last is not None and now - last < self.read_audit_window_s:
                return
            if len(self._reads) > 10_000:
                self._reads.clear()
            self._reads[key] = now
        self.audit.record(action, resource, "success", f"{method} allowed by the request filter", actor=actor,
                          role=role)

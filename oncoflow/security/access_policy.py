"""Who may do what on which route: OncoFlow's role table and the patient each request touches.

The rules of the security issue, as data. Orthanc's HTTP filter (still to be wired) will call
:func:`route_rule` for each request, resolve the rule's patient reference to a PatientID, and
ask :func:`is_allowed` with the caller's validated token (:mod:`oncoflow.security.access_tokens`):

=========== ===============================================================
role        may
=========== ===============================================================
clinician   read reports of assigned patients
doctor      read images and results of assigned patients; upload notes and images (STOW-RS, viewer);
            enter a time point's clinical status and steroid dose
radiologist the same, plus re-analyse, refine and report again, and approve a study's segmentation (the SEG
            the timeline, SR and report then measure)
admin       everything but approving a segmentation (a radiologist's clinical act), plus assignments, the
            audit log and Orthanc's admin
worker      the service account: read images and results of any patient
pipeline    pipeline workers' service account: read any patient; store, look up and replace
            the derived objects (``POST /instances``, ``DELETE /series/<id>``, ``/tools/lookup``); send them
            to the routing destination (``POST /modalities/<destination>/store``, its ``/jobs/<id>``)
=========== ===============================================================

A route this module does not know is admin-only (fail closed): Orthanc's own listings (``/patients``,
``/tools/find``, ``/dicom-web/studies`` without a UID), uploads over REST and Orthanc Explorer among them.
``POST /dicom-web/studies`` (the DICOMweb plug-in's own STOW-RS) is refused to everyone: uploads go through
``/oncoflow/dicom-web/studies``, where each instance is checked first, and reach the plug-in with Orthanc's
internal token, which the filter never sees.
The viewer's static files and ``/oncoflow/health`` are public (no patient data); the panel description
only needs a valid token. An Orthanc resource is named ``<level>/<id>`` (``studies/5f2a...``).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from enum import Enum
from typing import Literal


class Permission(Enum):
    PUBLIC = "public"  # no token needed (viewer assets)
    AUTHENTICATED = "authenticated"  # any valid token, no patient data
    READ_REPORT = "read report"
    READ_RESULTS = "read images and results"
    UPLOAD_NOTES = "upload notes"
    ANALYSE = "analyse"  # re-analyse, refine, report again
    APPROVE_SEGMENTATION = "approve segmentation"  # a SEG approved (or the approval withdrawn): radiologists only
    RECORD_CLINICAL = "record clinical state"  # a time point's clinical status and steroid dose (RANO 2.0)
    UPLOAD_IMAGES = "upload images"  # STOW-RS through OncoFlow's checks, for assigned patients
    STORE_RESULTS = "store results"  # a pipeline worker storing, looking up and replacing derived SEG/SR/PDF
    ROUTE_RESULTS = "route results"  # a pipeline worker sending results to ONCOFLOW_ROUTE_TO (Orthanc's store job)
    ADMIN = "admin"
    INTERNAL = "internal only"  # no role: what only OncoFlow's own calls inside Orthanc may do


ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    "clinician": frozenset({Permission.READ_REPORT}),
    "doctor": frozenset({Permission.READ_REPORT, Permission.READ_RESULTS, Permission.UPLOAD_NOTES,
                         Permission.UPLOAD_IMAGES, Permission.RECORD_CLINICAL}),
    "radiologist": frozenset({Permission.READ_REPORT, Permission.READ_RESULTS, Permission.UPLOAD_NOTES,
                              Permission.UPLOAD_IMAGES, Permission.RECORD_CLINICAL, Permission.ANALYSE,
                              Permission.APPROVE_SEGMENTATION}),
    "admin": frozenset(set(Permission) - {Permission.INTERNAL, Permission.APPROVE_SEGMENTATION}),
    "worker": frozenset({Permission.READ_RESULTS}),
    "pipeline": frozenset({Permission.READ_REPORT, Permission.READ_RESULTS, Permission.STORE_RESULTS,
                           Permission.ROUTE_RESULTS}),
}
ALL_PATIENTS_ROLES = frozenset({"admin", "worker", "pipeline"})  # not limited to assigned patients

PatientReference = Literal["none", "study_uid", "sop_instance_uid", "patient_id", "orthanc_id"]


@dataclass(frozen=True)
class RouteRule:
    """What a request needs: a permission, and where the patient it touches is named."""

    permission: Permission
    patient_from: PatientReference = "none"
    value: str | None = None  # the UID / PatientID / Orthanc ID taken from the URI or query


_UID = r"([0-9.]{1,64})"
_ID = r"([0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8})"  # Orthanc's resource IDs
_JOB = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"  # Orthanc's job IDs
_RULES: tuple[tuple[str, re.Pattern[str], Permission, PatientReference], ...] = tuple(
    (method, re.compile(pattern), permission, reference)
    for method, pattern, permission, reference in (
        ("GET", r"/ohif(/.*)?", Permission.PUBLIC, "none"),
        ("GET", r"/oncoflow/health", Permission.PUBLIC, "none"),  # liveness: version and job counts only
        ("GET", r"/oncoflow/panel", Permission.AUTHENTICATED, "none"),
        ("GET", r"/oncoflow/model-stats(?:\.png)?", Permission.READ_RESULTS, "none"),  # means over studies
        ("GET", rf"/oncoflow/reports/{_UID}\.pdf", Permission.READ_REPORT, "sop_instance_uid"),
        ("GET", rf"/oncoflow/studies/{_UID}", Permission.READ_RESULTS, "study_uid"),
        ("POST", rf"/oncoflow/studies/{_UID}/(?:refine|reanalyse|report)", Permission.ANALYSE, "study_uid"),
        ("GET", rf"/oncoflow/studies/{_UID}/clinical-state", Permission.READ_RESULTS, "study_uid"),
        ("PUT", rf"/oncoflow/studies/{_UID}/clinical-state", Permission.RECORD_CLINICAL, "study_uid"),
        ("GET", rf"/oncoflow/studies/{_UID}/approved-seg", Permission.READ_RESULTS, "study_uid"),
        ("POST", rf"/oncoflow/studies/{_UID}/approved-seg", Permission.APPROVE_SEGMENTATION, "study_uid"),
        ("DELETE", rf"/oncoflow/studies/{_UID}/approved-seg", Permission.APPROVE_SEGMENTATION, "study_uid"),
        ("GET", r"/oncoflow/patients/([^/]{1,200})/(?:timeline|documents|documents/search)",
         Permission.READ_RESULTS, "patient_id"),
        ("POST", r"/oncoflow/patients/([^/]{1,200})/documents", Permission.UPLOAD_NOTES, "patient_id"),
        ("GET", r"/oncoflow/dicom-web/(?:studies|series|instances)", Permission.READ_RESULTS, "none"),  # filtered
        ("POST", r"/oncoflow/dicom-web/studies", Permission.UPLOAD_IMAGES, "none"),  # each part's patient: checked
        ("POST", r"/dicom-web/studies(?:/.*)?", Permission.INTERNAL, "none"),
        ("GET", rf"/(?:oncoflow/)?dicom-web/studies/{_UID}(?:/.*)?", Permission.READ_RESULTS, "study_uid"),
        ("GET", rf"/((?:studies|series|instances|patients)/{_ID})(?:/.*)?", Permission.READ_RESULTS, "orthanc_id"),
        ("POST", r"/instances", Permission.STORE_RESULTS, "none"),
        ("DELETE", rf"/(series/{_ID})", Permission.STORE_RESULTS, "orthanc_id"),
        ("POST", r"/tools/lookup", Permission.STORE_RESULTS, "none"),
        # which modality: checked against the routing destination by oncoflow.security.request_access
        ("POST", r"/modalities/[a-z0-9._-]{1,64}/store", Permission.ROUTE_RESULTS, "none"),
        ("GET", rf"/jobs/{_JOB}", Permission.ROUTE_RESULTS, "none"),
        ("POST", rf"/jobs/{_JOB}/resubmit", Permission.ROUTE_RESULTS, "none"),
    )
)


ROLE_PRECEDENCE = ("admin", "radiologist", "doctor", "clinician", "pipeline", "worker")


def primary_role(roles: Collection[str]) -> str:
    """The caller's most powerful OncoFlow role (what the audit log records), or ``anonymous``."""
    return next((role for role in ROLE_PRECEDENCE if role in roles), "anonymous")


def route_rule(method: str, uri: str, query: dict[str, str] | None = None) -> RouteRule:
    """The rule for ``method uri``; unknown routes are admin-only. ``/wado`` names its study in the query."""
    if method == "GET" and uri == "/wado":
        study = (query or {}).get("studyUID")
        return RouteRule(Permission.READ_RESULTS, "study_uid", study) if study else RouteRule(Permission.ADMIN)
    for rule_method, pattern, permission, reference in _RULES:
        match = pattern.fullmatch(uri)
        if rule_method == method and match:
            value = match.group(1) if reference != "none" and match.groups() else None
            return RouteRule(permission, reference, value)
    return RouteRule(Permission.ADMIN)


def is_allowed(roles: Collection[str], assigned_patients: Collection[str], rule: RouteRule,
               patient_id: str | None) -> bool:
    """Whether a caller with ``roles`` and ``assigned_patients`` may follow ``rule`` for ``patient_id``.

    ``patient_id`` is the PatientID the rule's reference resolved to (``None``: the route names no
    patient, or the resource does not exist: then only roles that see every patient pass).
    """
    if rule.permission is Permission.PUBLIC:
        return True
    granted = set().union(*(ROLE_PERMISSIONS.get(role, frozenset()) for role in roles)) if roles else set()
    if rule.permission is Permission.AUTHENTICATED:
        return bool(roles)
    if rule.permission not in granted:
        return False
    if rule.patient_from == "none" or ALL_PATIENTS_ROLES & set(roles):
        return True
    return patient_id is not None and patient_id in assigned_patients


def may_approve_segmentation(roles: Collection[str]) -> bool:
    """Whether a caller with ``roles`` may approve a study's segmentation or withdraw an approval (the API's own
    check, besides the request filter's: a radiologist's clinical act, not an administrator's)."""
    return any(Permission.APPROVE_SEGMENTATION in ROLE_PERMISSIONS.get(role, frozenset()) for role in roles)

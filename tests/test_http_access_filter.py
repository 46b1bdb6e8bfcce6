"""The request filter's decisions, caches, audit records and failure behaviour, with a stand-in validator.

Real tokens and a real Orthanc are in ``tests/test_e2e_access_control.py``; here each branch is driven
directly: no token, a rejected token, a role without the permission, an unassigned or unknown patient, the
per-token cache, the once-per-window read audit, the caller kept per OS thread, and an exception inside
the filter (the request is refused, never let through).
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any

import pytest
from oncoflow_plugin.http_access_filter import HttpAccessFilter

from oncoflow.security.access_tokens import AccessToken, TokenRejected
from oncoflow.security.request_access import RequestAccess

STUDY = "1.2.826.0.1.3680043.8.498.7"
PATIENTS = {STUDY: "PAT-A", "1.2.826.0.1.3680043.8.498.8": "PAT-B"}


def token(username: str, roles: set[str], assigned: set[str], expires_in_s: float = 300) -> AccessToken:
    return AccessToken(subject=f"id-{username}", username=username, roles=frozenset(roles),
                       assigned_patients=frozenset(assigned), client_id="ohif",
                       expires_at=int(time.time() + expires_in_s))


class FakeValidator:
    def __init__(self, tokens: dict[str, AccessToken]) -> None:
        self.tokens = tokens
        self.calls = 0

    def validate(self, header: str | None) -> AccessToken:
        self.calls += 1
        if not header:
            raise TokenRejected("missing token")
        found = self.tokens.get(header.removeprefix("Bearer "))
        if found is None:
            raise TokenRejected("bad signature")
        return found


class FakeResolver:
    def patient_id(self, reference: str, value: str | None) -> str | None:
        if reference == "patient_id":
            return value
        return PATIENTS.get(value or "") if reference == "study_uid" else None


class FakeAudit:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def patient(self, patient_id: str) -> str:
        return f"pt-{sum(map(ord, patient_id)):04x}"

    def record(self, action: str, resource_uid: str | None, outcome: str, detail: str | None = None,
               actor: str | None = None, role: str | None = None) -> None:
        self.records.append({"action": action, "resource": resource_uid, "outcome": outcome, "detail": detail,
                             "actor": actor, "role": role})


@pytest.fixture
def parts() -> tuple[HttpAccessFilter, FakeValidator, FakeAudit]:
    validator = FakeValidator({"doc": token("doctor.dev", {"doctor"}, {"PAT-A"}),
                               "cli": token("clinician.dev", {"clinician"}, {"PAT-A"}),
                               "old": token("doctor.dev", {"doctor"}, {"PAT-A"}, expires_in_s=-1)})
    audit = FakeAudit()
    return HttpAccessFilter(RequestAccess(validator, FakeResolver(), audit)), validator, audit  # type: ignore[arg-type]


def ask(access: HttpAccessFilter, uri: str, bearer: str | None = None, method: int = 1) -> bool:
    headers = {"authorization": f"Bearer {bearer}"} if bearer else {}
    return access(uri, method=method, ip="127.0.0.1", headers=headers, get={})


def test_decisions_and_their_audit_records(parts: tuple[HttpAccessFilter, FakeValidator, FakeAudit]) -> None:
    access, _, audit = parts
    assert ask(access, "/ohif/app.bundle.js") and not audit.records  # public: nothing to record
    assert not ask(access, f"/dicom-web/studies/{STUDY}/metadata")
    assert not ask(access, f"/dicom-web/studies/{STUDY}/metadata", "forged")
    assert ask(access, f"/dicom-web/studies/{STUDY}/metadata", "doc")
    assert not ask(access, "/dicom-web/studies/1.2.826.0.1.3680043.8.498.8/metadata", "doc")
    assert not ask(access, "/dicom-web/studies/1.2.826.0.1.3680043.8.498.9/metadata", "doc")  # not stored
    assert not ask(access, f"/dicom-web/studies/{STUDY}/metadata", "cli")  # clinicians read reports only
    assert not ask(access, f"/oncoflow/studies/{STUDY}/reanalyse", "doc", method=2)
    assert [(r["action"], r["outcome"], r["actor"], r["detail"]) for r in audit.records] == [
        ("http.refused", "refused", "anonymous", "GET read images and results: token: missing token"),
        ("http.refused", "refused", "anonymous", "GET read images and results: token: bad signature"),
        ("study.read", "success", "doctor.dev", "GET allowed by the request filter"),
        ("http.refused", "refused", "doctor.dev", "GET read images and results: patient not assigned"),
        ("http.refused", "refused", "doctor.dev", "GET read images and results: resource not found"),
        ("http.refused", "refused", "clinician.dev",
         "GET read images and results: role clinician may not read images and results"),
        ("http.refused", "refused", "doctor.dev", "POST analyse: role doctor may not analyse"),
    ]
    assert audit.records[2]["resource"] == STUDY and audit.records[2]["role"] == "doctor"


def test_a_patient_named_in_the_uri_is_audited_by_token_never_in_clear(
        parts: tuple[HttpAccessFilter, FakeValidator, FakeAudit]) -> None:
    access, _, audit = parts
    assert not ask(access, "/oncoflow/patients/PAT-B/timeline", "doc")
    assert audit.records[-1]["resource"] == audit.patient("PAT-B")
    assert "PAT-B" not in str(audit.records)


def test_tokens_are_validated_once_until_they_expire(parts: tuple[HttpAccessFilter, FakeValidator, FakeAudit]) -> None:
    access, validator, _ = parts
    for _ in range(5):
        assert ask(access, f"/oncoflow/studies/{STUDY}", "doc")
    assert validator.calls == 1
    # A cached token past its expiry is never answered from the cache: the validator judges it again
    # (the real one then refuses it; this stand-in lets it through, so only the calls are counted).
    ask(access, f"/oncoflow/studies/{STUDY}", "old")
    ask(access, f"/oncoflow/studies/{STUDY}", "old")
    assert validator.calls == 3


def test_reads_are_audited_once_per_window(parts: tuple[HttpAccessFilter, FakeValidator, FakeAudit]) -> None:
    access, _, audit = parts
    for _ in range(50):
        ask(access, f"/dicom-web/studies/{STUDY}/series/1.2/instances/3.4/frames/1", "doc")
    assert [r["action"] for r in audit.records] == ["study.read"]
    access.access.read_audit_window_s = 0
    ask(access, f"/dicom-web/studies/{STUDY}/metadata", "doc")
    assert len(audit.records) == 2


def test_the_caller_is_kept_per_thread(parts: tuple[HttpAccessFilter, FakeValidator, FakeAudit]) -> None:
    access, _, _ = parts
    ask(access, f"/oncoflow/studies/{STUDY}", "doc")
    seen: list[Any] = []
    other = threading.Thread(target=lambda: seen.append(access.access.current_caller()))
    other.start()
    other.join()
    assert seen == [None]
    caller = access.access.current_caller()
    assert caller is not None and caller.username == "doctor.dev"
    assert access.access.may_see_patient("PAT-A") and not access.access.may_see_patient("PAT-B")
    ask(access, "/ohif/")  # the next request on this thread starts with no caller
    assert access.access.current_caller() is None and not access.access.may_see_patient("PAT-A")


def test_an_error_inside_the_filter_refuses(parts: tuple[HttpAccessFilter, FakeValidator, FakeAudit]) -> None:
    access, validator, _ = parts

    def broken(header: str | None) -> AccessToken:
        raise RuntimeError("bug")

    validator.validate = broken  # type: ignore[method-assign]
    assert ask(access, f"/oncoflow/studies/{STUDY}", "new") is False
    assert access(f"/oncoflow/studies/{STUDY}", method="not a number", headers={}, get={}) is False


def test_a_privileged_token_without_a_second_factor_is_refused() -> None:
    """With ``otp_roles`` (ONCOFLOW_OIDC_OTP_ROLES), a doctor's token must say ``otp`` in ``amr``; a clinician's
    need not (the second factor is optional for clinicians)."""
    with_otp = replace(token("doctor.dev", {"doctor"}, {"PAT-A"}), authentication_methods=frozenset({"pwd", "otp"}))
    validator = FakeValidator({"pwd-only": token("doctor.dev", {"doctor"}, {"PAT-A"}), "otp": with_otp,
                               "cli": token("clinician.dev", {"clinician"}, {"PAT-A"})})
    audit = FakeAudit()
    access = HttpAccessFilter(RequestAccess(validator, FakeResolver(), audit,  # type: ignore[arg-type]
                                            otp_roles=frozenset({"admin", "radiologist", "doctor"})))
    assert not ask(access, f"/dicom-web/studies/{STUDY}/metadata", "pwd-only")
    assert ask(access, f"/dicom-web/studies/{STUDY}/metadata", "otp")
    assert ask(access, "/oncoflow/reports/1.2.3.pdf", "cli") is False  # not found for the clinician, yet judged
    assert audit.records[0]["detail"] == "GET read images and results: token: second factor missing (no otp in amr)"
    assert audit.records[0]["actor"] == "doctor.dev"
    assert "second factor" not in str(audit.records[2:])


class FakeDerived:
    def delete_refusal(self, orthanc_series_id: str) -> str | None:
        return None if orthanc_series_id == "0000000a-0000000a-0000000a-0000000a-0000000a" else "an MR series"


def test_the_pipeline_deletes_only_oncoflow_series() -> None:
    validator = FakeValidator({"pipe": token("service-account-oncoflow-pipeline", {"pipeline"}, set()),
                               "admin": token("admin.dev", {"admin"}, set())})
    audit = FakeAudit()
    access = HttpAccessFilter(RequestAccess(validator, FakeResolver(), audit, FakeDerived()))  # type: ignore[arg-type]
    ours, theirs = ("/series/" + "-".join([n] * 5) for n in ("0000000a", "0000000b"))
    assert ask(access, ours, "pipe", method=4)
    assert not ask(access, theirs, "pipe", method=4)
    assert ask(access, theirs, "admin", method=4)  # an admin deletes what it must
    assert [r["detail"] for r in audit.records] == ["DELETE store results: not an OncoFlow result: an MR series"]


def test_the_pipeline_routes_results_to_the_destination_only() -> None:
    """A pipeline worker starts Orthanc store jobs towards ONCOFLOW_ROUTE_TO and follows them; no other modality,
    and no routing at all when none is configured. Other roles may not route."""
    tokens = {"pipe": token("service-account-oncoflow-pipeline", {"pipeline"}, set()),
              "rad": token("radiologist.dev", {"radiologist"}, {"PAT-A"}),
              "admin": token("admin.dev", {"admin"}, set())}
    job = "/jobs/0f6d1a52-3c1e-4b8a-9e7d-2a1b3c4d5e6f"
    routed = HttpAccessFilter(RequestAccess(FakeValidator(tokens), FakeResolver(), FakeAudit(),  # type: ignore[arg-type]
                                            route_destination="hospitalpacs"))
    assert ask(routed, "/modalities/hospitalpacs/store", "pipe", method=2)
    assert ask(routed, job, "pipe") and ask(routed, f"{job}/resubmit", "pipe", method=2)
    assert not ask(routed, "/modalities/elsewhere/store", "pipe", method=2)
    assert not ask(routed, "/modalities/hospitalpacs/move", "pipe", method=2)
    assert not ask(routed, "/modalities/hospitalpacs/store", "rad", method=2) and not ask(routed, job, "rad")
    assert ask(routed, "/modalities/elsewhere/store", "admin", method=2)
    unrouted = HttpAccessFilter(RequestAccess(FakeValidator(tokens), FakeResolver(), FakeAudit()))  # type: ignore[arg-type]
    assert not ask(unrouted, "/modalities/hospitalpacs/store", "pipe", method=2)


def test_with_login_off_only_the_plugins_own_stow_route_is_closed() -> None:
    access = HttpAccessFilter(None)
    assert not ask(access, "/dicom-web/studies", method=2)  # the DICOMweb plug-in's STOW-RS: never from outside
    assert not ask(access, "/dicom-web/studies/1.2.3", method=2)
    assert ask(access, "/oncoflow/dicom-web/studies", method=2)  # OncoFlow's checked route
    assert ask(access, "/dicom-web/studies", method=1) and ask(access, "/instances", method=2)

"""End to end: login on. Every request through Orthanc is judged by role and by assigned patient.

One stack with its own Keycloak (real tokens from the development users). Three patients are pushed by
C-STORE and processed (SEG, SR and signed report each): ``PAT-A`` (assigned to radiologist.dev and
clinician.dev), ``ONCO-LONG-00001`` (radiologist.dev and doctor.dev) and ``PAT-B`` (nobody). Each role then
calls each kind of route on an assigned and on an unassigned patient, through Orthanc's HTTP port, and
the status must follow the role table of the security issue; the QIDO search lists only the caller's
patients; expired, forged, wrong-audience and malformed tokens are refused; every refusal is in the audit
log; and an admin's ``PUT /oncoflow/assignments`` changes what a doctor sees from the doctor's next token.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pydicom
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from pydicom.uid import generate_uid

from oncoflow.core.config import REPO_ROOT
from oncoflow.phantoms.tumour_phantom import make_phantom
from oncoflow.security.keycloak_admin import AdminClient
from oncoflow.services.keycloak_server import keycloak_home
from oncoflow.services.ohif_viewer import ensure_ohif_dist

from .conftest import Stack, run_browser_test, running_stack, unique_study, write_series

pytestmark = pytest.mark.e2e

ASSIGNED = {"clinician.dev": "PAT-A", "doctor.dev": "ONCO-LONG-00001", "radiologist.dev": "PAT-A",
            "admin.dev": "PAT-A"}
UNASSIGNED = "PAT-B"
PATIENTS = ("PAT-A", "ONCO-LONG-00001", "PAT-B")


@dataclasses.dataclass(frozen=True)
class PatientStudy:
    patient_id: str
    study_uid: str
    study_id: str  # Orthanc's
    series_uid: str
    instance_uid: str  # one MR image
    report_sop_uid: str  # the signed PDF (Encapsulated PDF)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("oncoflow-secured"), ONCOFLOW_AUTH="on",
                       ONCOFLOW_OIDC_LEEWAY_S="0") as stack:
        yield stack


@pytest.fixture(scope="module")
def studies(secured: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, PatientStudy]:
    """One processed study per patient (the stack's helpers act as admin.dev)."""
    pushed = {}
    for index, patient_id in enumerate(PATIENTS):
        study = dataclasses.replace(unique_study(f"acl-{index}"), patient_id=patient_id)
        directory = tmp_path_factory.mktemp(f"acl-{index}")
        datasets = write_series(directory, make_phantom(9400 + index, shape=(40, 64, 64)).volume, study)
        secured.push(directory)
        pushed[patient_id] = (study.study_instance_uid, datasets[0])
    found = {}
    for patient_id, (study_uid, first) in pushed.items():
        job = secured.wait_job(study_uid, timeout_s=300)
        assert job["state"] == "done", job["error"]
        report = job["outputs"]["longitudinal"]["report"]["report_sop_instance_uid"]
        found[patient_id] = PatientStudy(patient_id, study_uid, secured.study_id(study_uid),
                                         str(first.SeriesInstanceUID), str(first.SOPInstanceUID), report)
    return found


# --- the role table, route by route ----------------------------------------------------------------------------

ROUTES: dict[str, tuple[str, str]] = {  # name -> (method, path template); {uid} {id} {pid} {series} {sop} {report}
    "report pdf": ("GET", "/oncoflow/reports/{report}.pdf"),
    "job status": ("GET", "/oncoflow/studies/{uid}"),
    "timeline": ("GET", "/oncoflow/patients/{pid}/timeline"),
    "notes list": ("GET", "/oncoflow/patients/{pid}/documents"),
    "wado-rs metadata": ("GET", "/dicom-web/studies/{uid}/metadata"),
    "qido in study": ("GET", "/oncoflow/dicom-web/studies/{uid}/series"),
    "wado-uri": ("GET", "/wado?requestType=WADO&studyUID={uid}&seriesUID={series}&objectUID={sop}"
                        "&contentType=application/dicom"),
    "orthanc study": ("GET", "/studies/{id}"),
    "orthanc instances": ("GET", "/studies/{id}/instances"),
    "report again": ("POST", "/oncoflow/studies/{uid}/report"),
}
MAY: dict[str, set[str]] = {  # role -> the routes it may call on an assigned patient
    "clinician.dev": {"report pdf"},
    "doctor.dev": set(ROUTES) - {"report again"},
    "radiologist.dev": set(ROUTES),
    "admin.dev": set(ROUTES),
}
SEES_EVERY_PATIENT = {"admin.dev"}


def path_of(route: str, study: PatientStudy) -> tuple[str, str]:
    method, template = ROUTES[route]
    return method, template.format(uid=study.study_uid, id=study.study_id, pid=urllib.parse.quote(study.patient_id),
                                   series=study.series_uid, sop=study.instance_uid, report=study.report_sop_uid)


def raw(stack: Stack, method: str, path: str, headers: dict[str, str] | None = None,
        body: bytes | None = None) -> int:
    """The status of ``method path`` with exactly ``headers`` (none: an anonymous caller)."""
    request = urllib.request.Request(f"{stack.settings.orthanc_url}{path}", method=method, headers=headers or {},
                                     data=b"" if body is None and method in ("POST", "PUT") else body)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def current_report(stack: Stack, study: PatientStudy) -> str:
    """The study's report UID as the timeline says it now (the helper user reads it)."""
    status, body = stack.get(f"/oncoflow/patients/{urllib.parse.quote(study.patient_id)}/timeline")
    assert status == 200, body
    (point,) = [p for p in body["time_points"] if p["study_instance_uid"] == study.study_uid]
    return str(point["report_sop_instance_uid"])


def part10(dataset: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def call(stack: Stack, route: str, study: PatientStudy, username: str) -> int:
    if route == "report pdf":  # "report again" makes a new signed report under a new UID: ask for the current one
        study = dataclasses.replace(study, report_sop_uid=current_report(stack, study))
    method, path = path_of(route, study)
    return stack.request(method, path, b"" if method == "POST" else None, username=username)[0]


@pytest.mark.parametrize("username", sorted(MAY))
def test_each_role_on_an_assigned_and_an_unassigned_patient(secured: Stack, studies: dict[str, PatientStudy],
                                                            username: str) -> None:
    assigned, unassigned = studies[ASSIGNED[username]], studies[UNASSIGNED]
    wrong = []
    for route in ROUTES:
        for study, is_assigned in ((assigned, True), (unassigned, False)):
            allowed = route in MAY[username] and (is_assigned or username in SEES_EVERY_PATIENT)
            status = call(secured, route, study, username)
            if (status < 300) != allowed or (not allowed and status != 403):
                wrong.append(f"{route} on {'assigned' if is_assigned else 'unassigned'} {study.patient_id}: "
                             f"{status}, expected {'2xx' if allowed else 403}")
    assert not wrong, f"{username}:\n" + "\n".join(wrong)


def test_no_token_gets_nothing_but_the_viewer_and_health(secured: Stack, studies: dict[str, PatientStudy]) -> None:
    for route in ROUTES:
        assert raw(secured, *path_of(route, studies["PAT-A"])) == 403, route
    assert raw(secured, "GET", "/ohif/app-config.js") == 200
    assert raw(secured, "GET", "/oncoflow/health") == 200
    for method, path in (("GET", "/patients"), ("GET", "/studies"), ("POST", "/tools/find"), ("GET", "/system"),
                         ("GET", "/app/explorer.html"), ("GET", "/oncoflow/audit"), ("POST", "/instances"),
                         ("GET", "/dicom-web/studies")):
        assert raw(secured, method, path) == 403, path


def test_orthanc_admin_routes_are_for_admins_only(secured: Stack, studies: dict[str, PatientStudy]) -> None:
    for method, path in (("GET", "/patients"), ("GET", "/studies"), ("GET", "/system"), ("GET", "/oncoflow/audit"),
                         ("GET", "/dicom-web/studies"), ("DELETE", f"/studies/{studies['PAT-A'].study_id}")):
        assert secured.request(method, path, username="radiologist.dev")[0] == 403, path
    assert secured.request("GET", "/patients", username="admin.dev")[0] == 200
    assert secured.request("GET", "/oncoflow/audit?limit=1", username="admin.dev")[0] == 200


def test_the_worker_account_reads_any_patient_but_changes_nothing(secured: Stack,
                                                                  studies: dict[str, PatientStudy]) -> None:
    secret = json.loads((keycloak_home(secured.settings.home) / "dev-users.json").read_text())
    form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": "oncoflow-worker",
                                   "client_secret": secret["clients"]["oncoflow-worker"]["secret"]}).encode()
    with urllib.request.urlopen(secured.settings.auth.token_url, form) as answer:
        token = json.loads(answer.read())["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    for study in studies.values():
        assert raw(secured, "GET", f"/dicom-web/studies/{study.study_uid}/metadata", bearer) == 200
    assert raw(secured, "POST", f"/oncoflow/studies/{studies['PAT-B'].study_uid}/report", bearer, b"") == 403
    assert raw(secured, "GET", "/oncoflow/audit", bearer) == 403



def test_the_pipeline_account_stores_and_deletes_only_oncoflow_results(secured: Stack,
                                                                       studies: dict[str, PatientStudy]) -> None:
    """A stolen pipeline secret must not rewrite or delete a patient's originals (issue 19, point 4)."""
    secret = json.loads(secured.settings.pipeline_client_path.read_text())
    form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": secret["client_id"],
                                   "client_secret": secret["secret"]}).encode()
    with urllib.request.urlopen(secured.settings.auth.token_url, form) as answer:
        bearer = {"Authorization": f"Bearer {json.loads(answer.read())['access_token']}"}
    study = studies["PAT-B"]
    _, series = secured.get(f"/studies/{study.study_id}/series")
    mr = next(s for s in series if s["MainDicomTags"]["Modality"] == "MR")
    seg = next(s for s in series if s["MainDicomTags"]["Modality"] == "SEG")
    mr_file = secured.get_bytes(f"/instances/{mr['Instances'][0]}/file")
    seg_file = secured.get_bytes(f"/instances/{seg['Instances'][0]}/file")
    refused_before = len(secured.get("/oncoflow/audit?action=http.refused&limit=1000")[1]["records"])

    assert raw(secured, "POST", "/instances", bearer, mr_file) == 403  # a source image: never
    relabelled = pydicom.dcmread(io.BytesIO(mr_file))
    relabelled.Manufacturer = "OncoFlow"  # an MR dressed as OncoFlow's is still an MR
    assert raw(secured, "POST", "/instances", bearer, part10(relabelled)) == 403
    assert raw(secured, "DELETE", f"/series/{mr['ID']}", bearer) == 403
    assert raw(secured, "POST", "/instances", bearer, seg_file) == 200  # its own SEG (already stored)

    # a SEG of OncoFlow's own, new to the PACS: the pipeline stores it and may delete its series
    copy = pydicom.dcmread(io.BytesIO(seg_file))
    copy.SOPInstanceUID, copy.SeriesInstanceUID = generate_uid(), generate_uid()
    copy.file_meta.MediaStorageSOPInstanceUID = copy.SOPInstanceUID
    request = urllib.request.Request(f"{secured.settings.orthanc_url}/instances", data=part10(copy), method="POST",
                                     headers=bearer)
    with urllib.request.urlopen(request, timeout=60) as answer:
        stored = json.loads(answer.read())
    assert raw(secured, "DELETE", f"/series/{stored['ParentSeries']}", bearer) == 200

    _, after = secured.get(f"/studies/{study.study_id}/series")
    assert {s["ID"] for s in after} == {s["ID"] for s in series}  # the MR and every original result intact
    records = secured.get("/oncoflow/audit?action=http.refused&limit=1000")[1]["records"][refused_before:]
    pipeline_refusals = [r for r in records if r["role"] == "pipeline"]
    assert len(pipeline_refusals) == 3, records
    assert sum("not an OncoFlow result" in (r["detail"] or "") for r in pipeline_refusals) == 3, pipeline_refusals


# --- QIDO lists only the caller's patients -----------------------------------------------------------------------


def listed_patients(stack: Stack, username: str, resource: str = "studies") -> list[str]:
    status, body = stack.request("GET", f"/oncoflow/dicom-web/{resource}?includefield=00100020", username=username)
    assert status == 200, body[:300]
    return sorted({answer["00100020"]["Value"][0] for answer in json.loads(body)})


def test_qido_lists_only_assigned_patients(secured: Stack, studies: dict[str, PatientStudy]) -> None:
    assert listed_patients(secured, "radiologist.dev") == ["ONCO-LONG-00001", "PAT-A"]
    assert listed_patients(secured, "doctor.dev") == ["ONCO-LONG-00001"]
    assert listed_patients(secured, "doctor.dev", "series") == ["ONCO-LONG-00001"]
    assert listed_patients(secured, "radiologist.dev", "instances") == ["ONCO-LONG-00001", "PAT-A"]
    assert listed_patients(secured, "admin.dev") == sorted(PATIENTS)
    # A search naming the unassigned patient finds nothing, even by its PatientID.
    status, body = secured.request("GET", "/oncoflow/dicom-web/studies?PatientID=PAT-B", username="doctor.dev")
    assert (status, json.loads(body)) == (200, [])


# --- bad tokens -------------------------------------------------------------------------------------------------


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def admin_client(stack: Stack) -> AdminClient:
    password = (keycloak_home(stack.settings.home) / "admin-password").read_text().strip()
    return AdminClient.bootstrap_admin(stack.settings.auth.keycloak_url, password)


def client_token(stack: Stack, client_id: str, username: str, audience: bool, lifespan_s: int | None = None) -> str:
    """A real token of ``username`` from a test client made here (with or without the orthanc audience)."""
    admin = admin_client(stack)
    if not admin.call("GET", f"/clients?clientId={client_id}"):
        mappers = [{"name": "audience-orthanc", "protocol": "openid-connect",
                    "protocolMapper": "oidc-audience-mapper",
                    "config": {"included.client.audience": "orthanc", "access.token.claim": "true"}},
                   {"name": "amr", "protocol": "openid-connect", "protocolMapper": "oidc-amr-mapper",
                    "config": {"access.token.claim": "true"}}]
        admin.call("POST", "/clients", {
            "clientId": client_id, "publicClient": True, "standardFlowEnabled": False,
            "directAccessGrantsEnabled": True, "protocolMappers": mappers if audience else [],
            "attributes": {"access.token.lifespan": str(lifespan_s)} if lifespan_s else {}})
    form = urllib.parse.urlencode({"grant_type": "password", "client_id": client_id, "username": username,
                                   "password": stack.logins[username].password,
                                   "totp": stack.totp_codes.code(username)}).encode()
    with urllib.request.urlopen(stack.settings.auth.token_url, form) as answer:
        return json.loads(answer.read())["access_token"]


def refusals(stack: Stack) -> list[dict[str, Any]]:
    status, body = stack.request("GET", "/oncoflow/audit?action=http.refused&limit=1000", username="admin.dev")
    assert status == 200
    return json.loads(body)["records"]


def test_bad_tokens_are_refused_and_audited(secured: Stack, studies: dict[str, PatientStudy]) -> None:
    study = studies["PAT-A"]
    path = f"/dicom-web/studies/{study.study_uid}/metadata"
    real = secured.token("radiologist.dev")
    assert raw(secured, "GET", path, {"Authorization": f"Bearer {real}"}) == 200  # the baseline passes
    kid = jwt.get_unverified_header(real)["kid"]
    claims = claims_of(real) | {"realm_access": {"roles": ["admin"]}}
    forged = jwt.encode(claims, rsa.generate_private_key(public_exponent=65537, key_size=2048), algorithm="RS256",
                        headers={"kid": kid})
    header, _, signature = real.split(".")
    tampered = f"{header}.{b64(json.dumps(claims).encode())}.{signature}"
    unsigned = f"{b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{b64(json.dumps(claims).encode())}."
    # admin.dev: the test clients have no assigned-patients mapper, and an admin needs none
    wrong_audience = client_token(secured, "test-no-audience", "admin.dev", audience=False)
    short = client_token(secured, "test-short-lived", "admin.dev", audience=True, lifespan_s=2)
    assert raw(secured, "GET", path, {"Authorization": f"Bearer {short}"}) == 200  # valid while fresh
    time.sleep(max(0.0, claims_of(short)["exp"] - time.time()) + 1.5)
    bad = {
        "expired": (f"Bearer {short}", "token: expired"),
        "forged": (f"Bearer {forged}", "token: bad signature"),
        "tampered": (f"Bearer {tampered}", "token: bad signature"),
        "alg none": (f"Bearer {unsigned}", "token: unsupported algorithm"),
        "wrong audience": (f"Bearer {wrong_audience}", "token: wrong audience"),
        "not a jwt": ("Bearer abc.def", "token: malformed"),
        "basic auth": ("Basic YWRtaW46YWRtaW4=", "token: malformed"),
    }
    before = len(refusals(secured))
    for name, (header_value, _) in bad.items():
        assert raw(secured, "GET", path, {"Authorization": header_value}) == 403, name
    records = refusals(secured)[before:]
    assert [r["detail"].split(": ", 1)[1] for r in records] == [reason for _, reason in bad.values()]
    assert all(r["outcome"] == "refused" and r["resource_uid"] == study.study_uid for r in records)
    assert secured.request("GET", "/oncoflow/health")[0] == 200  # Orthanc kept running


def test_every_refusal_is_audited_without_phi(secured: Stack, studies: dict[str, PatientStudy]) -> None:
    before = len(refusals(secured))
    assert secured.request("GET", "/oncoflow/patients/PAT-B/timeline", username="doctor.dev")[0] == 403
    assert secured.request("GET", f"/oncoflow/reports/{studies['PAT-B'].report_sop_uid}.pdf",
                           username="clinician.dev")[0] == 403
    assert secured.request("POST", f"/oncoflow/studies/{studies['ONCO-LONG-00001'].study_uid}/reanalyse", b"",
                           username="doctor.dev")[0] == 403
    records = refusals(secured)[before:]
    assert [(r["actor"], r["role"]) for r in records] == [("doctor.dev", "doctor"), ("clinician.dev", "clinician"),
                                                          ("doctor.dev", "doctor")]
    assert records[0]["resource_uid"].startswith("pt-") and records[0]["detail"].endswith("patient not assigned")
    assert records[1]["resource_uid"] == studies["PAT-B"].report_sop_uid
    assert records[2]["detail"].endswith("role doctor may not analyse")
    status, body = secured.request("GET", "/oncoflow/audit?limit=1000", username="admin.dev")
    text = body.decode()
    assert all(patient not in text for patient in PATIENTS), "a PatientID in the audit log"
    assert "Test^acl" not in text


def test_reads_are_audited_with_the_user(secured: Stack, studies: dict[str, PatientStudy]) -> None:
    study = studies["ONCO-LONG-00001"]
    assert secured.request("GET", f"/dicom-web/studies/{study.study_uid}/metadata", username="doctor.dev")[0] == 200
    status, body = secured.request("GET", "/oncoflow/audit?action=study.read&limit=1000", username="admin.dev")
    reads = [r for r in json.loads(body)["records"] if r["actor"] == "doctor.dev"]
    assert any(r["resource_uid"] == study.study_uid and r["role"] == "doctor" for r in reads), reads


# --- assignments ------------------------------------------------------------------------------------------------


def test_admin_assigns_a_patient_and_the_doctor_sees_it_with_a_new_token(secured: Stack,
                                                                         studies: dict[str, PatientStudy]) -> None:
    body = json.dumps({"username": "doctor.dev", "patient_ids": ["ONCO-LONG-00001", "PAT-B"]}).encode()
    assert secured.request("PUT", "/oncoflow/assignments", body, username="doctor.dev")[0] == 403
    assert secured.request("PUT", "/oncoflow/assignments", body, username="radiologist.dev")[0] == 403
    pat_b = f"/oncoflow/studies/{studies['PAT-B'].study_uid}"
    assert secured.request("GET", pat_b, username="doctor.dev")[0] == 403
    try:
        status, answer = secured.request("PUT", "/oncoflow/assignments", body, username="admin.dev")
        assert status == 200, answer
        assert json.loads(answer)["previous"] == ["ONCO-LONG-00001"]
        secured._tokens.pop("doctor.dev", None)  # the change reaches the doctor's next token
        assert secured.request("GET", pat_b, username="doctor.dev")[0] == 200
        assert listed_patients(secured, "doctor.dev") == ["ONCO-LONG-00001", "PAT-B"]
        status, audit = secured.request("GET", "/oncoflow/audit?action=assignment.change&limit=100",
                                        username="admin.dev")
        changes = json.loads(audit)["records"]
        assert changes[-1]["actor"] == "admin.dev" and changes[-1]["role"] == "admin"
        assert changes[-1]["detail"] == "assigned to doctor.dev" and changes[-1]["resource_uid"].startswith("pt-")
    finally:
        restore = json.dumps({"username": "doctor.dev", "patient_ids": ["ONCO-LONG-00001"]}).encode()
        assert secured.request("PUT", "/oncoflow/assignments", restore, username="admin.dev")[0] == 200
        secured._tokens.pop("doctor.dev", None)
    assert secured.request("GET", pat_b, username="doctor.dev")[0] == 403


@pytest.mark.parametrize("body, status", [
    (b"not json", 400),
    (b'{"username": "doctor.dev"}', 400),
    (b'{"username": "../admin", "patient_ids": []}', 400),
    (b'{"username": "doctor.dev", "patient_ids": ["a\\\\b"]}', 400),
    (b'{"username": "doctor.dev", "patient_ids": ["PAT A"]}', 400),  # outside the realm's declared pattern
    (b'{"username": "nobody.here", "patient_ids": []}', 404),
])
def test_bad_assignment_requests(secured: Stack, body: bytes, status: int) -> None:
    assert secured.request("PUT", "/oncoflow/assignments", body, username="admin.dev")[0] == status


# --- the viewer logs in through Keycloak ---------------------------------------------------------------------------


def test_viewer_logs_in_as_a_radiologist_and_lists_only_assigned_patients(secured: Stack,
                                                                         studies: dict[str, PatientStudy]) -> None:
    """OHIF in headless Chromium: redirected to Keycloak's login page, signs in as radiologist.dev (code + PKCE),
    comes back to the study list, which shows PAT-A and ONCO-LONG-00001 and never PAT-B; every DICOMweb request
    of the page carried the bearer token (``ohif-extension/browser-tests/login.test.mjs``)."""
    ensure_ohif_dist()
    artifacts = secured.settings.home / "test-artifacts" / "login"
    run_browser_test("login.test.mjs", {
        "ONCOFLOW_URL": secured.settings.orthanc_url, **secured.browser_login_env("radiologist.dev"),
        "ONCOFLOW_EXPECT_PATIENTS": "PAT-A,ONCO-LONG-00001", "ONCOFLOW_FORBIDDEN_PATIENTS": UNASSIGNED,
        "ONCOFLOW_ARTIFACTS": str(artifacts)}, artifacts, timeout_s=240)
    requests = json.loads((artifacts / "login-requests.json").read_text())
    assert requests and all(r["bearer"] for r in requests), "a DICOMweb request of the viewer went without a token"


def test_viewer_review_mode_as_a_radiologist_loads_the_assigned_study_and_refuses_the_other(
        secured: Stack, studies: dict[str, PatientStudy]) -> None:
    """The OncoFlow review mode with login on, through the real request filter
    (``ohif-extension/browser-tests/login-review.test.mjs``): radiologist.dev signs in on the way to
    ``/ohif/oncoflow-review?StudyInstanceUIDs=<PAT-A's study>``, an image shows, the panel shows the flag and the
    volume OncoFlow measured, the signed PDF opens with the token, the ensemble SEG is drawn, and no request of the
    page is refused (a route of the viewer missing from the role table would be admin-only). PAT-B's study then
    shows no image: its requests are refused (403) and none is answered."""
    for module in ("oncoflow-extension.mjs", "oncoflow-mode.mjs"):
        assert (REPO_ROOT / "ohif-extension" / "dist" / module).is_file(), \
            f"{module} is not built: scripts/bootstrap.sh builds it"
    ensure_ohif_dist()
    assigned, unassigned = studies["PAT-A"], studies[UNASSIGNED]
    status, body = secured.request("GET", f"/oncoflow/patients/{assigned.patient_id}/timeline",
                                   username="radiologist.dev")
    assert status == 200, body
    (time_point,) = [t for t in json.loads(body)["time_points"] if t["study_instance_uid"] == assigned.study_uid]
    artifacts = secured.settings.home / "test-artifacts" / "login-review"
    audited_before = len(refusals(secured))
    run_browser_test("login-review.test.mjs", {
        "ONCOFLOW_URL": secured.settings.orthanc_url, **secured.browser_login_env("radiologist.dev"),
        "ONCOFLOW_OPEN_STUDY": assigned.study_uid, "ONCOFLOW_FORBIDDEN_STUDY": unassigned.study_uid,
        "ONCOFLOW_EXPECT_VOLUME_CM3": repr(time_point["measurements"]["volume_cm3"]),
        "ONCOFLOW_ARTIFACTS": str(artifacts)}, artifacts, timeout_s=300)
    requests = json.loads((artifacts / "login-review-requests.json").read_text())["requests"]
    review = [r for r in requests if r["phase"] == "assigned"]
    assert review and all(r["bearer"] for r in review), "a request of the review mode went without a token"
    refused = [f"{r['status']} {r['method']} {r['path']}" for r in review if r["status"] in (401, 403)]
    assert not refused, "the review mode was refused:\n" + "\n".join(refused)
    denied = [r for r in requests if r["phase"] == "forbidden" and unassigned.study_uid in r["path"]]
    assert any(r["status"] == 403 for r in denied), denied
    assert not [r for r in denied if isinstance(r["status"], int) and r["status"] < 300], denied
    # the filter audited the viewer's refusal of PAT-B's study as radiologist.dev's, and none on PAT-A's
    audited = refusals(secured)[audited_before:]
    assert any(r["actor"] == "radiologist.dev" and r["resource_uid"] == unassigned.study_uid for r in audited), audited
    assert not [r for r in audited if r["resource_uid"] == assigned.study_uid], audited


def test_a_doctor_uploads_from_the_viewer_for_an_assigned_patient_only(
        secured: Stack, studies: dict[str, PatientStudy], tmp_path: Path) -> None:
    """OHIF's study-list upload (STOW-RS) as doctor.dev, who must give a TOTP code to sign in
    (``ohif-extension/browser-tests/upload.test.mjs``): a new image of ONCO-LONG-00001 (assigned) is stored, one of
    PAT-B (not assigned) is refused with the dialog's error and an audit record, and neither ever reaches the
    DICOMweb plug-in's own STOW-RS route, which the request filter refuses even to an admin."""
    ensure_ohif_dist()
    files = {}
    for name, patient in (("accepted", "ONCO-LONG-00001"), ("refused", UNASSIGNED)):
        image = pydicom.dcmread(io.BytesIO(secured.get_bytes(f"/instances/{_any_mr(secured, studies[patient])}/file")))
        image.StudyInstanceUID, image.SeriesInstanceUID, image.SOPInstanceUID = (generate_uid() for _ in range(3))
        image.file_meta.MediaStorageSOPInstanceUID = image.SOPInstanceUID
        files[name] = (tmp_path / f"{name}.dcm", str(image.SOPInstanceUID))
        image.save_as(files[name][0], enforce_file_format=True)
    refused_before = len(refusals(secured))
    artifacts = secured.settings.home / "test-artifacts" / "upload"
    run_browser_test("upload.test.mjs", {
        "ONCOFLOW_URL": secured.settings.orthanc_url, **secured.browser_login_env("doctor.dev"),
        "ONCOFLOW_UPLOAD_ACCEPTED": str(files["accepted"][0]), "ONCOFLOW_UPLOAD_REFUSED": str(files["refused"][0]),
        "ONCOFLOW_ARTIFACTS": str(artifacts)}, artifacts, timeout_s=300)
    stored = {name: _instance_stored(secured, uid) for name, (_, uid) in files.items()}
    assert stored == {"accepted": True, "refused": False}, stored
    audited = [r for r in refusals(secured)[refused_before:] if r["actor"] == "doctor.dev"]
    assert [r["detail"] for r in audited] == ["POST upload images: patient not assigned"], audited
    # the DICOMweb plug-in's own route: refused to everyone, an admin included, before it parses anything
    stow = {"Content-Type": 'multipart/related; type="application/dicom"; boundary=x'}
    assert secured.request("POST", "/dicom-web/studies", files["refused"][0].read_bytes(), username="admin.dev",
                           headers=stow)[0] == 403


def _any_mr(stack: Stack, study: PatientStudy) -> str:
    _, series = stack.get(f"/studies/{study.study_id}/series")
    return next(s for s in series if s["MainDicomTags"]["Modality"] == "MR")["Instances"][0]


def _instance_stored(stack: Stack, sop_instance_uid: str) -> bool:
    status, body = stack.request("POST", "/tools/lookup", sop_instance_uid.encode())
    assert status == 200, body
    return any(match["Type"] == "Instance" for match in json.loads(body))


def test_the_second_factor_is_asked_by_keycloak_audited_and_checked_again_by_orthanc(
        secured: Stack, studies: dict[str, PatientStudy]) -> None:
    """Keycloak gives doctor.dev no token for a password alone, and OncoFlow's audit log records the refusal.
    A client that a site misconfigured with Keycloak's plain ``direct grant`` flow (which asks only users who have
    an authenticator) gives a doctor without one a token, but its ``amr`` says ``pwd`` only, and Orthanc's filter
    refuses it (ONCOFLOW_OIDC_OTP_ROLES)."""
    form = {"grant_type": "password", "client_id": "oncoflow-cli", "username": "doctor.dev",
            "password": secured.logins["doctor.dev"].password}
    try:
        urllib.request.urlopen(secured.settings.auth.token_url, urllib.parse.urlencode(form).encode(), timeout=30)
        raise AssertionError("Keycloak gave doctor.dev a token without the TOTP code")
    except urllib.error.HTTPError as exc:
        assert exc.code == 401
    status, body = secured.request("GET", "/oncoflow/audit?action=login.refused&limit=1000", username="admin.dev")
    assert status == 200
    assert any(r["actor"] == "doctor.dev" and r["detail"].startswith("oncoflow-cli password login: ")
               for r in json.loads(body)["records"]), body

    admin = admin_client(secured)
    plain = next(f["id"] for f in admin.call("GET", "/authentication/flows") if f["alias"] == "direct grant")
    mappers = [{"name": "audience-orthanc", "protocol": "openid-connect", "protocolMapper": "oidc-audience-mapper",
                "config": {"included.client.audience": "orthanc", "access.token.claim": "true"}},
               {"name": "amr", "protocol": "openid-connect", "protocolMapper": "oidc-amr-mapper",
                "config": {"access.token.claim": "true"}}]
    admin.call("POST", "/clients", {"clientId": "test-no-otp-step", "publicClient": True,
                                    "standardFlowEnabled": False, "directAccessGrantsEnabled": True,
                                    "protocolMappers": mappers,
                                    "authenticationFlowBindingOverrides": {"direct_grant": plain}})
    admin.ensure_user("doctor.nootp", "a-long-test-password-2", ["doctor"], ["ONCO-LONG-00001"])
    form.update(client_id="test-no-otp-step", username="doctor.nootp", password="a-long-test-password-2")
    with urllib.request.urlopen(secured.settings.auth.token_url, urllib.parse.urlencode(form).encode()) as answer:
        token = json.loads(answer.read())["access_token"]
    assert "otp" not in claims_of(token).get("amr", [])
    before = len(refusals(secured))
    path = f"/dicom-web/studies/{studies['ONCO-LONG-00001'].study_uid}/metadata"  # doctor.dev's own patient
    assert raw(secured, "GET", path, {"Authorization": f"Bearer {token}"}) == 403
    (record,) = refusals(secured)[before:]
    assert (record["actor"], record["detail"]) == (
        "doctor.nootp", "GET read images and results: token: second factor missing (no otp in amr)")

"""The role table of the security issue, per role, on an assigned and an unassigned patient."""

from __future__ import annotations

import pytest

from oncoflow.security.access_policy import Permission, RouteRule, is_allowed, primary_role, route_rule

STUDY = "1.2.826.0.1.3680043.8.498.1"
ROUTES = {
    "report": ("GET", f"/oncoflow/reports/{STUDY}.9.pdf"),
    "status": ("GET", f"/oncoflow/studies/{STUDY}"),
    "wado_rs": ("GET", f"/dicom-web/studies/{STUDY}/series"),
    "timeline": ("GET", "/oncoflow/patients/PAT-A/timeline"),
    "upload": ("POST", "/oncoflow/patients/PAT-A/documents"),
    "refine": ("POST", f"/oncoflow/studies/{STUDY}/refine"),
    "reanalyse": ("POST", f"/oncoflow/studies/{STUDY}/reanalyse"),
    "audit": ("GET", "/oncoflow/audit"),
    "assignments": ("PUT", "/oncoflow/assignments"),
    "orthanc_admin": ("DELETE", "/studies/0f1e2d3c-4b5a6978-0f1e2d3c-4b5a6978-0f1e2d3c"),
}
# what each role may do, on a patient assigned to it
MAY = {
    "clinician": {"report"},
    "doctor": {"report", "status", "wado_rs", "timeline", "upload"},
    "radiologist": {"report", "status", "wado_rs", "timeline", "upload", "refine", "reanalyse"},
    "admin": set(ROUTES),
}


@pytest.mark.parametrize("role", sorted(MAY))
@pytest.mark.parametrize("route", sorted(ROUTES))
def test_role_table_on_assigned_and_unassigned_patients(role: str, route: str) -> None:
    method, uri = ROUTES[route]
    rule = route_rule(method, uri)
    assert is_allowed({role}, {"PAT-A"}, rule, "PAT-A") == (route in MAY[role]), (role, route, rule)
    # an unassigned patient: only the admin passes, and only where the admin may act at all
    assert is_allowed({role}, {"PAT-A"}, rule, "PAT-B") == (role == "admin"), (role, route, rule)


def test_rules_name_the_patient_reference_and_unknown_routes_are_admin_only() -> None:
    assert route_rule("GET", f"/oncoflow/reports/{STUDY}.9.pdf") == RouteRule(
        Permission.READ_REPORT, "sop_instance_uid", f"{STUDY}.9")
    assert route_rule("GET", "/oncoflow/patients/PAT-A/timeline").value == "PAT-A"
    assert route_rule("GET", "/wado", {"studyUID": STUDY}) == RouteRule(Permission.READ_RESULTS, "study_uid", STUDY)
    assert route_rule("GET", "/tools/find").permission is Permission.ADMIN
    assert route_rule("POST", "/instances").permission is Permission.STORE_RESULTS  # admins and pipelines
    assert route_rule("GET", "/ohif/app.bundle.js").permission is Permission.PUBLIC


def test_no_token_no_access_and_the_worker_reads_every_patient() -> None:
    rule = route_rule("GET", f"/oncoflow/studies/{STUDY}")
    assert not is_allowed(set(), set(), rule, "PAT-A")
    assert not is_allowed(set(), set(), route_rule("GET", "/oncoflow/panel"), None)
    assert is_allowed(set(), set(), route_rule("GET", "/oncoflow/health"), None)  # liveness probes: no token
    assert is_allowed({"worker"}, set(), rule, "PAT-Z")
    assert not is_allowed({"worker"}, set(), route_rule("POST", f"/oncoflow/studies/{STUDY}/refine"), "PAT-Z")
    assert not is_allowed({"radiologist"}, {"PAT-A"}, rule, None)  # an unresolved patient never passes


def test_the_pipeline_account_stores_and_replaces_results_and_nothing_more() -> None:
    series = "series/0f1e2d3c-4b5a6978-0f1e2d3c-4b5a6978-0f1e2d3c"
    store, replace = route_rule("POST", "/instances"), route_rule("DELETE", f"/{series}")
    assert replace == RouteRule(Permission.STORE_RESULTS, "orthanc_id", series)
    for rule in (store, replace, route_rule("POST", "/tools/lookup"), route_rule("GET", f"/oncoflow/studies/{STUDY}")):
        assert is_allowed({"pipeline"}, set(), rule, "PAT-Z"), rule  # any patient, none assigned
        assert is_allowed({"admin"}, set(), rule, "PAT-Z")
    for role in ("radiologist", "doctor", "clinician", "worker"):  # nobody else stores or deletes over REST
        assert not is_allowed({role}, {"PAT-Z"}, store, None) and not is_allowed({role}, {"PAT-Z"}, replace, "PAT-Z")
    study = "studies/0f1e2d3c-4b5a6978-0f1e2d3c-4b5a6978-0f1e2d3c"
    for method, uri in (("DELETE", f"/{study}"), ("GET", "/patients"), ("POST", "/tools/find"),
                        ("GET", "/oncoflow/audit"), ("POST", f"/oncoflow/studies/{STUDY}/reanalyse")):
        assert not is_allowed({"pipeline"}, set(), route_rule(method, uri), "PAT-Z"), (method, uri)
    assert primary_role({"pipeline"}) == "pipeline"


def test_uploads_from_the_viewer_go_through_oncoflow_and_the_dicomweb_stow_route_is_nobodys() -> None:
    oncoflow_stow = route_rule("POST", "/oncoflow/dicom-web/studies")
    plugin_stow = route_rule("POST", "/dicom-web/studies")
    for role in ("doctor", "radiologist", "admin"):
        assert is_allowed({role}, set(), oncoflow_stow, None), role  # each part's patient is checked in the route
    for role in ("clinician", "worker", "pipeline"):
        assert not is_allowed({role}, {"PAT-A"}, oncoflow_stow, None), role
    assert plugin_stow.permission is Permission.INTERNAL
    assert route_rule("POST", f"/dicom-web/studies/{STUDY}").permission is Permission.INTERNAL
    for roles in ({"admin"}, {"admin", "radiologist", "doctor", "clinician", "worker", "pipeline"}):
        assert not is_allowed(roles, set(), plugin_stow, None)  # not even an admin: only OncoFlow's own forward
    assert is_allowed({"doctor"}, {"PAT-A"}, RouteRule(Permission.UPLOAD_IMAGES, "patient_id", "PAT-A"), "PAT-A")
    assert not is_allowed({"doctor"}, {"PAT-A"}, RouteRule(Permission.UPLOAD_IMAGES, "patient_id", "PAT-B"), "PAT-B")


def test_orthanc_resources_are_named_with_their_level() -> None:
    resource = "0f1e2d3c-4b5a6978-0f1e2d3c-4b5a6978-0f1e2d3c"
    assert route_rule("GET", f"/series/{resource}/instances") == RouteRule(
        Permission.READ_RESULTS, "orthanc_id", f"series/{resource}")
    assert route_rule("GET", f"/patients/{resource}").value == f"patients/{resource}"
    assert route_rule("GET", "/patients").permission is Permission.ADMIN  # the listing: admins only


def test_primary_role_is_the_most_powerful() -> None:
    assert primary_role({"doctor", "radiologist"}) == "radiologist"
    assert primary_role({"worker"}) == "worker"
    assert primary_role({"offline_access"}) == "anonymous"

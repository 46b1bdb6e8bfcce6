"""End to end: OHIF served at /ohif/ by the Orthanc plugin, its QIDO proxy, and the study list in Chromium.

A phantom MR study is pushed with storescu; the HTTP side is checked (the re-rooted index.html,
the single-page-app fallback, app-config.js, refused traversal, the includefield bug of DICOMweb
1.7 and the proxy's fix), then ``ohif-extension/browser-tests/study-list.test.mjs`` runs in
headless Chromium (Debian's /usr/bin/chromium) against the stack and must find the study's row.
Screenshots and the browser console go to ``$ONCOFLOW_HOME/test-artifacts/viewer/``.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import re
from typing import Any

import pytest

from oncoflow.api.viewer_files import APP_CONFIG_PATH, MODULES_DIR
from oncoflow.phantoms.tumour_phantom import make_phantom
from oncoflow.services.ohif_viewer import ensure_ohif_dist

from .conftest import Stack, run_browser_test, unique_study, write_series

pytestmark = pytest.mark.e2e

STUDY_DATE = "20250314"
BROWSER_TIMEOUT_S = 120


def raw_get(stack: Stack, path: str) -> tuple[int, dict[str, str], bytes]:
    """GET ``path`` exactly as written (no client-side normalisation of ``..`` or escapes)."""
    connection = http.client.HTTPConnection("127.0.0.1", stack.settings.http_port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def study_attributes(stack: Stack, path: str, study_uid: str) -> dict[str, Any]:
    status, headers, body = raw_get(stack, path)
    assert status == 200, (path, body[:300])
    assert headers["content-type"].startswith("application/dicom+json"), headers
    matches = [s for s in json.loads(body) if s["0020000D"]["Value"] == [study_uid]]
    assert len(matches) == 1, f"{path}: {len(matches)} answers for {study_uid}"
    return matches[0]


@pytest.fixture(scope="module")
def pushed_study(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A phantom T1c study with its own description and date, pushed and processed by the pipeline."""
    ensure_ohif_dist()  # prepared by bootstrap: instant; else fetched here (npm pack, ~3 s from npm's cache)
    study = unique_study("viewer")
    study = dataclasses.replace(study, study_date=STUDY_DATE,
                                study_description=f"OncoFlow viewer check {study.study_instance_uid[-6:]}")
    directory = tmp_path_factory.mktemp("viewer-study")
    write_series(directory, make_phantom(9301, shape=(40, 64, 64)).volume, study)
    stack.push(directory)
    stack.wait_job(study.study_instance_uid)
    return {"uid": study.study_instance_uid, "patient_id": study.patient_id, "patient_name": study.patient_name,
            "description": study.study_description}


def test_index_is_rerooted_and_client_routes_fall_back_to_it(stack: Stack, pushed_study: dict[str, str]) -> None:
    status, headers, index = raw_get(stack, "/ohif/")
    assert status == 200 and headers["content-type"].startswith("text/html"), (status, index[:300])
    assert headers["cache-control"] == "no-cache"
    html = index.decode()
    assert html.count('window.PUBLIC_URL="/ohif/"') == 2
    assert 'src="/ohif/app-config.js"' in html and 'href="/ohif/app.bundle.css"' in html
    assert not re.search(r'(?:src|href|content)="/(?!ohif/|/)', html), "an asset path outside /ohif/"
    assert raw_get(stack, "/ohif")[2] == index  # Orthanc drops the trailing slash: the same route

    for route in (f"/ohif/viewer?StudyInstanceUIDs={pushed_study['uid']}", "/ohif/segmentation",
                  "/ohif/oncoflow-review?StudyInstanceUIDs=1.2.3"):
        status, headers, body = raw_get(stack, route)
        assert (status, body) == (200, index), route
        assert headers["cache-control"] == "no-cache"

    bundle = re.search(r'src="/ohif/(app\.bundle\.[0-9a-f]{16}\.js)"', html)
    assert bundle, "index.html names no app bundle"
    status, headers, body = raw_get(stack, f"/ohif/{bundle.group(1)}")
    assert status == 200 and headers["content-type"].startswith("text/javascript")
    assert headers["cache-control"] == "public, max-age=31536000, immutable"
    assert b'__webpack_require__.p = "/ohif/";' in body
    status, headers, _ = raw_get(stack, "/ohif/app.bundle.css")
    assert status == 200 and headers["content-type"].startswith("text/css")


def test_app_config_is_the_repository_one(stack: Stack, pushed_study: dict[str, str]) -> None:
    status, headers, body = raw_get(stack, "/ohif/app-config.js")
    assert status == 200 and headers["content-type"].startswith("text/javascript")
    assert headers["cache-control"] == "no-cache"
    assert body == b"window.oncoflowAuth = null;\n" + APP_CONFIG_PATH.read_bytes()  # login off on this stack
    assert b"/oncoflow/dicom-web" in body and b"routerBasename: '/ohif'" in body
    for name in ("oncoflow-extension.mjs", "oncoflow-mode.mjs"):  # the OncoFlow modules (make test builds them)
        built = MODULES_DIR / name
        assert built.is_file(), f"{built} is not built: scripts/bootstrap.sh builds ohif-extension"
        status, headers, body = raw_get(stack, f"/ohif/oncoflow/{name}")
        assert (status, body) == (200, built.read_bytes()) and headers["content-type"].startswith("text/javascript")
    status, _, body = raw_get(stack, "/ohif/oncoflow/no-such-module.mjs")  # what is not built is said so
    assert status == 404 and b"is not built" in body


@pytest.mark.parametrize("path", ["/ohif/..%2f..%2f..%2f..%2fetc%2fpasswd", "/ohif/../../../etc/passwd",
                                  "/ohif/%2e%2e/%2e%2e/etc/passwd", "/ohif/.oncoflow-ohif.json",
                                  "/ohif/assets/..%2f..%2f..%2fetc%2fpasswd", "/ohif/no-such-file.js"])
def test_paths_outside_the_tree_are_refused(stack: Stack, pushed_study: dict[str, str], path: str) -> None:
    status, _, body = raw_get(stack, path)
    assert status == 404, (path, status, body[:200])
    assert b"root:" not in body and b"<html" not in body


def test_qido_proxy_returns_what_dicomweb_drops(stack: Stack, pushed_study: dict[str, str]) -> None:
    uid = pushed_study["uid"]
    # OHIF's request: the list comma-separated and, as browsers send it, percent-encoded
    plain = study_attributes(stack, f"/dicom-web/studies?StudyInstanceUID={uid}&includefield=00081030%2C00080061",
                             uid)
    assert "00081030" not in plain, "DICOMweb now honours an encoded includefield list: is the proxy still needed?"
    # the cause: DICOMweb reads query values undecoded (a literal comma works, %2C does not)
    literal = study_attributes(stack, f"/dicom-web/studies?StudyInstanceUID={uid}&includefield=00081030,00080061",
                               uid)
    assert literal["00081030"]["Value"] == [pushed_study["description"]]

    proxied = study_attributes(
        stack, f"/oncoflow/dicom-web/studies?StudyInstanceUID={uid}&includefield=00081030%2C00080061", uid)
    assert proxied["00081030"]["Value"] == [pushed_study["description"]]
    assert "MR" in proxied["00080061"]["Value"]
    # filters are decoded too: PatientName Test^viewer with a wildcard, as OHIF's search box sends it
    name = pushed_study["patient_name"].replace("^", "%5E")
    found = study_attributes(stack, f"/oncoflow/dicom-web/studies?PatientName={name}*&includefield=00081030", uid)
    assert found["00100020"]["Value"] == [pushed_study["patient_id"]]
    status, _, body = raw_get(stack, f"/oncoflow/dicom-web/studies/{uid}/series?includefield=0008103E%2C00080021")
    mr = [s for s in json.loads(body) if s["00080060"]["Value"] == ["MR"]]
    assert status == 200 and len(mr) == 1 and mr[0]["00080021"]["Value"] == [STUDY_DATE], body[:300]
    status, _, body = raw_get(stack, f"/oncoflow/dicom-web/studies/{uid}/metadata")
    assert status == 404 and b"not a QIDO-RS resource" in body


def test_study_list_in_headless_chromium(stack: Stack, pushed_study: dict[str, str]) -> None:
    artifacts = stack.settings.home / "test-artifacts" / "viewer"
    run_browser_test("study-list.test.mjs", {
        "ONCOFLOW_URL": stack.settings.orthanc_url,
        "EXPECT_PATIENT_ID": pushed_study["patient_id"],
        "EXPECT_PATIENT_NAME": pushed_study["patient_name"],
        "EXPECT_STUDY_DESCRIPTION": pushed_study["description"],
        "EXPECT_STUDY_DATE": STUDY_DATE,
        "EXPECT_MODALITY": "MR",
    }, artifacts, BROWSER_TIMEOUT_S)
    assert (artifacts / "study-list.png").stat().st_size > 10_000
    timing = json.loads((artifacts / "study-list-timing.json").read_text())
    assert timing["study_list_visible_ms"] < 60_000

"""End to end in the browser: a baseline and its follow-up opened in the OncoFlow review mode of OHIF.

The pair goes in by C-STORE and through the whole pipeline (SEGs, SR, report); the follow-up's SR
is read back from the PACS and handed to ``ohif-extension/browser-tests/review-mode.test.mjs``,
which opens ``/ohif/oncoflow-review?StudyInstanceUIDs=<follow-up>,<baseline>`` in headless
Chromium and checks that the OncoFlow panel shows the SR's volumes, % change and flag, its lesion table
and RANO response (the timeline route's rows, checked here against the SR lesion by lesion), links the
signed PDF, and that the red ensemble SEG is drawn in the viewports. It also checks how the mode opens
(issue 18, item 8): both viewports on the slice nearest the largest target lesion's centroid (judged
against the geometry of the images this test pushed, ``EXPECT_SLICES``), the SEG in both at once with no
prompt, a real display window (not W 1 / L 1), and that a click on a lesion row brings both viewports back
to that lesion. Screenshots go to ``$ONCOFLOW_HOME/test-artifacts/review/``.
"""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from oncoflow.core.config import REPO_ROOT
from oncoflow.dicom.sr_writer import read_measurement_report
from oncoflow.phantoms.longitudinal_phantom import make_longitudinal_case
from oncoflow.services.ohif_viewer import ensure_ohif_dist

from .conftest import Stack, run_browser_test
from .test_e2e_longitudinal import GRID, oncoflow_srs, push_visit_with_images

pytestmark = pytest.mark.e2e

EXTENSION_DIST = REPO_ROOT / "ohif-extension" / "dist"


def test_review_mode_shows_the_sr_numbers_and_the_seg(stack: Stack, tmp_path: Path) -> None:
    for module in ("oncoflow-extension.mjs", "oncoflow-mode.mjs"):
        assert (EXTENSION_DIST / module).is_file(), f"{module} is not built: scripts/bootstrap.sh builds it"
    ensure_ohif_dist()
    case = make_longitudinal_case(6161, categories=["progression"], shape=GRID["shape"])
    baseline_uid, baseline_images = push_visit_with_images(stack, tmp_path, case, 0)
    assert stack.wait_job(baseline_uid, timeout_s=300)["state"] == "done"
    follow_up_uid, follow_up_images = push_visit_with_images(stack, tmp_path, case, 1)
    job = stack.wait_job(follow_up_uid, timeout_s=300)
    assert job["state"] == "done", job["error"]
    (sr,) = oncoflow_srs(stack, follow_up_uid)
    measured = read_measurement_report(sr)
    assert measured["region"] in measured["region_volumes_cm3"], measured  # the panel's region rows are checked
    expect_lesions = route_lesions_as_in_sr(stack, str(sr.PatientID), baseline_uid, follow_up_uid, measured)
    artifacts = stack.settings.home / "test-artifacts" / "review"
    run_browser_test("review-mode.test.mjs", {
        "ONCOFLOW_URL": stack.settings.orthanc_url, "FOLLOW_UP_UID": follow_up_uid, "BASELINE_UID": baseline_uid,
        "EXPECT_SR": json.dumps({k: measured[k] for k in ("volume_prior_cm3", "volume_cm3", "percent_change", "flag",
                                                          "region", "region_volumes_cm3")}),
        "EXPECT_LESIONS": json.dumps(expect_lesions),
        "EXPECT_SLICES": json.dumps({baseline_uid: slice_geometry(baseline_images),
                                     follow_up_uid: slice_geometry(follow_up_images)}),
    }, artifacts, 300)
    assert (artifacts / "oncoflow-panel.png").stat().st_size > 5_000
    timing = json.loads((artifacts / "review-timing.json").read_text())
    assert timing["first_image_ms"] > 0 and timing["panel_filled_ms"] > 0
    assert timing["on_lesion_ms"] > 0
    assert (artifacts / "oncoflow-lesions.png").stat().st_size > 1_000
    assert (artifacts / "review-mode-on-lesion.png").stat().st_size > 5_000


def slice_geometry(images: list[Any]) -> dict[str, dict[str, Any]]:
    """Each pushed image's plane, by SOP Instance UID, from the DICOM this test wrote (not from the viewer): where
    the browser test finds the slice a viewport shows, and which slice is nearest a point."""
    return {str(ds.SOPInstanceUID): {"position": [float(v) for v in ds.ImagePositionPatient],
                                     "orientation": [float(v) for v in ds.ImageOrientationPatient],
                                     "thickness": float(ds.SliceThickness)} for ds in images}


def route_lesions_as_in_sr(stack: Stack, patient_id: str, baseline_uid: str, follow_up_uid: str,
                           measured: dict[str, Any]) -> dict[str, Any]:
    """The follow-up's lesions and response from the timeline route (what the panel reads), after checking them
    against the follow-up SR read back from the PACS: same lesions by tracking ID, same volumes, products, target
    and measurability, same response."""
    status, timeline = stack.get(f"/oncoflow/patients/{urllib.parse.quote(patient_id, safe='')}/timeline")
    assert status == 200, timeline
    points = {t["study_instance_uid"]: t for t in timeline["time_points"]}
    follow_up, baseline = points[follow_up_uid], points[baseline_uid]
    lesions, response = follow_up["lesions"], follow_up["response"]
    assert lesions and response is not None and baseline["response"] is None, follow_up
    in_sr = {lesion["tracking_id"]: lesion for lesion in measured["lesions"]}
    assert sorted(in_sr) == sorted(lesion["tracking_id"] for lesion in lesions), (in_sr, lesions)
    for lesion in lesions:
        sr_lesion = in_sr[lesion["tracking_id"]]
        assert sr_lesion["volume_cm3"] == pytest.approx(lesion["volume_cm3"], abs=1e-3), (sr_lesion, lesion)
        assert sr_lesion["product_mm2"] == pytest.approx(lesion["product_mm2"], abs=0.05), (sr_lesion, lesion)
        assert (sr_lesion["target"], sr_lesion["measurable"]) == (lesion["target"], lesion["measurable"])
    assert measured["response"] is not None
    assert (measured["response"]["category"], measured["response"]["confirmation"], measured["response"]["method"]) \
        == (response["category"], response["confirmation"], response["criteria"]), (measured["response"], response)
    return {"lesions": lesions, "baseline_lesions": baseline["lesions"], "response": response}

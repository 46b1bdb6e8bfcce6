"""End to end: a baseline and its follow-up pushed by C-STORE give a compared, flagged DICOM-SR.

Longitudinal phantoms (one lesion, known change, known head motion between visits) go
through the default panel; the follow-up's SR is read back and checked against the
timeline route and the phantom's truth. Also: a baseline arriving after its follow-up,
and bad pairs (another patient behind the same PatientID, a baseline SEG deleted).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest

from oncoflow.dicom.registration_writer import read_spatial_registration
from oncoflow.dicom.sr_writer import read_measurement_report
from oncoflow.phantoms.longitudinal_phantom import LongitudinalCase, make_longitudinal_case, study_info_kwargs
from oncoflow.phantoms.phantom_dicom import StudyInfo

from .conftest import Stack, write_series

pytestmark = pytest.mark.e2e

GRID = {"shape": (40, 64, 64)}


def push_visit(stack: Stack, tmp_path: Path, case: LongitudinalCase, index: int, **study: str) -> str:
    """C-STORE one visit of ``case``; returns its StudyInstanceUID."""
    info = StudyInfo(**{**study_info_kwargs(case, index), **study})
    directory = tmp_path / f"{case.patient_id}-{index}-{info.accession_number}"
    datasets = write_series(directory, case.time_points[index].phantom.volume, info)
    stack.push(directory)
    return str(datasets[0].StudyInstanceUID)


def oncoflow_objects(stack: Stack, study_uid: str, modality: str) -> list[pydicom.Dataset]:
    _, series = stack.get(f"/studies/{stack.study_id(study_uid)}/series")
    found = []
    for s in series:
        if s["MainDicomTags"].get("Modality") == modality:
            for instance in s["Instances"]:
                found.append(pydicom.dcmread(io.BytesIO(stack.get_bytes(f"/instances/{instance}/file"))))
    return found


def oncoflow_srs(stack: Stack, study_uid: str) -> list[pydicom.Dataset]:
    return oncoflow_objects(stack, study_uid, "SR")


def test_follow_up_is_compared_measured_and_reported(stack: Stack, tmp_path: Path) -> None:
    case = make_longitudinal_case(3108, categories=["progression"], shape=GRID["shape"])
    baseline_uid = push_visit(stack, tmp_path, case, 0)
    baseline = stack.wait_job(baseline_uid, timeout_s=300)
    assert baseline["state"] == "done", baseline["error"]
    assert baseline["outputs"]["longitudinal"]["comparison"] is None  # the first time point
    follow_up_uid = push_visit(stack, tmp_path, case, 1)
    job = stack.wait_job(follow_up_uid, timeout_s=300)
    assert job["state"] == "done", job["error"]
    comparison = job["outputs"]["longitudinal"]["comparison"]
    assert comparison["baseline_study_instance_uid"] == baseline_uid
    truth = case.true_percent_change(0, 1)
    assert abs(comparison["percent_change"] - truth) <= 20.0, (comparison, truth)
    assert comparison["flag"] == "progression" or comparison["flag"] == "high uncertainty", comparison
    assert comparison["registration"]["ncc_after"] > comparison["registration"]["ncc_before"]
    assert comparison["days_between"] == (case.time_points[1].study_date - case.time_points[0].study_date).days

    (sr,) = oncoflow_srs(stack, follow_up_uid)
    report = read_measurement_report(sr)
    assert report["volume_cm3"] == pytest.approx(comparison["volume_follow_up_cm3"], abs=1e-3)
    assert report["percent_change"] == pytest.approx(comparison["percent_change"], abs=0.01)
    assert report["flag"] == comparison["flag"]
    (baseline_sr,) = oncoflow_srs(stack, baseline_uid)
    assert read_measurement_report(baseline_sr)["tracking_uid"] == report["tracking_uid"]

    status, timeline = stack.get(f"/oncoflow/patients/{case.patient_id}/timeline")
    assert status == 200
    points = timeline["time_points"]
    assert [p["study_instance_uid"] for p in points] == [baseline_uid, follow_up_uid]
    assert points[1]["sr_sop_instance_uid"] == sr.SOPInstanceUID and points[1]["comparison"] == comparison
    assert points[0]["sr_sop_instance_uid"] == baseline_sr.SOPInstanceUID

    (reg,) = oncoflow_objects(stack, follow_up_uid, "REG")  # the transform, as a Spatial Registration object
    assert reg.SOPInstanceUID == points[1]["reg_sop_instance_uid"]
    matrix = np.asarray(comparison["follow_up_to_baseline_lps"]).reshape(4, 4)
    assert np.allclose(read_spatial_registration(reg), matrix, atol=1e-4)


def test_baseline_arriving_after_its_follow_up(stack: Stack, tmp_path: Path) -> None:
    case = make_longitudinal_case(3105, categories=["response"], shape=GRID["shape"])
    follow_up_uid = push_visit(stack, tmp_path, case, 1)
    first = stack.wait_job(follow_up_uid, timeout_s=300)
    assert first["state"] == "done" and first["outputs"]["longitudinal"]["comparison"] is None
    baseline_uid = push_visit(stack, tmp_path, case, 0)
    assert stack.wait_job(baseline_uid, timeout_s=300)["state"] == "done"
    status, timeline = stack.get(f"/oncoflow/patients/{case.patient_id}/timeline")
    points = timeline["time_points"]
    assert [p["study_instance_uid"] for p in points] == [baseline_uid, follow_up_uid]
    assert points[1]["comparison"]["baseline_study_instance_uid"] == baseline_uid
    (sr,) = oncoflow_srs(stack, follow_up_uid)  # the follow-up's report was replaced, not duplicated
    assert read_measurement_report(sr)["flag"] == points[1]["comparison"]["flag"]


def test_bad_pairs_fail_clearly_and_keep_the_baseline(stack: Stack, tmp_path: Path) -> None:
    case = make_longitudinal_case(3103, categories=["stable"], shape=GRID["shape"])
    baseline_uid = push_visit(stack, tmp_path, case, 0)
    assert stack.wait_job(baseline_uid, timeout_s=300)["state"] == "done"
    _, before = stack.get(f"/oncoflow/patients/{case.patient_id}/timeline")

    # another patient behind the same PatientID: not compared
    other_uid = push_visit(stack, tmp_path, case, 1, patient_birth_date="19990101", accession_number="OTHER1")
    other = stack.wait_job(other_uid, timeout_s=300)
    assert other["state"] == "done"
    assert "names another patient" in other["outputs"]["longitudinal"]["error"]

    # the baseline's ensemble SEG deleted: the follow-up cannot be compared
    baseline = stack.job(baseline_uid)
    seg_series = baseline["outputs"]["seg_orthanc_series_id"]
    import urllib.request

    request = urllib.request.Request(f"{stack.settings.orthanc_url}/series/{seg_series}", method="DELETE")
    urllib.request.urlopen(request, timeout=30).close()
    follow_up_uid = push_visit(stack, tmp_path, case, 1, accession_number="FOLLOW1")
    job = stack.wait_job(follow_up_uid, timeout_s=300)
    assert job["state"] == "done"
    assert "has no ensemble SEG" in job["outputs"]["longitudinal"]["error"]

    _, after = stack.get(f"/oncoflow/patients/{case.patient_id}/timeline")
    kept = next(p for p in after["time_points"] if p["study_instance_uid"] == baseline_uid)
    assert kept == next(p for p in before["time_points"] if p["study_instance_uid"] == baseline_uid)

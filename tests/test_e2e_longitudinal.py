"""End to end: a baseline and its follow-up pushed by C-STORE give a compared, flagged DICOM-SR.

Longitudinal phantoms (one lesion, known change, known head motion between visits) go
through the default panel; the follow-up's SR is read back and checked against the
timeline route and the phantom's truth. Also: a baseline arriving after its follow-up,
and bad pairs (another patient behind the same PatientID, a baseline SEG deleted).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest

from oncoflow.dicom.registration_writer import read_spatial_registration
from oncoflow.dicom.sr_writer import read_measurement_report
from oncoflow.phantoms.longitudinal_phantom import LongitudinalCase, make_longitudinal_case, study_info_kwargs
from oncoflow.phantoms.multi_lesion_phantom import make_multi_lesion_case, multi_lesion_study_info_kwargs
from oncoflow.phantoms.phantom_dicom import StudyInfo

from .conftest import Stack, running_stack, write_series
from .seg_oracle import segment_mask

pytestmark = pytest.mark.e2e

GRID = {"shape": (40, 64, 64)}
# How far the one-expert panel's % change may be from the phantom's truth on case 3108 (+137.6 %): the demo
# nnU-Net's segmentation error (measured +126.4 %, 11.2 points under), which the segmentation work must bring down;
# the exactness of the reported number is checked against the SEGs themselves, to 0.05 points.
TRUTH_TOLERANCE_POINTS = 15.0


def push_visit_with_images(stack: Stack, tmp_path: Path, case: LongitudinalCase, index: int,
                           **study: str) -> tuple[str, list[pydicom.Dataset]]:
    """C-STORE one visit of ``case``; returns its StudyInstanceUID and its images in slice order."""
    info = StudyInfo(**{**study_info_kwargs(case, index), **study})
    directory = tmp_path / f"{case.patient_id}-{index}-{info.accession_number}"
    datasets = write_series(directory, case.time_points[index].phantom.volume, info)
    stack.push(directory)
    return str(datasets[0].StudyInstanceUID), datasets


def push_visit(stack: Stack, tmp_path: Path, case: LongitudinalCase, index: int, **study: str) -> str:
    """C-STORE one visit of ``case``; returns its StudyInstanceUID."""
    return push_visit_with_images(stack, tmp_path, case, index, **study)[0]


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


@pytest.fixture(scope="module")
def one_expert(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack whose panel is one nnU-Net: its change has no experts' interval, so its flag is the volume category of
    the % change (or poor registration), which the phantom's truth decides: no flag can pass by default."""
    with running_stack(tmp_path_factory.mktemp("oncoflow-one-expert"), ONCOFLOW_PANEL="nnunet_demo") as stack:
        yield stack


def seg_volume_cm3(stack: Stack, study_uid: str, sources: list[pydicom.Dataset]) -> float:
    """The ensemble SEG's volume read back from the PACS (tests/seg_oracle.py), in the phantom's own voxel size."""
    (seg,) = [s for s in oncoflow_objects(stack, study_uid, "SEG") if "ensemble" in s.SeriesDescription]
    mask = segment_mask(seg, [str(ds.SOPInstanceUID) for ds in sources])
    spacing = [float(v) for v in sources[0].PixelSpacing]
    positions = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in sources[:2]])
    return float(mask.sum()) * spacing[0] * spacing[1] * float(np.linalg.norm(positions[1] - positions[0])) / 1000


def test_follow_up_is_compared_measured_and_reported(one_expert: Stack, tmp_path: Path) -> None:
    stack = one_expert
    case = make_longitudinal_case(3108, categories=["progression"], shape=GRID["shape"])
    baseline_uid, baseline_images = push_visit_with_images(stack, tmp_path, case, 0)
    baseline = stack.wait_job(baseline_uid, timeout_s=300)
    assert baseline["state"] == "done", baseline["error"]
    assert baseline["outputs"]["longitudinal"]["comparison"] is None  # the first time point
    follow_up_uid, follow_up_images = push_visit_with_images(stack, tmp_path, case, 1)
    job = stack.wait_job(follow_up_uid, timeout_s=300)
    assert job["state"] == "done", job["error"]
    comparison = job["outputs"]["longitudinal"]["comparison"]
    assert comparison["baseline_study_instance_uid"] == baseline_uid
    # the reported change is exactly the change of the two ensemble SEGs in the PACS (an oracle of its own) ...
    before_cm3 = seg_volume_cm3(stack, baseline_uid, baseline_images)
    after_cm3 = seg_volume_cm3(stack, follow_up_uid, follow_up_images)
    assert comparison["volume_follow_up_cm3"] == pytest.approx(after_cm3, abs=1e-3)
    assert comparison["percent_change"] == pytest.approx((after_cm3 - before_cm3) / before_cm3 * 100, abs=0.05)
    # ... and the phantom's true change is a progression far past the +25 % threshold, which the flag must say
    truth = case.true_percent_change(0, 1)
    print(f"\none expert: {comparison['percent_change']:+.1f} % against the truth {truth:+.1f} %")
    assert truth > 100.0
    assert abs(comparison["percent_change"] - truth) <= TRUTH_TOLERANCE_POINTS, (comparison, truth)
    assert comparison["flag"] == "progression", comparison
    assert comparison["registration"]["ncc_after"] > comparison["registration"]["ncc_before"]
    assert comparison["days_between"] == (case.time_points[1].study_date - case.time_points[0].study_date).days
    # lesion by lesion (one here): the same lesion tracked, its volume the SEG's, and RANO 2.0's volumetric response
    lesions = job["outputs"]["longitudinal"]["lesions"]
    assert sum(lesion["volume_cm3"] for lesion in lesions) == pytest.approx(after_cm3, abs=0.01)
    assert lesions[0]["tracking_id"] == "Lesion 1" and lesions[0]["status"] == "continued" and lesions[0]["target"]
    response = job["outputs"]["longitudinal"]["response"]
    assert response["criteria"] == "RANO 2.0, volumetric" and response["category"] == "PD", response  # truth > +40 %
    assert baseline["outputs"]["longitudinal"]["response"] is None

    (sr,) = oncoflow_srs(stack, follow_up_uid)
    report = read_measurement_report(sr)
    assert report["volume_cm3"] == pytest.approx(comparison["volume_follow_up_cm3"], abs=1e-3)
    assert report["percent_change"] == pytest.approx(comparison["percent_change"], abs=0.01)
    assert report["flag"] == comparison["flag"]
    assert [(r["tracking_id"], r["target"]) for r in report["lesions"]] == [(r["tracking_id"], r["target"])
                                                                              for r in lesions]
    assert report["lesions"][0]["perpendicular_diameter_mm"] == pytest.approx(lesions[0]["perpendicular_diameter_mm"],
                                                                              abs=0.05)
    assert (report["response"]["category"], report["response"]["method"]) == ("PD", "RANO 2.0, volumetric")
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


def sr_tracking_identifiers(sr: pydicom.Dataset) -> list[str]:
    """The Tracking Identifier (DCM 112039) of every measurement group, read from the content tree with pydicom."""
    found: list[str] = []

    def walk(items: pydicom.Sequence) -> None:
        for item in items:
            name = item.ConceptNameCodeSequence[0] if "ConceptNameCodeSequence" in item else None
            if name is not None and (name.CodingSchemeDesignator, name.CodeValue) == ("DCM", "112039"):
                found.append(str(item.TextValue))
            if "ContentSequence" in item:
                walk(item.ContentSequence)

    walk(sr.ContentSequence)
    return found


def test_two_lesions_over_three_visits_are_tracked_and_assessed(one_expert: Stack, tmp_path: Path) -> None:
    """Two lesions (13.1 and 6.6 cm3) shrink to a fifth, then the larger grows back to 0.6 of its baseline while
    the smaller is gone. By RANO 2.0's volumetric rules (PR: the targets' sum at least 65 % below the baseline;
    PD: at least 40 % above the nadir) the truth gives PR at visit 2 (-80 %) and PD at visit 3 (+99 % from the
    nadir, although still -60 % from the baseline): each lesion keeps its identifier, the gone one ends.

    Each lesion is told by where it is (its centroid, taken back to the baseline's patient space by the phantom's
    known head motion, against the drawn centre), not by its volume: the one-expert demo panel over-segments
    these small lesions on 4.8 mm slices (measured +11 % to +46 %)."""
    case = make_multi_lesion_case(12, 3, lesion_factors=[[1.0, 0.2, 0.6], [1.0, 0.2, 0.0]], shape=(48, 80, 80),
                                  anatomy="colin27")
    truth = [tp.lesion_volumes_cm3 for tp in case.time_points]
    sums = [sum(v) for v in truth]
    assert 100 * (sums[1] - sums[0]) / sums[0] <= -65 - 12  # PR with room for the segmentation's error
    assert 100 * (sums[2] - sums[1]) / sums[1] >= 40 + 15  # PD from the nadir, with room
    assert 100 * (sums[2] - sums[0]) / sums[0] < -40  # ... while far below the baseline
    jobs, srs = [], []
    for index in range(3):
        info = StudyInfo(**multi_lesion_study_info_kwargs(case, index))
        directory = tmp_path / f"visit-{index}"
        datasets = write_series(directory, case.time_points[index].phantom.volume, info)
        one_expert.push(directory)
        uid = str(datasets[0].StudyInstanceUID)
        jobs.append(one_expert.wait_job(uid, timeout_s=300))
        assert jobs[-1]["state"] == "done", jobs[-1]["error"]
        (sr,) = oncoflow_srs(one_expert, uid)
        srs.append(sr)
    lesions = [job["outputs"]["longitudinal"]["lesions"] for job in jobs]
    print("\n", [[(r["tracking_id"], r["volume_cm3"], r["status"]) for r in visit] for visit in lesions])
    # the two lesions at baseline, largest first; the larger (truth lesion 1) keeps "Lesion 1" at every visit
    assert [r["tracking_id"] for r in lesions[0]] == ["Lesion 1", "Lesion 2"]
    for visit, rows in enumerate(lesions):
        to_baseline = case.time_points[visit].motion_to_baseline
        for row in rows:
            truth_label = int(row["tracking_id"].removeprefix("Lesion "))  # drawn lesion k at its centre_mm
            centroid = to_baseline[:3, :3] @ np.asarray(row["centroid_lps_mm"]) + to_baseline[:3, 3]
            distance_mm = float(np.linalg.norm(centroid - case.lesions[truth_label - 1].centre_mm))
            assert distance_mm < 6.0, (visit, row["tracking_id"], distance_mm)
            assert row["volume_cm3"] == pytest.approx(truth[visit][truth_label - 1], rel=0.6), (visit, row)
    assert {r["tracking_id"] for r in lesions[1]} == {"Lesion 1", "Lesion 2"}
    assert [r["tracking_id"] for r in lesions[2]] == ["Lesion 1"]  # the smaller one is gone, no new lesion
    responses = [job["outputs"]["longitudinal"]["response"] for job in jobs]
    assert responses[0] is None
    assert (responses[1]["category"], responses[1]["confirmation"]) == ("PR", "preliminary"), responses[1]
    assert responses[2]["category"] == "PD", responses[2]
    assert "from the nadir" in " ".join(responses[2]["reasons"])
    # the SRs name the same lesions (read from the content tree with pydicom alone), and the timeline route too
    assert [sorted(set(sr_tracking_identifiers(sr))) for sr in srs] == [
        ["Lesion 1", "Lesion 2"], ["Lesion 1", "Lesion 2"], ["Lesion 1"]]
    status, timeline = one_expert.get(f"/oncoflow/patients/{case.patient_id}/timeline")
    assert status == 200
    assert [[r["tracking_id"] for r in p["lesions"]] for p in timeline["time_points"]] == [
        [r["tracking_id"] for r in visit] for visit in lesions]
    # the clinician's word: clinical deterioration at visit 2 (measured PR) is PD whatever the sum (RANO 2.0)
    visit_2 = str(srs[1].StudyInstanceUID)
    status, body = one_expert.request("PUT", f"/oncoflow/studies/{visit_2}/clinical-state",
                                      b'{"status": "sometimes", "steroid_mg_per_day": 4}')
    assert status == 400 and b"status must be one of" in body
    status, body = one_expert.request("PUT", f"/oncoflow/studies/{visit_2}/clinical-state",
                                      b'{"status": "worse", "steroid_mg_per_day": 4}')
    assert status == 200, body
    entered = json.loads(body)
    assert (entered["status"], entered["steroid_mg_per_day"]) == ("worse", 4.0)
    assert entered["response"]["category"] == "PD" and "clinical deterioration" in " ".join(
        entered["response"]["reasons"]), entered["response"]
    assert one_expert.get(f"/oncoflow/studies/{visit_2}/clinical-state")[1]["status"] == "worse"
    one_expert.wait_event(visit_2, "reassessed", timeout_s=180)
    (sr,) = oncoflow_srs(one_expert, visit_2)
    assert sr_response_category(sr) == "RESPPD"  # the SR stored in the PACS says so too
    assert sr_response_category(srs[1]) == "RESPPR"  # (and said PR before)


def sr_response_category(sr: pydicom.Dataset) -> str | None:
    """The code of the SR's overall response category (private RESPCAT), read from the content tree with pydicom."""
    def walk(items: pydicom.Sequence) -> str | None:
        for item in items:
            name = item.ConceptNameCodeSequence[0] if "ConceptNameCodeSequence" in item else None
            if name is not None and name.CodeValue == "RESPCAT" and "ConceptCodeSequence" in item:
                return str(item.ConceptCodeSequence[0].CodeValue)
            found = walk(item.ContentSequence) if "ContentSequence" in item else None
            if found:
                return found
        return None

    return walk(sr.ContentSequence)

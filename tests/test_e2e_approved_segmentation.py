"""End to end: the radiologist's word wins (issue 18, item 5).

One visit through the default stack; a SEG edited in a viewer (OHIF-like: another manufacturer, its empty frames
left out, two segments) is stored by STOW-RS and approved. The SR read back from the PACS then measures the edited
mask (its volume checked against numpy on the SEG's own pixel data) and says who approved it, the report says the
measurements come from the approved segmentation, a re-analysis keeps measuring it while storing the new ensemble,
and withdrawing the approval brings the automatic result back.
"""

from __future__ import annotations

import json
import subprocess
from io import BytesIO
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from oncoflow.dicom.multipart import Part, build
from oncoflow.dicom.sr_writer import read_measurement_report
from oncoflow.phantoms.longitudinal_phantom import make_longitudinal_case

from .conftest import Stack, required_tool
from .seg_oracle import segment_mask
from .test_e2e_longitudinal import GRID, oncoflow_objects, oncoflow_srs, push_visit_with_images

pytestmark = pytest.mark.e2e


def voxel_cm3(images: list[pydicom.Dataset]) -> float:
    """One voxel of the series in cm3, from its own tags (pixel spacing, the distance between two slices)."""
    spacing = [float(v) for v in images[0].PixelSpacing]
    positions = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in images[:2]])
    return spacing[0] * spacing[1] * float(np.linalg.norm(positions[1] - positions[0])) / 1000


def edited_seg(images: list[pydicom.Dataset], tumour: np.ndarray) -> pydicom.Dataset:
    """A SEG as OHIF's segmentation tools store one: two segments ("Tumour, edited" and a stray "Other"), empty
    frames left out, its own manufacturer."""
    other = np.zeros_like(tumour)
    other[0, :3, :3] = 1
    labels = tumour.astype(np.uint8) + 2 * other * (tumour == 0)
    descriptions = [hd.seg.SegmentDescription(
        segment_number=number, segment_label=label, segmented_property_category=category,
        segmented_property_type=kind, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
        for number, label, category, kind in (
            (1, "Tumour, edited", codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Neoplasm),
            (2, "Other", codes.SCT.AnatomicalStructure, codes.SCT.Tissue))]
    return hd.seg.Segmentation(
        source_images=images, pixel_array=labels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=generate_uid(), series_number=301,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="OHIF", manufacturer_model_name="cornerstone",
        software_versions="3.13.2", device_serial_number="viewer-1", series_description="Segmentation edited",
        omit_empty_frames=True)


def stow(stack: Stack, dataset: pydicom.Dataset) -> None:
    buffer = BytesIO()
    pydicom.dcmwrite(buffer, dataset, enforce_file_format=True)
    body, content_type = build([Part("application/dicom", buffer.getvalue())])
    status, answer = stack.request("POST", "/oncoflow/dicom-web/studies", body,
                                   headers={"Content-Type": content_type, "Accept": "application/dicom+json"})
    assert status == 200, answer


def approved_seg(stack: Stack, method: str, study_uid: str, body: dict | None = None) -> tuple[int, dict]:
    status, raw = stack.request(method, f"/oncoflow/studies/{study_uid}/approved-seg",
                                None if body is None else json.dumps(body).encode(),
                                headers={"Content-Type": "application/json"})
    return status, json.loads(raw)


def the_sr(stack: Stack, study_uid: str) -> dict:
    (sr,) = oncoflow_srs(stack, study_uid)  # replaced each time, never duplicated
    return read_measurement_report(sr)


def test_an_approved_seg_is_measured_said_and_kept_through_a_reanalysis(stack: Stack, tmp_path: Path) -> None:
    case = make_longitudinal_case(3121, categories=["stable"], shape=GRID["shape"])
    uid, images = push_visit_with_images(stack, tmp_path, case, 0)
    job = stack.wait_job(uid, timeout_s=300)
    assert job["state"] == "done", job["error"]
    sources = [str(ds.SOPInstanceUID) for ds in images]
    automatic_cm3 = the_sr(stack, uid)["volume_cm3"]

    # the radiologist's edit: the ensemble's whole tumour, one voxel wider in-plane (clearly not the measured core)
    (ensemble,) = [s for s in oncoflow_objects(stack, uid, "SEG") if "ensemble" in s.SeriesDescription]
    whole = np.zeros((len(sources), int(images[0].Rows), int(images[0].Columns)), np.uint8)
    for item in ensemble.SegmentSequence:
        whole |= segment_mask(ensemble, sources, int(item.SegmentNumber))
    assert whole.any()
    edited = whole.copy()
    for axis in (1, 2):
        for shift in (-1, 1):
            edited |= np.roll(whole, shift, axis=axis)
    seg = edited_seg(images, edited)
    stow(stack, seg)
    seg_uid = str(seg.SOPInstanceUID)

    status, answer = approved_seg(stack, "POST", uid, {"sop_instance_uid": seg_uid})
    assert status == 422 and "segment_numbers" in answer["error"], answer  # two segments, neither named
    assert [s["number"] for s in answer["segments"]] == [1, 2], answer  # listed for the user to choose
    status, answer = approved_seg(stack, "POST", uid, {"sop_instance_uid": seg_uid, "segment_numbers": [1]})
    assert status == 200, answer
    assert "error" not in answer["timeline"], answer["timeline"]
    assert "error" not in answer["timeline"]["report"], answer["timeline"]["report"]

    # the SR in the PACS measures the approved SEG: its volume is the mask's, by numpy on the stored SEG's pixels
    (stored,) = [s for s in oncoflow_objects(stack, uid, "SEG") if str(s.SOPInstanceUID) == seg_uid]
    approved_cm3 = float(segment_mask(stored, sources, 1).sum()) * voxel_cm3(images)
    assert approved_cm3 > automatic_cm3 * 1.2, (approved_cm3, automatic_cm3)
    report = the_sr(stack, uid)
    assert report["volume_cm3"] == pytest.approx(approved_cm3, abs=1e-3)
    assert report["referenced_seg_sop_instance_uid"] == seg_uid
    assert report["segmentation_note"].startswith("approved by an anonymous user (login off), ")  # login is off here
    assert seg_uid in report["segmentation_note"]

    # the report says so
    _, timeline = stack.get(f"/oncoflow/patients/{case.patient_id}/timeline")
    (point,) = timeline["time_points"]
    assert point["seg_sop_instance_uid"] == seg_uid and point["measurements"]["volume_cm3"] == pytest.approx(
        approved_cm3, abs=1e-3)
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(stack.get_bytes(f"/oncoflow/reports/{point['report_sop_instance_uid']}.pdf"))
    text = " ".join(subprocess.run([required_tool("pdftotext"), str(pdf), "-"], capture_output=True, text=True,
                                   check=True).stdout.split())
    assert "The measurements come from the approved segmentation" in text, text[:2000]

    # a re-analysis stores a new ensemble but keeps measuring the approved SEG, and says so
    for _ in range(60):  # the SEG, SR and PDF stored above each made the study "stable" again: a job may be queued
        status, queued = stack.request("POST", f"/oncoflow/studies/{uid}/reanalyse")
        if status == 202:
            break
        stack.wait_job(uid, timeout_s=120)
    assert status == 202, queued
    again = stack.wait_job(uid, timeout_s=300, min_job_id=json.loads(queued)["job_id"])
    assert again["state"] == "done", again["error"]
    in_force = again["outputs"]["longitudinal"]["approved_segmentation"]
    assert in_force["sop_instance_uid"] == seg_uid and isinstance(in_force["automatic_differs"], bool)
    assert in_force["volume_cm3"] == pytest.approx(approved_cm3, abs=1e-3)
    assert any("approved segmentation in force" in e["message"] for e in again["events"]), again["events"]
    assert again["approved_segmentation"]["sop_instance_uid"] == seg_uid
    assert [s for s in oncoflow_objects(stack, uid, "SEG") if "ensemble" in s.SeriesDescription]
    report = the_sr(stack, uid)
    assert report["volume_cm3"] == pytest.approx(approved_cm3, abs=1e-3)
    assert report["referenced_seg_sop_instance_uid"] == seg_uid

    # withdrawn: the automatic result is measured again
    status, answer = approved_seg(stack, "DELETE", uid)
    assert status == 200 and answer["withdrawn"]["sop_instance_uid"] == seg_uid, answer
    report = the_sr(stack, uid)
    assert report["volume_cm3"] == pytest.approx(automatic_cm3, abs=1e-3)
    assert report["segmentation_note"] is None
    status, shown = approved_seg(stack, "GET", uid)
    assert status == 200 and shown["approval"] is None and len(shown["history"]) == 1

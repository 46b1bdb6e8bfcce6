"""End to end: three visits of a phantom patient with notes give a signed report in the PACS.

The notes go in through the REST route; the three visits by C-STORE. The follow-ups'
reports are read back as DICOM (Encapsulated PDF, dciodvfy, references), as PDF from the
report route (byte-identical to the DICOM's document), verified by poppler's pdfsig and by
pyHanko against the stack's development CA, tampered with (must fail), rendered with
pdftoppm (the overlay's red must be there) and read with pdftotext (the numbers of the SR,
no PatientID or name, every number of the summary computed). Bad uploads and per-patient
isolation are checked through the same routes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import date
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from cryptography import x509
from oncoflow_rag.clinical_findings import ChangeFinding, ClinicalFindings, TimePointFinding
from oncoflow_rag.number_check import unsupported_numbers
from PIL import Image
from pydicom.uid import EncapsulatedPDFStorage
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen.canvas import Canvas

from oncoflow.dicom.encapsulated_pdf_writer import read_encapsulated_pdf
from oncoflow.dicom.sr_writer import read_measurement_report
from oncoflow.phantoms.longitudinal_phantom import make_longitudinal_case
from oncoflow.pipeline.report_stage import lesion_views
from oncoflow.report.signed_pdf_check import check_signed_pdf

from .conformance_statement import coded_concepts, table_after
from .conftest import Stack
from .test_e2e_longitudinal import GRID, oncoflow_objects, push_visit

pytestmark = pytest.mark.e2e

PATHOLOGY = ("Neuropathology report. Diagnosis: glioblastoma, IDH-wildtype, CNS WHO grade four. "
             "MGMT promoter methylated. Gross total resection of the right frontal lesion was performed. "
             "Adjuvant temozolomide with chemoradiation according to the Stupp protocol was started.")
CLINIC = ("Clinical note. The patient reports fewer focal seizures on levetiracetam. Mild fatigue, no headache. "
          "Neurological examination shows a slight left pronator drift.")
OTHER_PATIENT = "Meningioma of the olfactory groove, WHO grade one, treated by stereotactic radiosurgery."


def note_pdf(text: str) -> bytes:
    buffer = BytesIO()
    canvas = Canvas(buffer, pagesize=A4)
    y = 780
    for sentence in text.split(". "):
        canvas.drawString(60, y, sentence.strip().rstrip(".") + ".")
        y -= 16
    canvas.save()
    return buffer.getvalue()


def request(stack: Stack, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(f"{stack.settings.orthanc_url}{path}", data=body, method=method,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=120) as response:
            status, raw, kind = response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        status, raw, kind = exc.code, exc.read(), exc.headers.get("Content-Type", "")
    return status, json.loads(raw) if raw[:1] in (b"{", b"[") else (raw, kind)


def upload(stack: Stack, patient_id: str, filename: str, data: bytes, content_type: str) -> tuple[int, Any]:
    headers = {"Content-Type": content_type, "Content-Disposition": f'attachment; filename="{filename}"'}
    return request(stack, "POST", f"/oncoflow/patients/{patient_id}/documents", data, headers)


def pdftotext(path: Path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True,
                          check=True).stdout


def pdfsig(path: Path) -> str:
    return subprocess.run(["pdfsig", str(path)], capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def reported_patient(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A three-visit patient (progression, then progression) with two notes; its jobs and timeline."""
    tmp_path = tmp_path_factory.mktemp("report")
    case = make_longitudinal_case(5150, 3, categories=["progression", "progression"], shape=GRID["shape"])
    uids = [push_visit(stack, tmp_path, case, 0)]
    assert stack.wait_job(uids[0], timeout_s=300)["state"] == "done"
    for name, data, kind in (("pathology.pdf", note_pdf(PATHOLOGY), "application/pdf"),
                             ("clinic.txt", CLINIC.encode(), "text/plain; charset=utf-8")):
        status, answer = upload(stack, case.patient_id, name, data, kind)
        assert status == 200 and answer["document"]["filename"] == name, answer
    jobs = []
    for index in (1, 2):
        uids.append(push_visit(stack, tmp_path, case, index))
        jobs.append(stack.wait_job(uids[-1], timeout_s=300))
        assert jobs[-1]["state"] == "done", jobs[-1]["error"]
    status, timeline = stack.get(f"/oncoflow/patients/{case.patient_id}/timeline")
    assert status == 200
    return {"case": case, "uids": uids, "jobs": jobs, "timeline": timeline["time_points"], "dir": tmp_path}


def test_report_is_a_valid_encapsulated_pdf_served_byte_for_byte(stack: Stack, reported_patient: dict[str, Any]
                                                                  ) -> None:
    follow_up_uid = reported_patient["uids"][2]
    report = reported_patient["jobs"][1]["outputs"]["longitudinal"]["report"]
    assert "error" not in report, report
    (document,) = oncoflow_objects(stack, follow_up_uid, "DOC")
    assert document.SOPClassUID == EncapsulatedPDFStorage
    assert document.SOPInstanceUID == report["report_sop_instance_uid"]
    assert document.StudyInstanceUID == follow_up_uid
    (sr,) = oncoflow_objects(stack, follow_up_uid, "SR")
    segs = {s.SOPInstanceUID for s in oncoflow_objects(stack, follow_up_uid, "SEG")}
    sources = {r.ReferencedSOPInstanceUID for r in document.SourceInstanceSequence}
    assert sr.SOPInstanceUID in sources and sources - {sr.SOPInstanceUID} <= segs and len(sources) == 2
    path = reported_patient["dir"] / "report.dcm"
    document.save_as(path, enforce_file_format=True)
    assert "Error" not in subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True).stderr
    status, (served, kind) = request(stack, "GET", f"/oncoflow/reports/{document.SOPInstanceUID}.pdf")
    assert status == 200 and kind.startswith("application/pdf")
    assert served == read_encapsulated_pdf(document)
    assert request(stack, "GET", f"/oncoflow/reports/{sr.SOPInstanceUID}.pdf")[0] == 404  # an SR is no report
    assert request(stack, "GET", "/oncoflow/reports/1.2.3.4.pdf")[0] == 404
    # each time point keeps one report: the first follow-up's was not duplicated by the later visit
    assert len(oncoflow_objects(stack, reported_patient["uids"][1], "DOC")) == 1
    assert oncoflow_objects(stack, reported_patient["uids"][0], "DOC")  # the baseline has its own (no change)
    assert reported_patient["timeline"][2]["report_sop_instance_uid"] == document.SOPInstanceUID


def test_follow_up_objects_are_as_the_conformance_statement_says(stack: Stack, reported_patient: dict[str, Any]
                                                                 ) -> None:
    """docs/dicom-conformance.md sections 6.1 and 6.2 against the first follow-up's objects read back from the PACS:
    each object's SOP class, Modality and SeriesNumber are a row of 6.1; every code in them is a row of 6.2."""
    produced = table_after("### 6.1")
    stated_codes = {(row["scheme"], row["code"]) for row in table_after("### 6.2")}

    def stated_row(ds: pydicom.Dataset) -> dict[str, str] | None:
        for row in produced:
            low, _, plus = row["seriesnumber"].partition(" + ")
            numbers = range(int(low), int(low) + (49 if plus else 1))
            if (row["uid"], row["modality"]) == (ds.SOPClassUID, ds.Modality) and int(ds.SeriesNumber) in numbers:
                return row
        return None

    objects = [ds for modality in ("SEG", "SR", "REG", "DOC")
               for ds in oncoflow_objects(stack, reported_patient["uids"][1], modality)]
    assert {ds.Modality for ds in objects} == {"SEG", "SR", "REG", "DOC"}
    found_codes: set[tuple[str, str]] = set()
    for ds in objects:
        assert stated_row(ds) is not None, (ds.Modality, ds.SeriesNumber, ds.SOPClassUID)
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
        assert ds.SpecificCharacterSet == "ISO_IR 192" and ds.Manufacturer == "OncoFlow"
        found_codes |= coded_concepts(ds)
    assert found_codes - stated_codes == set(), "codes in the objects that the statement does not list"
    assert len(found_codes) >= 20


def test_report_signature_verifies_and_tampering_fails(stack: Stack, reported_patient: dict[str, Any]) -> None:
    uid = reported_patient["jobs"][1]["outputs"]["longitudinal"]["report"]["report_sop_instance_uid"]
    _, (pdf, _) = request(stack, "GET", f"/oncoflow/reports/{uid}.pdf")
    good = reported_patient["dir"] / "signed.pdf"
    good.write_bytes(pdf)
    verdict = pdfsig(good)
    assert "Signature is Valid" in verdict, verdict
    assert "OncoFlow report signer" in verdict, verdict
    roots = x509.load_pem_x509_certificates(stack.settings.signing_paths[2].read_bytes())
    check = check_signed_pdf(pdf, roots)
    assert check.ok, check.problems
    text_at = pdf.find(b"stream", pdf.find(b"/FlateDecode"))
    assert text_at > 0
    tampered = bytearray(pdf)
    tampered[text_at + 20] ^= 0x01
    bad = reported_patient["dir"] / "tampered.pdf"
    bad.write_bytes(bytes(tampered))
    assert "Signature is Valid" not in pdfsig(bad)
    assert not check_signed_pdf(bytes(tampered), roots).ok
    cli = [sys.executable, "-m", "oncoflow.services.cli", "verify-report"]
    env = {**os.environ, **stack.env}
    verified = subprocess.run([*cli, str(good)], capture_output=True, text=True, env=env)
    assert verified.returncode == 0 and "signature OK" in verified.stdout, verified.stdout + verified.stderr
    refused = subprocess.run([*cli, str(bad)], capture_output=True, text=True, env=env)
    assert refused.returncode == 1 and "NOT OK" in refused.stdout, refused.stdout + refused.stderr


def test_report_shows_the_sr_numbers_and_no_phi(stack: Stack, reported_patient: dict[str, Any]) -> None:
    case, uids = reported_patient["case"], reported_patient["uids"]
    uid = reported_patient["jobs"][1]["outputs"]["longitudinal"]["report"]["report_sop_instance_uid"]
    _, (pdf, _) = request(stack, "GET", f"/oncoflow/reports/{uid}.pdf")
    path = reported_patient["dir"] / "report.pdf"
    path.write_bytes(pdf)
    text = pdftotext(path)
    (sr,) = oncoflow_objects(stack, uids[2], "SR")
    measured = read_measurement_report(sr)
    assert f"{measured['volume_prior_cm3']:.2f}" in text and f"{measured['volume_cm3']:.2f}" in text, text
    assert f"{measured['percent_change']:+.1f}%" in text
    assert measured["flag"] in text
    # the regions the SR holds, each with its volume, and the one measured
    assert measured["region_volumes_cm3"] and measured["region"] in measured["region_volumes_cm3"], measured
    regions_table = " ".join(text.split("Tumour regions, this study", 1)[1].split())
    for region, volume in measured["region_volumes_cm3"].items():
        assert re.search(rf"\({region}\) {volume:.2f}", regions_table), (region, volume, regions_table)
    # the demo models segment the tumour core only, so the default region (ET) falls back to TC
    assert measured["region"] == "TC" and "measured on the tumour core (TC)" in regions_table
    for point in case.time_points:
        assert point.study_date.isoformat() in text
    assert re.search(r"OF-[A-Z2-7]{4}-[A-Z2-7]{4}", text)
    assert case.patient_id not in text and "Phantom" not in text and "Longitudinal" not in text
    assert "glioblastoma" in text.lower() or "temozolomide" in text.lower()  # retrieved from the notes
    assert "pathology.pdf" in text or "clinic.txt" in text
    for expert in reported_patient["jobs"][1]["outputs"]["panel"]["ran"]:
        assert expert in text
    assert "Electronically signed by" in text
    # lesion by lesion (when the timeline tracked them): each lesion and the suggested response, as stored
    current = reported_patient["timeline"][2]
    for lesion in current.get("lesions") or ():
        assert lesion["tracking_id"] in text, lesion
    if current.get("response"):
        flat = " ".join(text.split())
        response = current["response"]
        assert f"Suggested response: {response['label']}" in flat and f"Criteria: {response['criteria']}." in flat
        assert response["target_sum"] is None or f"{response['target_sum']:.2f}" in flat
        assert flat.index("Suggested response") < flat.index("Clinical summary")
    summary = text.split("Clinical summary", 1)[1].split("Summary ", 1)[0]
    assert re.search(r"\d", summary), summary
    # every number of the summary is one the timeline holds (findings rebuilt here from the timeline route)
    assert unsupported_numbers(" ".join(summary.split()), findings_from_timeline(reported_patient)) == []


def findings_from_timeline(reported_patient: dict[str, Any]) -> ClinicalFindings:
    """The follow-up's findings as the timeline route gives them."""
    points = reported_patient["timeline"]
    current = points[2]
    comparison = current["comparison"]
    baseline = next(p for p in points if p["study_instance_uid"] == comparison["baseline_study_instance_uid"])
    ci = comparison["percent_change_ci95"]
    outputs = reported_patient["jobs"][1]["outputs"]
    return ClinicalFindings(
        time_points=tuple(TimePointFinding(date.fromisoformat(p["study_date"]), p["measurements"]["volume_cm3"],
                                           None if not p["measurements"]["volume_ci95_cm3"]
                                           else tuple(p["measurements"]["volume_ci95_cm3"]),
                                           p["measurements"]["longest_axial_diameter_mm"]) for p in points),
        change=ChangeFinding(date.fromisoformat(baseline["study_date"]), date.fromisoformat(current["study_date"]),
                             comparison["days_between"], comparison["volume_baseline_cm3"],
                             comparison["volume_follow_up_cm3"], comparison["delta_cm3"],
                             comparison["percent_change"], None if ci is None else tuple(ci), comparison["dice"],
                             comparison["hd95_mm"], comparison["growth_rate_cm3_per_day"], comparison["flag"],
                             comparison["flag_reason"]),
        experts_ran=tuple(outputs["panel"]["ran"]),
        agreement_score=outputs["fusion"]["agreement_score"],
        agreement_flag=outputs["fusion"]["flag"],
    )


def test_report_pages_render_with_the_overlay(stack: Stack, reported_patient: dict[str, Any]) -> None:
    uid = reported_patient["jobs"][1]["outputs"]["longitudinal"]["report"]["report_sop_instance_uid"]
    _, (pdf, _) = request(stack, "GET", f"/oncoflow/reports/{uid}.pdf")
    path = reported_patient["dir"] / "render.pdf"
    path.write_bytes(pdf)
    prefix = reported_patient["dir"] / "page"
    subprocess.run(["pdftoppm", "-png", "-r", "60", str(path), str(prefix)], check=True)
    pages = sorted(reported_patient["dir"].glob("page-*.png"))
    lesions = reported_patient["timeline"][2].get("lesions")
    # the lesions (when the timeline tracked them) flow on from page 1: a page more, or none when page 1 holds them
    assert len(pages) in ((3, 4) if lesions is not None else (3,)), pages

    def page_with(words: str) -> int:
        return next(k for k in range(1, len(pages) + 1) if words in subprocess.run(
            ["pdftotext", "-f", str(k), "-l", str(k), str(path), "-"], capture_output=True, text=True,
            check=True).stdout)

    artifacts = Path(stack.settings.home) / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    for page in pages:
        shutil.copy(page, artifacts / f"report-{page.name}")
    overlay_page = np.asarray(Image.open(pages[page_with("Segmentation overlays") - 1]).convert("RGB")).astype(int)
    red = (overlay_page[..., 0] > 180) & (overlay_page[..., 1] < 110) & (overlay_page[..., 2] < 110)
    assert red.sum() > 50, red.sum()  # the fused mask drawn over both time points
    if lesions:  # the lesion view (read at 150 dpi): the mask's outline, and the long axis in cyan
        page = str(page_with("Lesion views"))
        subprocess.run(["pdftoppm", "-png", "-r", "150", "-f", page, "-l", page, str(path),
                        str(reported_patient["dir"] / "lesions")], check=True)
        (rendered,) = reported_patient["dir"].glob("lesions-*.png")
        lesion_page = np.asarray(Image.open(rendered).convert("RGB")).astype(int)
        r, g, b = lesion_page[..., 0], lesion_page[..., 1], lesion_page[..., 2]
        assert ((r > 180) & (g < 110) & (b < 110)).sum() > 10
        if any(view.long_axis_lps_mm for view in lesion_views(reported_patient["timeline"][2])):
            assert ((r < 90) & (g > 170) & (b > 190)).sum() > 5
    first_page = np.asarray(Image.open(pages[0]).convert("L"))
    assert (first_page < 128).mean() > 0.01  # text on the first page


def test_notes_routes_refuse_bad_uploads_and_keep_patients_apart(stack: Stack, reported_patient: dict[str, Any],
                                                                 tmp_path: Path) -> None:
    case = reported_patient["case"]
    other = make_longitudinal_case(5151, 2, shape=GRID["shape"])
    assert stack.wait_job(push_visit(stack, tmp_path, other, 0), timeout_s=300)["state"] == "done"
    assert upload(stack, other.patient_id, "other.txt", OTHER_PATIENT.encode(), "text/plain")[0] == 200
    before = request(stack, "GET", f"/oncoflow/patients/{case.patient_id}/documents")[1]["documents"]
    assert {d["filename"] for d in before} == {"pathology.pdf", "clinic.txt"}
    bad = [
        ("../../etc/passwd.txt", b"text", "text/plain"),
        ("note.pdf", b"MZ\x90\x00 not a pdf", "application/pdf"),
        ("note.txt", b"   \n\t ", "text/plain"),
        ("note.exe", b"MZ", "application/octet-stream"),
        ("", b"text", "text/plain"),
    ]
    for name, data, kind in bad:
        status, answer = upload(stack, case.patient_id, name, data, kind)
        assert 400 <= status < 500 and answer["error"], (name, status, answer)
    assert request(stack, "GET", f"/oncoflow/patients/{case.patient_id}/documents")[1]["documents"] == before
    assert upload(stack, "NO-SUCH-PATIENT", "n.txt", b"text", "text/plain")[0] == 404
    query = "meningioma olfactory groove radiosurgery"  # the other patient's words
    status, found = request(stack, "GET", f"/oncoflow/patients/{case.patient_id}/documents/search?q="
                            + urllib.request.quote(query) + "&k=20")
    assert status == 200 and found["passages"]
    assert all(p["filename"] in ("pathology.pdf", "clinic.txt") for p in found["passages"])
    assert all("eningioma" not in p["text"] for p in found["passages"])
    # erasing the other patient's notes leaves this patient's alone
    assert request(stack, "DELETE", f"/oncoflow/patients/{other.patient_id}/documents")[1]["erased_documents"] == 1
    status, found = request(stack, "GET", f"/oncoflow/patients/{other.patient_id}/documents/search?q=meningioma&k=5")
    assert status == 200 and found["passages"] == []
    assert len(request(stack, "GET", f"/oncoflow/patients/{case.patient_id}/documents")[1]["documents"]) == 2


def test_report_again_picks_up_new_notes(stack: Stack, reported_patient: dict[str, Any]) -> None:
    case, uids = reported_patient["case"], reported_patient["uids"]
    old = {d.SOPInstanceUID for d in oncoflow_objects(stack, uids[1], "DOC")}
    assert upload(stack, case.patient_id, "tumour-board.txt",
                  b"Tumour board: continue adjuvant temozolomide; repeat MRI after the next cycle.", "text/plain")[0] \
        == 200
    status, answer = request(stack, "POST", f"/oncoflow/studies/{uids[1]}/report", b"")
    assert status == 200, answer
    (document,) = oncoflow_objects(stack, uids[1], "DOC")
    assert document.SOPInstanceUID == answer["report_sop_instance_uid"] and document.SOPInstanceUID not in old
    assert request(stack, "POST", "/oncoflow/studies/1.2.3/report", b"")[0] == 404


def test_reanalyse_runs_the_whole_pipeline_again_without_duplicates(stack: Stack,
                                                                    reported_patient: dict[str, Any]) -> None:
    uid = reported_patient["uids"][1]
    before = {modality: len(oncoflow_objects(stack, uid, modality)) for modality in ("SEG", "SR", "DOC")}
    previous = stack.job(uid)
    assert previous is not None
    status, answer = request(stack, "POST", f"/oncoflow/studies/{uid}/reanalyse", b"")
    assert status == 202 and answer["job_id"] > previous["job_id"], answer
    job = stack.wait_job(uid, timeout_s=300, min_job_id=answer["job_id"])
    assert job["state"] == "done" and job["trigger"] == "reanalyse", job
    assert "inference" in job["timings_s"] and "longitudinal" in job["timings_s"]  # not discarded as unchanged
    assert {modality: len(oncoflow_objects(stack, uid, modality)) for modality in ("SEG", "SR", "DOC")} == before
    assert request(stack, "POST", "/oncoflow/studies/1.2.3/reanalyse", b"")[0] == 404


def test_audit_log_records_the_activity_without_phi(stack: Stack, reported_patient: dict[str, Any]) -> None:
    status, answer = request(stack, "GET", "/oncoflow/audit?limit=1000")
    assert status == 200
    records = answer["records"]
    actions = {(r["action"], r["outcome"]) for r in records}
    for expected in [("study.analyse", "success"), ("report.create", "success"), ("report.read", "success"),
                     ("notes.upload", "success"), ("notes.upload", "refused"), ("report.read", "refused")]:
        assert expected in actions, (expected, sorted(actions))
    case = reported_patient["case"]
    text = json.dumps(records)
    assert case.patient_id not in text and "Phantom" not in text and "Longitudinal" not in text
    uploads = [r for r in records if r["action"] == "notes.upload"]
    assert all(r["resource_uid"].startswith("pt-") for r in uploads)
    assert [r["id"] for r in records] == list(range(records[0]["id"], records[0]["id"] + len(records)))
    verified = subprocess.run([sys.executable, "-m", "oncoflow.services.cli", "audit", "verify"], capture_output=True,
                              text=True, env={**os.environ, **stack.env})
    assert verified.returncode == 0 and "ok:" in verified.stdout, verified.stdout + verified.stderr
    assert request(stack, "GET", "/oncoflow/audit?limit=0")[0] == 400

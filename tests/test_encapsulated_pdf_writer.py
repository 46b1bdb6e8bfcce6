"""The Encapsulated PDF: valid by dciodvfy, in the source study, and the PDF reads back byte for byte."""

from __future__ import annotations

import subprocess
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import EncapsulatedPDFStorage, generate_uid
from reportlab.pdfgen.canvas import Canvas

from oncoflow.dicom.encapsulated_pdf_writer import (
    REPORT_SERIES_NUMBER,
    NotAnEncapsulatedPdf,
    read_encapsulated_pdf,
    write_encapsulated_pdf,
)
from oncoflow.phantoms.phantom_dicom import SeriesInfo, StudyInfo, series_datasets

from .conftest import axial_volume


def a_pdf(text: str) -> bytes:
    buffer = BytesIO()
    canvas = Canvas(buffer)
    canvas.drawString(72, 720, text)
    canvas.save()
    return buffer.getvalue()


@pytest.mark.parametrize("odd", [False, True])
def test_encapsulated_pdf_round_trip_and_validity(tmp_path: Path, odd: bool) -> None:
    info = StudyInfo(patient_id="P7", study_instance_uid=generate_uid())
    images = series_datasets(axial_volume(np.zeros((3, 8, 8), np.float32)), info, SeriesInfo(generate_uid()))
    pdf = a_pdf("OncoFlow report")
    pdf = pdf + b"\n" if (len(pdf) % 2 == 0) == odd else pdf  # both paddings
    ds = write_encapsulated_pdf(pdf, images[0], images[:2], "OncoFlow MRI follow-up report", "fp-1")
    path = tmp_path / "report.dcm"
    ds.save_as(path, enforce_file_format=True)
    again = pydicom.dcmread(path)
    assert again.SOPClassUID == EncapsulatedPDFStorage and again.Modality == "DOC"
    assert again.StudyInstanceUID == images[0].StudyInstanceUID and again.PatientID == "P7"
    assert again.SeriesNumber == REPORT_SERIES_NUMBER
    assert [r.ReferencedSOPInstanceUID for r in again.SourceInstanceSequence] == [
        images[0].SOPInstanceUID, images[1].SOPInstanceUID]
    assert len(again.EncapsulatedDocument) % 2 == 0
    assert read_encapsulated_pdf(again) == pdf
    # one UID, one content: the same document again keeps its UID, any other document or title gets a new one
    title = "OncoFlow MRI follow-up report"
    assert write_encapsulated_pdf(pdf, images[0], images[:2], title, "fp-1").SOPInstanceUID == ds.SOPInstanceUID
    others = {write_encapsulated_pdf(pdf, images[0], images[:2], "t", "fp-1").SOPInstanceUID,
              write_encapsulated_pdf(a_pdf("another report"), images[0], images[:2], title, "fp-1").SOPInstanceUID,
              write_encapsulated_pdf(pdf, images[0], images[:1], title, "fp-1").SOPInstanceUID}
    assert len(others) == 3 and ds.SOPInstanceUID not in others
    report = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True).stderr
    assert "Error" not in report, report


def test_refuses_what_is_not_a_pdf() -> None:
    info = StudyInfo(patient_id="P7", study_instance_uid=generate_uid())
    image = series_datasets(axial_volume(np.zeros((2, 4, 4), np.float32)), info, SeriesInfo(generate_uid()))[0]
    with pytest.raises(NotAnEncapsulatedPdf):
        write_encapsulated_pdf(b"MZ\x90\x00", image, [], "t", "fp")
    with pytest.raises(NotAnEncapsulatedPdf):
        read_encapsulated_pdf(image)

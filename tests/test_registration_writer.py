"""The Spatial Registration object: valid by dciodvfy, and it reads back to the matrix written."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import generate_uid

from oncoflow.dicom.registration_writer import read_spatial_registration, write_spatial_registration
from oncoflow.phantoms.phantom_dicom import SeriesInfo, StudyInfo, series_datasets

from .conftest import axial_volume, required_tool


def images(study: str, patient: str = "P1") -> list[pydicom.Dataset]:
    info = StudyInfo(patient_id=patient, study_instance_uid=generate_uid(entropy_srcs=[study]))
    return series_datasets(axial_volume(np.zeros((3, 8, 8), np.float32)), info, SeriesInfo(generate_uid()))


def test_spatial_registration_round_trip_and_validity(tmp_path: Path) -> None:
    baseline, follow_up = images("a"), images("b")
    matrix = np.array([[0.99, -0.05, 0.01, 3.5], [0.05, 0.99, 0.0, -7.25], [0.0, 0.0, 1.02, 11.0], [0, 0, 0, 1]])
    reg = write_spatial_registration(baseline, follow_up, matrix, "elastix", "fp")
    path = tmp_path / "reg.dcm"
    reg.save_as(path, enforce_file_format=True)
    again = pydicom.dcmread(path)
    assert np.allclose(read_spatial_registration(again), matrix, atol=1e-9)
    assert again.StudyInstanceUID == follow_up[0].StudyInstanceUID and again.Modality == "REG"
    assert again.FrameOfReferenceUID == baseline[0].FrameOfReferenceUID
    assert again.RegistrationSequence[1].FrameOfReferenceUID == follow_up[0].FrameOfReferenceUID
    assert write_spatial_registration(baseline, follow_up, matrix, "elastix", "fp").SOPInstanceUID == reg.SOPInstanceUID
    report = subprocess.run([required_tool("dciodvfy"), str(path)], capture_output=True, text=True).stderr
    assert "Error" not in report, report

"""DICOM de-identification (PS3.15 Annex E basic profile): no PHI leaves, geometry stays, results map back."""

from __future__ import annotations

import datetime
import stat
import subprocess
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from oncoflow.dicom.seg_writer import AlgorithmInfo, read_segmentation_mask, write_segmentation
from oncoflow.dicom.volume_builder import build_volume
from oncoflow.phantoms.phantom_dicom import SeriesInfo, StudyInfo, series_datasets
from oncoflow.security.dicom_deidentification import (
    DeidentificationError,
    ReidentificationMap,
    deidentify,
    reidentify_references,
)
from tests.conftest import axial_volume

from .conftest import required_tool

KEY = b"0123456789abcdef-test-key"
STUDY = StudyInfo(
    patient_id="MRN-778899", patient_name="Kowalski^Anna^Maria", patient_birth_date="19580412",
    patient_sex="F", study_date="20250310", study_time="091500", study_id="S7731",
    accession_number="ACC-55512", study_description="MRI BRAIN WITH AND WITHOUT CONTRAST",
)
# attribute keyword -> PHI value written into every slice
PHI_ATTRIBUTES = {
    "InstitutionName": "Saint Elsewhere Hospital",
    "InstitutionAddress": "12 Harbour Road, Springfield",
    "InstitutionalDepartmentName": "Neuroradiology West",
    "ReferringPhysicianName": "Referrer^Rebecca",
    "PerformingPhysicianName": "Performer^Paul",
    "OperatorsName": "Operator^Olga",
    "NameOfPhysiciansReadingStudy": "Reader^Rudolf",
    "RequestingPhysician": "Requester^Quentin",
    "StationName": "MRSTATION7",
    "DeviceSerialNumber": "SN-4455667",
    "PatientAddress": "7 Elm Street, Gotham",
    "PatientTelephoneNumbers": "555-0199-321",
    "EthnicGroup": "Martian",
    "Occupation": "Lighthouse keep",
    "AdditionalPatientHistory": "seizures, lives with sister Berta",
    "PatientComments": "allergic to penicillin",
    "MedicalRecordLocator": "LOC-9911",
    "OtherPatientIDs": "OLDMRN-111",
    "OtherPatientNames": "Nowak^Anna",
    "ImageComments": "scanned late by Olga",
    "InstanceCreationDate": "20250310",
    "AcquisitionDate": "20250310",
    "AcquisitionDateTime": "20250310091744.000000",
}
PHI_STRINGS = [
    STUDY.patient_id, "Kowalski", STUDY.patient_birth_date, STUDY.study_date, STUDY.accession_number,
    STUDY.study_id, "Saint Elsewhere", "Harbour Road", "Neuroradiology West", "Referrer", "Performer",
    "Operator^Olga", "Reader^Rudolf", "Requester", "MRSTATION7", "SN-4455667", "Elm Street", "555-0199",
    "Martian", "Lighthouse", "sister Berta", "penicillin", "LOC-9911", "OLDMRN-111", "Nowak", "late by Olga",
    "INS-222333", "InsureCo", "RP-8812", "SPS-9913", "ACME-SECRET", "overlay of Anna", "curve of Anna",
]


def phi_series(study: StudyInfo = STUDY, series_uid: str | None = None, slices: int = 6) -> list[Dataset]:
    """A phantom T1c series with PHI in every attribute the profile must handle."""
    voxels = np.random.default_rng(1).uniform(0, 1000, (slices, 16, 20))
    datasets = series_datasets(axial_volume(voxels), study, SeriesInfo(series_uid or generate_uid()),
                               rescale_slope=0.5)
    for ds in datasets:
        for keyword, value in PHI_ATTRIBUTES.items():
            setattr(ds, keyword, value)
        ds.PatientAge = "067Y"
        ds.PatientWeight = "71"
        other = Dataset()
        other.PatientID = "INS-222333"
        other.IssuerOfPatientID = "InsureCo"
        ds.OtherPatientIDsSequence = [other]
        request = Dataset()
        request.RequestedProcedureID = "RP-8812"
        request.ScheduledProcedureStepID = "SPS-9913"
        ds.RequestAttributesSequence = [request]
        reference = Dataset()
        reference.ReferencedSOPClassUID = datasets[0].SOPClassUID
        reference.ReferencedSOPInstanceUID = datasets[0].SOPInstanceUID
        ds.ReferencedImageSequence = [reference]
        block = ds.private_block(0x0029, "ACME 1.0", create=True)
        block.add_new(0x10, "LO", "ACME-SECRET-MRN-778899")
        ds.add_new(0x60000022, "LO", "overlay of Anna")  # OverlayDescription
        ds.add_new(0x50002500, "LO", "curve of Anna")  # CurveLabel
    return datasets


def to_bytes(ds: Dataset) -> bytes:
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def original_uids(datasets: list[Dataset]) -> set[str]:
    uids = {ds.SOPInstanceUID for ds in datasets}
    first = datasets[0]
    return uids | {first.StudyInstanceUID, first.SeriesInstanceUID, first.FrameOfReferenceUID}


@pytest.fixture()
def mapping(tmp_path: Path) -> ReidentificationMap:
    return ReidentificationMap(tmp_path / "home" / "deid" / "map.sqlite", KEY)


def test_no_phi_string_or_original_uid_survives(mapping: ReidentificationMap) -> None:
    source = phi_series()
    deidentified = [deidentify(ds, mapping) for ds in source]
    forbidden = PHI_STRINGS + sorted(original_uids(source))
    for ds in deidentified:
        raw = to_bytes(ds)
        leaked = [text for text in forbidden if text.encode() in raw]
        assert not leaked, leaked
        assert not any(element.tag.is_private for element in ds)
        assert not any(0x5000 <= element.tag.group <= 0x60FF for element in ds)
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
        codes = {item.CodeValue for item in ds.DeidentificationMethodCodeSequence}
        assert {"113100", "113107"} <= codes
        assert ds.PatientBirthDate == "" and ds.AccessionNumber == "" and ds.StudyID == ""
        assert ds.PatientSex == "F" and ds.PatientAge == "067Y"  # Retain Patient Characteristics
        assert ds.SeriesDescription == "T1 MPRAGE post-contrast"  # clean: kept for series selection
        assert ds.StudyDescription == STUDY.study_description
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID


def test_input_is_not_mutated(mapping: ReidentificationMap) -> None:
    source = phi_series(slices=2)
    before = to_bytes(source[0])
    deidentify(source[0], mapping)
    assert to_bytes(source[0]) == before


def test_uids_and_pseudonym_consistent_across_the_series(mapping: ReidentificationMap) -> None:
    source = phi_series()
    deidentified = [deidentify(ds, mapping) for ds in source]
    assert len({ds.StudyInstanceUID for ds in deidentified}) == 1
    assert len({ds.SeriesInstanceUID for ds in deidentified}) == 1
    assert len({ds.FrameOfReferenceUID for ds in deidentified}) == 1
    assert len({ds.SOPInstanceUID for ds in deidentified}) == len(source)
    assert len({str(ds.PatientID) for ds in deidentified}) == 1
    assert str(deidentified[0].PatientID).startswith("OF-")
    # the nested reference points at the de-identified first image
    assert all(ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID == deidentified[0].SOPInstanceUID
               for ds in deidentified)
    assert all(ds.SOPInstanceUID.startswith("2.25.") for ds in deidentified)
    # a second map with the same key (a restart) gives the same replacements
    again = ReidentificationMap(mapping.path, KEY)
    assert deidentify(source[0], again).StudyInstanceUID == deidentified[0].StudyInstanceUID
    assert again.original_uid(deidentified[0].SeriesInstanceUID) == source[0].SeriesInstanceUID


def test_geometry_and_pixels_identical_and_volume_builds(mapping: ReidentificationMap) -> None:
    source = phi_series()
    deidentified = [deidentify(ds, mapping) for ds in reversed(source)]  # arrival order must not matter
    by_position = {tuple(ds.ImagePositionPatient): ds for ds in source}
    geometry = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness",
                "SpacingBetweenSlices", "Rows", "Columns", "RescaleSlope", "RescaleIntercept", "PixelData")
    for ds in deidentified:
        original = by_position[tuple(ds.ImagePositionPatient)]
        for keyword in geometry:
            assert ds[keyword].value == original[keyword].value, keyword
    built, reference = build_volume(deidentified, 10**7), build_volume(source, 10**7)
    np.testing.assert_array_equal(built.volume.voxels, reference.volume.voxels)
    assert built.volume.spacing_mm == reference.volume.spacing_mm
    assert built.volume.origin_mm == reference.volume.origin_mm


def test_date_intervals_kept_and_patients_distinct(mapping: ReidentificationMap) -> None:
    first = deidentify(phi_series(slices=1)[0], mapping)
    later_study = StudyInfo(patient_id=STUDY.patient_id, patient_name=STUDY.patient_name, study_date="20250915",
                            accession_number="ACC-2")
    later = deidentify(phi_series(later_study, slices=1)[0], mapping)

    def day(value: str) -> datetime.date:
        return datetime.datetime.strptime(value[:8], "%Y%m%d").date()

    assert (day(later.StudyDate) - day(first.StudyDate)).days == 189
    shift = (day(first.StudyDate) - datetime.date(2025, 3, 10)).days
    assert shift == mapping.date_shift_days(STUDY.patient_id) and -365 <= shift <= -1
    assert day(first.AcquisitionDateTime) == day(first.StudyDate)
    assert first.AcquisitionDateTime.endswith("091744.000000")  # times are kept
    assert first.StudyTime == STUDY.study_time
    assert later.PatientID == first.PatientID and later.StudyInstanceUID != first.StudyInstanceUID

    others = [f"MRN-{n}" for n in range(20)]
    assert len({mapping.patient(p) for p in others}) == 20
    assert len({mapping.date_shift_days(p) for p in others}) > 10
    other_ds = deidentify(phi_series(StudyInfo(patient_id="MRN-1", patient_name="Other^Olaf"), slices=1)[0],
                          mapping)
    assert other_ds.PatientID != first.PatientID
    assert mapping.original_patient(str(first.PatientID)) == STUDY.patient_id


def test_dirty_descriptors_are_removed(mapping: ReidentificationMap) -> None:
    ds = phi_series(slices=1)[0]
    ds.SeriesDescription = "T1 post Kowalski"
    ds.ProtocolName = "T1 20250310"
    ds.ContrastBolusAgent = "Gadobutrol 7.5 ml"
    out = deidentify(ds, mapping)
    assert "SeriesDescription" not in out and "ProtocolName" not in out
    assert out.ContrastBolusAgent == "Gadobutrol 7.5 ml"


def test_age_over_89_is_capped_and_burned_in_refused(mapping: ReidentificationMap) -> None:
    ds = phi_series(slices=1)[0]
    ds.PatientAge = "097Y"
    assert deidentify(ds, mapping).PatientAge == "090Y"
    ds.BurnedInAnnotation = "YES"
    with pytest.raises(DeidentificationError):
        deidentify(ds, mapping)


def test_seg_on_deidentified_images_maps_back(mapping: ReidentificationMap) -> None:
    source = phi_series()
    deidentified = [deidentify(ds, mapping) for ds in source]
    mask = np.zeros((len(source), 16, 20), np.uint8)
    mask[2:4, 5:9, 6:12] = 1
    seg = write_segmentation(deidentified, mask, AlgorithmInfo("remote_worker", "1"), fingerprint="remote")
    assert STUDY.patient_id.encode() not in to_bytes(seg)
    back = reidentify_references(seg, mapping)
    first = source[0]
    assert back.StudyInstanceUID == first.StudyInstanceUID
    assert back.FrameOfReferenceUID == first.FrameOfReferenceUID
    assert back.PatientID == STUDY.patient_id and str(back.PatientName) == STUDY.patient_name
    assert back.StudyDate == STUDY.study_date
    assert "PatientIdentityRemoved" not in back
    referenced = back.ReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == first.SeriesInstanceUID
    assert {i.ReferencedSOPInstanceUID for i in referenced.ReferencedInstanceSequence} == {
        ds.SOPInstanceUID for ds in source}
    by_uid = {ds.SOPInstanceUID: ds for ds in source}
    for frame in back.PerFrameFunctionalGroupsSequence:  # each frame's source is the original at its position
        uid = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        position = frame.PlanePositionSequence[0].ImagePositionPatient
        assert uid in by_uid and by_uid[uid].ImagePositionPatient == position
    assert back.SOPInstanceUID == seg.SOPInstanceUID  # the result's own UID is not a replacement
    np.testing.assert_array_equal(read_segmentation_mask(back, [ds.SOPInstanceUID for ds in source]), mask)


def test_map_file_is_private_and_holds_the_originals(mapping: ReidentificationMap) -> None:
    source = phi_series(slices=2)
    out = deidentify(source[0], mapping)
    assert stat.S_IMODE(mapping.path.stat().st_mode) == 0o600
    stored = mapping.path.read_bytes()
    assert STUDY.patient_id.encode() in stored and source[0].StudyInstanceUID.encode() in stored
    assert STUDY.patient_id.encode() not in to_bytes(out)
    with pytest.raises(ValueError):
        ReidentificationMap(mapping.path, b"short")


def test_real_mr_file(mapping: ReidentificationMap) -> None:
    original = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    out = deidentify(original, mapping)
    raw = to_bytes(out)
    for text in ("CompressedSamples", "4MR1", "TOSHIBA^", "CLUNIE1", "-0000200", original.StudyInstanceUID,
                 original.SOPInstanceUID, original.FrameOfReferenceUID, original.InstanceCreatorUID):
        assert text.encode() not in raw, text
    assert "InstitutionName" not in out and out.Manufacturer == "TOSHIBA_MEC"
    assert out.ImagePositionPatient == original.ImagePositionPatient
    assert out.PixelData == original.PixelData
    assert mapping.original_uid(out.SeriesInstanceUID) == original.SeriesInstanceUID


def dciodvfy_errors(ds: Dataset, path: Path) -> set[str]:
    ds.save_as(path, enforce_file_format=True)
    report = subprocess.run([required_tool("dciodvfy"), str(path)], capture_output=True, text=True, timeout=60).stderr
    return {line.strip() for line in report.splitlines() if "Error" in line or "Person Name form" in line}


def test_dciodvfy_finds_no_new_error(mapping: ReidentificationMap, tmp_path: Path) -> None:
    phantom = series_datasets(axial_volume(np.ones((2, 8, 8))), STUDY, SeriesInfo(generate_uid()))[0]
    for keyword in ("InstitutionName", "ReferringPhysicianName", "OperatorsName", "StationName", "DeviceSerialNumber"):
        setattr(phantom, keyword, PHI_ATTRIBUTES[keyword])
    for name, ds in (("phantom", phantom), ("mr_small", pydicom.dcmread(get_testdata_file("MR_small.dcm")))):
        before = dciodvfy_errors(ds, tmp_path / f"{name}-original.dcm")
        after = dciodvfy_errors(deidentify(ds, mapping), tmp_path / f"{name}-deidentified.dcm")
        assert after <= before, after - before
    assert not dciodvfy_errors(deidentify(phantom, mapping), tmp_path / "phantom-again.dcm")

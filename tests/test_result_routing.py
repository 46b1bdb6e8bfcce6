"""Result routing's settings, Orthanc's destination entry, which series go, and the IOCM rejection note.

The routing itself (C-STORE through Orthanc's job engine, resubmitted while the PACS is down, the rejection note
arriving) runs end to end in ``tests/test_e2e_result_routing.py``.
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from oncoflow.core.config import ConfigError, load_settings
from oncoflow.dicom.rejection_note import WithdrawnInstance, write_rejection_note
from oncoflow.pipeline.result_routing import is_routed_series
from oncoflow.services.orthanc_config import orthanc_configuration

from .conftest import required_tool

SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
PDF_CLASS = "1.2.840.10008.5.1.4.1.1.104.1"


def tls_env(tmp_path: Path) -> dict[str, str]:
    pem = [tmp_path / n for n in ("cert.pem", "key.pem", "ca.pem")]
    for path in pem:
        path.write_text("-----BEGIN-----\n")
    return {"ONCOFLOW_DICOM_TLS_CERT": str(pem[0]), "ONCOFLOW_DICOM_TLS_KEY": str(pem[1]),
            "ONCOFLOW_DICOM_TLS_TRUSTED": str(pem[2])}


def test_no_routing_by_default() -> None:
    settings = load_settings({})
    assert (settings.route_to, settings.route_objects, settings.route_retry_s) == (None, "ensemble", 3600.0)


def test_the_destination_reaches_orthanc(tmp_path: Path) -> None:
    alone = load_settings({"ONCOFLOW_ROUTE_TO": "MAINPACS@127.0.0.1:11112", "ONCOFLOW_ROUTE_OBJECTS": "all",
                           "ONCOFLOW_ROUTE_RETRY_S": "120"})
    assert (alone.route_objects, alone.route_retry_s) == ("all", 120.0)
    assert orthanc_configuration(alone)["DicomModalities"]["mainpacs"] == {
        "AET": "MAINPACS", "Host": "127.0.0.1", "Port": 11112, "AllowEcho": True, "AllowStore": False,
        "AllowFind": False, "AllowFindWorklist": False, "AllowMove": False, "AllowGet": False,
        "AllowStorageCommitment": False, "UseDicomTls": False}
    # the hospital PACS that also queries: one entry (Orthanc tells callers apart by AE title), with its rights
    both = load_settings({"ONCOFLOW_ROUTE_TO": "MAINPACS@127.0.0.1:11112",
                          "ONCOFLOW_QUERY_PEERS": "MAINPACS@127.0.0.1:11112/find+move"})
    entry = orthanc_configuration(both)["DicomModalities"]["mainpacs"]
    assert (entry["Port"], entry["AllowFind"], entry["AllowMove"], entry["AllowGet"]) == (11112, True, True, False)
    far = load_settings({**tls_env(tmp_path), "ONCOFLOW_ROUTE_TO": "MAINPACS@10.0.0.5:104"})
    assert orthanc_configuration(far)["DicomModalities"]["mainpacs"]["UseDicomTls"] is True


@pytest.mark.parametrize(("env", "message"), [
    ({"ONCOFLOW_ROUTE_TO": "MAINPACS@127.0.0.1"}, "the port is required"),
    ({"ONCOFLOW_ROUTE_TO": "MAINPACS@pacs.example.org:104"}, "must be an IP address"),
    ({"ONCOFLOW_ROUTE_TO": "127.0.0.1:104"}, "must be AET@ip:port"),
    ({"ONCOFLOW_ROUTE_TO": "MAINPACS@10.0.0.5:104"}, "needs DICOM TLS"),
    ({"ONCOFLOW_ROUTE_TO": "MAINPACS@127.0.0.1:104", "ONCOFLOW_QUERY_PEERS": "MAINPACS@127.0.0.1:105/find"},
     "another IP address or port"),
    ({"ONCOFLOW_ROUTE_TO": "WS@127.0.0.1:104", "ONCOFLOW_STORE_PEERS": "WS@127.0.0.2"}, "another IP address"),
    ({"ONCOFLOW_ROUTE_OBJECTS": "experts"}, "is not one of ensemble, all"),
    ({"ONCOFLOW_ROUTE_RETRY_S": "0"}, "ONCOFLOW_ROUTE_RETRY_S=0.0 must be at least 1.0"),
])
def test_bad_routing_settings_are_refused_at_start_up(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env)


@pytest.mark.parametrize(("tags", "ensemble", "every"), [
    ({"Modality": "SEG", "SeriesNumber": "9001", "SeriesDescription": "OncoFlow SEG ensemble (majority)"}, True, True),
    ({"Modality": "SEG", "SeriesNumber": "9002", "SeriesDescription": "OncoFlow SEG expert nnunet_demo"}, False, True),
    ({"Modality": "SEG", "SeriesNumber": "9050", "SeriesDescription": "OncoFlow SEG brain (deepbet)"}, False, True),
    ({"Modality": "SEG", "SeriesNumber": "9101", "SeriesDescription": "OncoFlow SEG refined v1 (sam2)"}, True, True),
    ({"Modality": "SR", "SeriesNumber": "9010"}, True, True),
    ({"Modality": "REG", "SeriesNumber": "9020"}, True, True),
    ({"Modality": "DOC", "SeriesNumber": "9030"}, True, True),
    ({"Modality": "KO", "SeriesNumber": "9060"}, True, True),
])
def test_which_results_go(tags: dict[str, str], ensemble: bool, every: bool) -> None:
    assert is_routed_series({**tags, "Manufacturer": "OncoFlow"}, "ensemble") is ensemble
    assert is_routed_series({**tags, "Manufacturer": "OncoFlow"}, "all") is every
    assert is_routed_series({**tags, "Manufacturer": "Scanner Co"}, "all") is False  # never the modality's images


def test_rejection_note_withdraws_exactly_the_instances(tmp_path: Path) -> None:
    study = Dataset()
    study.PatientName, study.PatientID, study.PatientBirthDate, study.PatientSex = "Müller^Jörg", "P-7", "19600101", "M"
    study.StudyInstanceUID, study.StudyDate, study.StudyTime, study.StudyID = "1.2.3.4", "20240102", "101500", "1"
    study.AccessionNumber = "ACC7"
    withdrawn = [WithdrawnInstance("1.2.3.4.10", SEG_CLASS, "1.2.3.4.10.1"),
                 WithdrawnInstance("1.2.3.4.30", PDF_CLASS, "1.2.3.4.30.1")]
    note = write_rejection_note(study, withdrawn)
    assert write_rejection_note(study, withdrawn[::-1]).SOPInstanceUID == note.SOPInstanceUID  # one content, one UID
    buffer = io.BytesIO()
    note.save_as(buffer, enforce_file_format=True)
    read = pydicom.dcmread(io.BytesIO(buffer.getvalue()))
    assert (read.SOPClassUID, read.Modality, read.Manufacturer) == ("1.2.840.10008.5.1.4.1.1.88.59", "KO", "OncoFlow")
    assert (str(read.PatientName), read.PatientID, read.StudyInstanceUID) == ("Müller^Jörg", "P-7", "1.2.3.4")
    title = read.ConceptNameCodeSequence[0]
    assert (title.CodeValue, title.CodingSchemeDesignator, title.CodeMeaning) == (
        "113001", "DCM", "Rejected for Quality Reasons")
    (evidence,) = read.CurrentRequestedProcedureEvidenceSequence
    assert evidence.StudyInstanceUID == "1.2.3.4"
    assert {(s.SeriesInstanceUID, s.ReferencedSOPSequence[0].ReferencedSOPClassUID,
             s.ReferencedSOPSequence[0].ReferencedSOPInstanceUID) for s in evidence.ReferencedSeriesSequence} == {
        ("1.2.3.4.10", SEG_CLASS, "1.2.3.4.10.1"), ("1.2.3.4.30", PDF_CLASS, "1.2.3.4.30.1")}
    patient_safety = write_rejection_note(study, withdrawn, "patient-safety")
    assert patient_safety.ConceptNameCodeSequence[0].CodeValue == "113037"
    assert patient_safety.SOPInstanceUID != note.SOPInstanceUID
    path = tmp_path / "note.dcm"  # dicom3tools' IOD check: no error
    path.write_bytes(buffer.getvalue())
    checked = subprocess.run([required_tool("dciodvfy"), str(path)], capture_output=True, text=True, timeout=60)
    assert "Error" not in checked.stdout + checked.stderr, checked.stderr

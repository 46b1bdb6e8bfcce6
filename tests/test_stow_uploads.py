"""STOW-RS uploads through OncoFlow's route: each part judged before anything parses it, the rest handed on.

The DICOMweb plug-in is stood in for by ``forward`` (it records what it was given); the checks themselves are the
real ones (the upload guard on the hostile corpus, the resent-instance comparison, the patient rule given).
"""

from __future__ import annotations

import io
import json
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset

from oncoflow.api.stow_uploads import CANNOT_UNDERSTAND, DUPLICATE_INSTANCE, NOT_AUTHORISED, StowUploads
from oncoflow.dicom.multipart import MultipartError, Part, boundary_of, build, split
from oncoflow.security.upload_guard import UploadGuard

from .conftest import unique_study
from .hostile_dicom_corpus import clean_slice, hostile_cases

OHIF_CONTENT_TYPE = 'multipart/related; type="application/dicom"; boundary="8a9f3c1e-2b4d-4e6f-a1b2-c3d4e5f6a7b8"'


def ohif_body(files: list[bytes]) -> bytes:
    """A body as OHIF 3.13.2's DICOMweb client writes it (a leading CRLF, a quoted boundary)."""
    boundary = boundary_of(OHIF_CONTENT_TYPE).encode()
    return b"".join(b"\r\n--" + boundary + b"\r\nContent-Type: application/dicom\r\n\r\n" + f for f in files) \
        + b"\r\n--" + boundary + b"--"


class Audit:
    def __init__(self) -> None:
        self.records: list[tuple[Any, ...]] = []

    def record(self, action: str, resource: str | None, outcome: str, detail: str | None = None,
               actor: str | None = None, role: str | None = None) -> None:
        self.records.append((action, resource, outcome, actor))


class Resent:
    """Stands in for the PACS: one stored UID whose content differs from anything uploaded."""

    def __init__(self, stored_uid: str) -> None:
        self.stored_uid = stored_uid

    def refusal(self, dicom: bytes) -> tuple[str, str] | None:
        uid = str(pydicom.dcmread(io.BytesIO(dicom)).SOPInstanceUID)
        return (uid, "already stored with other content") if uid == self.stored_uid else None


def part10(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def slice_of(patient_id: str) -> bytes:
    dataset = clean_slice(unique_study("stow"))
    dataset.PatientID = patient_id
    dataset.SOPInstanceUID = pydicom.uid.generate_uid()
    return part10(dataset)


@pytest.fixture
def uploads() -> tuple[StowUploads, list[list[Part]], Audit]:
    forwarded: list[list[Part]] = []
    audit = Audit()

    def forward(body: bytes, content_type: str) -> tuple[int, bytes]:
        parts = split(body, content_type)
        forwarded.append(parts)
        uids = [str(pydicom.dcmread(io.BytesIO(p.data)).SOPInstanceUID) for p in parts]
        return 200, json.dumps({"00081199": {"vr": "SQ", "Value": [{"00081155": {"vr": "UI", "Value": [u]}}
                                                                     for u in uids]}}).encode()

    def may_upload(patient_id: str) -> str | None:
        return None if patient_id == "PAT-A" else "patient not assigned"

    stow = StowUploads(UploadGuard(audit), Resent("1.2.826.0.1.3680043.8.498.77"), may_upload, forward)  # type: ignore[arg-type]
    return stow, forwarded, audit


def test_the_multipart_body_of_ohif_splits_and_rebuilds() -> None:
    files = [b"first\r\nfile", b"--not-a-boundary", b""]
    parts = split(ohif_body(files), OHIF_CONTENT_TYPE)
    assert [(p.content_type, p.data) for p in parts] == [("application/dicom", f) for f in files]
    body, content_type = build(parts)
    assert [p.data for p in split(body, content_type)] == files
    for bad_type in ("application/dicom", "multipart/related; type=application/dicom"):
        with pytest.raises(MultipartError):
            split(ohif_body(files), bad_type)
    with pytest.raises(MultipartError, match="closing delimiter"):
        split(ohif_body(files)[:-8], OHIF_CONTENT_TYPE)


def test_every_accepted_part_is_handed_on_and_the_answer_is_200(uploads: Any) -> None:
    stow, forwarded, _ = uploads
    answer = stow.store(ohif_body([slice_of("PAT-A"), slice_of("PAT-A")]), OHIF_CONTENT_TYPE)
    assert answer.status == 200 and len(forwarded) == 1 and len(forwarded[0]) == 2
    assert "00081198" not in json.loads(answer.body)


def test_hostile_unassigned_and_changed_parts_are_refused_each_with_its_reason(uploads: Any) -> None:
    stow, forwarded, audit = uploads
    hostile = [c for c in hostile_cases(clean_slice(unique_study("stow-corpus"))) if c.guard_reason is not None]
    changed = pydicom.dcmread(io.BytesIO(slice_of("PAT-A")))
    changed.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.77"
    accepted = slice_of("PAT-A")
    files = [c.data for c in hostile] + [slice_of("PAT-B"), part10(changed), accepted]
    answer = stow.store(ohif_body(files), OHIF_CONTENT_TYPE)
    assert answer.status == 202, answer  # some stored, some refused (PS3.18 10.5.3)
    assert [p.data for p in forwarded[0]] == [accepted]  # nothing refused ever reached the DICOMweb plug-in
    failed = json.loads(answer.body)["00081198"]["Value"]
    reasons = [item["00081197"]["Value"][0] for item in failed]
    assert reasons == [CANNOT_UNDERSTAND] * len(hostile) + [NOT_AUTHORISED, DUPLICATE_INSTANCE]
    assert failed[-1]["00081155"]["Value"] == ["1.2.826.0.1.3680043.8.498.77"]
    refusals = [r for r in audit.records if r[0] == "dicom.store.refused"]
    assert len(refusals) == len(hostile) + 1 and all(r[3] == "stow" for r in refusals)


def test_a_request_whose_parts_are_all_refused_is_409_and_reaches_nothing(uploads: Any) -> None:
    stow, forwarded, _ = uploads
    answer = stow.store(ohif_body([slice_of("PAT-B")]), OHIF_CONTENT_TYPE)
    assert answer.status == 409 and forwarded == []


def test_a_body_that_is_not_multipart_is_400(uploads: Any) -> None:
    stow, forwarded, _ = uploads
    assert stow.store(slice_of("PAT-A"), "application/dicom").status == 400 and forwarded == []
    assert stow.store(ohif_body([b""]), 'multipart/related; type="image/jpeg"; boundary=x').status in (400, 415)

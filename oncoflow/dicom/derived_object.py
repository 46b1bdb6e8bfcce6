"""What every object OncoFlow derives from a study shares (SEG, SR, REG, Encapsulated PDF).

* Manufacturer (0008,0070) ``OncoFlow``: how OncoFlow finds its own outputs in a study;
* UIDs that name one content only: :func:`derived_uid` of a key and a :func:`content_digest` of what the
  object says, so writing the same result twice gives the same SOP Instance UID (Orthanc keeps it once) and
  a different result (another mask, another model's weights, other measurements) always a new one;
* the Patient and General Study modules, copied from a source image so the new object
  files into the same patient and study;
* the SOP Common header: File Meta (Explicit VR Little Endian), SpecificCharacterSet UTF-8,
  SOPClassUID and SOPInstanceUID;
* references to source instances: items of ReferencedSOPClassUID (0008,1150) and
  ReferencedSOPInstanceUID (0008,1155).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian

MANUFACTURER = "OncoFlow"

PATIENT_AND_STUDY_KEYWORDS = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate", "StudyTime",
    "StudyID", "AccessionNumber", "ReferringPhysicianName", "StudyDescription",
)


SPECIFIC_CHARACTER_SET = "ISO_IR 192"  # (0008,0005) UTF-8: encodes any source's PatientName, whatever its script


def derived_uid(*parts: str) -> str:
    """A deterministic ``2.25.<128-bit integer>`` UID (PS3.5 B.2) from ``parts``: same parts, same UID."""
    digest = hashlib.sha256("\0".join(("oncoflow", *parts)).encode()).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def content_digest(*parts: str | bytes) -> str:
    """SHA-256 (hex) of ``parts``, each length-prefixed so that no two part lists collide: the content that a
    derived object's UIDs add to its key."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else bytes(part)
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()


def new_instance(sop_class_uid: str, sop_instance_uid: str) -> Dataset:
    """An empty instance of ``sop_class_uid`` with its File Meta and SOP Common identification."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class_uid
    ds.file_meta.MediaStorageSOPInstanceUID = sop_instance_uid
    ds.SpecificCharacterSet = SPECIFIC_CHARACTER_SET
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid
    return ds


def copy_patient_and_study(source: Dataset, target: Dataset) -> None:
    """Patient (C.7.1.1) and General Study (C.7.2.1) attributes of ``source`` onto ``target`` (empty if absent)."""
    for keyword in PATIENT_AND_STUDY_KEYWORDS:
        setattr(target, keyword, source.get(keyword, ""))


def instance_references(instances: Sequence[Dataset]) -> DicomSequence:
    """One ReferencedSOPClassUID / ReferencedSOPInstanceUID item per instance."""
    references = []
    for instance in instances:
        reference = Dataset()
        reference.ReferencedSOPClassUID = instance.SOPClassUID
        reference.ReferencedSOPInstanceUID = instance.SOPInstanceUID
        references.append(reference)
    return DicomSequence(references)

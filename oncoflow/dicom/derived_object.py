"""What every object OncoFlow derives from a study shares with it (REG, Encapsulated PDF).

* the Patient and General Study modules, copied from a source image so the new object
  files into the same patient and study;
* the SOP Common header: File Meta (Explicit VR Little Endian), SpecificCharacterSet UTF-8,
  SOPClassUID and SOPInstanceUID;
* references to source instances: items of ReferencedSOPClassUID (0008,1150) and
  ReferencedSOPInstanceUID (0008,1155).
"""

from __future__ import annotations

from collections.abc import Sequence

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian

PATIENT_AND_STUDY_KEYWORDS = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate", "StudyTime",
    "StudyID", "AccessionNumber", "ReferringPhysicianName", "StudyDescription",
)


def new_instance(sop_class_uid: str, sop_instance_uid: str) -> Dataset:
    """An empty instance of ``sop_class_uid`` with its File Meta and SOP Common identification."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class_uid
    ds.file_meta.MediaStorageSOPInstanceUID = sop_instance_uid
    ds.SpecificCharacterSet = "ISO_IR 192"
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

"""The IHE IOCM rejection note: a Key Object Selection document that withdraws instances a receiver holds.

C-STORE cannot delete. When OncoFlow replaces a result it has already sent to the hospital's PACS (a
re-analysis, a baseline that arrives later and re-measures its follow-up, a report made again), the receiver
gets this Key Object Selection Document (SOP Class 1.2.840.10008.5.1.4.1.1.88.59, Modality ``KO``) in the
same study, as IHE RAD TF IOCM (Imaging Object Change Management) defines a rejection note:

* Concept Name Code Sequence (0040,A043), the document title, from CID 7011: (113001, DCM, "Rejected for
  Quality Reasons") for a superseded result (the default), (113037, DCM, "Rejected for Patient Safety
  Reasons") or (113039, DCM, "Data Retention Policy Expired");
* one content item per withdrawn instance (Referenced SOP Class / Instance UID (0008,1150) / (0008,1155)),
  and Current Requested Procedure Evidence Sequence (0040,A375) listing them by study and series.

Its UIDs derive from the withdrawn instances and the reason: writing the same note twice gives the same object.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from oncoflow.dicom.derived_object import (
    MANUFACTURER,
    SPECIFIC_CHARACTER_SET,
    copy_patient_and_study,
    derived_uid,
)

REJECTION_NOTE_SERIES_NUMBER = 9060
REJECTION_NOTE_DESCRIPTION = "OncoFlow rejection note (IOCM)"
REJECTION_REASONS: dict[str, Code] = {
    "quality": codes.DCM.RejectedForQualityReasons,  # 113001: a result superseded by a better one
    "patient-safety": codes.DCM.RejectedForPatientSafetyReasons,  # 113037: e.g. filed under the wrong patient
    "retention": codes.DCM.DataRetentionPolicyExpired,  # 113039
}


@dataclass(frozen=True)
class WithdrawnInstance:
    """One instance the receiver must no longer use, by its UIDs (the instance itself may be gone)."""

    series_instance_uid: str  # (0020,000E)
    sop_class_uid: str  # (0008,0016)
    sop_instance_uid: str  # (0008,0018)


def write_rejection_note(study: Dataset, withdrawn: Sequence[WithdrawnInstance], reason: str = "quality") -> Dataset:
    """The KOS that withdraws ``withdrawn`` (all of ``study``'s StudyInstanceUID).

    ``study``: the Patient (C.7.1.1) and General Study (C.7.2.1) attributes the note files under, e.g. a source
    image of the study. ``reason``: a key of :data:`REJECTION_REASONS`.
    """
    if not withdrawn:
        raise ValueError("a rejection note must withdraw at least one instance")
    title = REJECTION_REASONS[reason]
    evidence = []
    for instance in sorted(withdrawn, key=lambda i: i.sop_instance_uid):
        item = Dataset()
        copy_patient_and_study(study, item)
        item.SeriesInstanceUID = instance.series_instance_uid
        item.SOPClassUID = instance.sop_class_uid
        item.SOPInstanceUID = instance.sop_instance_uid
        evidence.append(item)
    study_uid = str(study.StudyInstanceUID)
    key = [study_uid, title.value, *(str(i.SOPInstanceUID) for i in evidence)]
    note = hd.ko.KeyObjectSelectionDocument(
        evidence=evidence,
        content=hd.ko.KeyObjectSelection(title, evidence,
                                         description=f"{len(evidence)} OncoFlow result(s) replaced or withdrawn"),
        series_instance_uid=derived_uid("rejection-note-series", study_uid),
        series_number=REJECTION_NOTE_SERIES_NUMBER,
        sop_instance_uid=derived_uid("rejection-note", *key),
        instance_number=1,
        manufacturer=MANUFACTURER,
        series_description=REJECTION_NOTE_DESCRIPTION,
        specific_character_set=SPECIFIC_CHARACTER_SET,
    )
    return note

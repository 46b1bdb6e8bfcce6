"""The signed report as a DICOM Encapsulated PDF (PS3.3 A.45.1), stored in the follow-up's study.

Modules: Patient and General Study (copied from the study's images), Encapsulated Document
Series (Modality DOC, series 9030), General Equipment, SC Equipment (ConversionType WSD:
made on a workstation), Encapsulated Document and SOP Common. The Source Instance Sequence
(0042,0013) references the SEG and SR whose content the document reproduces.

The PDF bytes are stored unchanged in EncapsulatedDocument (0042,0011), padded to even length
with one NUL as PS3.5 requires; EncapsulatedDocumentLength (0042,0015) keeps the true length,
so the signature still verifies on the document read back (:func:`read_encapsulated_pdf`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import EncapsulatedPDFStorage

from oncoflow import __version__
from oncoflow.dicom.derived_object import (
    MANUFACTURER,
    content_digest,
    copy_patient_and_study,
    derived_uid,
    instance_references,
    new_instance,
)

REPORT_SERIES_NUMBER = 9030
REPORT_SERIES_DESCRIPTION = "OncoFlow report (signed PDF)"
# CID 7000 "Diagnostic Imaging Report Document Titles"
REPORT_TITLE_CODE = ("18748-4", "LN", "Diagnostic Imaging Report")


class NotAnEncapsulatedPdf(ValueError):
    """The instance is not an Encapsulated PDF, or its document is not a PDF."""


def write_encapsulated_pdf(
    pdf: bytes,
    study_image: Dataset,
    sources: Sequence[Dataset],
    title: str,
    fingerprint: str,
    created_at: datetime | None = None,
) -> Dataset:
    """An Encapsulated PDF instance holding ``pdf`` in the study of ``study_image``.

    ``sources``: the instances the document reports on (SEG, SR), referenced in the
    Source Instance Sequence. ``fingerprint`` and a digest of the document's bytes, title and
    sources make the UIDs: the same document gives the same SOP Instance UID (storing it twice
    keeps one copy), another one (a new signature, new notes) a new UID.
    """
    if not pdf.startswith(b"%PDF-"):
        raise NotAnEncapsulatedPdf("the document to encapsulate is not a PDF (no %PDF- header)")
    created_at = created_at or datetime.now(UTC)
    content = content_digest(pdf, title, str(study_image.StudyInstanceUID),
                             *(str(source.SOPInstanceUID) for source in sources), __version__)
    ds = new_instance(EncapsulatedPDFStorage, derived_uid("report-instance", fingerprint, content))
    ds.InstanceCreationDate = created_at.strftime("%Y%m%d")
    ds.InstanceCreationTime = created_at.strftime("%H%M%S")
    ds.TimezoneOffsetFromUTC = created_at.strftime("%z") or "+0000"
    copy_patient_and_study(study_image, ds)
    ds.Modality = "DOC"
    ds.SeriesInstanceUID = derived_uid("report-series", fingerprint, content)
    ds.SeriesNumber = REPORT_SERIES_NUMBER
    ds.SeriesDescription = REPORT_SERIES_DESCRIPTION
    ds.Manufacturer = MANUFACTURER
    ds.SoftwareVersions = f"oncoflow {__version__}"
    ds.ConversionType = "WSD"
    ds.InstanceNumber = 1
    ds.ContentDate = created_at.strftime("%Y%m%d")
    ds.ContentTime = created_at.strftime("%H%M%S")
    ds.AcquisitionDateTime = created_at.strftime("%Y%m%d%H%M%S")
    ds.BurnedInAnnotation = "YES"  # the report shows patient data as text
    ds.RecognizableVisualFeatures = "NO"
    ds.DocumentTitle = title[:64]  # ST, but viewers show it in a list
    concept = Dataset()
    concept.CodeValue, concept.CodingSchemeDesignator, concept.CodeMeaning = REPORT_TITLE_CODE
    ds.ConceptNameCodeSequence = DicomSequence([concept])
    ds.SourceInstanceSequence = instance_references(sources)
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocumentLength = len(pdf)
    ds.EncapsulatedDocument = pdf + (b"\0" if len(pdf) % 2 else b"")
    return ds


def read_encapsulated_pdf(ds: Dataset) -> bytes:
    """The PDF bytes of an Encapsulated PDF instance, without the even-length padding."""
    if ds.get("SOPClassUID") != EncapsulatedPDFStorage or "EncapsulatedDocument" not in ds:
        raise NotAnEncapsulatedPdf(f"SOP class {ds.get('SOPClassUID')} is not Encapsulated PDF Storage")
    document = bytes(ds.EncapsulatedDocument)
    length = ds.get("EncapsulatedDocumentLength")
    if length is not None and 0 < int(length) <= len(document):
        document = document[: int(length)]
    elif document.endswith(b"\0"):
        document = document[:-1]
    if not document.startswith(b"%PDF-"):
        raise NotAnEncapsulatedPdf("the encapsulated document is not a PDF")
    return document

"""What the pipeline's service account may store and delete: OncoFlow's own derived objects, nothing else.

A pipeline worker reaches Orthanc over HTTP with the ``oncoflow-pipeline`` service account (role
``pipeline``). Its token lets it store results (``POST /instances``) and replace them (``DELETE
/series/<id>``); a stolen worker secret must not let anyone rewrite or delete a patient's source images.
So, for a caller without the admin role:

* a stored file must be one of the objects OncoFlow makes: SOP class Segmentation (Modality ``SEG``),
  Comprehensive 3D SR (``SR``), Spatial Registration (``REG``) or Encapsulated PDF (``DOC``), with
  Manufacturer (0008,0070) ``OncoFlow``, filed into a study the PACS already holds;
* a deleted series must be such a series (its Modality one of those four, its Manufacturer ``OncoFlow``).

With ``OverwriteInstances`` off, storing an existing SOP Instance UID never replaces the stored object, so a
derived-looking file cannot take a source image's place either.
"""

from __future__ import annotations

import re
from io import BytesIO

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    Comprehensive3DSRStorage,
    EncapsulatedPDFStorage,
    SegmentationStorage,
    SpatialRegistrationStorage,
)

from oncoflow.dicom.derived_object import MANUFACTURER
from oncoflow.pacs.orthanc_rest import OrthancRest

DERIVED_MODALITIES: dict[str, str] = {
    SegmentationStorage: "SEG",
    Comprehensive3DSRStorage: "SR",
    SpatialRegistrationStorage: "REG",
    EncapsulatedPDFStorage: "DOC",
}
"""The SOP classes OncoFlow makes, and the Modality each carries."""
_UID = re.compile(r"[0-9][0-9.]{0,63}")


class DerivedObjects:
    """Judges stores and deletions against :data:`DERIVED_MODALITIES` and OncoFlow's Manufacturer."""

    def __init__(self, rest: OrthancRest) -> None:
        self.rest = rest

    def store_refusal(self, dicom: bytes) -> str | None:
        """Why ``dicom`` (a Part-10 file) is not an object OncoFlow makes, or ``None`` when it is."""
        try:
            header = dcmread(BytesIO(dicom), stop_before_pixels=True,
                             specific_tags=["SOPClassUID", "Modality", "Manufacturer", "StudyInstanceUID"])
        except (InvalidDicomError, ValueError, EOFError, OSError) as exc:
            return f"not a readable DICOM file ({type(exc).__name__})"
        sop_class = str(header.get("SOPClassUID", ""))
        modality = DERIVED_MODALITIES.get(sop_class)
        if modality is None:  # the reason names the class only when it is a well-formed UID (audit-safe text)
            shown = sop_class if _UID.fullmatch(sop_class) else "missing or malformed"
            return f"SOP class {shown} is not one OncoFlow makes"
        if header.get("Modality") != modality or header.get("Manufacturer") != MANUFACTURER:
            return f"a {modality} whose Modality or Manufacturer is not OncoFlow's"
        if self.rest.lookup_study(str(header.get("StudyInstanceUID", ""))) is None:
            return "its study is not in the PACS (results go into stored studies only)"
        return None

    def delete_refusal(self, orthanc_series_id: str) -> str | None:
        """Why the series must not be deleted by a pipeline worker, or ``None`` when it is OncoFlow's own."""
        try:
            tags = self.rest.get_json(f"/series/{orthanc_series_id}").get("MainDicomTags", {})
        except Exception:  # noqa: BLE001 (orthanc.OrthancException / HTTP 404: nothing to delete)
            return "no such series"
        if tags.get("Modality") not in DERIVED_MODALITIES.values() or tags.get("Manufacturer") != MANUFACTURER:
            modality = str(tags.get("Modality", ""))
            return f"a {modality if modality.isalnum() else 'non-derived'} series not made by OncoFlow"
        return None

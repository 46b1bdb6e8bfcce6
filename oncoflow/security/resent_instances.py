"""A source instance sent again with other content is refused: what the PACS holds under a UID never changes.

Orthanc runs with ``OverwriteInstances`` off, so a resent SOP Instance UID never replaces the stored object; over
REST (and STOW-RS through OncoFlow's route) this check also refuses such a file, with the reason, before Orthanc
sees it, so the sender learns that its file was not taken. The same content sent again (even in another transfer
syntax or with another file meta header) is not a change: Orthanc answers ``AlreadyStored``.

Content is compared as DICOM, not as bytes: every data element outside the file meta group, and the decoded
pixels when the transfer syntaxes differ.
"""

from __future__ import annotations

from io import BytesIO

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from oncoflow.pacs.orthanc_rest import OrthancRest


def same_content(a: Dataset, b: Dataset) -> bool:
    """Whether two instances say the same thing: the same elements (file meta aside) and the same pixels."""
    if a.file_meta.get("TransferSyntaxUID") == b.file_meta.get("TransferSyntaxUID"):
        return _elements(a, with_pixels=True) == _elements(b, with_pixels=True)
    if _elements(a, with_pixels=False) != _elements(b, with_pixels=False):
        return False
    return ("PixelData" in a) == ("PixelData" in b) and (
        "PixelData" not in a or bool(np.array_equal(a.pixel_array, b.pixel_array)))


def _elements(dataset: Dataset, with_pixels: bool) -> Dataset:
    """A copy of the dataset's elements (not its file meta), its pixel data left out unless ``with_pixels``."""
    copy = Dataset(dataset)
    if not with_pixels and "PixelData" in copy:
        del copy.PixelData
    return copy


class ResentInstances:
    """Compares an upload with the instance of the same SOP Instance UID that Orthanc already holds."""

    def __init__(self, rest: OrthancRest) -> None:
        self.rest = rest

    def refusal(self, dicom: bytes) -> tuple[str, str] | None:
        """``(SOPInstanceUID, reason)`` when ``dicom`` resends a stored instance with other content, else ``None``
        (a new instance, the same content again, or a file Orthanc will judge itself)."""
        try:
            incoming = dcmread(BytesIO(dicom))
            uid = str(incoming.SOPInstanceUID)
        except (InvalidDicomError, AttributeError, ValueError, EOFError, OSError):
            return None
        stored = self.rest.instance_dataset(uid)
        if stored is None or same_content(incoming, stored):
            return None
        return uid, "already stored with other content: the stored instance is kept (send a new SOP Instance UID)"

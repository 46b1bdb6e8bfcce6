"""Orthanc's REST API as seen from inside the plugin (``orthanc.RestApi*``, no HTTP hop)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from io import BytesIO
from typing import Any, Protocol

from pydicom import dcmread
from pydicom.dataset import Dataset


class OrthancModule(Protocol):
    """The subset of the ``orthanc`` module (orthanc-python 4.0) used here."""

    def RestApiGet(self, uri: str) -> bytes: ...  # noqa: N802 (Orthanc's names)
    def RestApiPost(self, uri: str, body: bytes | str) -> bytes: ...  # noqa: N802
    def RestApiDelete(self, uri: str) -> None: ...  # noqa: N802


@dataclass(frozen=True)
class OrthancRest:
    orthanc: OrthancModule

    def get_json(self, uri: str) -> Any:
        return json.loads(self.orthanc.RestApiGet(uri))

    def get_bytes(self, uri: str) -> bytes:
        return bytes(self.orthanc.RestApiGet(uri))

    def post_json(self, uri: str, body: bytes | str) -> Any:
        return json.loads(self.orthanc.RestApiPost(uri, body))

    def delete(self, uri: str) -> None:
        self.orthanc.RestApiDelete(uri)

    def store(self, dataset: Dataset) -> dict[str, Any]:
        """Store a dataset as a DICOM file (Part 10); returns Orthanc's answer (``ID``, ``ParentSeries``, ...)."""
        buffer = BytesIO()
        dataset.save_as(buffer, enforce_file_format=True)
        return dict(self.post_json("/instances", buffer.getvalue()))

    def store_replacing(self, dataset: Dataset) -> str:
        """Make ``dataset`` its study's only series of its Modality and Manufacturer; returns its Orthanc series ID.

        For the objects OncoFlow keeps one of per study (SR, REG, report). Orthanc never overwrites an
        instance (``OverwriteInstances`` is off), and a UID names one content only, so: when the study
        already holds this very instance nothing is stored; otherwise the earlier series are deleted first,
        then the new one is stored.
        """
        study_id = self.lookup_study(str(dataset.StudyInstanceUID))
        earlier = [] if study_id is None else [
            series for series in self.get_json(f"/studies/{study_id}/series")
            if series.get("MainDicomTags", {}).get("Modality") == dataset.Modality
            and series.get("MainDicomTags", {}).get("Manufacturer") == dataset.Manufacturer]
        kept = self.lookup(str(dataset.SOPInstanceUID), "Instance")
        if kept is not None:
            series_id = str(self.get_json(f"/instances/{kept}/series")["ID"])
            if all(series["ID"] == series_id for series in earlier):
                return series_id
        for series in earlier:
            self.delete(f"/series/{series['ID']}")
        return str(self.store(dataset)["ParentSeries"])

    def lookup(self, dicom_uid: str, level: str) -> str | None:
        """Orthanc's ID of the resource of ``level`` (Patient, Study, Series, Instance) with this DICOM UID."""
        for match in self.post_json("/tools/lookup", dicom_uid):
            if match.get("Type") == level:
                return str(match["ID"])
        return None

    def lookup_study(self, study_instance_uid: str) -> str | None:
        """Orthanc's ID of the study with this StudyInstanceUID, or ``None``."""
        return self.lookup(study_instance_uid, "Study")

    def instance_dataset(self, sop_instance_uid: str) -> Dataset | None:
        """The stored instance with this SOPInstanceUID, parsed, or ``None`` when Orthanc does not hold it."""
        instance = self.lookup(sop_instance_uid, "Instance")
        return None if instance is None else dcmread(BytesIO(self.get_bytes(f"/instances/{instance}/file")))

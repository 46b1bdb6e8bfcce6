"""Orthanc's REST API as seen from inside the plugin (``orthanc.RestApi*``, no HTTP hop)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol


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

    def lookup_study(self, study_instance_uid: str) -> str | None:
        """Orthanc's ID of the study with this StudyInstanceUID, or ``None``."""
        for match in self.post_json("/tools/lookup", study_instance_uid):
            if match.get("Type") == "Study":
                return str(match["ID"])
        return None

"""``POST /oncoflow/dicom-web/studies``: a STOW-RS upload (the viewer's), each instance judged before Orthanc
parses it.

Orthanc's DICOMweb plug-in would parse a STOW-RS body itself (and Orthanc 1.10.1 crashes on a file nested 48 levels
deep), so it is never reached directly: the request filter refuses ``POST /dicom-web/studies`` to every caller, and
uploads come here. Each part of the ``multipart/related`` body is refused, with its reason, when

* the upload guard refuses it (:mod:`oncoflow.security.upload_guard`: polyglot preamble, no ``DICM``, deep
  nesting), before anything parses it: failure reason 0xC000 (cannot understand);
* the caller may not upload for its patient (a doctor or radiologist uploads for their assigned patients only; an
  admin for any): 0x0124 (not authorised);
* it resends a stored instance with other content (:mod:`oncoflow.security.resent_instances`): 0x0111 (duplicate
  SOP instance);

each refusal audited. The accepted parts are handed to the DICOMweb plug-in in one new body (``forward``: over
loopback HTTP with Orthanc's own internal token, which the request filter lets through), and its answer is
returned with a Failed SOP Sequence (0008,1198) item for every refused part. Status (PS3.18 10.5.3): 200 when every
part is stored, 202 when some are, 409 when none is (400 for a body that is not ``multipart/related``). OHIF 3.13
sends one file per request and shows an error for anything but 200, 202 and 204.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO

from pydicom import dcmread

from oncoflow.api.answer import Answer, json_answer
from oncoflow.dicom.multipart import MultipartError, Part, build, root_type, split
from oncoflow.security.resent_instances import ResentInstances
from oncoflow.security.upload_guard import UploadGuard

log = logging.getLogger("oncoflow.stow")

CANNOT_UNDERSTAND = 0xC000
NOT_AUTHORISED = 0x0124
DUPLICATE_INSTANCE = 0x0111
FAILED_SOP_SEQUENCE = "00081198"
DICOM_JSON = "application/dicom+json"


@dataclass(frozen=True)
class Refused:
    sop_class_uid: str
    sop_instance_uid: str
    failure_reason: int
    reason: str

    def as_item(self) -> dict[str, object]:
        """A Failed SOP Sequence item in DICOM JSON (PS3.18 F.2)."""
        return {"00081150": {"vr": "UI", "Value": [self.sop_class_uid]} if self.sop_class_uid else {"vr": "UI"},
                "00081155": {"vr": "UI", "Value": [self.sop_instance_uid]} if self.sop_instance_uid else {"vr": "UI"},
                "00081197": {"vr": "US", "Value": [self.failure_reason]}}


class StowUploads:
    """``may_upload(patient_id)``: why the caller may not upload for that patient (``None``: it may); ``forward(body,
    content_type)``: the DICOMweb plug-in's ``(status, body)`` for a STOW-RS of the accepted parts."""

    def __init__(self, guard: UploadGuard, resent: ResentInstances, may_upload: Callable[[str], str | None],
                 forward: Callable[[bytes, str], tuple[int, bytes]]) -> None:
        self.guard = guard
        self.resent = resent
        self.may_upload = may_upload
        self.forward = forward

    def store(self, body: bytes, content_type: str) -> Answer:
        try:
            parts = split(body, content_type)
        except MultipartError as exc:
            return json_answer(400, {"error": f"not a STOW-RS request: {exc}"})
        if root_type(content_type) not in (None, "application/dicom"):
            return json_answer(415, {"error": "only application/dicom parts are accepted (PS3.18 10.5)"})
        accepted: list[Part] = []
        refused: list[Refused] = []
        for part in parts:
            refusal = self._judge(part)
            if refusal is None:
                accepted.append(part)
            else:
                refused.append(refusal)
        response: dict[str, object] = {}
        stored_status = 409
        if accepted:
            stored_status, answer = self.forward(*build(accepted))
            try:
                response = json.loads(answer) if answer else {}
            except ValueError:
                response = {}
            if stored_status >= 300 and not refused:
                return Answer(stored_status, answer, DICOM_JSON)
        if refused:
            failed = response.setdefault(FAILED_SOP_SEQUENCE, {"vr": "SQ", "Value": []})
            failed.setdefault("Value", []).extend(item.as_item() for item in refused)  # type: ignore[union-attr]
        if not refused:
            status = stored_status
        elif accepted and stored_status < 300:
            status = 202
        else:
            status = 409
        return Answer(status, json.dumps(response).encode(), DICOM_JSON)

    def _judge(self, part: Part) -> Refused | None:
        reason = self.guard.refuse(part.data, "stow")  # before anything parses the bytes (audited by the guard)
        if reason is not None:
            return Refused("", "", CANNOT_UNDERSTAND, reason)
        try:
            header = dcmread(BytesIO(part.data), stop_before_pixels=True,
                             specific_tags=["SOPClassUID", "SOPInstanceUID", "PatientID"])
        except Exception as exc:  # noqa: BLE001 (pydicom raises many kinds on a malformed file)
            self.guard.record_refusal(f"unreadable DICOM ({type(exc).__name__})", "stow")
            return Refused("", "", CANNOT_UNDERSTAND, f"unreadable DICOM ({type(exc).__name__})")
        sop_class, sop_instance = str(header.get("SOPClassUID", "")), str(header.get("SOPInstanceUID", ""))
        not_allowed = self.may_upload(str(header.get("PatientID", "")))
        if not_allowed is not None:
            return Refused(sop_class, sop_instance, NOT_AUTHORISED, not_allowed)
        resent = self.resent.refusal(part.data)
        if resent is not None:
            uid, reason = resent
            self.guard.record_refusal(reason, "stow", uid)
            return Refused(sop_class, sop_instance, DUPLICATE_INSTANCE, reason)
        return None

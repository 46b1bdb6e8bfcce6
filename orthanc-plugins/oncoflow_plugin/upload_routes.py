"""The upload guard (:mod:`oncoflow.security.upload_guard`) in Orthanc: before a REST upload is parsed, and
right after any other instance is stored.

* ``/instances`` is taken over: ``POST`` is checked *before* Orthanc parses the body (a file nested 48+
  levels deep segfaults Orthanc 1.10.1's parser), refused with 400, else handed to Orthanc's own route;
  ``GET`` is passed through unchanged. With login on, a caller without the admin role (a pipeline worker)
  may store OncoFlow's own derived objects only (403 otherwise,
  :meth:`oncoflow.security.request_access.RequestAccess.upload_refusal`); a stored source instance sent again
  with other content is refused with 409 and audited (:mod:`oncoflow.security.resent_instances`).
* C-STORE, STOW-RS, WebDAV and Lua instances are checked from the ``NEW_INSTANCE`` change by the returned
  :class:`~oncoflow.security.upload_guard.StoredInstanceGuard`, which deletes what it refuses.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from oncoflow.api.answer import json_answer
from oncoflow.pacs.orthanc_rest import OrthancRest
from oncoflow.security.request_access import RequestAccess
from oncoflow.security.resent_instances import ResentInstances
from oncoflow.security.upload_guard import StoredInstanceGuard, UploadGuard

from .http_answers import send_answer


def register_upload_routes(orthanc: Any, guard: UploadGuard, access: RequestAccess | None) -> StoredInstanceGuard:
    """Take over ``/instances``; returns the guard the ``NEW_INSTANCE`` change must call."""

    resent_instances = ResentInstances(OrthancRest(orthanc))

    def instances(output: Any, uri: str, **request: Any) -> None:
        if request["method"] == "GET":
            query = urllib.parse.urlencode(request.get("get", {}))
            output.AnswerBuffer(orthanc.RestApiGet("/instances" + (f"?{query}" if query else "")), "application/json")
            return
        if request["method"] != "POST":
            output.SendMethodNotAllowed("GET,POST")
            return
        body = bytes(request.get("body", b""))
        reason = guard.refuse(body, "rest")
        if reason is not None:
            send_answer(output, json_answer(400, {"error": f"upload refused: {reason}"}))
            return
        if access is not None and (reason := access.upload_refusal(body)) is not None:
            send_answer(output, json_answer(403, {"error": f"not an OncoFlow result: {reason}"}))
            return
        if (resent := resent_instances.refusal(body)) is not None:
            uid, reason = resent
            guard.record_refusal(reason, "rest", uid)
            send_answer(output, json_answer(409, {"error": f"instance {uid} {reason}"}))
            return
        try:
            output.AnswerBuffer(orthanc.RestApiPost("/instances", body), "application/json")
        except Exception as exc:  # noqa: BLE001 (Orthanc's own refusal: answered as Orthanc would, with 400)
            send_answer(output, json_answer(400, {"error": f"Orthanc refused the upload: {exc}"}))

    orthanc.RegisterRestCallback("/instances", instances)
    return StoredInstanceGuard(OrthancRest(orthanc), guard)


def internal_stow(orthanc: Any, http_port: int, timeout_s: float = 300.0) -> Callable[[bytes, str], tuple[int, bytes]]:
    """Hand a checked STOW-RS body to the DICOMweb plug-in: over loopback HTTP (its POST route cannot be called
    from inside Orthanc), with Orthanc's own internal token, which no request filter sees."""

    def forward(body: bytes, content_type: str) -> tuple[int, bytes]:
        request = urllib.request.Request(f"http://127.0.0.1:{http_port}/dicom-web/studies", data=body, method="POST",
                                         headers={"Content-Type": content_type, "Accept": "application/dicom+json",
                                                  "Authorization": orthanc.GenerateRestApiAuthorizationToken()})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    return forward

"""The upload guard (:mod:`oncoflow.security.upload_guard`) in Orthanc: before a REST upload is parsed, and
right after any other instance is stored.

* ``/instances`` is taken over: ``POST`` is checked *before* Orthanc parses the body (a file nested 48+
  levels deep segfaults Orthanc 1.10.1's parser), refused with 400, else handed to Orthanc's own route;
  ``GET`` is passed through unchanged.
* C-STORE, STOW-RS, WebDAV and Lua instances are checked from the ``NEW_INSTANCE`` change by the returned
  :class:`~oncoflow.security.upload_guard.StoredInstanceGuard`, which deletes what it refuses.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from oncoflow.api.answer import json_answer
from oncoflow.pacs.orthanc_rest import OrthancRest
from oncoflow.security.upload_guard import StoredInstanceGuard, UploadGuard

from .http_answers import send_answer


def register_upload_routes(orthanc: Any, guard: UploadGuard) -> StoredInstanceGuard:
    """Take over ``/instances``; returns the guard the ``NEW_INSTANCE`` change must call."""

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
        try:
            output.AnswerBuffer(orthanc.RestApiPost("/instances", body), "application/json")
        except Exception as exc:  # noqa: BLE001 (Orthanc's own refusal: answered as Orthanc would, with 400)
            send_answer(output, json_answer(400, {"error": f"Orthanc refused the upload: {exc}"}))

    orthanc.RegisterRestCallback("/instances", instances)
    return StoredInstanceGuard(OrthancRest(orthanc), guard)

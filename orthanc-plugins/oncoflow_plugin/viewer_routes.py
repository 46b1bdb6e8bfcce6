"""The OHIF viewer, the QIDO-RS proxy it searches through and the STOW-RS route it uploads through.

``/ohif`` and ``/ohif/(.+)`` answer :class:`oncoflow.api.viewer_files.ViewerFiles` (GET; Orthanc drops a trailing
slash, so ``/ohif`` and ``/ohif/`` are one route); ``/oncoflow/dicom-web/(.*)`` answers GET with
:func:`oncoflow.api.qido_proxy.forward_qido` and ``POST .../studies`` with
:meth:`oncoflow.api.stow_uploads.StowUploads.store`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from oncoflow.api.qido_proxy import QIDO_PREFIX, forward_qido
from oncoflow.api.stow_uploads import StowUploads
from oncoflow.api.viewer_files import ViewerFiles
from oncoflow.core.config import VIEWER_BASE_PATH, Settings
from oncoflow.services.ohif_viewer import fresh_dist_dir
from oncoflow.services.shared_cache import default_cache_dir

from .http_answers import only, send_answer

logger = logging.getLogger("oncoflow.viewer")


def register_viewer_routes(orthanc: Any, settings: Settings, stow: StowUploads,
                           may_see_patient: Callable[[str], bool] | None = None) -> None:
    """Register ``/ohif``, ``/ohif/(.+)`` and ``/oncoflow/dicom-web/(.*)`` with Orthanc.

    The prepared OHIF tree is looked up in the cache (``$ONCOFLOW_CACHE``) when a request comes,
    until found: a tree prepared after Orthanc started is served without a restart.
    ``may_see_patient`` (login on) judges each PatientID of a QIDO answer for the current caller.
    """
    cache_dir = default_cache_dir()
    found: list[Path] = []

    def dist_root() -> Path | None:
        if not found or not found[0].is_dir():
            root = fresh_dist_dir(cache_dir)
            if root is None:
                return None
            found[:] = [root]
        return found[0]

    files = ViewerFiles(dist_root, auth=settings.auth)
    orthanc_get = orthanc.RestApiGetAfterPlugins  # DICOMweb's routes are a plugin's: not in plain RestApiGet

    @only("GET")
    def viewer_root(output: Any, uri: str, **request: Any) -> None:
        send_answer(output, files.answer("", request.get("headers", {}).get("if-none-match")))

    @only("GET")
    def viewer_file(output: Any, uri: str, **request: Any) -> None:
        send_answer(output, files.answer(request["groups"][0], request.get("headers", {}).get("if-none-match")))

    def dicom_web(output: Any, uri: str, **request: Any) -> None:
        resource = request["groups"][0]
        if request["method"] == "GET":
            send_answer(output, forward_qido(orthanc_get, resource, request.get("get", {}), may_see_patient))
        elif request["method"] == "POST" and resource == "studies":
            content_type = request.get("headers", {}).get("content-type", "")
            send_answer(output, stow.store(bytes(request.get("body", b"")), content_type))
        else:
            output.SendMethodNotAllowed("GET" if resource != "studies" else "GET,POST")

    orthanc.RegisterRestCallback(VIEWER_BASE_PATH.rstrip("/"), viewer_root)
    orthanc.RegisterRestCallback(f"{VIEWER_BASE_PATH}(.+)", viewer_file)
    orthanc.RegisterRestCallback(f"{QIDO_PREFIX}(.*)", dicom_web)
    logger.info("OHIF viewer at %s%s (tree %s)", settings.orthanc_url, VIEWER_BASE_PATH,
                dist_root() or f"not prepared in {cache_dir}")

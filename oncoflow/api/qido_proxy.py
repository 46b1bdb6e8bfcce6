"""The QIDO-RS searches OHIF makes, answered from Orthanc's DICOMweb plug-in (``/oncoflow/dicom-web/...``).

Orthanc's ``/dicom-web/...`` answer for a QIDO-RS search, its query decoded and its comma-separated
``includefield`` split into repeated parameters. DICOMweb 1.7 gets query values still percent-encoded:
OHIF's ``includefield=00081030%2C00080060`` was ignored (a study list without descriptions), and so was
any ``%5E`` or ``%20`` in a filter. With login on, a top-level search (``studies``, ``series``,
``instances``) leaves out every answer whose PatientID the caller may not see (Orthanc's request filter can
only allow or deny a request).
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from oncoflow.api.answer import Answer, json_answer
from oncoflow.api.viewer_files import REVALIDATE

QIDO_PREFIX = "/oncoflow/dicom-web/"
DICOMWEB_ROOT = "/dicom-web/"
# QIDO-RS resources (PS3.18 10.6): all studies, series and instances, or those of one study / series
_QIDO_PATH = re.compile(r"(?:studies|series|instances|studies/[0-9.]{1,64}/(?:series|instances)"
                        r"|studies/[0-9.]{1,64}/series/[0-9.]{1,64}/instances)")
# Orthanc's error codes (OrthancPluginErrorCode): ParameterOutOfRange, BadParameterType, BadRequest,
# UriSyntax, BadFileFormat -> 400; InexistentItem, InexistentFile, UnknownResource -> 404
_STATUS_OF_ORTHANC_ERROR = {3: 400, 5: 400, 8: 400, 12: 400, 15: 400, 7: 404, 13: 404, 17: 404}
_UNPASSABLE = re.compile(r"[&#\x00-\x1f\x7f]")


class QidoQueryError(ValueError):
    """A query parameter that cannot be passed on to Orthanc's DICOMweb plugin."""


def qido_uri(resource: str, query: Mapping[str, str]) -> str:
    """Orthanc's ``/dicom-web/`` URI for a QIDO-RS request, with ``includefield`` lists split.

    ``query`` holds the parameters as they reached the route, still percent-encoded; they are
    decoded once. Orthanc's internal call hands the query to DICOMweb literally (measured: it
    decodes nothing, ``%5E`` stays ``%5E``), so the decoded values go in as they are; a value that
    would break that query (``&``, ``#``, control characters) raises :class:`QidoQueryError`.
    """
    params: list[tuple[str, str]] = []
    for raw_key, raw_value in query.items():
        key, value = urllib.parse.unquote(raw_key), urllib.parse.unquote(raw_value)
        if _UNPASSABLE.search(key + value) or "=" in key:
            raise QidoQueryError(f"query parameter {key!r}={value!r} holds a character Orthanc cannot pass on")
        if key.lower() == "includefield":
            params.extend((key, item.strip()) for item in value.split(",") if item.strip())
        else:
            params.append((key, value))
    query_text = "&".join(f"{key}={value}" for key, value in params)
    return f"{DICOMWEB_ROOT}{resource}" + (f"?{query_text}" if query_text else "")


PATIENT_ID_TAG = "00100020"
TOP_LEVEL_SEARCHES = ("studies", "series", "instances")


def forward_qido(orthanc_get: Callable[[str], bytes], resource: str, query: Mapping[str, str],
                 may_see_patient: Callable[[str], bool] | None = None) -> Answer:
    """Answer a QIDO-RS request from Orthanc's DICOMweb plugin.

    ``may_see_patient`` (login on): a top-level search asks for PatientID (0010,0020) too and keeps only
    the answers whose PatientID passes; an answer without one is left out (fail closed). A search inside
    a study (``studies/<uid>/series``) needs no filtering: the request filter already judged the study.
    """
    if not _QIDO_PATH.fullmatch(resource):
        return json_answer(404, {"error": f"{QIDO_PREFIX}{resource} is not a QIDO-RS resource"})
    patient_filter = may_see_patient if resource in TOP_LEVEL_SEARCHES else None
    try:
        uri = qido_uri(resource, query)
    except QidoQueryError as exc:
        return json_answer(400, {"error": str(exc)})
    if patient_filter is not None:
        uri += ("&" if "?" in uri else "?") + f"includefield={PATIENT_ID_TAG}"
    try:
        body = bytes(orthanc_get(uri))
    except Exception as exc:  # noqa: BLE001 (orthanc.OrthancException: Orthanc's error code and text)
        return json_answer(_orthanc_error_status(exc), {"error": f"GET {uri}: {exc}"})
    if patient_filter is not None:
        visible = [answer for answer in json.loads(body or b"[]")
                   if patient_filter(_first_value(answer.get(PATIENT_ID_TAG)))]
        body = json.dumps(visible).encode()
    return Answer(200, body, "application/dicom+json", {"Cache-Control": REVALIDATE})


def _first_value(element: Any) -> str:
    """The first value of a DICOM JSON element as text ("" when absent)."""
    values = element.get("Value") if isinstance(element, dict) else None
    return str(values[0]) if isinstance(values, list) and values and values[0] is not None else ""


def _orthanc_error_status(exc: Exception) -> int:
    """An HTTP status for an exception of ``orthanc.RestApiGet*``: its args are (Orthanc error code, text)."""
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    return _STATUS_OF_ORTHANC_ERROR.get(code, 502)

"""The OHIF viewer on Orthanc's own origin, and the QIDO-RS proxy it searches through.

Routes (GET only):

* ``/ohif`` and ``/ohif/`` (Orthanc drops the trailing slash: one route): ``index.html``;
* ``/ohif/app-config.js``: the repository's ``ohif-extension/app-config.js`` (the dist's own is dropped),
  after one line the plugin writes: ``window.oncoflowAuth = {"authority": <issuer>, "clientId": "ohif"};``
  when login is on (OHIF then logs in through Keycloak), ``window.oncoflowAuth = null;`` when it is off;
* ``/ohif/oncoflow/<name>.mjs`` (and ``.mjs.map``): the OncoFlow extension and mode built in
  ``ohif-extension/dist/`` (404 with a JSON error until they are built);
* ``/ohif/<path>``: a file of the prepared OHIF tree (:mod:`oncoflow.ohif_viewer`); a path without a
  file extension that names no file (a client route such as ``/ohif/viewer``) gets ``index.html``;
  hidden names and ``..`` are refused (404), and so is anything that resolves outside the tree;
* ``/oncoflow/dicom-web/<QIDO-RS resource>``: Orthanc's ``/dicom-web/...`` answer for a QIDO-RS
  search, its query decoded and its comma-separated ``includefield`` split into repeated parameters.
  DICOMweb 1.7 gets query values still percent-encoded: OHIF's ``includefield=00081030%2C00080060``
  was ignored (a study list without descriptions), and so was any ``%5E`` or ``%20`` in a filter.
  With login on, a top-level search (``studies``, ``series``, ``instances``) leaves out every answer
  whose PatientID the caller may not see (Orthanc's request filter can only allow or deny a request).

Hashed bundle names are cached by browsers for a year; ``index.html``, ``app-config.js`` and the
OncoFlow modules are revalidated on every load (ETag, 304); so are the other unhashed files. Files
are read from disk on each request: the 17 MB app bundle took 17-37 ms through this route (the page
cache does the work), so no in-memory copy is kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from oncoflow.config import REPO_ROOT, AuthSettings, Settings
from oncoflow.ohif_viewer import BASE_PATH, default_cache_dir, fresh_dist_dir

from .http_answers import only

EXTENSION_DIR = REPO_ROOT / "ohif-extension"
APP_CONFIG_PATH = EXTENSION_DIR / "app-config.js"
MODULES_DIR = EXTENSION_DIR / "dist"
MODULES_PREFIX = "oncoflow/"
QIDO_PREFIX = "/oncoflow/dicom-web/"
DICOMWEB_ROOT = "/dicom-web/"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".jsonc": "application/json",
    ".map": "application/json",
    ".wasm": "application/wasm",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".ico": "image/x-icon",
    ".webp": "image/webp",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".ttf": "font/ttf",
    ".xml": "application/xml",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/plain; charset=utf-8",
    ".onnx": "application/octet-stream",
}
DEFAULT_CONTENT_TYPE = "application/octet-stream"
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
# webpack's content hashes: 100.bundle.cb02411ce321d4e4.js, app.bundle.0f6159c501addfe9.js, 0ddf166f7a343eda.wasm
_HASHED_NAME = re.compile(r"(?:^|\.)[0-9a-f]{16}\.(?:js|mjs|css|wasm|woff2?)$")
_FILE_EXTENSION = re.compile(r"\.[A-Za-z][A-Za-z0-9]{0,7}$")  # not a UID's ".113"
_MODULE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}\.mjs(?:\.map)?")  # a module or its source map
# QIDO-RS resources (PS3.18 10.6): all studies, series and instances, or those of one study / series
_QIDO_PATH = re.compile(r"(?:studies|series|instances|studies/[0-9.]{1,64}/(?:series|instances)"
                        r"|studies/[0-9.]{1,64}/series/[0-9.]{1,64}/instances)")
# Orthanc's error codes (OrthancPluginErrorCode): ParameterOutOfRange, BadParameterType, BadRequest,
# UriSyntax, BadFileFormat -> 400; InexistentItem, InexistentFile, UnknownResource -> 404
_STATUS_OF_ORTHANC_ERROR = {3: 400, 5: 400, 8: 400, 12: 400, 15: 400, 7: 404, 13: 404, 17: 404}
_UNPASSABLE = re.compile(r"[&#\x00-\x1f\x7f]")
_UNPREPARED = ("the OHIF viewer is not prepared: run `make up` or `python -m oncoflow.ohif_viewer prepare`")

logger = logging.getLogger("oncoflow.viewer")


@dataclass(frozen=True)
class Answer:
    """One HTTP answer of the viewer routes."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_answer(status: int, payload: Any) -> Answer:
    return Answer(status, json.dumps(payload).encode(), "application/json")


def content_type(name: str) -> str:
    """The Content-Type of a file name (by extension; ``application/octet-stream`` when unknown)."""
    return CONTENT_TYPES.get(PurePosixPath(name).suffix.lower(), DEFAULT_CONTENT_TYPE)


def cache_control(name: str) -> str:
    """A year for webpack's content-hashed names, revalidation for everything else."""
    return IMMUTABLE if _HASHED_NAME.search(PurePosixPath(name).name) else REVALIDATE


def has_file_extension(relative_path: str) -> bool:
    """True when the last path component looks like a file name (``app.js``), not a client route (``viewer``)."""
    return bool(_FILE_EXTENSION.search(PurePosixPath(relative_path or "/").name))


def safe_file(root: Path, relative_path: str) -> Path | None:
    """The regular file ``relative_path`` names under ``root``, or ``None``.

    ``None`` also for hidden components (``.marker``, ``..``), empty or absolute paths, and anything
    that resolves (through ``..`` or links) outside ``root``.
    """
    parts = relative_path.split("/")
    if not relative_path or relative_path.startswith("/") or any(not p or p.startswith(".") or "\\" in p
                                                                 for p in parts):
        return None
    base = root.resolve()
    candidate = base.joinpath(*parts).resolve()
    if not candidate.is_relative_to(base) or not candidate.is_file():
        return None
    return candidate


def _unsafe(relative_path: str) -> bool:
    return any(p in ("..", ".") or p.startswith(".") or "\\" in p for p in relative_path.split("/"))


def app_config_prelude(auth: AuthSettings | None) -> bytes:
    """The first line of the served ``app-config.js``: the login settings OHIF needs, or ``null``."""
    value = None if auth is None else {"authority": auth.issuer, "clientId": auth.viewer_client_id}
    return f"window.oncoflowAuth = {json.dumps(value)};\n".encode()


def file_etag(path: Path) -> str:
    """An ETag from the file's path, size and modification time (a replaced file gets a new one)."""
    stat = path.stat()
    return '"' + hashlib.sha1(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:20] + '"'


class ViewerFiles:
    """Answers for ``/ohif/<relative path>``: pure file logic, no Orthanc (unit-testable)."""

    def __init__(self, dist_root: Callable[[], Path | None], app_config: Path = APP_CONFIG_PATH,
                 modules_dir: Path = MODULES_DIR, auth: AuthSettings | None = None) -> None:
        self.dist_root = dist_root
        self.app_config = app_config
        self.modules_dir = modules_dir
        self.app_config_prelude = app_config_prelude(auth)
        self._prelude_tag = hashlib.sha1(self.app_config_prelude).hexdigest()[:8]  # login on / off: another ETag

    @staticmethod
    def _file(path: Path, if_none_match: str | None, cache: str | None = None) -> Answer:
        etag = file_etag(path)
        headers = {"Cache-Control": cache or cache_control(path.name), "ETag": etag}
        if if_none_match and etag in (tag.strip() for tag in if_none_match.split(",")):
            return Answer(304, b"", content_type(path.name), headers)
        return Answer(200, path.read_bytes(), content_type(path.name), headers)

    def answer(self, relative_path: str, if_none_match: str | None = None) -> Answer:
        """The answer for ``GET /ohif/<relative_path>`` (``relative_path`` already percent-decoded)."""
        if _unsafe(relative_path):
            return json_answer(404, {"error": "not found"})
        if relative_path == "app-config.js":
            if not self.app_config.is_file():
                return json_answer(404, {"error": f"{self.app_config} is missing"})
            answer = self._file(self.app_config, None, REVALIDATE)
            etag = answer.headers["ETag"][:-1] + self._prelude_tag + '"'
            headers = {**answer.headers, "ETag": etag}
            if if_none_match and etag in (tag.strip() for tag in if_none_match.split(",")):
                return Answer(304, b"", answer.content_type, headers)
            return Answer(200, self.app_config_prelude + answer.body, answer.content_type, headers)
        if relative_path.startswith(MODULES_PREFIX):
            name = relative_path[len(MODULES_PREFIX):]
            module = self.modules_dir / name if _MODULE_NAME.fullmatch(name) else None
            if module is None or not module.is_file():
                return json_answer(404, {"error": f"OncoFlow OHIF module {name!r} is not built: "
                                                  f"build ohif-extension into {self.modules_dir}"})
            return self._file(module, if_none_match, REVALIDATE)
        root = self.dist_root()
        if root is None:
            return json_answer(503, {"error": _UNPREPARED})
        found = safe_file(root, relative_path) if relative_path else None
        if found is not None:
            return self._file(found, if_none_match)
        if has_file_extension(relative_path):
            return json_answer(404, {"error": f"no file {BASE_PATH}{relative_path}"})
        index = root / "index.html"  # a client route of the single-page app
        return self._file(index, if_none_match, REVALIDATE)


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


def send_answer(output: Any, answer: Answer) -> None:
    """Send ``answer`` through Orthanc's REST output object."""
    for name, value in answer.headers.items():
        output.SetHttpHeader(name, value)
    if answer.status == 200:
        output.AnswerBuffer(answer.body, answer.content_type)
    elif answer.status == 304:
        output.SendHttpStatusCode(304)
    else:
        body = answer.body.decode("ascii")  # the JSON errors (ensure_ascii); orthanc-python wants a str here
        output.SendHttpStatus(answer.status, body, len(body))


def register_viewer_routes(orthanc: Any, settings: Settings,
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

    @only("GET")
    def qido(output: Any, uri: str, **request: Any) -> None:
        send_answer(output, forward_qido(orthanc_get, request["groups"][0], request.get("get", {}), may_see_patient))

    orthanc.RegisterRestCallback(BASE_PATH.rstrip("/"), viewer_root)
    orthanc.RegisterRestCallback(f"{BASE_PATH}(.+)", viewer_file)
    orthanc.RegisterRestCallback(f"{QIDO_PREFIX}(.*)", qido)
    logger.info("OHIF viewer at %s%s (tree %s)", settings.orthanc_url, BASE_PATH,
                dist_root() or f"not prepared in {cache_dir}")

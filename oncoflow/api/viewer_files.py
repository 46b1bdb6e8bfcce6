"""The OHIF viewer's files on Orthanc's own origin (GET ``/ohif/...``), as :class:`~oncoflow.api.answer.Answer`.

* ``/ohif`` and ``/ohif/``: ``index.html``;
* ``/ohif/app-config.js``: the repository's ``ohif-extension/app-config.js`` (the dist's own is dropped),
  after one line the plugin writes: ``window.oncoflowAuth = {"authority": <issuer>, "clientId": "ohif"};``
  when login is on (OHIF then logs in through Keycloak), ``window.oncoflowAuth = null;`` when it is off;
* ``/ohif/oncoflow/<name>.mjs`` (and ``.mjs.map``): the OncoFlow extension and mode built in
  ``ohif-extension/dist/`` (404 with a JSON error until they are built);
* ``/ohif/<path>``: a file of the prepared OHIF tree (:mod:`oncoflow.services.ohif_viewer`); a path without a
  file extension that names no file (a client route such as ``/ohif/viewer``) gets ``index.html``;
  hidden names and ``..`` are refused (404), and so is anything that resolves outside the tree.

Hashed bundle names are cached by browsers for a year; ``index.html``, ``app-config.js`` and the
OncoFlow modules are revalidated on every load (ETag, 304); so are the other unhashed files. Files
are read from disk on each request: the 17 MB app bundle took 17-37 ms through this route (the page
cache does the work), so no in-memory copy is kept.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from oncoflow.api.answer import Answer, json_answer
from oncoflow.core.config import REPO_ROOT, VIEWER_BASE_PATH, AuthSettings

EXTENSION_DIR = REPO_ROOT / "ohif-extension"
APP_CONFIG_PATH = EXTENSION_DIR / "app-config.js"
MODULES_DIR = EXTENSION_DIR / "dist"
MODULES_PREFIX = "oncoflow/"

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
_UNPREPARED = ("the OHIF viewer is not prepared: run `make up` or `python -m oncoflow.services.ohif_viewer prepare`")


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
            return json_answer(404, {"error": f"no file {VIEWER_BASE_PATH}{relative_path}"})
        index = root / "index.html"  # a client route of the single-page app
        return self._file(index, if_none_match, REVALIDATE)



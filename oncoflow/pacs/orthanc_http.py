"""Orthanc's REST API over HTTP, for a pipeline worker outside Orthanc's process.

:class:`HttpOrthanc` offers the three calls of ``orthanc.RestApi*`` that :class:`.orthanc_rest.OrthancRest`
uses, so the same pipeline code runs in the plugin (no HTTP hop) and in a worker on another host.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass


class OrthancHttpError(RuntimeError):
    """Orthanc answered with an HTTP error (``status`` 0: it did not answer)."""

    def __init__(self, method: str, uri: str, status: int, detail: str) -> None:
        super().__init__(f"{method} {uri}: {status or 'no answer'} {detail[:300]}")
        self.status = status


class OrthancUnavailable(OrthancHttpError):
    """Orthanc did not answer, or a proxy in front of it said 502/503/504: transient (it may be restarting)."""


_UNAVAILABLE_STATUSES = frozenset({502, 503, 504})


@dataclass(frozen=True)
class HttpOrthanc:
    """``base_url``: Orthanc's REST root, e.g. ``http://orthanc:8042`` (``ONCOFLOW_ORTHANC_URL``); ``token``:
    the bearer token of each request when login is on
    (:class:`oncoflow.security.service_account.ServiceAccountToken`)."""

    base_url: str
    timeout_s: float = 120.0
    token: Callable[[], str] | None = None

    def _call(self, method: str, uri: str, body: bytes | None = None) -> bytes:
        request = urllib.request.Request(f"{self.base_url}{uri}", data=body, method=method)
        if body is not None:
            request.add_header("Content-Type", "application/octet-stream")
        if self.token is not None:
            request.add_header("Authorization", f"Bearer {self.token()}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return bytes(response.read())
        except urllib.error.HTTPError as exc:
            error = OrthancUnavailable if exc.code in _UNAVAILABLE_STATUSES else OrthancHttpError
            raise error(method, uri, exc.code, exc.read().decode(errors="replace")) from exc
        except OSError as exc:
            raise OrthancUnavailable(method, uri, 0, str(exc)) from exc

    def RestApiGet(self, uri: str) -> bytes:  # noqa: N802 (orthanc-python's names)
        return self._call("GET", uri)

    def RestApiPost(self, uri: str, body: bytes | str) -> bytes:  # noqa: N802
        return self._call("POST", uri, body.encode() if isinstance(body, str) else bytes(body))

    def RestApiDelete(self, uri: str) -> None:  # noqa: N802
        self._call("DELETE", uri)

"""Orthanc's HTTP request filter (``RegisterIncomingHttpRequestFilter``): the hook, not the policy.

Orthanc calls the filter before any REST, DICOMweb, WADO or OncoFlow route, with the HTTP method as
orthanc-python's number, the URI, lower-cased headers and the query arguments; returning ``False`` makes
Orthanc answer 403. The decision (token, patient, role table, audit) is
:meth:`oncoflow.security.request_access.RequestAccess.judge`.
"""

from __future__ import annotations

import logging
from typing import Any

from oncoflow.security.access_policy import Permission, route_rule
from oncoflow.security.request_access import RequestAccess

log = logging.getLogger("oncoflow.access")

# orthanc.HttpMethod (OrthancPluginHttpMethod): the filter receives the number
HTTP_METHODS = {1: "GET", 2: "POST", 3: "PUT", 4: "DELETE"}


class HttpAccessFilter:
    """The callable Orthanc registers; anything it cannot read refuses the request (fail closed).

    ``access`` ``None`` (login off): every request passes but the routes no caller may use
    (:data:`~oncoflow.security.access_policy.Permission.INTERNAL`: the DICOMweb plug-in's own STOW-RS, which
    OncoFlow's checks must not be bypassed for); Orthanc's internal calls never come through the filter.
    """

    def __init__(self, access: RequestAccess | None) -> None:
        self.access = access

    def __call__(self, uri: str, **request: Any) -> bool:
        try:
            method_number = request.get("method")
            method = HTTP_METHODS.get(int(getattr(method_number, "value", method_number)), "OTHER")
        except (TypeError, ValueError):
            log.error("request filter: unreadable HTTP method %r; request refused", request.get("method"))
            return False
        if self.access is None:
            return route_rule(method, uri, dict(request.get("get") or {})).permission is not Permission.INTERNAL
        return self.access.judge(method, uri, request.get("headers") or {}, request.get("get") or {})

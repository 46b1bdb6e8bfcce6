"""A request a pipeline action refuses, answered to the client as it is (status and JSON body).

The refine and the approved-SEG routes both parse a JSON body and check it against the study; whatever they
refuse carries the HTTP status and the sentence that says why, and sometimes data the client needs to ask again
(the SEG's segments to choose from). The route answers ``status`` with :meth:`RequestRefused.as_json`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


class RequestRefused(Exception):
    """Answered with ``status`` and ``{"error": message, **data}``."""

    def __init__(self, status: int, message: str, data: Mapping[str, object] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.data = dict(data or {})

    def as_json(self) -> dict[str, object]:
        return {"error": self.message, **self.data}


def json_object(body: bytes | str) -> dict[str, Any]:
    """``body`` read as a JSON object (an empty body is ``{}``); :class:`RequestRefused` 400 otherwise."""
    try:
        data = json.loads(body or b"{}")
    except ValueError as exc:
        raise RequestRefused(400, f"the body must be JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise RequestRefused(400, "the body must be a JSON object")
    return data

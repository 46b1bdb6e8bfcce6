"""One answer of an OncoFlow route, independent of the server that sends it.

Every route of :mod:`oncoflow.api` returns an :class:`Answer`; Orthanc's plug-in sends it
(``oncoflow_plugin.http_answers.send_answer``), a test reads it directly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: ``status``, the body's bytes and content type, and extra headers."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_answer(status: int, payload: Any) -> Answer:
    """``payload`` as JSON (ASCII, escaped) with ``status``."""
    return Answer(status, json.dumps(payload, indent=1).encode(), "application/json")

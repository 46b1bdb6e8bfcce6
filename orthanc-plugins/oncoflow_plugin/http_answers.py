"""Answering Orthanc REST callbacks with JSON."""

from __future__ import annotations

import json
from typing import Any


def answer_json(output: Any, payload: Any, status: int = 200) -> None:
    """Send ``payload`` as JSON with ``status`` (Orthanc's output object of a REST callback)."""
    body = json.dumps(payload, indent=1)
    if status == 200:
        output.AnswerBuffer(body, "application/json")
    else:
        output.SendHttpStatus(status, body, len(body))

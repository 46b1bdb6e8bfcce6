"""Answering Orthanc REST callbacks: JSON bodies, and one HTTP method per route."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

RestCallback = Callable[..., None]  # ([self,] output, uri, **request) -> None, as RegisterRestCallback calls it


def only(method: str) -> Callable[[RestCallback], RestCallback]:
    """Decorate a REST callback (function or method) so that any other HTTP method gets 405 ``Allow: method``."""

    def decorate(callback: RestCallback) -> RestCallback:
        @functools.wraps(callback)
        def checked(*args: Any, **request: Any) -> None:
            if request["method"] != method:
                args[-2].SendMethodNotAllowed(method)  # the arguments end with (output, uri)
                return
            callback(*args, **request)

        return checked

    return decorate


def answer_json(output: Any, payload: Any, status: int = 200) -> None:
    """Send ``payload`` as JSON with ``status`` (Orthanc's output object of a REST callback)."""
    body = json.dumps(payload, indent=1)
    if status == 200:
        output.AnswerBuffer(body, "application/json")
    else:
        output.SendHttpStatus(status, body, len(body))

"""Answering Orthanc REST callbacks: one HTTP method per route, and an :class:`~oncoflow.api.answer.Answer` sent."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from oncoflow.api.answer import Answer

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

"""Boxes and a findings sentence out of a vision-language model's free-text answer.

A model asked for tumour boxes answers in text, and text is unreliable: JSON in
```` ```json ```` fences or with chatter around it, JSON cut off by the token limit,
PaliGemma location tokens, or a bare list of numbers. :func:`parse_boxes` reads
all of these and never raises; what it cannot read gives no box.

Accepted box notations, all ``[ymin, xmin, ymax, xmax]`` (rows first):

* JSON ``{"box_2d": [ymin, xmin, ymax, xmax], "label": ...}`` objects, alone or in a
  list, normalised to 0-1000 (the Gemini / MedGemma convention); ``bbox``, ``box``
  and ``bounding_box`` are read as synonyms of ``box_2d``. A truncated list yields
  its complete objects.
* PaliGemma ``<locYYYY><locXXXX><locYYYY><locXXXX>`` tokens, each 0-1023 of 1024 bins.
* Bracketed four-number lists ``[ymin, xmin, ymax, xmax]`` in 0-1000; four numbers
  all within 0-1 with at least one fraction are read as fractions of the image.

Coordinates outside the range are clipped, a reversed minimum and maximum are
swapped, and boxes with a NaN or infinite value or zero area are dropped, as are
objects labelled as a negative ("no tumour", "normal", "none"). Pixel boxes are
``(row_min, col_min, row_max, col_max)`` on a ``width`` x ``height`` image, where
normalised 0 is the image's first pixel edge and 1000 its last, clipped to the
pixel indices ``0..height-1`` and ``0..width-1``.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from typing import Any

PixelBox = tuple[float, float, float, float]  # row_min, col_min, row_max, col_max (pixel indices)

NORMALISED_MAX = 1000.0  # box_2d coordinates run 0..1000
LOC_BINS = 1024  # PaliGemma <locNNNN> tokens run 0..1023
MAX_TEXT_CHARS = 20_000  # longer answers are read up to here (model answers are a few hundred characters)
MAX_JSON_NESTING = 16  # box answers nest 3 deep; deeper bracket runs are not worth decoding
BOX_KEYS = ("box_2d", "bbox", "box", "bounding_box")

_FENCE = re.compile(r"```[a-zA-Z0-9_-]*\s*(.*?)(?:```|$)", re.DOTALL)
_LOC_BOX = re.compile(r"<loc(\d{4})>\s*<loc(\d{4})>\s*<loc(\d{4})>\s*<loc(\d{4})>")
_NUMBER = r"\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*"
_BRACKETED = re.compile(r"[\[(]" + ",".join([_NUMBER] * 4) + r"[\])]")
_NEGATIVE_LABEL = re.compile(r"^\s*(no|none|normal|healthy|negative|absent)\b", re.IGNORECASE)


def _number(value: Any) -> float | None:
    """A float from a JSON number or numeric string; ``None`` for anything else (booleans included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _four_numbers(value: Any) -> list[float] | None:
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        return None
    numbers = [_number(v) for v in value]
    if any(n is None for n in numbers):
        return None
    return [float(n) for n in numbers if n is not None]


def _as_thousandths(numbers: list[float]) -> list[float]:
    """Four numbers on the 0-1000 scale; all within 0-1 with a fraction means fractions of the image."""
    if all(0.0 <= n <= 1.0 for n in numbers) and any(n != int(n) for n in numbers):
        return [n * NORMALISED_MAX for n in numbers]
    return numbers


def _boxes_in(value: Any, found: list[list[float]], depth: int = 0) -> None:
    """Collect ``[ymin, xmin, ymax, xmax]`` (0-1000) boxes from a decoded JSON value."""
    if depth > 8:
        return
    if isinstance(value, dict):
        label = value.get("label")
        if isinstance(label, str) and _NEGATIVE_LABEL.match(label):
            return
        for key in BOX_KEYS:
            numbers = _four_numbers(value.get(key))
            if numbers is not None:
                found.append(_as_thousandths(numbers))
                return
        for item in value.values():  # e.g. {"tumours": [...]} or {"boxes": [[...], ...]}
            if isinstance(item, (list, dict)):
                _boxes_in(item, found, depth + 1)
    elif isinstance(value, list):
        numbers = _four_numbers(value)
        if numbers is not None:
            found.append(_as_thousandths(numbers))
            return
        for item in value:
            _boxes_in(item, found, depth + 1)


def _bracket_spans(text: str, track_quotes: bool) -> list[tuple[int, int, int]]:
    """``(start, end, nesting)`` of every balanced ``[...]`` or ``{...}`` in ``text``, by start; O(n).

    ``end`` is the closing bracket's index and ``nesting`` the depth of brackets inside
    (1 for a flat list). With ``track_quotes``, brackets inside JSON strings do not count.
    """
    spans: list[tuple[int, int, int]] = []
    stack: list[list[int]] = []  # [start, nesting below]
    closing = {"]": "[", "}": "{"}
    in_string = escaped = False
    for index, char in enumerate(text):
        if track_quotes:
            if in_string:
                if escaped:
                    escaped = False
                elif char == "\\":
                    escaped = True
                elif char == '"':
                    in_string = False
                continue
            if char == '"':
                in_string = True
                continue
        if char in "[{":
            stack.append([index, 0])
        elif char in closing:
            if stack and text[stack[-1][0]] == closing[char]:
                start, below = stack.pop()
                spans.append((start, index, below + 1))
                if stack:
                    stack[-1][1] = max(stack[-1][1], below + 1)
            else:  # a stray closing bracket: nothing open around it can be JSON
                stack.clear()
    return sorted(spans)


def _json_boxes(text: str) -> list[list[float]]:
    """Boxes from every balanced JSON value in ``text``, left to right, outermost first.

    A span that does not decode is searched for the values inside it, so the complete
    objects of a list cut off by the token limit are still found. Work is linear in the
    text's length (spans nested deeper than :data:`MAX_JSON_NESTING` are not decoded).
    """
    decoder = json.JSONDecoder()
    for track_quotes in (True, False):  # an odd quote in the chatter hides the JSON from the first pass
        found: list[list[float]] = []
        position = 0
        for start, end, nesting in _bracket_spans(text, track_quotes):
            if start < position or nesting > MAX_JSON_NESTING:
                continue
            try:
                value, _ = decoder.raw_decode(text[start:end + 1])
            except (ValueError, RecursionError):
                continue
            _boxes_in(value, found)
            position = end + 1
        if found:
            return found
    return []


def _loc_boxes(text: str) -> list[list[float]]:
    return [[int(v) * NORMALISED_MAX / LOC_BINS for v in match.groups()] for match in _LOC_BOX.finditer(text)]


def _bracketed_boxes(text: str) -> list[list[float]]:
    boxes = []
    for match in _BRACKETED.finditer(text):
        try:
            boxes.append(_as_thousandths([float(v) for v in match.groups()]))
        except ValueError:
            continue
    return boxes


def _to_pixels(box: list[float], width: int, height: int) -> PixelBox | None:
    """A 0-1000 ``[ymin, xmin, ymax, xmax]`` box as clipped pixel indices; ``None`` when it is no box."""
    if len(box) != 4 or not all(math.isfinite(v) for v in box):
        return None
    y0, x0, y1, x1 = (min(max(v, 0.0), NORMALISED_MAX) for v in box)
    y0, y1 = min(y0, y1), max(y0, y1)
    x0, x1 = min(x0, x1), max(x0, x1)
    if y1 <= y0 or x1 <= x0:  # zero area
        return None

    def rows(v: float) -> float:
        return min(max(v * height / NORMALISED_MAX, 0.0), float(height - 1))

    def cols(v: float) -> float:
        return min(max(v * width / NORMALISED_MAX, 0.0), float(width - 1))

    return (rows(y0), cols(x0), rows(y1), cols(x1))


def parse_boxes(text: str, width: int, height: int, max_boxes: int = 32) -> list[PixelBox]:
    """The tumour boxes in a model's answer, as ``(row_min, col_min, row_max, col_max)`` pixels.

    ``width`` and ``height`` are the image's size in pixels (columns and rows). Returns
    at most ``max_boxes`` distinct boxes in the order the answer gives them; an answer
    without a readable box ("no tumour", ``[]``, garbage) gives ``[]``. Never raises.
    """
    try:
        if not isinstance(text, str) or not text.strip() or width < 1 or height < 1:
            return []
        text = text[:MAX_TEXT_CHARS]
        found = _loc_boxes(text)
        fenced = [m.group(1) for m in _FENCE.finditer(text)]
        json_found = [box for block in fenced for box in _json_boxes(block)] if fenced else []
        if not json_found:
            json_found = _json_boxes(text)
        found += json_found or _bracketed_boxes(text)
        boxes: list[PixelBox] = []
        for raw in found:
            box = _to_pixels(raw, int(width), int(height))
            if box is not None and box not in boxes:
                boxes.append(box)
            if len(boxes) >= max_boxes:
                break
        return boxes
    except Exception:  # a parser of model output must never take the request down
        return []


_TAG = re.compile(r"<[^<>\n]{1,40}>")  # special tokens (<end_of_turn>, <loc0123>) and HTML-ish tags
_JSONISH = re.compile(r"[\[{][^\[\]{}]*[\]}]")
_MARKDOWN = re.compile(r"(\*\*|__|`+|^\s*#+\s*|^\s*[-*+]\s+)", re.MULTILINE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


def _printable(text: str) -> str:
    return "".join(
        " " if unicodedata.category(c).startswith("C") or c == "\ufffd" else c for c in text
    )


def first_sentence(text: str, max_chars: int = 300) -> str:
    """The first sentence of a model's answer as plain text, at most ``max_chars`` characters.

    Code fences, JSON, special tokens, Markdown emphasis and control characters are
    removed and whitespace collapsed; a sentence longer than ``max_chars`` is cut at a
    word boundary and ends in ``...``. Returns ``""`` when no text is left. Never raises.
    """
    try:
        if not isinstance(text, str):
            return ""
        text = text[:MAX_TEXT_CHARS]
        text = re.sub(r"```.*?(?:```|$)", " ", text, flags=re.DOTALL)
        text = _TAG.sub(" ", text)
        for _ in range(8):  # balanced JSON, innermost first (deeper nesting is cut below with the rest)
            text, removed = _JSONISH.subn(" ", text)
            if not removed:
                break
        text = re.sub(r"[\[{].*", " ", text, flags=re.DOTALL)  # JSON cut off by the token limit runs to the end
        text = re.sub(r"[\]}]", " ", text)
        text = _MARKDOWN.sub(" ", text)
        text = _printable(text)
        text = re.sub(r"\s+", " ", text).strip(" ,;:[]{}\"'")
        text = _SENTENCE_END.split(text, maxsplit=1)[0].strip()
        limit = max(int(max_chars), 4)
        if len(text) > limit:
            cut = text[: limit - 3]
            space = cut.rfind(" ")
            text = (cut[:space] if space > limit // 2 else cut).rstrip(" ,;:") + "..."
        return text
    except Exception:  # never take the request down over a sentence
        return ""

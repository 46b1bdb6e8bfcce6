"""Text in any script on the report PDF: embedded fonts that have the glyphs, right-to-left order, Arabic shaping.

reportlab's base-14 fonts (Helvetica, the report's body font) are not embedded and encode WinAnsi (cp1252)
only: a Hebrew, Arabic, Cyrillic or Chinese PatientName (0010,0010) would print as nothing or as boxes. So
each run of characters outside cp1252 is set in the first of :data:`UNICODE_FONTS` whose character map has
all of them, embedded as a subset (Debian's fonts-dejavu-core: Latin, Greek, Cyrillic, Hebrew, Arabic;
fonts-wqy-zenhei: Chinese, Japanese kana, Korean Hangul).

reportlab draws characters in the order it is given them and has no Arabic shaping of its own here (its
shaping and bidi need uharfbuzz and rlbidi; rlbidi is on no package registry these machines reach). So a
line with right-to-left letters is first shaped (arabic-reshaper: each Arabic letter in its contextual
presentation form, lam-alef ligatures) and then put in visual order by the Unicode Bidirectional Algorithm
(python-bidi, UAX #9). That is right for one line of text (a name, a header field); a right-to-left
paragraph that wraps onto several lines would need the bidi run per line, which is not done here.
"""

from __future__ import annotations

import logging
import unicodedata
from functools import lru_cache
from pathlib import Path
from xml.sax.saxutils import escape

import arabic_reshaper
from bidi import get_display
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont

log = logging.getLogger("oncoflow.report")

# (reportlab font name, TrueType file or collection, face index in it), tried in this order
UNICODE_FONTS: tuple[tuple[str, Path, int], ...] = (
    ("DejaVuSans", Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"), 0),
    ("WenQuanYiZenHei", Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"), 0),
)
BASE_FONT_ENCODING = "cp1252"  # what Helvetica (WinAnsiEncoding) can draw
RIGHT_TO_LEFT_CLASSES = ("R", "AL")  # Unicode bidi classes: Hebrew (R), Arabic letters (AL)


class ReportFontError(RuntimeError):
    """No installed font can draw some text of the report (fonts-dejavu-core / fonts-wqy-zenhei missing)."""


@lru_cache(maxsize=1)
def unicode_fonts() -> tuple[tuple[str, frozenset[int]], ...]:
    """The fonts of :data:`UNICODE_FONTS` that are installed, registered with reportlab: (name, code points)."""
    fonts = []
    for name, path, face_index in UNICODE_FONTS:
        if not path.is_file():
            continue
        font = TTFont(name, str(path), subfontIndex=face_index)
        pdfmetrics.registerFont(font)
        fonts.append((name, frozenset(font.face.charToGlyph)))
    return tuple(fonts)


def _base_font_draws(character: str) -> bool:
    try:
        character.encode(BASE_FONT_ENCODING)
    except UnicodeEncodeError:
        return False
    return True


def _font_for(character: str) -> str:
    """The first Unicode font with a glyph for ``character`` (:class:`ReportFontError` when none is installed)."""
    fonts = unicode_fonts()
    if not fonts:
        raise ReportFontError("the report needs a Unicode font for "
                              f"{character!r} (U+{ord(character):04X}) and none is installed: "
                              + ", ".join(str(path) for _, path, _ in UNICODE_FONTS) + " (scripts/bootstrap.sh)")
    for name, code_points in fonts:
        if ord(character) in code_points:
            return name
    log.warning("no installed report font draws U+%04X: it prints as the %s box", ord(character), fonts[0][0])
    return fonts[0][0]


def visual_line(text: str) -> str:
    """One line of ``text`` as it must be drawn left to right: Arabic shaped, right-to-left runs reversed (UAX #9).
    Text without right-to-left letters comes back unchanged."""
    if not any(unicodedata.bidirectional(c) in RIGHT_TO_LEFT_CLASSES for c in text):
        return text
    return str(get_display(arabic_reshaper.reshape(text)))


def unicode_markup(text: str) -> str:
    """``text`` (one line) as reportlab paragraph markup: XML-escaped, in visual order, each run of characters
    the base font cannot draw wrapped in ``<font name="...">`` of an embedded Unicode font that can."""
    runs: list[tuple[str | None, str]] = []  # (font name or None for the paragraph's own font, characters)
    for character in visual_line(text):
        font = None if _base_font_draws(character) else _font_for(character)
        if font is None and runs and runs[-1][0] is not None and not character.strip():
            font = runs[-1][0]  # a space inside a right-to-left or CJK run stays in that run's font
        if runs and runs[-1][0] == font:
            runs[-1] = (font, runs[-1][1] + character)
        else:
            runs.append((font, character))
    return "".join(escape(chars) if font is None else f'<font name="{font}">{escape(chars)}</font>'
                   for font, chars in runs)

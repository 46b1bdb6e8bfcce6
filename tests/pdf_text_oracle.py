"""What a PDF shows, read with poppler's and fontTools' eyes (never OncoFlow's code): the words of its text, and
the characters it draws with a real glyph of an embedded font."""

from __future__ import annotations

import io
import re
import unicodedata

from fontTools.ttLib import TTFont
from pyhanko.pdf_utils.reader import PdfFileReader


def pdf_words(text: str) -> set[str]:
    """The words of pdftotext's output: bidi controls dropped, Arabic presentation forms folded (NFKC)."""
    visible = "".join(c for c in text if unicodedata.category(c) != "Cf")
    return set(re.findall(r"\w+", unicodedata.normalize("NFKC", visible)))


def drawn_with_glyphs(pdf: bytes, fold: bool = True) -> set[str]:
    """Characters page 1 of ``pdf`` draws with an outline of an embedded TrueType font: each font's ToUnicode
    code -> character, kept when the embedded font program maps that code to a glyph with contours (a character
    the font lacks is drawn as glyph 0, .notdef); with ``fold``, NFKC-folded, so Arabic presentation forms count as
    their letters."""
    reader = PdfFileReader(io.BytesIO(pdf))
    page = reader.root["/Pages"]
    while page.get("/Type") == "/Pages":  # down the page tree to its first leaf
        page = page["/Kids"][0]
    fonts = page["/Resources"]["/Font"]
    drawn: set[str] = set()
    for key in fonts:
        font = fonts[key]
        if font["/Subtype"] != "/TrueType" or "/ToUnicode" not in font:
            continue
        program = TTFont(io.BytesIO(font["/FontDescriptor"]["/FontFile2"].data))
        code_to_glyph = program.getBestCmap() or program["cmap"].tables[0].cmap
        glyphs = program["glyf"]
        for code, value in re.findall(rb"<([0-9A-Fa-f]{2})>\s*<([0-9A-Fa-f]{4,8})>", font["/ToUnicode"].data):
            glyph = code_to_glyph.get(int(code, 16))
            if glyph and glyph != ".notdef" and glyphs[glyph].numberOfContours != 0:
                character = chr(int(value, 16))
                drawn.update(unicodedata.normalize("NFKC", character) if fold else character)
    return drawn


def win_ansi(character: str) -> bool:
    """Whether base-14 Helvetica draws ``character`` (WinAnsiEncoding, cp1252), no font embedded."""
    try:
        character.encode("cp1252")
    except UnicodeEncodeError:
        return False
    return True

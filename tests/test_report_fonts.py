"""Names in any script on a PDF: the markup of oncoflow.report.report_fonts, rendered by reportlab and read back
by poppler (pdftotext) and fontTools (the embedded fonts' own glyphs): tests/pdf_text_oracle.py."""

from __future__ import annotations

import subprocess
import unicodedata
from io import BytesIO
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.platypus import Paragraph, SimpleDocTemplate

from oncoflow.report.report_fonts import unicode_markup

from .conftest import required_tool
from .pdf_text_oracle import drawn_with_glyphs, pdf_words

NAMES = {"hebrew": ("כהן", "דוד"), "arabic": ("حداد", "ليلى"), "cyrillic": ("Иванов", "Пётр"),
         "chinese": ("王", "小明"), "greek": ("Παπαδόπουλος", "Νίκος")}


def pdf_of(markup: str) -> bytes:
    buffer = BytesIO()
    SimpleDocTemplate(buffer).build([Paragraph(f"Patient {markup}", getSampleStyleSheet()["BodyText"])])
    return buffer.getvalue()


def pdftotext(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "name.pdf"
    path.write_bytes(pdf)
    return subprocess.run([required_tool("pdftotext"), str(path), "-"], capture_output=True, text=True,
                          check=True).stdout


@pytest.mark.parametrize("script", sorted(NAMES))
def test_every_letter_is_drawn_by_an_embedded_glyph_in_reading_order(script: str, tmp_path: Path) -> None:
    family, given = NAMES[script]
    pdf = pdf_of(unicode_markup(f"{family}, {given}"))
    assert {family, given} <= pdf_words(pdftotext(pdf, tmp_path)), script  # whole words: letters in order
    letters = {c for c in family + given if c.isalpha()}
    assert letters <= drawn_with_glyphs(pdf), sorted(letters - drawn_with_glyphs(pdf))


def test_the_base_font_alone_draws_no_hebrew_or_chinese(tmp_path: Path) -> None:
    """The oracle can fail: Helvetica (not embedded, WinAnsi) draws none of these letters."""
    pdf = pdf_of(escape("כהן, דוד 王, 小明"))
    assert not {c for c in "כהןדוד王小明"} & drawn_with_glyphs(pdf)


def test_latin_text_keeps_the_base_font() -> None:
    assert unicode_markup("Müller, José & <Co>") == "Müller, José &amp; &lt;Co&gt;"


def test_arabic_is_drawn_joined() -> None:
    """Arabic letters take their initial, medial and final forms (Unicode's presentation forms), not the isolated
    ones a font gives letters drawn one by one."""
    drawn = drawn_with_glyphs(pdf_of(unicode_markup("حداد, ليلى")), fold=False)
    forms = {unicodedata.name(c).rsplit(" ", 2)[-2] for c in drawn if "ARABIC" in unicodedata.name(c, "")}
    assert {"INITIAL", "MEDIAL", "FINAL"} <= forms, sorted(unicodedata.name(c, "?") for c in drawn)

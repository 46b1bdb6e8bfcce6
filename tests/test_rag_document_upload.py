"""Uploaded clinical notes: good PDFs and text files give their text; every bad upload gets its 4xx.

The PDFs are built here with reportlab (and encrypted with pypdf), so each case is a real file.
"""

from __future__ import annotations

import hashlib
import io
import random

import pytest
from oncoflow_rag import document_upload
from oncoflow_rag.document_upload import DocumentRejected, UploadedDocument, read_upload
from pypdf import PdfReader, PdfWriter
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

MAX_BYTES = 1024 * 1024
PAGE_ONE = "Histopathology: glioblastoma, IDH-wildtype, CNS WHO grade 4. MGMT promoter methylated."
PAGE_TWO = "Adjuvant temozolomide chemoradiation started on 2 May 2024; seizures controlled on levetiracetam."


def make_pdf(pages: list[str], *, rectangle_only: bool = False) -> bytes:
    """A real PDF with one line of text per page (or only a drawn rectangle: no text layer)."""
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4)
    for text in pages:
        if rectangle_only:
            pdf.rect(100, 400, 300, 200, fill=1)
        else:
            pdf.drawString(72, 760, text)
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def encrypt(data: bytes, user_password: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@pytest.fixture(scope="module")
def good_pdf() -> bytes:
    return make_pdf([PAGE_ONE, PAGE_TWO])


def rejected(filename: str, data: bytes, content_type: str | None = None,
             max_bytes: int = MAX_BYTES) -> DocumentRejected:
    with pytest.raises(DocumentRejected) as info:
        read_upload(filename, data, content_type, max_bytes)
    error = info.value
    assert error.message and "\n" not in error.message and "Traceback" not in error.message
    assert str(error) == error.message
    return error


# --- accepted uploads ----------------------------------------------------------------------------------------------

def test_pdf_text_is_extracted(good_pdf: bytes) -> None:
    document = read_upload("Pathology report.pdf", good_pdf, "application/pdf", MAX_BYTES)
    assert isinstance(document, UploadedDocument)
    assert document.filename == "Pathology report.pdf"
    assert document.media_type == "application/pdf"
    assert document.pages == 2
    assert PAGE_ONE in document.text and PAGE_TWO in document.text
    assert document.text.index(PAGE_ONE) < document.text.index(PAGE_TWO)
    assert document.sha256 == hashlib.sha256(good_pdf).hexdigest()
    assert document.size_bytes == len(good_pdf)


def test_text_file_is_decoded_and_whitespace_normalised() -> None:
    data = ("\ufeffMRI 03/2024:\r\n\tenhancing  lesion,   left temporal.\r\n\r\n\r\n\r\n"
            "No midline\u00a0shift.  \r\n").encode()
    document = read_upload("notes.TXT", data, "text/plain; charset=utf-8", MAX_BYTES)
    assert document.media_type == "text/plain"
    assert document.pages == 1
    assert document.text == "MRI 03/2024:\nenhancing lesion, left temporal.\n\nNo midline shift."
    assert document.size_bytes == len(data)


def test_ligatures_are_folded() -> None:
    document = read_upload("n.txt", "Signi\ufb01cant \ufb02uid.".encode(), None, MAX_BYTES)
    assert document.text == "Significant fluid."


@pytest.mark.parametrize("content_type", [None, "", "application/pdf", " Application/PDF ", "application/x-pdf",
                                          "application/octet-stream", "application/pdf; name=x.pdf"])
def test_pdf_content_types_accepted(good_pdf: bytes, content_type: str | None) -> None:
    assert read_upload("x.PDF", good_pdf, content_type, MAX_BYTES).pages == 2


def test_size_exactly_at_the_limit_is_accepted() -> None:
    data = b"Seizure-free since surgery."
    assert read_upload("x.txt", data, None, len(data)).text == "Seizure-free since surgery."


# --- 413 -----------------------------------------------------------------------------------------------------------

def test_oversized_upload_is_413(good_pdf: bytes) -> None:
    error = rejected("x.pdf", good_pdf, "application/pdf", max_bytes=len(good_pdf) - 1)
    assert error.status == 413
    assert "limit" in error.message


# --- 400 -----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("filename", [
    "../x.txt", "/etc/passwd", "a/b.pdf", "C:\\x.pdf", "C:x.pdf", "x\x00.txt", "", "   ", "..", ".",
    "\\\\server\\share\\x.pdf", "..\\..\\x.txt", "x\n.txt", "x\t.txt", "x\u202etxt.pdf", "x.txt:stream",
    "a" * 252 + ".txt", "\u00e9" * 126 + ".txt",
])
def test_filename_with_path_or_control_characters_is_400(good_pdf: bytes, filename: str) -> None:
    error = rejected(filename, good_pdf, "application/pdf")
    assert error.status == 400
    assert "plain names" in error.message


def test_long_plain_filename_within_255_bytes_is_accepted() -> None:
    name = "a" * 251 + ".txt"
    assert read_upload(name, b"Stable disease.", None, MAX_BYTES).filename == name


# --- 415 -----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("filename", ["x.docx", "x", "x.pdf.exe", ".pdf", "x.pdf.", "x.dcm", "x.html"])
def test_other_extensions_are_415(good_pdf: bytes, filename: str) -> None:
    error = rejected(filename, good_pdf)
    assert error.status == 415
    assert ".pdf" in error.message and ".txt" in error.message


@pytest.mark.parametrize(("filename", "content_type"), [
    ("x.pdf", "text/plain"), ("x.txt", "application/pdf"), ("x.pdf", "image/png"), ("x.txt", "text/html"),
    ("x.pdf", "multipart/form-data"),
])
def test_content_type_disagreeing_with_extension_is_415(good_pdf: bytes, filename: str, content_type: str) -> None:
    data = good_pdf if filename.endswith(".pdf") else b"Plain note."
    error = rejected(filename, data, content_type)
    assert error.status == 415
    assert "content type" in error.message


@pytest.mark.parametrize("data", [
    b"\x89PNG\r\n\x1a\n" + bytes(200),
    b"Glioblastoma, IDH-wildtype. Not a PDF at all.",
    b"PK\x03\x04" + bytes(100),
    b" %PDF-1.7\n",
])
def test_non_pdf_named_pdf_is_415(data: bytes) -> None:
    error = rejected("renamed.pdf", data, "application/pdf")
    assert error.status == 415
    assert "not a PDF" in error.message


def test_pdf_named_txt_is_415(good_pdf: bytes) -> None:
    error = rejected("report.txt", good_pdf, "text/plain")
    assert error.status == 415


# --- 422 -----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("user_password", ["", "patient-secret"])
def test_encrypted_pdf_is_422(good_pdf: bytes, user_password: str) -> None:
    data = encrypt(good_pdf, user_password)
    assert PdfReader(io.BytesIO(data)).is_encrypted
    error = rejected("x.pdf", data, "application/pdf")
    assert error.status == 422
    assert "encrypted PDFs are not accepted" in error.message


@pytest.mark.parametrize("data", [
    b"%PDF-1.7\n" + random.Random(7).randbytes(4000),
    b"%PDF-",
    b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n",
])
def test_unparsable_pdf_is_422(data: bytes) -> None:
    error = rejected("x.pdf", data, "application/pdf")
    assert error.status == 422


def test_pdf_without_text_layer_is_422() -> None:
    error = rejected("scan.pdf", make_pdf(["", ""], rectangle_only=True), "application/pdf")
    assert error.status == 422
    assert "no text" in error.message


def test_pdf_with_too_many_pages_is_422() -> None:
    data = make_pdf(["p"] * (document_upload.MAX_PDF_PAGES + 1))
    error = rejected("long.pdf", data, None, max_bytes=len(data))
    assert error.status == 422
    assert str(document_upload.MAX_PDF_PAGES) in error.message


def test_too_much_text_is_422(monkeypatch: pytest.MonkeyPatch, good_pdf: bytes) -> None:
    monkeypatch.setattr(document_upload, "MAX_TEXT_CHARS", 50)
    assert rejected("x.pdf", good_pdf).status == 422
    assert rejected("x.txt", b"Tumour. " * 20).status == 422


@pytest.mark.parametrize("data", [b"", b"   \r\n\t \n", "\ufeff \n".encode(), b"\x00\x00"])
def test_empty_text_file_is_422(data: bytes) -> None:
    assert rejected("empty.txt", data, "text/plain").status == 422


def test_text_file_not_utf8_is_422() -> None:
    error = rejected("latin1.txt", "Patientin mit Glioblastom, Kopfschmerzen seit März.".encode("latin-1"))
    assert error.status == 422
    assert "UTF-8" in error.message


def test_binary_file_named_txt_is_422() -> None:
    assert rejected("x.txt", b"abc\x00def").status == 422


def test_only_document_rejected_escapes_for_damaged_or_random_input(good_pdf: bytes) -> None:
    """Truncated and bit-flipped PDFs and random bytes: a document or DocumentRejected, nothing else."""
    rng = random.Random(2024)
    samples = [good_pdf[:cut] for cut in range(5, len(good_pdf), max(1, len(good_pdf) // 40))]
    for _ in range(40):
        flipped = bytearray(good_pdf)
        for _ in range(20):
            flipped[rng.randrange(8, len(flipped))] = rng.randrange(256)
        samples.append(bytes(flipped))
    samples += [rng.randbytes(rng.randrange(1, 3000)) for _ in range(20)]
    outcomes = set()
    for data in samples:
        for name in ("x.pdf", "x.txt"):
            try:
                document = read_upload(name, data, None, MAX_BYTES)
            except DocumentRejected as error:
                assert error.status in (413, 415, 422)
                outcomes.add(error.status)
            else:
                assert document.text.strip()
                outcomes.add(200)
    assert 422 in outcomes  # the samples did exercise the rejections
